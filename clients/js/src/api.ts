// The hub's HTTP API (docs/spec.md §7) with the contract's types: the snapshot,
// the cues, create/end a room, the bot. Every error answer becomes a HubApiError
// with the contract's code and `Retry-After`; `createRoom` sends one
// `Idempotency-Key` per call and retries a lost request with that same key, so a
// retry never creates a second room.
import type { CreateRoomRequest, CreatedRoom, Cue, CueList, ErrorCode, OkBody, Snapshot } from './contract.js';
import { backoffDelay } from './backoff.js';
import { HubApiError, HubUnreachableError } from './errors.js';

/** A `fetch` implementation (the global one, or an injected one). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Where the hub is and how to authenticate. */
export interface HubApiOptions {
  /** The hub's origin, e.g. `https://hub.example.com` (default: the page's origin). */
  url?: string;
  /** Returns the app's JWT; called for every request, so it may refresh it. */
  getToken: () => string | Promise<string>;
  /** `fetch` to use (default: the global one). */
  fetch?: FetchLike;
  /** How long one request may take, in milliseconds (default 15 000). */
  timeoutMs?: number;
}

/** Options of one `createRoom` call. */
export interface CreateRoomOptions {
  /** The key to send (default: a fresh random one per call). */
  idempotencyKey?: string;
  /** How many times a lost request (network error, 503) is retried with the same key (default 2). */
  retries?: number;
}

const CODES: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 413: 'VALIDATION_FAILED', 429: 'RATE_LIMITED',
};

/** A fresh random `Idempotency-Key`: 128 bits as 32 hex digits (works without a secure context). */
export function newIdempotencyKey(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The base URL of a hub: `url`, or the page's origin in a browser. */
export function hubOrigin(url: string | undefined): string {
  const base = url ?? (globalThis as { location?: { origin?: string } }).location?.origin;
  if (!base) throw new TypeError('the hub URL is needed outside a browser page (url: "https://…")');
  return base.replace(/\/+$/, '');
}

/** Typed calls of the hub's HTTP API. */
export class HubApi {
  private readonly origin: string;
  private readonly getToken: () => string | Promise<string>;
  private readonly fetchImpl: FetchLike;
  private readonly timeoutMs: number;

  constructor(options: HubApiOptions) {
    this.origin = hubOrigin(options.url);
    this.getToken = options.getToken;
    const f = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) throw new TypeError('no global fetch: pass one as `fetch`');
    this.fetchImpl = (input, init) => f(input, init);
    this.timeoutMs = options.timeoutMs ?? 15_000;
  }

  /** `GET /api/rooms`: every room with its members, and the `seq` it is current at. */
  rooms(): Promise<Snapshot> {
    return this.request<Snapshot>('GET', '/api/rooms');
  }

  /** `GET /api/cues`: the cues the bot can play. */
  cues(): Promise<CueList> {
    return this.request<CueList>('GET', '/api/cues');
  }

  /** `POST /api/create-room`, retried with the same `Idempotency-Key` when the answer is lost. */
  async createRoom(body: CreateRoomRequest = {}, options: CreateRoomOptions = {}): Promise<CreatedRoom> {
    const key = options.idempotencyKey ?? newIdempotencyKey();
    const retries = options.retries ?? 2;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request<CreatedRoom>('POST', '/api/create-room', body, { 'Idempotency-Key': key });
      } catch (err) {
        const lost = err instanceof HubUnreachableError || (err instanceof HubApiError && err.status === 503);
        if (!lost || attempt >= retries) throw err;
        const wait = err instanceof HubApiError && err.retryAfter !== undefined
          ? Math.min(err.retryAfter * 1000, 10_000)
          : backoffDelay(attempt, { baseMs: 250, maxMs: 2_000 });
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** `DELETE /api/end-room/{channelId}`. */
  endRoom(channelId: string): Promise<OkBody> {
    return this.request<OkBody>('DELETE', `/api/end-room/${encodeURIComponent(channelId)}`);
  }

  /** `POST /api/rooms/{channelId}/bot`: the bot joins the room. */
  botJoin(channelId: string): Promise<OkBody> {
    return this.request<OkBody>('POST', `/api/rooms/${encodeURIComponent(channelId)}/bot`);
  }

  /** `DELETE /api/rooms/{channelId}/bot`: the bot leaves the room. */
  botLeave(channelId: string): Promise<OkBody> {
    return this.request<OkBody>('DELETE', `/api/rooms/${encodeURIComponent(channelId)}/bot`);
  }

  /** `POST /api/rooms/{channelId}/cue`: the bot plays `cue` (a name of {@link cues}). */
  playCue(channelId: string, cue: Cue): Promise<OkBody> {
    return this.request<OkBody>('POST', `/api/rooms/${encodeURIComponent(channelId)}/cue`, { cue });
  }

  /** One request: JSON in, JSON out, errors typed. */
  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const token = await this.getToken();
    const init: RequestInit = {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      signal: AbortSignal.timeout(this.timeoutMs),
    };
    let response: Response;
    try {
      response = await this.fetchImpl(this.origin + path, init);
    } catch (err) {
      throw new HubUnreachableError(`${method} ${path}: the hub could not be reached`, { cause: err });
    }
    const text = await response.text().catch(() => '');
    if (response.ok) return (text ? JSON.parse(text) : {}) as T;
    throw errorFrom(response, text);
  }
}

/** The HubApiError of an error answer. */
function errorFrom(response: Response, text: string): HubApiError {
  let parsed: { message?: unknown; code?: unknown; details?: unknown } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // not JSON: a proxy's page, say
  }
  const code = typeof parsed.code === 'string' ? (parsed.code as ErrorCode) : (CODES[response.status] ?? 'INTERNAL_ERROR');
  const message = typeof parsed.message === 'string' ? parsed.message : `HTTP ${response.status}`;
  const details = parsed.details && typeof parsed.details === 'object' ? (parsed.details as Record<string, unknown>) : undefined;
  const header = response.headers.get('retry-after');
  const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header.trim()) : undefined;
  return new HubApiError(response.status, code, message, details, retryAfter);
}
