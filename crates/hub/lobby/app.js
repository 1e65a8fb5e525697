// Generated from crates/hub/lobby/src/ by clients/js/scripts/bundle-lobby.mjs (esbuild). Do not edit: bash schema/regenerate.sh
(() => {
  var __defProp = Object.defineProperty;
  var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
  var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);

  // src/backoff.ts
  function backoffDelay(attempt, options = {}) {
    const base = options.baseMs ?? 500;
    const max = options.maxMs ?? 1e4;
    const random = options.random ?? Math.random;
    const step = Math.min(max, base * 2 ** Math.min(attempt, 30));
    return Math.floor(random() * step);
  }

  // src/errors.ts
  var HubApiError = class extends Error {
    constructor(status, code, message, details, retryAfter) {
      super(message);
      /** The HTTP status (e.g. 403, 429). */
      __publicField(this, "status");
      /** The contract's error code (`FORBIDDEN`, `RATE_LIMITED`, …). */
      __publicField(this, "code");
      /** Structured detail, e.g. `{ field: 'userLimit' }`. */
      __publicField(this, "details");
      /** Seconds to wait before trying again (`Retry-After`), when the hub said so. */
      __publicField(this, "retryAfter");
      this.name = "HubApiError";
      this.status = status;
      this.code = code;
      this.details = details;
      this.retryAfter = retryAfter;
    }
  };
  var HubUnreachableError = class extends Error {
    constructor(message, options) {
      super(message, options);
      this.name = "HubUnreachableError";
    }
  };
  var GatewayAuthError = class extends Error {
    constructor(message) {
      super(message);
      /** Always `UNAUTHORIZED`. */
      __publicField(this, "code", "UNAUTHORIZED");
      this.name = "GatewayAuthError";
    }
  };

  // src/api.ts
  var CODES = {
    400: "VALIDATION_FAILED",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    413: "VALIDATION_FAILED",
    429: "RATE_LIMITED"
  };
  function newIdempotencyKey() {
    const bytes = new Uint8Array(16);
    globalThis.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function hubOrigin(url) {
    const base = url ?? globalThis.location?.origin;
    if (!base) throw new TypeError('the hub URL is needed outside a browser page (url: "https://…")');
    return base.replace(/\/+$/, "");
  }
  var HubApi = class {
    constructor(options) {
      __publicField(this, "origin");
      __publicField(this, "getToken");
      __publicField(this, "fetchImpl");
      __publicField(this, "timeoutMs");
      this.origin = hubOrigin(options.url);
      this.getToken = options.getToken;
      const f = options.fetch ?? globalThis.fetch;
      if (!f) throw new TypeError("no global fetch: pass one as `fetch`");
      this.fetchImpl = (input, init) => f(input, init);
      this.timeoutMs = options.timeoutMs ?? 15e3;
    }
    /** `GET /api/rooms`: every room with its members, and the `seq` it is current at. */
    rooms() {
      return this.request("GET", "/api/rooms");
    }
    /** `GET /api/cues`: the cues the bot can play. */
    cues() {
      return this.request("GET", "/api/cues");
    }
    /** `POST /api/create-room`, retried with the same `Idempotency-Key` when the answer is lost. */
    async createRoom(body = {}, options = {}) {
      const key = options.idempotencyKey ?? newIdempotencyKey();
      const retries = options.retries ?? 2;
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.request("POST", "/api/create-room", body, { "Idempotency-Key": key });
        } catch (err) {
          const lost = err instanceof HubUnreachableError || err instanceof HubApiError && err.status === 503;
          if (!lost || attempt >= retries) throw err;
          const wait = err instanceof HubApiError && err.retryAfter !== void 0 ? Math.min(err.retryAfter * 1e3, 1e4) : backoffDelay(attempt, { baseMs: 250, maxMs: 2e3 });
          await new Promise((r) => setTimeout(r, wait));
        }
      }
    }
    /** `DELETE /api/end-room/{channelId}`. */
    endRoom(channelId) {
      return this.request("DELETE", `/api/end-room/${encodeURIComponent(channelId)}`);
    }
    /** `POST /api/rooms/{channelId}/bot`: the bot joins the room. */
    botJoin(channelId) {
      return this.request("POST", `/api/rooms/${encodeURIComponent(channelId)}/bot`);
    }
    /** `DELETE /api/rooms/{channelId}/bot`: the bot leaves the room. */
    botLeave(channelId) {
      return this.request("DELETE", `/api/rooms/${encodeURIComponent(channelId)}/bot`);
    }
    /** `POST /api/rooms/{channelId}/cue`: the bot plays `cue` (a name of {@link cues}). */
    playCue(channelId, cue) {
      return this.request("POST", `/api/rooms/${encodeURIComponent(channelId)}/cue`, { cue });
    }
    /** One request: JSON in, JSON out, errors typed. */
    async request(method, path, body, headers = {}) {
      const token2 = await this.getToken();
      const init = {
        method,
        headers: {
          authorization: `Bearer ${token2}`,
          ...body === void 0 ? {} : { "content-type": "application/json" },
          ...headers
        },
        body: body === void 0 ? void 0 : JSON.stringify(body),
        cache: "no-store",
        signal: AbortSignal.timeout(this.timeoutMs)
      };
      let response;
      try {
        response = await this.fetchImpl(this.origin + path, init);
      } catch (err) {
        throw new HubUnreachableError(`${method} ${path}: the hub could not be reached`, { cause: err });
      }
      const text = await response.text().catch(() => "");
      if (response.ok) return text ? JSON.parse(text) : {};
      throw errorFrom(response, text);
    }
  };
  function errorFrom(response, text) {
    let parsed = {};
    try {
      parsed = JSON.parse(text);
    } catch {
    }
    const code = typeof parsed.code === "string" ? parsed.code : CODES[response.status] ?? "INTERNAL_ERROR";
    const message = typeof parsed.message === "string" ? parsed.message : `HTTP ${response.status}`;
    const details = parsed.details && typeof parsed.details === "object" ? parsed.details : void 0;
    const header = response.headers.get("retry-after");
    const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header.trim()) : void 0;
    return new HubApiError(response.status, code, message, details, retryAfter);
  }

  // src/emitter.ts
  var Emitter = class {
    constructor() {
      __publicField(this, "listeners", /* @__PURE__ */ new Map());
    }
    /** Adds `listener` for `name`; returns a function that removes it. */
    on(name, listener) {
      let set = this.listeners.get(name);
      if (!set) {
        set = /* @__PURE__ */ new Set();
        this.listeners.set(name, set);
      }
      set.add(listener);
      return () => this.off(name, listener);
    }
    /** Removes `listener` for `name`. */
    off(name, listener) {
      this.listeners.get(name)?.delete(listener);
    }
    /** Calls the listeners of `name`; one that throws is reported and the others still run. */
    emit(name, ...args) {
      for (const listener of [...this.listeners.get(name) ?? []]) {
        try {
          listener(...args);
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  };

  // src/rooms.ts
  var FLAGS = ["selfMute", "selfDeaf", "mute", "deaf", "selfVideo", "selfStream", "suppress"];
  function newMember(userId) {
    return {
      userId,
      name: null,
      avatarUrl: null,
      speaking: false,
      selfMute: false,
      selfDeaf: false,
      mute: false,
      deaf: false,
      selfVideo: false,
      selfStream: false,
      suppress: false
    };
  }
  var LiveRooms = class {
    constructor() {
      __publicField(this, "rooms", /* @__PURE__ */ new Map());
      /** Names and avatars learnt from snapshots, kept across a leave and a join. */
      __publicField(this, "people", /* @__PURE__ */ new Map());
      __publicField(this, "cached", null);
    }
    /** Replaces everything with `snapshot`. */
    reset(snapshot) {
      this.rooms = /* @__PURE__ */ new Map();
      for (const room2 of snapshot.rooms) {
        const members = /* @__PURE__ */ new Map();
        for (const m of room2.members) {
          this.learn(m);
          members.set(m.userId, { ...m, speaking: false });
        }
        this.rooms.set(room2.channelId, {
          channelId: room2.channelId,
          name: room2.name,
          parentId: room2.parentId,
          userLimit: room2.userLimit,
          members
        });
      }
      this.cached = null;
    }
    /** Learns names and avatars from a fresh snapshot without touching membership; true when one changed. */
    learnNames(snapshot) {
      let changed = false;
      for (const room2 of snapshot.rooms) for (const m of room2.members) this.learn(m);
      for (const room2 of this.rooms.values()) {
        for (const [id, m] of room2.members) {
          const p = this.people.get(id);
          if (p && (p.name !== m.name || p.avatarUrl !== m.avatarUrl)) {
            room2.members.set(id, { ...m, name: p.name, avatarUrl: p.avatarUrl });
            changed = true;
          }
        }
      }
      if (changed) this.cached = null;
      return changed;
    }
    /** Whether a snapshot gave `userId` a name (a join of someone never seen has none yet). */
    hasName(userId) {
      return !!this.people.get(userId)?.name;
    }
    /** The rooms, ordered by channel id; the same array until something changes. */
    list() {
      if (!this.cached) {
        this.cached = Object.freeze(
          [...this.rooms.values()].sort((a, b) => compareIds(a.channelId, b.channelId)).map((r) => Object.freeze({
            channelId: r.channelId,
            name: r.name,
            parentId: r.parentId,
            userLimit: r.userLimit,
            members: Object.freeze([...r.members.values()])
          }))
        );
      }
      return this.cached;
    }
    /** Applies one event; returns whether the rooms changed. Unknown names change nothing. */
    apply(name, payload) {
      const changed = this.applyInner(name, payload);
      if (changed) this.cached = null;
      return changed;
    }
    learn(m) {
      const prev = this.people.get(m.userId);
      this.people.set(m.userId, { name: m.name ?? prev?.name ?? null, avatarUrl: m.avatarUrl ?? prev?.avatarUrl ?? null });
    }
    member(userId) {
      const p = this.people.get(userId);
      const m = newMember(userId);
      return p ? { ...m, name: p.name, avatarUrl: p.avatarUrl } : m;
    }
    applyInner(name, p) {
      if (!p || typeof p !== "object") return false;
      const cid = typeof p.channelId === "string" ? p.channelId : null;
      const uid = typeof p.userId === "string" ? p.userId : null;
      if (!cid) return false;
      switch (name) {
        case "room.created": {
          const e = p;
          const room2 = this.rooms.get(cid);
          if (room2) {
            room2.name = e.name;
            room2.parentId = e.parentId;
            room2.userLimit = e.userLimit;
          } else {
            this.rooms.set(cid, { channelId: cid, name: e.name, parentId: e.parentId, userLimit: e.userLimit, members: /* @__PURE__ */ new Map() });
          }
          return true;
        }
        case "room.deleted":
          return this.rooms.delete(cid);
        case "voice.joined": {
          if (!uid) return false;
          let changed = false;
          for (const room3 of this.rooms.values()) {
            if (room3.channelId !== cid && room3.members.delete(uid)) changed = true;
          }
          const room2 = this.rooms.get(cid);
          if (room2 && !room2.members.has(uid)) {
            room2.members.set(uid, this.member(uid));
            changed = true;
          }
          return changed;
        }
        case "voice.left": {
          if (!uid) return false;
          return this.rooms.get(cid)?.members.delete(uid) ?? false;
        }
        case "voice.state": {
          if (!uid) return false;
          const room2 = this.rooms.get(cid);
          if (!room2) return false;
          let m = room2.members.get(uid);
          if (!m) {
            for (const other of this.rooms.values()) other.members.delete(uid);
            m = this.member(uid);
          }
          const next = { ...m };
          for (const f of FLAGS) if (typeof p[f] === "boolean") next[f] = p[f];
          room2.members.set(uid, next);
          return true;
        }
        case "voice.speaking": {
          if (!uid) return false;
          const room2 = this.rooms.get(cid);
          const m = room2?.members.get(uid);
          const speaking = p.speaking === true;
          if (!room2 || !m || m.speaking === speaking) return false;
          room2.members.set(uid, { ...m, speaking });
          return true;
        }
        default:
          return false;
      }
    }
  };
  function compareIds(a, b) {
    return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  }

  // src/client.ts
  var GatewayClient = class extends Emitter {
    constructor(options) {
      super();
      /** The rooms API with the same token. */
      __publicField(this, "api");
      __publicField(this, "options");
      __publicField(this, "wsUrl");
      __publicField(this, "WS");
      __publicField(this, "live", new LiveRooms());
      __publicField(this, "currentState", "connecting");
      __publicField(this, "stopError");
      __publicField(this, "seq");
      __publicField(this, "guild");
      __publicField(this, "generation", 0);
      __publicField(this, "socket");
      /** The socket whose `auth.ok` arrived: the one {@link GatewayClient.send} may use. */
      __publicField(this, "authedSocket");
      __publicField(this, "attempt", 0);
      __publicField(this, "refusedToken");
      __publicField(this, "refusals", 0);
      __publicField(this, "loading", false);
      __publicField(this, "loaded", false);
      __publicField(this, "buffer", []);
      __publicField(this, "retryTimer");
      __publicField(this, "nameTimer");
      /** The newest join whose user's name a snapshot should tell. */
      __publicField(this, "namesWantedAt", 0);
      __publicField(this, "liveWaiters", []);
      this.options = options;
      const origin = hubOrigin(options.url);
      this.wsUrl = origin.replace(/^http/i, "ws") + "/api/ws";
      const WS = options.WebSocket ?? globalThis.WebSocket;
      if (!WS) throw new TypeError("no global WebSocket (Node 20): pass one as `WebSocket`, e.g. the `ws` package");
      this.WS = WS;
      this.api = new HubApi({ ...options, getToken: () => options.getToken({ refresh: false }) });
    }
    /** The connection state. */
    get state() {
      return this.currentState;
    }
    /** The live rooms: the last snapshot plus every event after it. Same array until a change. */
    get rooms() {
      return this.live.list();
    }
    /** The `seq` of the last event applied (or the snapshot's), sent as `lastSeq` on reconnect. */
    get lastSeq() {
      return this.seq;
    }
    /** The guild of this hub, once signed in. */
    get guildId() {
      return this.guild;
    }
    /** Why the client stopped, when it stopped on its own (a refused token). */
    get error() {
      return this.stopError;
    }
    /** Resolves when the client is `live` (at once if it is); rejects if it stops first. */
    whenLive() {
      if (this.currentState === "live") return Promise.resolve();
      if (this.currentState === "stopped") return Promise.reject(this.stopError ?? new Error("the client is closed"));
      return new Promise((resolve, reject) => this.liveWaiters.push({ resolve, reject }));
    }
    /** Closes the connection for good. */
    close() {
      this.stop(void 0);
    }
    /** Drops the current socket and reconnects at once (e.g. on the browser's `online` event); resumes with `lastSeq`. */
    reconnect() {
      if (this.currentState === "stopped") return;
      clearTimeout(this.retryTimer);
      this.retryTimer = void 0;
      const socket = this.socket;
      this.socket = void 0;
      try {
        socket?.close(4e3, "reconnect");
      } catch {
      }
      this.attempt = 0;
      void this.open();
    }
    /** `POST /api/create-room` (one `Idempotency-Key` per call, retried on a lost answer). */
    createRoom(body, options) {
      return this.api.createRoom(body, options);
    }
    /** `DELETE /api/end-room/{channelId}`. */
    endRoom(channelId) {
      return this.api.endRoom(channelId);
    }
    /** The bot joins the room. */
    botJoin(channelId) {
      return this.api.botJoin(channelId);
    }
    /** The bot leaves the room. */
    botLeave(channelId) {
      return this.api.botLeave(channelId);
    }
    /** The bot plays a cue in the room. */
    playCue(channelId, cue) {
      return this.api.playCue(channelId, cue);
    }
    /** The cues the bot can play. */
    cues() {
      return this.api.cues();
    }
    /** Starts the first connection (called by {@link connect}). */
    start() {
      void this.open();
    }
    setState(state) {
      if (this.currentState === state) return;
      this.currentState = state;
      this.emit("state", state);
      if (state === "live") {
        for (const w of this.liveWaiters.splice(0)) w.resolve();
      }
    }
    stop(error) {
      if (this.currentState === "stopped") return;
      this.generation++;
      clearTimeout(this.retryTimer);
      clearTimeout(this.nameTimer);
      const socket = this.socket;
      this.socket = void 0;
      try {
        socket?.close(1e3, "closed by the client");
      } catch {
      }
      this.stopError = error;
      this.setState("stopped");
      for (const w of this.liveWaiters.splice(0)) w.reject(error ?? new Error("the client is closed"));
      if (error) this.emit("error", error);
    }
    schedule() {
      if (this.currentState === "stopped" || this.retryTimer) return;
      const attempt = this.attempt++;
      const delay = backoffDelay(attempt, this.options.backoff);
      this.setState("reconnecting");
      this.emit("retry", delay, attempt);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = void 0;
        void this.open();
      }, delay);
    }
    async open() {
      if (this.currentState === "stopped") return;
      const gen = ++this.generation;
      this.loading = false;
      this.buffer = [];
      if (this.currentState !== "connecting") this.setState("reconnecting");
      let token2;
      try {
        token2 = await this.options.getToken({ refresh: this.refusals > 0 });
      } catch (err) {
        if (gen !== this.generation) return;
        this.emit("error", err instanceof Error ? err : new Error(String(err)));
        this.schedule();
        return;
      }
      if (gen !== this.generation) return;
      if (this.refusedToken !== void 0 && token2 === this.refusedToken) {
        this.stop(new GatewayAuthError("the hub refused the token (close 4401) and getToken gave the same one again: sign in again"));
        return;
      }
      let socket;
      try {
        socket = new this.WS(this.wsUrl);
      } catch (err) {
        this.emit("error", err instanceof Error ? err : new Error(String(err)));
        this.schedule();
        return;
      }
      this.socket = socket;
      let authed = false;
      let lastError;
      const authTimer = setTimeout(() => {
        if (!authed && this.socket === socket) socket.close(4e3, "no auth.ok in time");
      }, this.options.authTimeoutMs ?? 1e4);
      socket.addEventListener("open", () => {
        if (this.socket !== socket) return;
        const hello = { type: "auth", token: token2 };
        if (this.seq !== void 0) hello.lastSeq = this.seq;
        socket.send(JSON.stringify(hello));
      });
      socket.addEventListener("message", (event) => {
        if (this.socket !== socket || typeof event.data !== "string") return;
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!msg || msg.v !== 1) {
          this.emit("error", new Error("the hub sent a message of another protocol version"));
          return;
        }
        this.emit("message", msg);
        if (msg.type === "ack") {
          authed = true;
          this.authedSocket = socket;
          clearTimeout(authTimer);
          this.attempt = 0;
          this.refusals = 0;
          this.refusedToken = void 0;
          const ack = msg;
          this.guild = ack.guildId;
          if (ack.resumed === true && this.loaded) this.setState("live");
          else void this.loadSnapshot(gen);
        } else if (msg.type === "event") {
          const frame = msg;
          if (this.loading) this.buffer.push(frame);
          else this.applyFrame(frame, false, gen);
        } else if (msg.type === "error") {
          lastError = msg.error;
        }
      });
      socket.addEventListener("error", () => {
      });
      socket.addEventListener("close", (event) => {
        clearTimeout(authTimer);
        if (this.socket !== socket) return;
        this.socket = void 0;
        if (this.currentState === "stopped") return;
        if (event.code === 4401) {
          if (!authed) {
            this.refusals++;
            this.refusedToken = token2;
            if (this.refusals >= 2) {
              this.stop(new GatewayAuthError(`the hub refused the token twice: ${lastError?.message ?? "unauthorized"}`));
              return;
            }
          }
          this.refusals = Math.max(this.refusals, 1);
          void this.open();
          return;
        }
        if (lastError && lastError.code !== "UNAUTHORIZED") {
          this.emit("error", new Error(`the hub closed the socket (${event.code}): ${lastError.code}: ${lastError.message}`));
        }
        this.schedule();
      });
    }
    /**
     * Sends `message` on the socket if it is authenticated and open; `false` when there
     * is none (the caller decides whether to retry after the next `auth.ok`).
     */
    send(message) {
      const socket = this.socket;
      if (!socket || socket !== this.authedSocket || this.currentState === "stopped") return false;
      socket.send(JSON.stringify(message));
      return true;
    }
    /** Loads the snapshot; events arriving meanwhile are buffered and applied after it. */
    async loadSnapshot(gen) {
      if (this.loading) return;
      this.loading = true;
      let snapshot;
      try {
        snapshot = await this.api.rooms();
      } catch (err) {
        if (gen !== this.generation) return;
        this.loading = false;
        this.emit("error", err instanceof Error ? err : new Error(String(err)));
        const socket = this.socket;
        this.socket = void 0;
        try {
          socket?.close(4e3, "snapshot failed");
        } catch {
        }
        this.schedule();
        return;
      }
      if (gen !== this.generation) return;
      this.live.reset(snapshot);
      this.seq = snapshot.seq;
      this.loaded = true;
      this.loading = false;
      this.emit("snapshot", snapshot);
      this.emit("rooms", this.live.list());
      const buffered = this.buffer;
      this.buffer = [];
      for (const frame of buffered) this.applyFrame(frame, true, gen);
      if (gen === this.generation && !this.loading) this.setState("live");
    }
    /** Applies one event frame in `seq` order; a gap reloads the snapshot. */
    applyFrame(frame, afterSnapshot, gen) {
      if (typeof frame.seq !== "number") return;
      if (this.seq !== void 0) {
        if (frame.seq <= this.seq) return;
        if (frame.seq > this.seq + 1 && !afterSnapshot) {
          this.buffer.push(frame);
          void this.loadSnapshot(gen);
          return;
        }
      }
      this.seq = frame.seq;
      const changed = this.live.apply(frame.event, frame.payload);
      if (Object.hasOwn(KNOWN, frame.event)) {
        const emitKnown = this.emit.bind(this);
        emitKnown(frame.event, frame.payload, frame);
      }
      this.emit("event", frame);
      if (changed) this.emit("rooms", this.live.list());
      if (frame.event === "voice.joined" && (this.options.refreshNames ?? true)) {
        const userId = frame.payload?.userId;
        if (typeof userId === "string" && !this.live.hasName(userId)) this.refreshNames(gen, frame.seq);
      }
    }
    /** Re-reads the snapshot once (debounced) to learn names only. */
    /**
     * Re-reads the snapshot for the names of users who joined unnamed. The hub serves the
     * snapshot from a cache up to 1 s old (docs/spec.md §7.2): one older than the join (its
     * `seq` below the join's) is asked again after that window, a few times at most.
     */
    refreshNames(gen, seq, delayMs = 300, tries = 0) {
      this.namesWantedAt = Math.max(this.namesWantedAt, seq);
      if (this.nameTimer) return;
      this.nameTimer = setTimeout(async () => {
        this.nameTimer = void 0;
        try {
          const snapshot = await this.api.rooms();
          if (gen !== this.generation) return;
          if (this.live.learnNames(snapshot)) this.emit("rooms", this.live.list());
          if (snapshot.seq < this.namesWantedAt && tries < 3) this.refreshNames(gen, this.namesWantedAt, SNAPSHOT_CACHE_MS, tries + 1);
        } catch {
        }
      }, delayMs);
    }
  };
  var SNAPSHOT_CACHE_MS = 1100;
  var KNOWN = {
    "room.created": true,
    "room.deleted": true,
    "voice.joined": true,
    "voice.left": true,
    "voice.state": true,
    "voice.speaking": true
  };
  function connect(options) {
    const client2 = new GatewayClient(options);
    client2.start();
    return client2;
  }

  // src/signin.ts
  function takeToken(win = globalThis) {
    const hash = win.location.hash;
    if (!hash || hash.length < 2) return { token: null, error: null };
    const params = new URLSearchParams(hash.slice(1));
    const token2 = params.get("token");
    const error = params.get("error_description") ?? params.get("error");
    if (token2 || error) win.history.replaceState(null, "", win.location.pathname + win.location.search);
    return { token: token2, error };
  }

  // src/webcams.ts
  var MAX_PLAYERS = 6;
  var MAX_SIGNAL_TEXT = 16 * 1024;
  var Webcams = class extends Emitter {
    constructor(options) {
      super();
      __publicField(this, "client");
      __publicField(this, "me");
      __publicField(this, "sid", randomId());
      __publicField(this, "video");
      __publicField(this, "leaveGraceMs");
      __publicField(this, "mediaDevices");
      __publicField(this, "unsubscribe");
      __publicField(this, "authIceServers", []);
      __publicField(this, "ice", {});
      __publicField(this, "currentRoom", null);
      __publicField(this, "members", []);
      __publicField(this, "camera", null);
      __publicField(this, "opening", false);
      __publicField(this, "peerMap", /* @__PURE__ */ new Map());
      __publicField(this, "leaveTimer");
      __publicField(this, "closed", false);
      __publicField(this, "last", null);
      this.client = options.client;
      this.me = options.me;
      this.video = options.video ?? { width: 640, height: 480 };
      this.leaveGraceMs = options.leaveGraceMs ?? 2e3;
      this.mediaDevices = options.mediaDevices ?? globalThis.navigator?.mediaDevices;
      this.unsubscribe = [
        this.client.on("message", (msg) => this.onMessage(msg)),
        this.client.on("rooms", () => this.onPresence())
      ];
      this.onPresence();
    }
    /** The signed-in user's id. */
    get userId() {
      return this.me;
    }
    /** The voice channel the user is in (per presence), or `null`. */
    get room() {
      return this.currentRoom;
    }
    /** The user's own camera while it is on. */
    get localStream() {
      return this.camera;
    }
    /** The latest error (camera, WebRTC or the hub's), or `null`. */
    get lastError() {
      return this.last;
    }
    /** More members at the table than the mesh connects ({@link MAX_PLAYERS}). */
    get overCapacity() {
      return this.currentRoom !== null && this.members.length > MAX_PLAYERS;
    }
    /** `auth.ok`'s ICE servers (with their credentials: do not log them). */
    get iceServers() {
      return this.authIceServers;
    }
    /** The remote players now, in order of connection. */
    peers() {
      return Array.from(this.peerMap.values(), (p) => ({ userId: p.userId, connectionState: p.pc.connectionState, stream: p.stream }));
    }
    /** Every remote player's camera now: user id → `MediaStream`. */
    remoteStreams() {
      const out = /* @__PURE__ */ new Map();
      for (const p of this.peerMap.values()) if (p.stream) out.set(p.userId, p.stream);
      return out;
    }
    /** The WebRTC statistics of the connection with `userId`, or `null` without one. */
    async stats(userId) {
      const peer = this.peerMap.get(userId);
      return peer ? peer.pc.getStats() : null;
    }
    /** The ICE candidate errors (e.g. 401 from a TURN server refusing a credential) with `userId`. */
    candidateErrors(userId) {
      return this.peerMap.get(userId)?.candidateErrors.slice() ?? [];
    }
    /** The ICE transport policy and servers of the peer connections made from now on. */
    configureIce(settings) {
      this.ice = { ...settings };
    }
    /** Opens the camera and greets the table; nothing outside a voice channel. */
    async cameraOn() {
      if (this.camera || this.opening || !this.currentRoom || this.closed) return;
      if (!this.mediaDevices) {
        this.fail({ code: "CAMERA", message: "this browser has no camera access (navigator.mediaDevices)" });
        return;
      }
      this.opening = true;
      let stream;
      try {
        stream = await this.mediaDevices.getUserMedia({ video: this.video, audio: false });
      } catch (err) {
        this.fail({ code: "CAMERA", message: err instanceof Error ? err.message : String(err) });
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
      this.emit("change");
    }
    /** Stops the camera and tells the peers (`bye`). */
    cameraOff() {
      if (!this.camera) return;
      for (const peer of this.peerMap.values()) this.signal(peer.userId, { kind: "bye", to: peer.sid });
      this.dropAll();
      for (const t of this.camera.getTracks()) t.stop();
      this.camera = null;
      this.emit("change");
    }
    /** Camera off, every peer closed, no more listening to the client. */
    close() {
      this.cameraOff();
      this.dropAll();
      clearTimeout(this.leaveTimer);
      this.closed = true;
      for (const off of this.unsubscribe) off();
    }
    // ---------- presence ----------
    /** The live rooms changed: follow the user's table, drop whoever left it. */
    onPresence() {
      if (this.closed) return;
      let room2 = null;
      let members = [];
      for (const r of this.client.rooms) {
        if (r.members.some((m) => m.userId === this.me)) {
          room2 = r.channelId;
          members = r.members.map((m) => m.userId);
          break;
        }
      }
      const moved = room2 !== this.currentRoom;
      this.members = members;
      if (moved) {
        this.dropAll();
        this.currentRoom = room2;
        clearTimeout(this.leaveTimer);
        if (!room2 && this.camera) this.leaveTimer = setTimeout(() => {
          if (!this.currentRoom) this.cameraOff();
        }, this.leaveGraceMs);
        if (room2) this.greet();
      } else {
        const here = new Set(members);
        for (const userId of Array.from(this.peerMap.keys())) if (!here.has(userId)) this.drop(userId);
      }
      this.emit("change");
    }
    // ---------- signalling ----------
    onMessage(msg) {
      if (this.closed) return;
      if (msg.type === "ack" && msg.event === "auth.ok") {
        this.authIceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
        queueMicrotask(() => this.greet());
      } else if (msg.type === "rtc.signal") {
        this.onSignal(String(msg.from), msg.channelId, msg.data);
      } else if (msg.type === "error" && msg.error) {
        this.fail({ code: msg.error.code, message: msg.error.message });
      }
    }
    onSignal(from, channelId, data) {
      if (channelId !== this.currentRoom || !this.camera || from === this.me || !data || typeof data.sid !== "string") return;
      if (data.to && data.to !== this.sid) return;
      if (data.kind === "bye") {
        if (this.peerMap.get(from)?.sid === data.sid) this.drop(from);
        return;
      }
      if (data.kind === "hello") {
        let peer2 = this.peerMap.get(from);
        if (peer2 && peer2.sid !== data.sid) {
          this.drop(from);
          peer2 = void 0;
        }
        if (!peer2) {
          if (this.peerMap.size >= MAX_PLAYERS - 1) return;
          peer2 = this.newPeer(from, data.sid);
          if (!data.reply) this.signal(from, { kind: "hello", reply: true, to: data.sid });
          if (smaller(this.me, from)) void this.makeOffer(peer2);
        }
        return;
      }
      const peer = this.peerMap.get(from);
      if (!peer || peer.sid !== data.sid) return;
      if (data.kind === "offer" && isText(data.sdp)) void this.acceptOffer(peer, data.sdp);
      else if (data.kind === "answer" && isText(data.sdp)) void this.acceptAnswer(peer, data.sdp);
      else if (data.kind === "candidate" && data.candidate && typeof data.candidate === "object") void this.addCandidate(peer, data.candidate);
    }
    signal(to, data) {
      if (!this.currentRoom) return;
      const message = { type: "rtc.signal", to, channelId: this.currentRoom, data: { ...data, sid: this.sid } };
      this.client.send(message);
    }
    /** Tells every other member of the table that this camera is on. */
    greet() {
      if (!this.camera || !this.currentRoom) return;
      for (const userId of this.members) if (userId !== this.me) this.signal(userId, { kind: "hello" });
    }
    // ---------- peers ----------
    newPeer(userId, sid) {
      const pc = new RTCPeerConnection({
        iceServers: this.ice.servers ?? this.authIceServers,
        iceTransportPolicy: this.ice.policy ?? "all"
      });
      const peer = { userId, sid, pc, stream: null, pending: [], candidateErrors: [] };
      const camera = this.camera;
      for (const track of camera.getTracks()) pc.addTrack(track, camera);
      pc.addEventListener("icecandidateerror", (e) => peer.candidateErrors.push(e.errorCode));
      pc.addEventListener("icecandidate", (e) => {
        if (e.candidate) this.signal(userId, { kind: "candidate", to: sid, candidate: e.candidate.toJSON() });
      });
      pc.addEventListener("track", (e) => {
        if (this.peerMap.get(userId) !== peer) return;
        peer.stream = e.streams[0] ?? new MediaStream([e.track]);
        this.emit("stream", userId, peer.stream);
        this.emit("change");
      });
      pc.addEventListener("connectionstatechange", () => {
        if (this.peerMap.get(userId) === peer) this.emit("change");
      });
      this.peerMap.set(userId, peer);
      this.emit("change");
      return peer;
    }
    async makeOffer(peer) {
      try {
        await peer.pc.setLocalDescription(await peer.pc.createOffer());
        this.signal(peer.userId, { kind: "offer", to: peer.sid, sdp: peer.pc.localDescription?.sdp ?? "" });
      } catch (err) {
        this.webrtcFailed("offer", err);
      }
    }
    async acceptOffer(peer, sdp) {
      try {
        await peer.pc.setRemoteDescription({ type: "offer", sdp });
        await this.flushCandidates(peer);
        await peer.pc.setLocalDescription(await peer.pc.createAnswer());
        this.signal(peer.userId, { kind: "answer", to: peer.sid, sdp: peer.pc.localDescription?.sdp ?? "" });
      } catch (err) {
        this.webrtcFailed("answer", err);
      }
    }
    async acceptAnswer(peer, sdp) {
      try {
        await peer.pc.setRemoteDescription({ type: "answer", sdp });
        await this.flushCandidates(peer);
      } catch (err) {
        this.webrtcFailed("answer", err);
      }
    }
    async addCandidate(peer, candidate) {
      if (!peer.pc.remoteDescription) {
        if (peer.pending.length < 100) peer.pending.push(candidate);
        return;
      }
      try {
        await peer.pc.addIceCandidate(candidate);
      } catch (err) {
        this.webrtcFailed("candidate", err);
      }
    }
    async flushCandidates(peer) {
      for (const c of peer.pending.splice(0)) await this.addCandidate(peer, c);
    }
    drop(userId) {
      const peer = this.peerMap.get(userId);
      if (!peer) return;
      this.peerMap.delete(userId);
      try {
        peer.pc.close();
      } catch {
      }
      if (peer.stream) this.emit("stream", userId, null);
      this.emit("change");
    }
    dropAll() {
      for (const userId of Array.from(this.peerMap.keys())) this.drop(userId);
    }
    webrtcFailed(what, err) {
      this.fail({ code: "WEBRTC", message: `${what} failed: ${err instanceof Error ? err.message : String(err)}` });
    }
    fail(error) {
      this.last = error;
      this.emit("error", error);
      this.emit("change");
    }
  };
  function isText(value) {
    return typeof value === "string" && value.length <= MAX_SIGNAL_TEXT;
  }
  function smaller(a, b) {
    try {
      return BigInt(a) < BigInt(b);
    } catch {
      return a < b;
    }
  }
  function randomId() {
    const bytes = new Uint8Array(8);
    globalThis.crypto.getRandomValues(bytes);
    return Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // src/frames.ts
  var MIN_FPS = 0.1;
  var MAX_FPS = 60;
  function frames(stream, options, onFrame) {
    const deliverTo = onFrame;
    const asked = options.fps ?? 2;
    if (typeof asked !== "number" || !Number.isFinite(asked) || asked <= 0) throw new RangeError(`frames: fps must be a positive number, not ${String(asked)}`);
    const fps = Math.min(MAX_FPS, Math.max(MIN_FPS, asked));
    const interval = 1e3 / fps;
    const hasWebCodecs = typeof VideoFrame === "function";
    const as = options.as ?? (hasWebCodecs ? "videoframe" : "bitmap");
    if (as !== "videoframe" && as !== "bitmap") throw new TypeError(`frames: as must be 'videoframe' or 'bitmap', not ${String(as)}`);
    if (as === "videoframe" && !hasWebCodecs) throw new TypeError("frames: this browser has no VideoFrame (WebCodecs): ask for as: 'bitmap'");
    if (stream.getVideoTracks().length === 0) throw new TypeError("frames: the stream has no video track");
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.srcObject = stream;
    let stopped = false;
    let next = 0;
    let pending;
    const deliver = async (now) => {
      const frame = as === "videoframe" ? new VideoFrame(video, { timestamp: Math.round(now * 1e3) }) : await createImageBitmap(video);
      if (stopped) {
        frame.close();
        return;
      }
      const width = "displayWidth" in frame ? frame.displayWidth : frame.width;
      const height = "displayHeight" in frame ? frame.displayHeight : frame.height;
      deliverTo({ frame, width, height, time: now });
    };
    const tick = (now) => {
      pending = void 0;
      if (stopped) return;
      if (now >= next && video.videoWidth > 0 && video.readyState >= 2) {
        next += interval;
        if (next <= now) next = now + interval;
        deliver(now).catch(() => {
        });
      }
      schedule();
    };
    const schedule = () => {
      if (stopped) return;
      if (typeof video.requestVideoFrameCallback === "function") {
        const handle = video.requestVideoFrameCallback(tick);
        pending = () => video.cancelVideoFrameCallback?.(handle);
      } else if (typeof requestAnimationFrame === "function") {
        const handle = requestAnimationFrame(tick);
        pending = () => cancelAnimationFrame(handle);
      } else {
        const handle = setTimeout(() => tick(performance.now()), interval);
        pending = () => clearTimeout(handle);
      }
    };
    video.play().catch(() => {
    });
    schedule();
    return () => {
      if (stopped) return;
      stopped = true;
      pending?.();
      pending = void 0;
      video.pause();
      video.srcObject = null;
    };
  }

  // ../../crates/hub/lobby/src/webcams.js
  var mesh = null;
  var client = null;
  var token = null;
  var rooms = /* @__PURE__ */ new Map();
  var tileCache = /* @__PURE__ */ new Map();
  var demo = null;
  var demoAsked = false;
  var offMessage = null;
  function start(gatewayClient, me, jwt) {
    stop();
    client = gatewayClient;
    token = jwt;
    mesh = new Webcams({ client, me });
    mesh.on("change", renderAll);
    mesh.on("error", (err) => {
      if (err.code === "FORBIDDEN" || err.code === "RATE_LIMITED") console.warn("webcams:", err.message);
    });
    offMessage = client.on("message", (msg) => {
      if (msg.type === "ack") queueMicrotask(renderAll);
    });
  }
  function stop() {
    if (mesh) mesh.close();
    if (offMessage) offMessage();
    offMessage = null;
    mesh = null;
    client = null;
    token = null;
    rooms.clear();
    tileCache.clear();
  }
  function room(channelId, card, members) {
    rooms.set(channelId, { card, members });
    render(channelId);
  }
  function renderAll() {
    for (const [id, r] of rooms) {
      if (r.card.isConnected) render(id);
      else rooms.delete(id);
    }
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== void 0) node.textContent = text;
    return node;
  }
  function button(text, testid, onClick) {
    const b = el("button", "btn btn-small", text);
    b.type = "button";
    b.setAttribute("data-testid", testid);
    b.addEventListener("click", onClick);
    return b;
  }
  function ui(channelId) {
    const r = rooms.get(channelId);
    if (!r || !r.card) return null;
    let box = r.card.querySelector(":scope > .webcams");
    if (!box) {
      box = el("section", "webcams");
      box.setAttribute("aria-label", "Webcams");
      box.setAttribute("data-testid", "webcams-" + channelId);
      const bar = el("div", "webcams-bar");
      const note = el("p", "webcams-note");
      note.setAttribute("data-testid", "webcams-note-" + channelId);
      note.setAttribute("role", "status");
      note.hidden = true;
      const tiles = el("ul", "tiles");
      tiles.setAttribute("data-testid", "tiles-" + channelId);
      box.append(bar, note, tiles);
      r.card.appendChild(box);
    }
    return { box, bar: box.children[0], note: box.children[1], tiles: box.children[2] };
  }
  function showNote(refs, text) {
    refs.note.textContent = text || "";
    refs.note.hidden = !text;
  }
  function render(channelId) {
    const refs = ui(channelId);
    if (!refs || !mesh) return;
    const r = rooms.get(channelId);
    const here = mesh.room === channelId;
    const camera = mesh.localStream;
    const bar = [];
    if (here) {
      bar.push(camera ? button("Turn off camera", "camera-toggle-" + channelId, () => mesh && mesh.cameraOff()) : button("Turn on camera", "camera-toggle-" + channelId, () => mesh && mesh.cameraOn()));
    } else {
      const join = el("a", "btn btn-small", "Join in Discord");
      join.href = "https://discord.com/channels/" + encodeURIComponent(client && client.guildId || "") + "/" + encodeURIComponent(channelId);
      join.target = "_blank";
      join.rel = "noopener noreferrer";
      join.setAttribute("data-testid", "join-discord-" + channelId);
      bar.push(join);
      if (demo) bar.push(button("Sit at this table", "sit-" + channelId, () => sit(channelId)));
      else if (!demoAsked) askDemo(channelId);
    }
    refs.bar.replaceChildren(...bar);
    const error = mesh.lastError;
    if (here && !camera && error && error.code === "CAMERA") {
      showNote(refs, "The camera could not be opened: " + error.message);
    } else if (here && mesh.overCapacity) {
      showNote(refs, "Video works for tables of up to " + MAX_PLAYERS + " players; this room has " + r.members.length + ". The first " + MAX_PLAYERS + " cameras connect.");
    } else if (refs.note.textContent.startsWith("Video works") || refs.note.textContent.startsWith("The camera")) {
      showNote(refs, "");
    }
    const tiles = [];
    if (here && camera) {
      tiles.push(tile(mesh.userId, camera, r, true, null));
      for (const peer of mesh.peers()) tiles.push(tile(peer.userId, peer.stream, r, false, peer.connectionState));
    }
    refs.tiles.replaceChildren(...tiles);
    refs.box.hidden = false;
  }
  function tile(userId, stream, r, self, connectionState) {
    let li = tileCache.get(userId);
    if (!li) {
      li = el("li", "tile");
      const video2 = el("video");
      video2.autoplay = true;
      video2.playsInline = true;
      video2.muted = true;
      li.append(video2, el("span", "tile-name"));
      tileCache.set(userId, li);
    }
    li.setAttribute("data-testid", "tile-" + userId);
    li.dataset.userId = userId;
    const video = li.firstChild;
    if (video.srcObject !== (stream || null)) video.srcObject = stream || null;
    const member = r.members.find((m) => m.userId === userId) || {};
    li.lastChild.textContent = (member.name || userId) + (self ? " (you)" : "");
    li.classList.toggle("speaking", !!member.speaking);
    li.dataset.speaking = member.speaking ? "true" : "false";
    if (connectionState) li.dataset.state = connectionState;
    else delete li.dataset.state;
    return li;
  }
  async function askDemo(channelId) {
    demoAsked = true;
    try {
      const res = await fetch("/api/demo/sit/" + encodeURIComponent(channelId), { cache: "no-store" });
      demo = res.ok;
    } catch (_) {
      demo = false;
    }
    if (demo) renderAll();
  }
  async function sit(channelId) {
    const refs = ui(channelId);
    try {
      const res = await fetch("/api/demo/sit/" + encodeURIComponent(channelId), {
        method: "POST",
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store"
      });
      if (!res.ok && refs) showNote(refs, "Could not sit at this table (" + res.status + ").");
    } catch (_) {
      if (refs) showNote(refs, "The hub could not be reached.");
    }
  }
  async function framesDecoded(userId) {
    const stats = mesh && await mesh.stats(userId);
    let n = 0;
    if (stats) stats.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0;
    });
    return n;
  }
  async function selectedCandidates(userId) {
    const stats = mesh && await mesh.stats(userId);
    if (!stats) return null;
    let pair = null;
    stats.forEach((r) => {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r;
    });
    if (!pair) return null;
    return [stats.get(pair.localCandidateId).candidateType, stats.get(pair.remoteCandidateId).candidateType];
  }
  var samplers = /* @__PURE__ */ new Map();
  var samplerIds = 0;
  window.covenWebcams = Object.freeze({
    /** Every remote player's camera now (user id → MediaStream), for card recognition. */
    remoteStreams() {
      return mesh ? mesh.remoteStreams() : /* @__PURE__ */ new Map();
    },
    /** The package's frame helper (docs/clients.md): frames(stream, {fps, as}, onFrame) → stop. */
    frames,
    state() {
      return {
        room: mesh ? mesh.room : null,
        camera: !!(mesh && mesh.localStream),
        peers: mesh ? mesh.peers().map((p) => ({ userId: p.userId, connectionState: p.connectionState, hasStream: !!p.stream })) : []
      };
    },
    framesDecoded,
    selectedCandidates,
    /** ICE candidate errors (e.g. 401 from a TURN server refusing a credential) with `userId`. */
    candidateErrors(userId) {
      return mesh ? mesh.candidateErrors(userId) : [];
    },
    lastError() {
      const e = mesh && mesh.lastError;
      return e ? { code: e.code, message: e.message } : null;
    },
    /** auth.ok's iceServers, without credentials. */
    iceServers() {
      return mesh ? mesh.iceServers.map((s) => ({ urls: s.urls, username: s.username })) : [];
    },
    /** Sends a raw message on the socket (to prove the hub refuses what it must). */
    sendRaw(message) {
      if (client) client.send(message);
    },
    /** For the next peers: the ICE transport policy ('all' or 'relay'), and the ICE servers
     *  (null: auth.ok's; [] host candidates only), optionally with another TURN credential. */
    configureIce({ policy, servers, credential }) {
      if (!mesh) return;
      let list = servers === null || servers === void 0 ? null : servers;
      if (credential) list = mesh.iceServers.map((s) => s.credential ? Object.assign({}, s, { credential }) : s);
      mesh.configureIce({ policy: policy || "all", servers: list });
    },
    /** Starts counting frames of `userId`'s camera (`self`: this page's) through `frames`;
     *  returns a sampler id, or null when there is no such stream. */
    sampleFrames(userId, fps, as) {
      const stream = userId === "self" ? mesh && mesh.localStream : mesh && mesh.remoteStreams().get(userId);
      if (!stream) return null;
      const id = ++samplerIds;
      const s = { count: 0, sizes: /* @__PURE__ */ new Set(), kinds: /* @__PURE__ */ new Set(), first: 0, last: 0, stop: null };
      s.stop = frames(stream, { fps, as }, ({ frame, width, height, time }) => {
        s.count += 1;
        if (!s.first) s.first = time;
        s.last = time;
        s.sizes.add(width + "x" + height);
        s.kinds.add(frame.constructor.name);
        frame.close();
      });
      samplers.set(id, s);
      return id;
    },
    /** A sampler's count so far, sizes and kinds seen, and the page's time span of its frames. */
    sampled(id) {
      const s = samplers.get(id);
      return s ? { count: s.count, sizes: Array.from(s.sizes), kinds: Array.from(s.kinds), spanMs: s.last - s.first } : null;
    },
    /** Stops a sampler (its count then stays). */
    stopSampling(id) {
      const s = samplers.get(id);
      if (s) s.stop();
    }
  });

  // ../../crates/hub/lobby/src/app.js
  {
    let b64urlDecode = function(s) {
      s = s.replace(/-/g, "+").replace(/_/g, "/");
      while (s.length % 4) s += "=";
      const bin = atob(s);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return new TextDecoder().decode(bytes);
    }, decodeClaims = function(token2) {
      try {
        const parts = token2.split(".");
        if (parts.length !== 3) return null;
        const claims = JSON.parse(b64urlDecode(parts[1]));
        return claims && typeof claims === "object" ? claims : null;
      } catch (_) {
        return null;
      }
    }, expired = function(claims) {
      return typeof claims.exp === "number" && claims.exp * 1e3 <= Date.now();
    }, defaultMessage = function(status) {
      if (status === 401) return "Your session has ended. Please sign in again.";
      if (status === 403) return "You are not allowed to do that.";
      if (status === 404) return "Not found.";
      if (status === 405 || status === 501) return "This hub does not offer that.";
      if (status === 429) return "Too many requests.";
      if (status === 503) return "The service is not available right now.";
      return "Something went wrong (HTTP " + status + ").";
    }, memberFrom = function(raw) {
      const m = { userId: String(raw.userId), speaking: false };
      for (const f of FLAG_NAMES) m[f] = !!raw[f];
      return m;
    }, learnUser = function(raw) {
      if (!raw || !raw.userId) return;
      const prev = state.users.get(raw.userId) || {};
      state.users.set(String(raw.userId), {
        name: raw.name || prev.name || null,
        avatarUrl: raw.avatarUrl || prev.avatarUrl || null
      });
    }, applySnapshot = function(snap) {
      state.rooms = /* @__PURE__ */ new Map();
      for (const r of snap.rooms || []) {
        const room2 = {
          channelId: String(r.channelId),
          name: r.name || "Room",
          parentId: r.parentId || null,
          userLimit: r.userLimit || 0,
          members: /* @__PURE__ */ new Map()
        };
        for (const m of r.members || []) {
          learnUser(m);
          room2.members.set(String(m.userId), memberFrom(m));
        }
        state.rooms.set(room2.channelId, room2);
      }
      state.loaded = true;
    }, findMemberRoom = function(userId) {
      for (const room2 of state.rooms.values()) if (room2.members.has(userId)) return room2;
      return null;
    }, displayName = function(userId) {
      const u = state.users.get(userId);
      return u && u.name || userId;
    }, applyEvent = function(name, p) {
      const changed = /* @__PURE__ */ new Set();
      let say = null;
      if (!p || typeof p !== "object") return { changed, say };
      const cid = p.channelId != null ? String(p.channelId) : null;
      const uid = p.userId != null ? String(p.userId) : null;
      switch (name) {
        case "room.created": {
          if (!cid) break;
          state.deleted.delete(cid);
          const room2 = state.rooms.get(cid);
          if (room2) {
            room2.name = p.name || room2.name;
            room2.parentId = p.parentId || null;
            room2.userLimit = p.userLimit || 0;
          } else {
            state.rooms.set(cid, { channelId: cid, name: p.name || "Room", parentId: p.parentId || null, userLimit: p.userLimit || 0, members: /* @__PURE__ */ new Map() });
            say = "Room " + (p.name || "") + " created.";
          }
          changed.add(cid);
          break;
        }
        case "room.deleted": {
          if (!cid) break;
          const room2 = state.rooms.get(cid);
          state.deleted.add(cid);
          if (room2) {
            state.rooms.delete(cid);
            say = "Room " + room2.name + " ended.";
            changed.add(cid);
          }
          break;
        }
        case "voice.joined": {
          if (!cid || !uid) break;
          for (const room3 of state.rooms.values()) {
            if (room3.channelId !== cid && room3.members.delete(uid)) changed.add(room3.channelId);
          }
          const room2 = state.rooms.get(cid);
          if (room2 && !room2.members.has(uid)) {
            room2.members.set(uid, memberFrom({ userId: uid }));
            changed.add(cid);
            say = sayAbout(uid, (who) => who + " joined " + room2.name + ".");
          }
          break;
        }
        case "voice.left": {
          if (!cid || !uid) break;
          const room2 = state.rooms.get(cid);
          if (room2 && room2.members.delete(uid)) {
            changed.add(cid);
            say = sayAbout(uid, (who) => who + " left " + room2.name + ".");
          }
          break;
        }
        case "voice.state": {
          if (!cid || !uid) break;
          const room2 = state.rooms.get(cid);
          if (!room2) break;
          let m = room2.members.get(uid);
          if (!m) {
            const other = findMemberRoom(uid);
            if (other) {
              other.members.delete(uid);
              changed.add(other.channelId);
            }
            m = memberFrom({ userId: uid });
            room2.members.set(uid, m);
          }
          for (const f of FLAG_NAMES) if (typeof p[f] === "boolean") m[f] = p[f];
          changed.add(cid);
          break;
        }
        case "voice.speaking": {
          if (!cid || !uid) break;
          const room2 = state.rooms.get(cid);
          const m = room2 && room2.members.get(uid);
          if (m && m.speaking !== !!p.speaking) {
            m.speaking = !!p.speaking;
            changed.add(cid);
          }
          break;
        }
        default:
          break;
      }
      return { changed, say };
    }, sayAbout = function(userId, line) {
      if (state.users.has(userId)) return line(displayName(userId));
      pendingLines.push({ gen: state.generation, line: () => line(displayName(userId)) });
      namesWantedAt = Math.max(namesWantedAt, applyingSeq);
      scheduleNameRefresh(300);
      return null;
    }, flushPendingLines = function() {
      for (const p of pendingLines.splice(0)) {
        if (p.gen === state.generation) announce(p.line());
      }
    }, scheduleNameRefresh = function(delayMs) {
      if (nameRefreshTimer) return;
      nameRefreshTimer = setTimeout(async () => {
        nameRefreshTimer = null;
        if (!state.token) {
          pendingLines.length = 0;
          return;
        }
        try {
          const snap = await call(() => state.client.api.rooms());
          if (snap && typeof snap.seq === "number" && snap.seq < namesWantedAt && nameRefreshTries < 3) {
            nameRefreshTries += 1;
            scheduleNameRefresh(SNAPSHOT_CACHE_MS2);
            return;
          }
          let learnt = false;
          for (const r of snap && snap.rooms || []) {
            for (const m of r.members || []) {
              const before = state.users.get(String(m.userId));
              learnUser(m);
              if (!before || before.name !== (m.name || before.name) || before.avatarUrl !== (m.avatarUrl || before.avatarUrl)) learnt = true;
            }
          }
          if (learnt) renderAll2();
        } catch (_) {
        }
        nameRefreshTries = 0;
        flushPendingLines();
      }, delayMs);
    }, startClient = function() {
      const gen = state.generation;
      const token2 = state.token;
      const client2 = connect({
        // The page cannot refresh a token: the same one again makes the package stop
        // (a GatewayAuthError), and the page signs out.
        getToken: () => token2,
        refreshNames: false
        // the page learns names itself, for its announcements
      });
      state.client = client2;
      start(client2, String(state.claims.sub), token2);
      const mine = () => gen === state.generation && state.client === client2;
      client2.on("state", (s) => {
        if (!mine()) return;
        if (s === "live") setConn("live");
        else if (s === "connecting") setConn("connecting");
        else if (s === "reconnecting" && state.connState !== "offline") setConn("reconnecting");
        else if (s === "stopped" && client2.error) signOut(SESSION_ENDED);
      });
      client2.on("retry", (delay) => {
        if (!mine()) return;
        state.retryAt = Date.now() + delay;
        setConn("offline");
      });
      client2.on("snapshot", (snap) => {
        if (!mine()) return;
        applySnapshot(snap);
        renderAll2();
      });
      client2.on("event", (frame) => {
        if (!mine()) return;
        applyingSeq = typeof frame.seq === "number" ? frame.seq : applyingSeq;
        const { changed, say } = applyEvent(String(frame.event || ""), frame.payload);
        if (changed.size) renderRooms(changed);
        if (typeof say === "string") announce(say);
      });
    }, reconnectNow = function() {
      if (state.client && state.client.state === "reconnecting") state.client.reconnect();
    }, setConn = function(s) {
      state.connState = s;
      const banner = $("connection");
      banner.dataset.state = s;
      clearInterval(state.countdownTimer);
      state.countdownTimer = null;
      $("retry-now").hidden = s !== "offline";
      if (s === "signed-out") {
        banner.hidden = true;
        return;
      }
      banner.hidden = false;
      const text = $("connection-text");
      if (s === "live") {
        text.textContent = "Live";
      } else if (s === "connecting") {
        text.textContent = "Connecting…";
      } else if (s === "reconnecting") {
        text.textContent = "Offline — reconnecting…";
      } else if (s === "offline") {
        const tick = () => {
          const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1e3));
          text.textContent = secs > 0 ? "Offline — reconnecting in " + secs + " s" : "Offline — reconnecting…";
        };
        tick();
        state.countdownTimer = setInterval(tick, 1e3);
      }
    }, signIn = function(token2) {
      const claims = decodeClaims(token2);
      if (!claims || expired(claims)) {
        sessionStorage.removeItem(TOKEN_KEY);
        showSignedOut(claims ? "Your session has ended. Please sign in again." : null);
        return;
      }
      state.token = token2;
      state.claims = claims;
      sessionStorage.setItem(TOKEN_KEY, token2);
      if (typeof claims.exp === "number") {
        const ms = claims.exp * 1e3 - Date.now();
        if (ms < 2147483647) {
          state.expiryTimer = setTimeout(() => signOut(SESSION_ENDED), ms);
        }
      }
      showSignedIn();
      startClient();
      loadCues();
    }, signOut = function(notice) {
      state.generation += 1;
      clearTimeout(state.expiryTimer);
      clearTimeout(state.retryTimer);
      state.retryTimer = null;
      state.token = null;
      state.claims = null;
      sessionStorage.removeItem(TOKEN_KEY);
      const client2 = state.client;
      state.client = null;
      if (client2) client2.close();
      state.rooms = /* @__PURE__ */ new Map();
      state.users = /* @__PURE__ */ new Map();
      state.cues = [];
      clearTimeout(cuesRetry);
      pendingLines.length = 0;
      state.deleted = /* @__PURE__ */ new Set();
      state.loaded = false;
      roomEls.clear();
      $("rooms").replaceChildren();
      stop();
      showSignedOut(notice);
    }, showSignedOut = function(notice) {
      setConn("signed-out");
      $("signed-in-view").hidden = true;
      $("signed-out-view").hidden = false;
      $("who").hidden = true;
      const n = $("signed-out-notice");
      n.textContent = notice || "";
      n.hidden = !notice;
      document.body.dataset.auth = "signed-out";
    }, showSignedIn = function() {
      const c = state.claims;
      $("signed-out-view").hidden = true;
      $("signed-in-view").hidden = false;
      $("who").hidden = false;
      $("signed-out-notice").hidden = true;
      $("who-name").textContent = c.name || c.username || c.sub || "Signed in";
      fillAvatar($("who-avatar"), c.sub, c.name || c.sub, avatarUrlFromClaim(c));
      $("rooms-loading").hidden = false;
      $("rooms-empty").hidden = true;
      document.body.dataset.auth = "signed-in";
    }, avatarUrlFromClaim = function(c) {
      const a = c.avatar;
      if (!a || typeof a !== "string") return null;
      if (/^https:\/\//.test(a) || /^data:image\//.test(a)) return a;
      if (/^[a-z0-9_]+$/i.test(a) && c.sub) {
        return "https://cdn.discordapp.com/avatars/" + encodeURIComponent(c.sub) + "/" + a + ".png?size=64";
      }
      return null;
    }, el2 = function(tag, cls, text) {
      const e = document.createElement(tag);
      if (cls) e.className = cls;
      if (text != null) e.textContent = text;
      return e;
    }, initials = function(name) {
      const words = String(name || "").split(/[^\p{L}\p{N}]+/u).filter(Boolean);
      if (!words.length) return "?";
      const first = Array.from(words[0]);
      const s = words.length > 1 ? first[0] + Array.from(words[1])[0] : first.slice(0, 2).join("");
      return s.toUpperCase();
    }, palette = function(id) {
      let h = 2166136261;
      for (const ch of String(id)) {
        h ^= ch.charCodeAt(0);
        h = Math.imul(h, 16777619) >>> 0;
      }
      return h % 12;
    }, fillAvatar = function(node, id, name, url) {
      node.replaceChildren();
      node.dataset.hue = String(palette(id || name));
      if (url && (/^https:\/\/cdn\.discordapp\.com\//.test(url) || /^data:image\//.test(url) || url.startsWith("/"))) {
        const img = document.createElement("img");
        img.alt = "";
        img.src = url;
        img.loading = "lazy";
        img.referrerPolicy = "no-referrer";
        img.addEventListener("error", () => {
          node.replaceChildren(el2("span", "initials", initials(name)));
        });
        node.appendChild(img);
      } else {
        node.appendChild(el2("span", "initials", initials(name)));
      }
    }, renderAll2 = function() {
      const list = $("rooms");
      for (const id of Array.from(roomEls.keys())) {
        if (!state.rooms.has(id)) {
          roomEls.get(id).li.remove();
          roomEls.delete(id);
        }
      }
      for (const room2 of state.rooms.values()) renderRoom(room2);
      let i = 0;
      for (const room2 of state.rooms.values()) {
        const li = roomEls.get(room2.channelId).li;
        if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
        i++;
      }
      renderSummary();
    }, renderRooms = function(ids) {
      for (const id of ids) {
        const room2 = state.rooms.get(id);
        if (room2) {
          const isNew = !roomEls.has(id);
          renderRoom(room2);
          if (isNew) $("rooms").appendChild(roomEls.get(id).li);
        } else if (roomEls.has(id)) {
          roomEls.get(id).li.remove();
          roomEls.delete(id);
        }
      }
      renderSummary();
    }, renderSummary = function() {
      $("rooms-loading").hidden = state.loaded;
      $("rooms-empty").hidden = !state.loaded || state.rooms.size > 0;
      $("rooms-count").textContent = state.loaded ? "(" + state.rooms.size + ")" : "";
    }, makeRoomEl = function(room2) {
      const id = room2.channelId;
      const li = el2("li", "card room");
      li.dataset.testid = "room-" + id;
      li.setAttribute("data-testid", "room-" + id);
      li.dataset.channelId = id;
      const titleId = "room-title-" + id;
      li.setAttribute("aria-labelledby", titleId);
      const head = el2("div", "room-head");
      const title = el2("h3", "room-name");
      title.id = titleId;
      title.setAttribute("data-testid", "room-name-" + id);
      const meta = el2("span", "room-meta");
      meta.setAttribute("data-testid", "room-count-" + id);
      head.append(title, meta);
      const members = el2("ul", "members");
      members.setAttribute("aria-label", "People in this room");
      members.setAttribute("data-testid", "members-" + id);
      const actions = el2("div", "room-actions");
      const botToggle = button2("Bot", "btn btn-small bot-toggle", "bot-menu-" + id);
      botToggle.setAttribute("aria-expanded", "false");
      botToggle.setAttribute("aria-controls", "bot-" + id);
      botToggle.setAttribute("aria-label", "Bot actions");
      const end = button2("End room", "btn btn-small btn-danger-outline", "end-room-" + id);
      actions.append(botToggle, end);
      const botButtons = el2("div", "bot-buttons");
      botButtons.id = "bot-" + id;
      botButtons.hidden = true;
      const botJoin = button2("Bot joins", "btn btn-small", "bot-join-" + id);
      const botLeave = button2("Bot leaves", "btn btn-small", "bot-leave-" + id);
      const cueButtons = el2("span", "cue-buttons");
      cueButtons.setAttribute("role", "group");
      cueButtons.setAttribute("aria-label", "Play a cue");
      cueButtons.setAttribute("data-testid", "cues-" + id);
      botButtons.append(botJoin, botLeave, cueButtons);
      botToggle.addEventListener("click", () => {
        const open = botButtons.hidden;
        botButtons.hidden = !open;
        botToggle.setAttribute("aria-expanded", String(open));
      });
      const confirm = el2("div", "confirm");
      confirm.hidden = true;
      confirm.setAttribute("role", "group");
      const confirmText = el2("span", "confirm-text", "End this room for everyone?");
      const yes = button2("Yes, end it", "btn btn-small btn-danger", "confirm-end-" + id);
      const no = button2("Keep", "btn btn-small", "cancel-end-" + id);
      confirm.append(confirmText, yes, no);
      const msg = el2("p", "room-msg");
      msg.setAttribute("role", "status");
      msg.setAttribute("data-testid", "room-msg-" + id);
      msg.hidden = true;
      li.append(head, members, actions, botButtons, confirm, msg);
      const refs = { id, li, title, meta, members, actions, confirm, msg, cueButtons };
      renderCueButtons(refs);
      end.addEventListener("click", () => {
        actions.hidden = true;
        confirm.hidden = false;
        confirmText.textContent = "End “" + (state.rooms.get(id) || room2).name + "” for everyone?";
        no.focus();
      });
      no.addEventListener("click", () => {
        confirm.hidden = true;
        actions.hidden = false;
        end.focus();
      });
      yes.addEventListener("click", () => runAction(refs, [yes, no], async () => {
        await call(() => state.client.endRoom(id));
        handleLocalDelete(id);
        return null;
      }, () => {
        confirm.hidden = true;
        actions.hidden = false;
      }));
      botJoin.addEventListener("click", () => runAction(refs, [botJoin], async () => {
        await call(() => state.client.botJoin(id));
        return "The bot is joining.";
      }));
      botLeave.addEventListener("click", () => runAction(refs, [botLeave], async () => {
        await call(() => state.client.botLeave(id));
        return "The bot is leaving.";
      }));
      return refs;
    }, renderCueButtons = function(refs) {
      const buttons = state.cues.map((c) => {
        const label = typeof c.label === "string" && c.label ? c.label : c.name;
        const b = button2("▶ " + label, "btn btn-small", "cue-" + c.name + "-" + refs.id);
        b.setAttribute("aria-label", "Play " + label.toLowerCase());
        b.addEventListener("click", () => runAction(refs, [b], async () => {
          await call(() => state.client.playCue(refs.id, c.name));
          return label + " played.";
        }));
        return b;
      });
      refs.cueButtons.replaceChildren(...buttons);
    }, button2 = function(text, cls, testid) {
      const b = el2("button", cls, text);
      b.type = "button";
      b.setAttribute("data-testid", testid);
      return b;
    }, showRoomMsg = function(refs, text, isError) {
      refs.msg.textContent = text;
      refs.msg.classList.toggle("error", !!isError);
      refs.msg.hidden = false;
      clearTimeout(refs.msgTimer);
      if (!isError) refs.msgTimer = setTimeout(() => {
        refs.msg.hidden = true;
      }, 4e3);
    }, handleLocalDelete = function(id) {
      const room2 = state.rooms.get(id);
      state.deleted.add(id);
      if (room2) {
        state.rooms.delete(id);
        announce("Room " + room2.name + " ended.");
        renderRooms([id]);
      }
    }, renderRoom = function(room2) {
      let refs = roomEls.get(room2.channelId);
      if (!refs) {
        refs = makeRoomEl(room2);
        roomEls.set(room2.channelId, refs);
      }
      refs.title.textContent = room2.name;
      const n = room2.members.size;
      refs.meta.textContent = room2.userLimit > 0 ? n + " / " + room2.userLimit : n + (n === 1 ? " person" : " people");
      refs.meta.setAttribute("aria-label", room2.userLimit > 0 ? n + " of " + room2.userLimit + " seats taken" : n + (n === 1 ? " person" : " people") + ", no seat limit");
      refs.li.classList.toggle("full", room2.userLimit > 0 && n >= room2.userLimit);
      const items = [];
      for (const m of room2.members.values()) items.push(memberEl(m));
      if (!items.length) {
        const empty = el2("li", "member-empty", "Nobody here yet");
        items.push(empty);
      }
      refs.members.replaceChildren(...items);
      room(
        room2.channelId,
        refs.li,
        Array.from(room2.members.values(), (m) => ({ userId: m.userId, name: displayName(m.userId), speaking: !!m.speaking }))
      );
    }, memberEl = function(m) {
      const u = state.users.get(m.userId) || {};
      const name = displayName(m.userId);
      const li = el2("li", "member");
      li.setAttribute("data-testid", "member-" + m.userId);
      li.dataset.userId = m.userId;
      if (m.speaking) {
        li.classList.add("speaking");
        li.dataset.speaking = "true";
      }
      const av = el2("span", "avatar");
      av.setAttribute("aria-hidden", "true");
      fillAvatar(av, m.userId, name, u.avatarUrl);
      const nm = el2("span", "member-name", name);
      if (!u.name) nm.classList.add("mono");
      if (state.claims && state.claims.sub === m.userId) {
        nm.append(el2("span", "you", " (you)"));
      }
      li.append(av, nm);
      const badges = el2("span", "badges");
      const add = (cls, label, title) => {
        const b = el2("span", "badge " + cls, label);
        b.title = title;
        b.setAttribute("data-testid", "badge-" + cls);
        badges.appendChild(b);
      };
      if (m.speaking) add("speaking", "speaking", "Speaking");
      if (m.mute) add("mute", "server muted", "Muted by a moderator");
      else if (m.selfMute) add("mute", "muted", "Muted");
      if (m.deaf) add("deaf", "server deafened", "Deafened by a moderator");
      else if (m.selfDeaf) add("deaf", "deafened", "Deafened");
      if (m.selfVideo) add("video", "camera", "Camera on");
      if (m.selfStream) add("stream", "live", "Streaming");
      if (m.suppress) add("suppress", "suppressed", "Suppressed");
      if (badges.childNodes.length) li.appendChild(badges);
      return li;
    }, showRoomsError = function(message) {
      $("rooms-loading").hidden = false;
      $("rooms-loading").textContent = "Could not load rooms: " + message + " Retrying…";
    }, announce = function(text) {
      const a = $("announcer");
      const line = el2("p", null, text);
      a.appendChild(line);
      while (a.childNodes.length > 5) a.removeChild(a.firstChild);
      clearTimeout(announceTimer);
      announceTimer = setTimeout(() => a.replaceChildren(), 1e4);
    }, setupCreateForm = function() {
      const form = $("create-room-form");
      const err = $("create-error");
      const submit = $("create-submit");
      const nameIn = $("room-name");
      const limitIn = $("room-limit");
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        err.hidden = true;
        nameIn.removeAttribute("aria-invalid");
        limitIn.removeAttribute("aria-invalid");
        const name = nameIn.value.trim();
        const limitText = limitIn.value.trim();
        const limit = limitText === "" ? 4 : Number(limitText);
        if (!Number.isInteger(limit) || limit < 0 || limit > 99) {
          showFormError("Seats must be a whole number from 0 to 99.", limitIn);
          return;
        }
        if (name.length > 100) {
          showFormError("The name can be at most 100 characters.", nameIn);
          return;
        }
        const body = { userLimit: limit };
        if (name) body.name = name;
        submit.disabled = true;
        submit.textContent = "Creating…";
        try {
          const res = await call(() => state.client.createRoom(body));
          if (res && res.channelId) {
            const cid = String(res.channelId);
            if (!state.deleted.has(cid) && !state.rooms.has(cid)) {
              state.rooms.set(cid, { channelId: cid, name: res.name || name || "Room", parentId: null, userLimit: limit, members: /* @__PURE__ */ new Map() });
              renderRooms([cid]);
              announce("Room " + (res.name || name) + " created.");
            }
            nameIn.value = "";
          }
        } catch (ex) {
          if (ex.status !== 401) {
            const field = ex.code === "VALIDATION_FAILED" && /limit/i.test(ex.message) ? limitIn : ex.code === "VALIDATION_FAILED" && /name/i.test(ex.message) ? nameIn : null;
            showFormError(ex.message, field);
          }
        } finally {
          submit.disabled = false;
          submit.textContent = "Create room";
        }
      });
      function showFormError(text, field) {
        err.textContent = text;
        err.hidden = false;
        if (field) {
          field.setAttribute("aria-invalid", "true");
          field.focus();
        }
      }
    }, boot = function() {
      $("sign-out").addEventListener("click", () => signOut(null));
      $("retry-now").addEventListener("click", reconnectNow);
      window.addEventListener("online", reconnectNow);
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState !== "visible") return;
        if (state.claims && expired(state.claims)) signOut(SESSION_ENDED);
        else reconnectNow();
      });
      setupCreateForm();
      window.addEventListener("hashchange", () => {
        const { token: token3, error: error2 } = takeToken();
        if (token3) {
          if (state.token) signOut(null);
          signIn(token3);
        } else if (error2 && !state.token) {
          showSignedOut("Sign-in did not complete: " + error2);
        }
      });
      const { token: token2, error } = takeToken();
      if (token2) {
        signIn(token2);
      } else {
        const saved = sessionStorage.getItem(TOKEN_KEY);
        if (saved) signIn(saved);
        else showSignedOut(error ? "Sign-in did not complete: " + error : null);
      }
    };
    const TOKEN_KEY = "coven.token";
    const SESSION_ENDED = "Your session has ended. Please sign in again.";
    const FLAG_NAMES = ["selfMute", "selfDeaf", "mute", "deaf", "selfVideo", "selfStream", "suppress"];
    const SNAPSHOT_CACHE_MS2 = 1100;
    const $ = (id) => document.getElementById(id);
    const state = {
      token: null,
      claims: null,
      expiryTimer: null,
      // model
      rooms: /* @__PURE__ */ new Map(),
      // channelId -> {channelId, name, parentId, userLimit, members: Map<userId, member>}
      users: /* @__PURE__ */ new Map(),
      // userId -> {name, avatarUrl} learnt from snapshots
      cues: [],
      // [{name, label, durationMs}] from GET /api/cues: the bot menu's cue buttons
      deleted: /* @__PURE__ */ new Set(),
      // channelIds seen deleted (guards late create responses)
      loaded: false,
      // a snapshot has been applied
      // connection: the package's client, while signed in
      client: null,
      connState: "signed-out",
      retryAt: 0,
      countdownTimer: null,
      generation: 0
      // bumps on sign-out so stale async work is dropped
    };
    class ApiError extends Error {
      constructor(status, message, code, retryAfter) {
        super(message);
        this.status = status;
        this.code = code;
        this.retryAfter = retryAfter;
      }
    }
    async function call(request) {
      try {
        return await request();
      } catch (err) {
        const status = err instanceof HubApiError ? err.status : 0;
        if (!status) throw new ApiError(0, "The hub could not be reached. Check your connection and try again.", "NETWORK");
        let message = /^HTTP \d+$/.test(err.message) ? defaultMessage(status) : err.message;
        if (status === 429 && err.retryAfter !== void 0) message += " (try again in " + err.retryAfter + " s)";
        if (status === 401) signOut(SESSION_ENDED);
        throw new ApiError(status, message, err.code, err.retryAfter);
      }
    }
    const pendingLines = [];
    let applyingSeq = 0;
    let namesWantedAt = 0;
    let nameRefreshTimer = null;
    let nameRefreshTries = 0;
    let cuesRetry = null;
    async function loadCues() {
      const gen = state.generation;
      clearTimeout(cuesRetry);
      try {
        const data = await call(() => state.client.cues());
        if (gen !== state.generation) return;
        state.cues = (data && data.cues || []).filter((c) => c && typeof c.name === "string");
        for (const refs of roomEls.values()) renderCueButtons(refs);
      } catch (err) {
        if (gen === state.generation && err.status !== 401) {
          cuesRetry = setTimeout(() => {
            if (gen === state.generation) loadCues();
          }, 5e3);
        }
      }
    }
    const roomEls = /* @__PURE__ */ new Map();
    async function runAction(refs, buttons, fn, onError) {
      for (const b of buttons) b.disabled = true;
      refs.msg.hidden = true;
      refs.msg.classList.remove("error");
      try {
        const ok = await fn();
        if (ok) showRoomMsg(refs, ok, false);
      } catch (err) {
        if (onError) onError();
        if (err.status !== 401) showRoomMsg(refs, err.message, true);
      } finally {
        for (const b of buttons) b.disabled = false;
      }
    }
    let announceTimer = null;
    window.covenLobby = Object.freeze({
      dropConnection() {
        if (state.client) state.client.reconnect();
      },
      lastSeq() {
        return state.client ? state.client.lastSeq ?? null : null;
      }
    });
    boot();
  }
})();
