// Webcams at the table (docs/spec.md §12, docs/clients.md "Webcams"): the browser side
// of the players' video mesh, with no UI. Each player's camera shows their board.
// Discord lets neither bots nor web pages see its video, so browsers send video to each
// other over WebRTC (a full mesh of at most 6 players) and the hub relays only their
// signalling (`rtc.signal`), only between members of the same voice channel: Discord's
// voice presence decides who sees whom. `Webcams` follows a `GatewayClient`: its live
// rooms say which table the user sits at (and so whom to connect to), its socket carries
// the signalling, and `auth.ok`'s `iceServers` configure every `RTCPeerConnection`.
//
// Signalling `data` (opaque to the hub): {kind: 'hello'|'offer'|'answer'|'candidate'|'bye',
// sid, to?, reply?, sdp?, candidate?}. `sid` is random per `Webcams`, so a second tab of
// the same user neither answers for this one nor confuses it (the hub delivers to every
// socket of a user); `to` names the page a message is for. Of two pages, the one whose
// user id is smaller makes the offer (no glare); candidates are trickled and held until
// the remote description is set.
import type { ClientMessage, ErrorBody, IceServer, ServerMessage } from './contract.js';
import type { GatewayClient } from './client.js';
import { Emitter } from './emitter.js';

/** The most players a table's full mesh connects (docs/spec.md §12). */
export const MAX_PLAYERS = 6;

/** What `Webcams` needs of a {@link GatewayClient}: its messages, live rooms and `send`. */
export type WebcamsTransport = Pick<GatewayClient, 'on' | 'send' | 'rooms'>;

/** The options of {@link Webcams}. */
export interface WebcamsOptions {
  /** The hub connection (usually the `GatewayClient` from `connect`). */
  client: WebcamsTransport;
  /** The signed-in user's id (the token's `sub`). */
  me: string;
  /** The camera's constraints (default 640×480 video, no audio: voice stays Discord's). */
  video?: MediaTrackConstraints | boolean;
  /** How long the camera stays on after leaving the voice channel with no join after it (default 2000 ms: a move is a leave then a join). */
  leaveGraceMs?: number;
  /** `navigator.mediaDevices` by default. */
  mediaDevices?: Pick<MediaDevices, 'getUserMedia'>;
}

/** A remote player of the mesh. */
export interface WebcamPeer {
  /** Their user id. */
  readonly userId: string;
  /** `RTCPeerConnection.connectionState`. */
  readonly connectionState: RTCPeerConnectionState;
  /** Their camera, once its track arrived. */
  readonly stream: MediaStream | null;
}

/** Why something of the mesh failed. */
export interface WebcamsError {
  /** `CAMERA` (getUserMedia failed), `WEBRTC` (an offer, answer or candidate failed) or the hub's error code. */
  code: 'CAMERA' | 'WEBRTC' | ErrorBody['code'];
  /** What happened. */
  message: string;
}

/** Every listener a {@link Webcams} takes. */
export type WebcamsListeners = {
  /** Something to show changed: the table, the camera, a peer or its state. */
  change: () => void;
  /** A remote player's camera arrived (`stream`) or went (`null`). */
  stream: (userId: string, stream: MediaStream | null) => void;
  /** A camera, WebRTC or hub error (e.g. `FORBIDDEN`); the mesh carries on. */
  error: (error: WebcamsError) => void;
};

/** The ICE settings of the next peer connections. */
export interface IceSettings {
  /** `'all'` (default) or `'relay'` (TURN only). */
  policy?: RTCIceTransportPolicy;
  /** The servers; `null`/absent: `auth.ok`'s. */
  servers?: RTCIceServer[] | null;
}

interface SignalData {
  kind: 'hello' | 'offer' | 'answer' | 'candidate' | 'bye';
  sid: string;
  to?: string;
  reply?: boolean;
  sdp?: string;
  candidate?: RTCIceCandidateInit;
}

interface Peer {
  userId: string;
  sid: string;
  pc: RTCPeerConnection;
  stream: MediaStream | null;
  pending: RTCIceCandidateInit[];
  candidateErrors: number[];
}

/** Longest SDP or candidate accepted from a peer (the hub caps `data` at 16 KiB anyway). */
const MAX_SIGNAL_TEXT = 16 * 1024;

/**
 * The webcam mesh of one signed-in page: `cameraOn()` opens the camera and connects to
 * every other member of the user's voice channel whose camera is on; peers follow voice
 * presence (a leave drops them at once); `remoteStreams()` / `on('stream')` give every
 * remote player's `MediaStream`, e.g. for {@link frames}. Call `close()` at sign-out.
 */
export class Webcams extends Emitter<WebcamsListeners> {
  private readonly client: WebcamsTransport;
  private readonly me: string;
  private readonly sid = randomId();
  private readonly video: MediaTrackConstraints | boolean;
  private readonly leaveGraceMs: number;
  private readonly mediaDevices: Pick<MediaDevices, 'getUserMedia'> | undefined;
  private readonly unsubscribe: (() => void)[];
  private authIceServers: IceServer[] = [];
  private ice: IceSettings = {};
  private currentRoom: string | null = null;
  private members: string[] = [];
  private camera: MediaStream | null = null;
  private opening = false;
  private readonly peerMap = new Map<string, Peer>();
  private leaveTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private last: WebcamsError | null = null;

  constructor(options: WebcamsOptions) {
    super();
    this.client = options.client;
    this.me = options.me;
    this.video = options.video ?? { width: 640, height: 480 };
    this.leaveGraceMs = options.leaveGraceMs ?? 2000;
    this.mediaDevices = options.mediaDevices ?? (globalThis.navigator as Navigator | undefined)?.mediaDevices;
    this.unsubscribe = [
      this.client.on('message', (msg) => this.onMessage(msg)),
      this.client.on('rooms', () => this.onPresence()),
    ];
    this.onPresence();
  }

  /** The signed-in user's id. */
  get userId(): string {
    return this.me;
  }

  /** The voice channel the user is in (per presence), or `null`. */
  get room(): string | null {
    return this.currentRoom;
  }

  /** The user's own camera while it is on. */
  get localStream(): MediaStream | null {
    return this.camera;
  }

  /** The latest error (camera, WebRTC or the hub's), or `null`. */
  get lastError(): WebcamsError | null {
    return this.last;
  }

  /** More members at the table than the mesh connects ({@link MAX_PLAYERS}). */
  get overCapacity(): boolean {
    return this.currentRoom !== null && this.members.length > MAX_PLAYERS;
  }

  /** `auth.ok`'s ICE servers (with their credentials: do not log them). */
  get iceServers(): readonly IceServer[] {
    return this.authIceServers;
  }

  /** The remote players now, in order of connection. */
  peers(): WebcamPeer[] {
    return Array.from(this.peerMap.values(), (p) => ({ userId: p.userId, connectionState: p.pc.connectionState, stream: p.stream }));
  }

  /** Every remote player's camera now: user id → `MediaStream`. */
  remoteStreams(): Map<string, MediaStream> {
    const out = new Map<string, MediaStream>();
    for (const p of this.peerMap.values()) if (p.stream) out.set(p.userId, p.stream);
    return out;
  }

  /** The WebRTC statistics of the connection with `userId`, or `null` without one. */
  async stats(userId: string): Promise<RTCStatsReport | null> {
    const peer = this.peerMap.get(userId);
    return peer ? peer.pc.getStats() : null;
  }

  /** The ICE candidate errors (e.g. 401 from a TURN server refusing a credential) with `userId`. */
  candidateErrors(userId: string): number[] {
    return this.peerMap.get(userId)?.candidateErrors.slice() ?? [];
  }

  /** The ICE transport policy and servers of the peer connections made from now on. */
  configureIce(settings: IceSettings): void {
    this.ice = { ...settings };
  }

  /** Opens the camera and greets the table; nothing outside a voice channel. */
  async cameraOn(): Promise<void> {
    if (this.camera || this.opening || !this.currentRoom || this.closed) return;
    if (!this.mediaDevices) {
      this.fail({ code: 'CAMERA', message: 'this browser has no camera access (navigator.mediaDevices)' });
      return;
    }
    this.opening = true;
    let stream: MediaStream;
    try {
      stream = await this.mediaDevices.getUserMedia({ video: this.video, audio: false });
    } catch (err) {
      this.fail({ code: 'CAMERA', message: err instanceof Error ? err.message : String(err) });
      return;
    } finally {
      this.opening = false;
    }
    if (this.closed || !this.currentRoom) {
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    this.camera = stream;
    this.greet();
    this.emit('change');
  }

  /** Stops the camera and tells the peers (`bye`). */
  cameraOff(): void {
    if (!this.camera) return;
    for (const peer of this.peerMap.values()) this.signal(peer.userId, { kind: 'bye', to: peer.sid });
    this.dropAll();
    for (const t of this.camera.getTracks()) t.stop();
    this.camera = null;
    this.emit('change');
  }

  /** Camera off, every peer closed, no more listening to the client. */
  close(): void {
    this.cameraOff();
    this.dropAll();
    clearTimeout(this.leaveTimer);
    this.closed = true;
    for (const off of this.unsubscribe) off();
  }

  // ---------- presence ----------

  /** The live rooms changed: follow the user's table, drop whoever left it. */
  private onPresence(): void {
    if (this.closed) return;
    let room: string | null = null;
    let members: string[] = [];
    for (const r of this.client.rooms) {
      if (r.members.some((m) => m.userId === this.me)) {
        room = r.channelId;
        members = r.members.map((m) => m.userId);
        break;
      }
    }
    const moved = room !== this.currentRoom;
    this.members = members;
    if (moved) {
      this.dropAll();
      this.currentRoom = room;
      clearTimeout(this.leaveTimer);
      // A move is a leave then a join: the camera stays on across it, and goes off
      // when no join follows.
      if (!room && this.camera) this.leaveTimer = setTimeout(() => { if (!this.currentRoom) this.cameraOff(); }, this.leaveGraceMs);
      if (room) this.greet();
    } else {
      const here = new Set(members);
      for (const userId of Array.from(this.peerMap.keys())) if (!here.has(userId)) this.drop(userId);
    }
    this.emit('change');
  }

  // ---------- signalling ----------

  private onMessage(msg: ServerMessage): void {
    if (this.closed) return;
    if (msg.type === 'ack' && msg.event === 'auth.ok') {
      this.authIceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
      // The client takes the socket as authenticated right after this listener: greet
      // then. Peers already connected stay; a new socket is a reconnect.
      queueMicrotask(() => this.greet());
    } else if (msg.type === 'rtc.signal') {
      this.onSignal(String(msg.from), msg.channelId, msg.data as Partial<SignalData>);
    } else if (msg.type === 'error' && msg.error) {
      this.fail({ code: msg.error.code, message: msg.error.message });
    }
  }

  private onSignal(from: string, channelId: string, data: Partial<SignalData>): void {
    if (channelId !== this.currentRoom || !this.camera || from === this.me || !data || typeof data.sid !== 'string') return;
    if (data.to && data.to !== this.sid) return; // for another tab of this user
    if (data.kind === 'bye') {
      if (this.peerMap.get(from)?.sid === data.sid) this.drop(from);
      return;
    }
    if (data.kind === 'hello') {
      let peer = this.peerMap.get(from);
      if (peer && peer.sid !== data.sid) {
        this.drop(from);
        peer = undefined;
      }
      if (!peer) {
        if (this.peerMap.size >= MAX_PLAYERS - 1) return;
        peer = this.newPeer(from, data.sid);
        if (!data.reply) this.signal(from, { kind: 'hello', reply: true, to: data.sid });
        if (smaller(this.me, from)) void this.makeOffer(peer);
      }
      return;
    }
    const peer = this.peerMap.get(from);
    if (!peer || peer.sid !== data.sid) return;
    if (data.kind === 'offer' && isText(data.sdp)) void this.acceptOffer(peer, data.sdp);
    else if (data.kind === 'answer' && isText(data.sdp)) void this.acceptAnswer(peer, data.sdp);
    else if (data.kind === 'candidate' && data.candidate && typeof data.candidate === 'object') void this.addCandidate(peer, data.candidate);
  }

  private signal(to: string, data: Omit<SignalData, 'sid'>): void {
    if (!this.currentRoom) return;
    const message: ClientMessage = { type: 'rtc.signal', to, channelId: this.currentRoom, data: { ...data, sid: this.sid } };
    this.client.send(message);
  }

  /** Tells every other member of the table that this camera is on. */
  private greet(): void {
    if (!this.camera || !this.currentRoom) return;
    for (const userId of this.members) if (userId !== this.me) this.signal(userId, { kind: 'hello' });
  }

  // ---------- peers ----------

  private newPeer(userId: string, sid: string): Peer {
    const pc = new RTCPeerConnection({
      iceServers: this.ice.servers ?? (this.authIceServers as RTCIceServer[]),
      iceTransportPolicy: this.ice.policy ?? 'all',
    });
    const peer: Peer = { userId, sid, pc, stream: null, pending: [], candidateErrors: [] };
    const camera = this.camera as MediaStream;
    for (const track of camera.getTracks()) pc.addTrack(track, camera);
    pc.addEventListener('icecandidateerror', (e) => peer.candidateErrors.push((e as RTCPeerConnectionIceErrorEvent).errorCode));
    pc.addEventListener('icecandidate', (e) => {
      if (e.candidate) this.signal(userId, { kind: 'candidate', to: sid, candidate: e.candidate.toJSON() });
    });
    pc.addEventListener('track', (e) => {
      if (this.peerMap.get(userId) !== peer) return;
      peer.stream = e.streams[0] ?? new MediaStream([e.track]);
      this.emit('stream', userId, peer.stream);
      this.emit('change');
    });
    pc.addEventListener('connectionstatechange', () => {
      if (this.peerMap.get(userId) === peer) this.emit('change');
    });
    this.peerMap.set(userId, peer);
    this.emit('change');
    return peer;
  }

  private async makeOffer(peer: Peer): Promise<void> {
    try {
      await peer.pc.setLocalDescription(await peer.pc.createOffer());
      this.signal(peer.userId, { kind: 'offer', to: peer.sid, sdp: peer.pc.localDescription?.sdp ?? '' });
    } catch (err) {
      this.webrtcFailed('offer', err);
    }
  }

  private async acceptOffer(peer: Peer, sdp: string): Promise<void> {
    try {
      await peer.pc.setRemoteDescription({ type: 'offer', sdp });
      await this.flushCandidates(peer);
      await peer.pc.setLocalDescription(await peer.pc.createAnswer());
      this.signal(peer.userId, { kind: 'answer', to: peer.sid, sdp: peer.pc.localDescription?.sdp ?? '' });
    } catch (err) {
      this.webrtcFailed('answer', err);
    }
  }

  private async acceptAnswer(peer: Peer, sdp: string): Promise<void> {
    try {
      await peer.pc.setRemoteDescription({ type: 'answer', sdp });
      await this.flushCandidates(peer);
    } catch (err) {
      this.webrtcFailed('answer', err);
    }
  }

  private async addCandidate(peer: Peer, candidate: RTCIceCandidateInit): Promise<void> {
    if (!peer.pc.remoteDescription) {
      if (peer.pending.length < 100) peer.pending.push(candidate);
      return;
    }
    try {
      await peer.pc.addIceCandidate(candidate);
    } catch (err) {
      this.webrtcFailed('candidate', err);
    }
  }

  private async flushCandidates(peer: Peer): Promise<void> {
    for (const c of peer.pending.splice(0)) await this.addCandidate(peer, c);
  }

  private drop(userId: string): void {
    const peer = this.peerMap.get(userId);
    if (!peer) return;
    this.peerMap.delete(userId);
    try {
      peer.pc.close();
    } catch {
      // closing anyway
    }
    if (peer.stream) this.emit('stream', userId, null);
    this.emit('change');
  }

  private dropAll(): void {
    for (const userId of Array.from(this.peerMap.keys())) this.drop(userId);
  }

  private webrtcFailed(what: string, err: unknown): void {
    this.fail({ code: 'WEBRTC', message: `${what} failed: ${err instanceof Error ? err.message : String(err)}` });
  }

  private fail(error: WebcamsError): void {
    this.last = error;
    this.emit('error', error);
    this.emit('change');
  }
}

function isText(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_SIGNAL_TEXT;
}

/** `a < b` as Discord ids (numbers beyond 2^53), falling back to string order. */
function smaller(a: string, b: string): boolean {
  try {
    return BigInt(a) < BigInt(b);
  } catch {
    return a < b;
  }
}

function randomId(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (x) => x.toString(16).padStart(2, '0')).join('');
}
