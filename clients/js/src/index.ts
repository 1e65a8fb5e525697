// @spell-coven/gateway-client: the typed client of the Spell Coven hub
// (docs/clients.md). Types come from the contract's JSON Schema (src/contract.ts,
// generated); the rest is a small, dependency-free client, with the webcams' mesh and
// camera frames for card recognition (src/webcams.ts, src/frames.ts).
export * from './contract.js';
export { connect, GatewayClient } from './client.js';
export type { ConnectOptions, ConnectionState, ClientListeners, EventFrame, EventListeners, TokenRequest, WebSocketConstructor, WebSocketLike } from './client.js';
export { HubApi, newIdempotencyKey } from './api.js';
export type { CreateRoomOptions, FetchLike, HubApiOptions } from './api.js';
export { HubApiError, HubUnreachableError, GatewayAuthError } from './errors.js';
export { LiveRooms } from './rooms.js';
export type { LiveMember, LiveRoom } from './rooms.js';
export { loginUrl, takeToken } from './signin.js';
export type { LocationLike, SignInResult } from './signin.js';
export { backoffDelay } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { Webcams, MAX_PLAYERS } from './webcams.js';
export type { IceSettings, WebcamPeer, WebcamsError, WebcamsListeners, WebcamsOptions, WebcamsTransport } from './webcams.js';
export { frames } from './frames.js';
export type { FrameInfo, FrameKind, FrameOptions } from './frames.js';
