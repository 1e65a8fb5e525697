// The live connection to a hub (docs/contract.md "The WebSocket session"): sign in
// within the deadline, reconnect with exponential backoff and full jitter, resume
// with `lastSeq`, and load the snapshot on the first connect, after
// `resumed:false` and after a gap, so that the app's state is always "snapshot +
// the events after it". Typed events (`on('voice.joined', …)`) and the derived
// live rooms (`rooms`, `on('rooms', …)`) come out; the rooms API goes through
// {@link HubApi}.
import type { Ack, ClientMessage, CreateRoomRequest, CreatedRoom, Cue, CueList, ErrorBody, EventPayloads, OkBody, ServerMessage, Snapshot } from './contract.js';
import { HubApi, hubOrigin, type CreateRoomOptions, type HubApiOptions } from './api.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { Emitter } from './emitter.js';
import { GatewayAuthError } from './errors.js';
import { LiveRooms, type LiveRoom } from './rooms.js';

/** Where the connection is. `live`: signed in, the rooms are current. */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'stopped';

/** One event frame of the contract, by name. */
export interface EventFrame<K extends keyof EventPayloads = keyof EventPayloads> {
  v: 1;
  type: 'event';
  event: K;
  payload: EventPayloads[K];
  ts: number;
  seq: number;
}

/** What the client asks of `getToken`. */
export interface TokenRequest {
  /** The hub refused the last token (expired, or signed by keys it no longer has): a new one is needed. */
  refresh: boolean;
}

/** The part of a WebSocket the client uses; the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
}

/** A WebSocket constructor: the global `WebSocket`, or e.g. `ws`'s default export in Node 20. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of {@link connect}. */
export interface ConnectOptions extends Omit<HubApiOptions, 'getToken'> {
  /**
   * Returns the app's JWT. Called before every connection and request; `refresh`
   * is true when the hub refused the previous token (expired, close 4401).
   */
  getToken: (request: TokenRequest) => string | Promise<string>;
  /** WebSocket implementation (default: the global one; Node 20 needs one injected, e.g. `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect delays (default 0.5 s doubling to 10 s, full jitter). */
  backoff?: BackoffOptions;
  /** How long to wait for `auth.ok` before giving the connection up (default 10 000 ms; the hub allows 30 s). */
  authTimeoutMs?: number;
  /** Re-read the snapshot (debounced) to learn the name of a user who joined unnamed (default true). */
  refreshNames?: boolean;
}

/** Listener signatures of each contract event. */
export type EventListeners = {
  [K in keyof EventPayloads]: (payload: EventPayloads[K], frame: EventFrame<K>) => void;
};

/** Every listener a {@link GatewayClient} takes. */
export type ClientListeners = EventListeners & {
  /** The connection state changed. */
  state: (state: ConnectionState) => void;
  /** The live rooms changed (a new, immutable list). */
  rooms: (rooms: readonly LiveRoom[]) => void;
  /** A snapshot was loaded (first connect, `resumed:false`, a gap): the rooms were rebuilt from it. */
  snapshot: (snapshot: Snapshot) => void;
  /** Every event frame, known names and names newer than this package alike, in `seq` order. */
  event: (frame: EventFrame | (Omit<EventFrame, 'event' | 'payload'> & { event: string; payload: unknown })) => void;
  /** The connection was lost; the next attempt starts in `delayMs` (attempt 0 is the first retry). */
  retry: (delayMs: number, attempt: number) => void;
  /** Something went wrong; a {@link GatewayAuthError} also stops the client. */
  error: (error: Error) => void;
  /**
   * Every message of the current socket as the hub sent it (`auth.ok`, events, errors,
   * `rtc.signal`, …), before the client acts on it: for what the typed listeners do not
   * cover, such as webcam signalling (docs/spec.md §12).
   */
  message: (message: ServerMessage) => void;
};

type AnyFrame = Parameters<ClientListeners['event']>[0];

/** A live, self-healing connection to a hub; make one with {@link connect}. */
export class GatewayClient extends Emitter<ClientListeners> {
  /** The rooms API with the same token. */
  readonly api: HubApi;
  private readonly options: ConnectOptions;
  private readonly wsUrl: string;
  private readonly WS: WebSocketConstructor;
  private readonly live = new LiveRooms();
  private currentState: ConnectionState = 'connecting';
  private stopError: Error | undefined;
  private seq: number | undefined;
  private guild: string | undefined;
  private generation = 0;
  private socket: WebSocketLike | undefined;
  /** The socket whose `auth.ok` arrived: the one {@link GatewayClient.send} may use. */
  private authedSocket: WebSocketLike | undefined;
  private attempt = 0;
  private refusedToken: string | undefined;
  private refusals = 0;
  private loading = false;
  private loaded = false;
  private buffer: AnyFrame[] = [];
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private nameTimer: ReturnType<typeof setTimeout> | undefined;
  /** The newest join whose user's name a snapshot should tell. */
  private namesWantedAt = 0;
  private liveWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(options: ConnectOptions) {
    super();
    this.options = options;
    const origin = hubOrigin(options.url);
    this.wsUrl = origin.replace(/^http/i, 'ws') + '/api/ws';
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError('no global WebSocket (Node 20): pass one as `WebSocket`, e.g. the `ws` package');
    this.WS = WS;
    this.api = new HubApi({ ...options, getToken: () => options.getToken({ refresh: false }) });
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The live rooms: the last snapshot plus every event after it. Same array until a change. */
  get rooms(): readonly LiveRoom[] {
    return this.live.list();
  }

  /** The `seq` of the last event applied (or the snapshot's), sent as `lastSeq` on reconnect. */
  get lastSeq(): number | undefined {
    return this.seq;
  }

  /** The guild of this hub, once signed in. */
  get guildId(): string | undefined {
    return this.guild;
  }

  /** Why the client stopped, when it stopped on its own (a refused token). */
  get error(): Error | undefined {
    return this.stopError;
  }

  /** Resolves when the client is `live` (at once if it is); rejects if it stops first. */
  whenLive(): Promise<void> {
    if (this.currentState === 'live') return Promise.resolve();
    if (this.currentState === 'stopped') return Promise.reject(this.stopError ?? new Error('the client is closed'));
    return new Promise((resolve, reject) => this.liveWaiters.push({ resolve, reject }));
  }

  /** Closes the connection for good. */
  close(): void {
    this.stop(undefined);
  }

  /** Drops the current socket and reconnects at once (e.g. on the browser's `online` event); resumes with `lastSeq`. */
  reconnect(): void {
    if (this.currentState === 'stopped') return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const socket = this.socket;
    this.socket = undefined;
    try {
      socket?.close(4000, 'reconnect');
    } catch {
      // already closing
    }
    this.attempt = 0;
    void this.open();
  }

  /** `POST /api/create-room` (one `Idempotency-Key` per call, retried on a lost answer). */
  createRoom(body?: CreateRoomRequest, options?: CreateRoomOptions): Promise<CreatedRoom> {
    return this.api.createRoom(body, options);
  }

  /** `DELETE /api/end-room/{channelId}`. */
  endRoom(channelId: string): Promise<OkBody> {
    return this.api.endRoom(channelId);
  }

  /** The bot joins the room. */
  botJoin(channelId: string): Promise<OkBody> {
    return this.api.botJoin(channelId);
  }

  /** The bot leaves the room. */
  botLeave(channelId: string): Promise<OkBody> {
    return this.api.botLeave(channelId);
  }

  /** The bot plays a cue in the room. */
  playCue(channelId: string, cue: Cue): Promise<OkBody> {
    return this.api.playCue(channelId, cue);
  }

  /** The cues the bot can play. */
  cues(): Promise<CueList> {
    return this.api.cues();
  }

  /** Starts the first connection (called by {@link connect}). */
  start(): void {
    void this.open();
  }

  private setState(state: ConnectionState): void {
    if (this.currentState === state) return;
    this.currentState = state;
    this.emit('state', state);
    if (state === 'live') {
      for (const w of this.liveWaiters.splice(0)) w.resolve();
    }
  }

  private stop(error: Error | undefined): void {
    if (this.currentState === 'stopped') return;
    this.generation++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.nameTimer);
    const socket = this.socket;
    this.socket = undefined;
    try {
      socket?.close(1000, 'closed by the client');
    } catch {
      // already closing
    }
    this.stopError = error;
    this.setState('stopped');
    for (const w of this.liveWaiters.splice(0)) w.reject(error ?? new Error('the client is closed'));
    if (error) this.emit('error', error);
  }

  private schedule(): void {
    if (this.currentState === 'stopped' || this.retryTimer) return;
    const attempt = this.attempt++;
    const delay = backoffDelay(attempt, this.options.backoff);
    this.setState('reconnecting');
    this.emit('retry', delay, attempt);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.open();
    }, delay);
  }

  private async open(): Promise<void> {
    if (this.currentState === 'stopped') return;
    const gen = ++this.generation;
    this.loading = false;
    this.buffer = [];
    if (this.currentState !== 'connecting') this.setState('reconnecting');
    let token: string;
    try {
      token = await this.options.getToken({ refresh: this.refusals > 0 });
    } catch (err) {
      if (gen !== this.generation) return;
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      this.schedule();
      return;
    }
    if (gen !== this.generation) return;
    if (this.refusedToken !== undefined && token === this.refusedToken) {
      this.stop(new GatewayAuthError('the hub refused the token (close 4401) and getToken gave the same one again: sign in again'));
      return;
    }
    let socket: WebSocketLike;
    try {
      socket = new this.WS(this.wsUrl);
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      this.schedule();
      return;
    }
    this.socket = socket;
    let authed = false;
    let lastError: ErrorBody | undefined;
    const authTimer = setTimeout(() => {
      if (!authed && this.socket === socket) socket.close(4000, 'no auth.ok in time');
    }, this.options.authTimeoutMs ?? 10_000);
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      const hello: { type: 'auth'; token: string; lastSeq?: number } = { type: 'auth', token };
      if (this.seq !== undefined) hello.lastSeq = this.seq;
      socket.send(JSON.stringify(hello));
    });
    socket.addEventListener('message', (event) => {
      if (this.socket !== socket || typeof event.data !== 'string') return;
      let msg: { v?: unknown; type?: unknown } & Record<string, unknown>;
      try {
        msg = JSON.parse(event.data) as typeof msg;
      } catch {
        return;
      }
      if (!msg || msg.v !== 1) {
        this.emit('error', new Error('the hub sent a message of another protocol version'));
        return;
      }
      this.emit('message', msg as unknown as ServerMessage);
      if (msg.type === 'ack') {
        authed = true;
        this.authedSocket = socket;
        clearTimeout(authTimer);
        this.attempt = 0;
        this.refusals = 0;
        this.refusedToken = undefined;
        const ack = msg as unknown as Ack;
        this.guild = ack.guildId;
        if (ack.resumed === true && this.loaded) this.setState('live');
        else void this.loadSnapshot(gen);
      } else if (msg.type === 'event') {
        const frame = msg as unknown as AnyFrame;
        if (this.loading) this.buffer.push(frame);
        else this.applyFrame(frame, false, gen);
      } else if (msg.type === 'error') {
        lastError = (msg as { error?: ErrorBody }).error;
      }
    });
    socket.addEventListener('error', () => {
      // 'close' follows and decides.
    });
    socket.addEventListener('close', (event) => {
      clearTimeout(authTimer);
      if (this.socket !== socket) return;
      this.socket = undefined;
      if (this.currentState === 'stopped') return;
      if (event.code === 4401) {
        if (!authed) {
          this.refusals++;
          this.refusedToken = token;
          if (this.refusals >= 2) {
            this.stop(new GatewayAuthError(`the hub refused the token twice: ${lastError?.message ?? 'unauthorized'}`));
            return;
          }
        }
        // Expired mid-session, or refused once: ask for a fresh token at once.
        this.refusals = Math.max(this.refusals, 1);
        void this.open();
        return;
      }
      if (lastError && lastError.code !== 'UNAUTHORIZED') {
        this.emit('error', new Error(`the hub closed the socket (${event.code}): ${lastError.code}: ${lastError.message}`));
      }
      this.schedule();
    });
  }

  /**
   * Sends `message` on the socket if it is authenticated and open; `false` when there
   * is none (the caller decides whether to retry after the next `auth.ok`).
   */
  send(message: ClientMessage): boolean {
    const socket = this.socket;
    if (!socket || socket !== this.authedSocket || this.currentState === 'stopped') return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  /** Loads the snapshot; events arriving meanwhile are buffered and applied after it. */
  private async loadSnapshot(gen: number): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    let snapshot: Snapshot;
    try {
      snapshot = await this.api.rooms();
    } catch (err) {
      if (gen !== this.generation) return;
      this.loading = false;
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      // Start over: a new socket, a new snapshot.
      const socket = this.socket;
      this.socket = undefined;
      try {
        socket?.close(4000, 'snapshot failed');
      } catch {
        // already closing
      }
      this.schedule();
      return;
    }
    if (gen !== this.generation) return;
    this.live.reset(snapshot);
    this.seq = snapshot.seq;
    this.loaded = true;
    this.loading = false;
    this.emit('snapshot', snapshot);
    this.emit('rooms', this.live.list());
    const buffered = this.buffer;
    this.buffer = [];
    for (const frame of buffered) this.applyFrame(frame, true, gen);
    if (gen === this.generation && !this.loading) this.setState('live');
  }

  /** Applies one event frame in `seq` order; a gap reloads the snapshot. */
  private applyFrame(frame: AnyFrame, afterSnapshot: boolean, gen: number): void {
    if (typeof frame.seq !== 'number') return;
    if (this.seq !== undefined) {
      if (frame.seq <= this.seq) return; // replay overlap
      if (frame.seq > this.seq + 1 && !afterSnapshot) {
        this.buffer.push(frame);
        void this.loadSnapshot(gen);
        return;
      }
    }
    this.seq = frame.seq;
    const changed = this.live.apply(frame.event, frame.payload);
    if (Object.hasOwn(KNOWN, frame.event)) {
      const emitKnown = this.emit.bind(this) as (name: string, payload: unknown, frame: AnyFrame) => void;
      emitKnown(frame.event, frame.payload, frame);
    }
    this.emit('event', frame);
    if (changed) this.emit('rooms', this.live.list());
    if (frame.event === 'voice.joined' && (this.options.refreshNames ?? true)) {
      const userId = (frame.payload as { userId?: unknown } | null)?.userId;
      if (typeof userId === 'string' && !this.live.hasName(userId)) this.refreshNames(gen, frame.seq);
    }
  }

  /** Re-reads the snapshot once (debounced) to learn names only. */
  /**
   * Re-reads the snapshot for the names of users who joined unnamed. The hub serves the
   * snapshot from a cache up to 1 s old (docs/spec.md §7.2): one older than the join (its
   * `seq` below the join's) is asked again after that window, a few times at most.
   */
  private refreshNames(gen: number, seq: number, delayMs = 300, tries = 0): void {
    this.namesWantedAt = Math.max(this.namesWantedAt, seq);
    if (this.nameTimer) return;
    this.nameTimer = setTimeout(async () => {
      this.nameTimer = undefined;
      try {
        const snapshot = await this.api.rooms();
        if (gen !== this.generation) return;
        if (this.live.learnNames(snapshot)) this.emit('rooms', this.live.list());
        if (snapshot.seq < this.namesWantedAt && tries < 3) this.refreshNames(gen, this.namesWantedAt, SNAPSHOT_CACHE_MS, tries + 1);
      } catch {
        // names stay unknown until the next snapshot
      }
    }, delayMs);
  }
}

/** How old a snapshot the hub may serve (docs/spec.md §7.2), plus a margin. */
const SNAPSHOT_CACHE_MS = 1100;

const KNOWN: Record<keyof EventPayloads, true> = {
  'room.created': true, 'room.deleted': true, 'voice.joined': true, 'voice.left': true, 'voice.state': true, 'voice.speaking': true,
};

/**
 * Connects to a hub: `connect({ url, getToken })`. The client signs in, loads the
 * snapshot, and from then on keeps `rooms` current and emits every event, across
 * drops, hub restarts and token expiry, until {@link GatewayClient.close}.
 */
export function connect(options: ConnectOptions): GatewayClient {
  const client = new GatewayClient(options);
  client.start();
  return client;
}
