// Spell Coven lobby, built on @spell-coven/gateway-client (clients/js): the package
// keeps the socket (sign-in, reconnect with backoff, resume with lastSeq, the snapshot
// when it must) and the rooms API; this file renders and announces.
// Bundled by esbuild into ../app.js (docs/clients.md: `bash schema/regenerate.sh`).
// Contract: docs/spec.md §4 (events), §6 (WebSocket), §7 (HTTP API); docs/contract.md.
// The JWT is kept in sessionStorage only; it is never logged or shown.
import { connect, HubApiError, takeToken } from '../../../../clients/js/src/index.ts';
import * as webcams from './webcams.js';

{
  const TOKEN_KEY = 'coven.token';
  const SESSION_ENDED = 'Your session has ended. Please sign in again.';
  const FLAG_NAMES = ['selfMute', 'selfDeaf', 'mute', 'deaf', 'selfVideo', 'selfStream', 'suppress'];
  // How old a snapshot the hub may serve (docs/spec.md §7.2), plus a margin.
  const SNAPSHOT_CACHE_MS = 1100;

  const $ = (id) => document.getElementById(id);

  // ---------- state ----------
  const state = {
    token: null,
    claims: null,
    expiryTimer: null,
    // model
    rooms: new Map(), // channelId -> {channelId, name, parentId, userLimit, members: Map<userId, member>}
    users: new Map(), // userId -> {name, avatarUrl} learnt from snapshots
    cues: [], // [{name, label, durationMs}] from GET /api/cues: the bot menu's cue buttons
    deleted: new Set(), // channelIds seen deleted (guards late create responses)
    loaded: false, // a snapshot has been applied
    // connection: the package's client, while signed in
    client: null,
    connState: 'signed-out',
    retryAt: 0,
    countdownTimer: null,
    generation: 0, // bumps on sign-out so stale async work is dropped
  };

  // ---------- token ----------
  function b64urlDecode(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    const bin = atob(s);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder().decode(bytes);
  }

  function decodeClaims(token) {
    try {
      const parts = token.split('.');
      if (parts.length !== 3) return null;
      const claims = JSON.parse(b64urlDecode(parts[1]));
      return claims && typeof claims === 'object' ? claims : null;
    } catch (_) {
      return null;
    }
  }

  function expired(claims) {
    return typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now();
  }



  // ---------- HTTP ----------
  class ApiError extends Error {
    constructor(status, message, code, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  // Runs a call of the package's rooms API; its typed error becomes a message to show.
  async function call(request) {
    try {
      return await request();
    } catch (err) {
      const status = err instanceof HubApiError ? err.status : 0;
      if (!status) throw new ApiError(0, 'The hub could not be reached. Check your connection and try again.', 'NETWORK');
      let message = /^HTTP \d+$/.test(err.message) ? defaultMessage(status) : err.message;
      if (status === 429 && err.retryAfter !== undefined) message += ' (try again in ' + err.retryAfter + ' s)';
      if (status === 401) signOut(SESSION_ENDED);
      throw new ApiError(status, message, err.code, err.retryAfter);
    }
  }

  function defaultMessage(status) {
    if (status === 401) return 'Your session has ended. Please sign in again.';
    if (status === 403) return 'You are not allowed to do that.';
    if (status === 404) return 'Not found.';
    if (status === 405 || status === 501) return 'This hub does not offer that.';
    if (status === 429) return 'Too many requests.';
    if (status === 503) return 'The service is not available right now.';
    return 'Something went wrong (HTTP ' + status + ').';
  }

  // ---------- model ----------
  function memberFrom(raw) {
    const m = { userId: String(raw.userId), speaking: false };
    for (const f of FLAG_NAMES) m[f] = !!raw[f];
    return m;
  }

  function learnUser(raw) {
    if (!raw || !raw.userId) return;
    const prev = state.users.get(raw.userId) || {};
    state.users.set(String(raw.userId), {
      name: raw.name || prev.name || null,
      avatarUrl: raw.avatarUrl || prev.avatarUrl || null,
    });
  }

  function applySnapshot(snap) {
    state.rooms = new Map();
    for (const r of snap.rooms || []) {
      const room = {
        channelId: String(r.channelId),
        name: r.name || 'Room',
        parentId: r.parentId || null,
        userLimit: r.userLimit || 0,
        members: new Map(),
      };
      for (const m of r.members || []) {
        learnUser(m);
        room.members.set(String(m.userId), memberFrom(m));
      }
      state.rooms.set(room.channelId, room);
    }
    state.loaded = true;
  }

  function findMemberRoom(userId) {
    for (const room of state.rooms.values()) if (room.members.has(userId)) return room;
    return null;
  }

  // The one name shown for a user, in cards and announcements alike: the name the
  // snapshot gave, else the id (when the hub knows no name either).
  function displayName(userId) {
    const u = state.users.get(userId);
    return (u && u.name) || userId;
  }

  // Applies one event; idempotent. Returns the ids of rooms it changed and a line to announce.
  function applyEvent(name, p) {
    const changed = new Set();
    let say = null;
    if (!p || typeof p !== 'object') return { changed, say };
    const cid = p.channelId != null ? String(p.channelId) : null;
    const uid = p.userId != null ? String(p.userId) : null;
    switch (name) {
      case 'room.created': {
        if (!cid) break;
        state.deleted.delete(cid);
        const room = state.rooms.get(cid);
        if (room) {
          room.name = p.name || room.name;
          room.parentId = p.parentId || null;
          room.userLimit = p.userLimit || 0;
        } else {
          state.rooms.set(cid, { channelId: cid, name: p.name || 'Room', parentId: p.parentId || null, userLimit: p.userLimit || 0, members: new Map() });
          say = 'Room ' + (p.name || '') + ' created.';
        }
        changed.add(cid);
        break;
      }
      case 'room.deleted': {
        if (!cid) break;
        const room = state.rooms.get(cid);
        state.deleted.add(cid);
        if (room) {
          state.rooms.delete(cid);
          say = 'Room ' + room.name + ' ended.';
          changed.add(cid);
        }
        break;
      }
      case 'voice.joined': {
        if (!cid || !uid) break;
        // A user is in one room at most: a join implies leaving any other.
        for (const room of state.rooms.values()) {
          if (room.channelId !== cid && room.members.delete(uid)) changed.add(room.channelId);
        }
        const room = state.rooms.get(cid);
        if (room && !room.members.has(uid)) {
          room.members.set(uid, memberFrom({ userId: uid }));
          changed.add(cid);
          say = sayAbout(uid, (who) => who + ' joined ' + room.name + '.');
        }
        break;
      }
      case 'voice.left': {
        if (!cid || !uid) break;
        const room = state.rooms.get(cid);
        if (room && room.members.delete(uid)) {
          changed.add(cid);
          say = sayAbout(uid, (who) => who + ' left ' + room.name + '.');
        }
        break;
      }
      case 'voice.state': {
        if (!cid || !uid) break;
        const room = state.rooms.get(cid);
        if (!room) break;
        let m = room.members.get(uid);
        if (!m) {
          const other = findMemberRoom(uid);
          if (other) { other.members.delete(uid); changed.add(other.channelId); }
          m = memberFrom({ userId: uid });
          room.members.set(uid, m);
        }
        for (const f of FLAG_NAMES) if (typeof p[f] === 'boolean') m[f] = p[f];
        changed.add(cid);
        break;
      }
      case 'voice.speaking': {
        if (!cid || !uid) break;
        const room = state.rooms.get(cid);
        const m = room && room.members.get(uid);
        if (m && m.speaking !== !!p.speaking) {
          m.speaking = !!p.speaking;
          changed.add(cid);
        }
        break;
      }
      default:
        break; // unknown events are ignored (docs/spec.md §4)
    }
    return { changed, say };
  }

  // A line about a user, with the same name the card shows. For a user the page has
  // never seen, the line waits for the name refresh below (so it never says the id
  // while the card says the name); returns the line when it can be said now.
  const pendingLines = []; // [{gen, line: () => string}]
  // The `seq` of the event being applied: a name refresh needs a snapshot at least that new.
  let applyingSeq = 0;
  let namesWantedAt = 0;
  function sayAbout(userId, line) {
    if (state.users.has(userId)) return line(displayName(userId));
    pendingLines.push({ gen: state.generation, line: () => line(displayName(userId)) });
    namesWantedAt = Math.max(namesWantedAt, applyingSeq);
    scheduleNameRefresh(300);
    return null;
  }

  function flushPendingLines() {
    for (const p of pendingLines.splice(0)) {
      if (p.gen === state.generation) announce(p.line());
    }
  }

  // After a join of a user we have no name for, fetch the snapshot once more to learn names
  // (only the user directory is taken from it; the live model stays as the events made it).
  // The hub serves the snapshot from a cache up to 1 s old (docs/spec.md §7.2): a snapshot
  // older than the join (its `seq` below the join's) is asked again after that window.
  let nameRefreshTimer = null;
  let nameRefreshTries = 0;
  function scheduleNameRefresh(delayMs) {
    if (nameRefreshTimer) return;
    nameRefreshTimer = setTimeout(async () => {
      nameRefreshTimer = null;
      if (!state.token) { pendingLines.length = 0; return; }
      try {
        const snap = await call(() => state.client.api.rooms());
        if (snap && typeof snap.seq === 'number' && snap.seq < namesWantedAt && nameRefreshTries < 3) {
          nameRefreshTries += 1;
          scheduleNameRefresh(SNAPSHOT_CACHE_MS);
          return;
        }
        let learnt = false;
        for (const r of (snap && snap.rooms) || []) {
          for (const m of r.members || []) {
            const before = state.users.get(String(m.userId));
            learnUser(m);
            if (!before || before.name !== (m.name || before.name) || before.avatarUrl !== (m.avatarUrl || before.avatarUrl)) learnt = true;
          }
        }
        if (learnt) renderAll();
      } catch (_) { /* names are cosmetic */ }
      // Said now, with the name if the hub had one (the card shows the same).
      nameRefreshTries = 0;
      flushPendingLines();
    }, delayMs);
  }

  // ---------- cues ----------
  // The bot's cues come from the hub (GET /api/cues), never from a list in this page.
  let cuesRetry = null;
  async function loadCues() {
    const gen = state.generation;
    clearTimeout(cuesRetry);
    try {
      const data = await call(() => state.client.cues());
      if (gen !== state.generation) return;
      state.cues = ((data && data.cues) || []).filter((c) => c && typeof c.name === 'string');
      for (const refs of roomEls.values()) renderCueButtons(refs);
    } catch (err) {
      if (gen === state.generation && err.status !== 401) {
        cuesRetry = setTimeout(() => { if (gen === state.generation) loadCues(); }, 5000);
      }
    }
  }

  // ---------- live connection ----------
  // The package signs in, resumes, reloads the snapshot when it must and hands over
  // the snapshot and each event in order; the page applies them to its model.
  function startClient() {
    const gen = state.generation;
    const token = state.token;
    const client = connect({
      // The page cannot refresh a token: the same one again makes the package stop
      // (a GatewayAuthError), and the page signs out.
      getToken: () => token,
      refreshNames: false, // the page learns names itself, for its announcements
    });
    state.client = client;
    // The webcams' mesh follows this client's presence and socket (docs/lobby.md).
    webcams.start(client, String(state.claims.sub), token);
    const mine = () => gen === state.generation && state.client === client;
    client.on('state', (s) => {
      if (!mine()) return;
      if (s === 'live') setConn('live');
      else if (s === 'connecting') setConn('connecting');
      else if (s === 'reconnecting' && state.connState !== 'offline') setConn('reconnecting');
      else if (s === 'stopped' && client.error) signOut(SESSION_ENDED);
    });
    client.on('retry', (delay) => {
      if (!mine()) return;
      state.retryAt = Date.now() + delay;
      setConn('offline');
    });
    client.on('snapshot', (snap) => {
      if (!mine()) return;
      applySnapshot(snap);
      renderAll();
    });
    client.on('event', (frame) => {
      if (!mine()) return;
      applyingSeq = typeof frame.seq === 'number' ? frame.seq : applyingSeq;
      const { changed, say } = applyEvent(String(frame.event || ''), frame.payload);
      if (changed.size) renderRooms(changed);
      if (typeof say === 'string') announce(say);
    });
  }

  function reconnectNow() {
    if (state.client && state.client.state === 'reconnecting') state.client.reconnect();
  }

  function setConn(s) {
    state.connState = s;
    const banner = $('connection');
    banner.dataset.state = s;
    clearInterval(state.countdownTimer);
    state.countdownTimer = null;
    $('retry-now').hidden = s !== 'offline';
    if (s === 'signed-out') {
      banner.hidden = true;
      return;
    }
    banner.hidden = false;
    const text = $('connection-text');
    if (s === 'live') {
      text.textContent = 'Live';
    } else if (s === 'connecting') {
      text.textContent = 'Connecting…';
    } else if (s === 'reconnecting') {
      text.textContent = 'Offline — reconnecting…';
    } else if (s === 'offline') {
      const tick = () => {
        const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
        text.textContent = secs > 0 ? 'Offline — reconnecting in ' + secs + ' s' : 'Offline — reconnecting…';
      };
      tick();
      state.countdownTimer = setInterval(tick, 1000);
    }
  }

  // ---------- sign in / out ----------
  function signIn(token) {
    const claims = decodeClaims(token);
    if (!claims || expired(claims)) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignedOut(claims ? 'Your session has ended. Please sign in again.' : null);
      return;
    }
    state.token = token;
    state.claims = claims;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (typeof claims.exp === 'number') {
      const ms = claims.exp * 1000 - Date.now();
      // setTimeout holds 32-bit delays only; a far expiry is re-checked on focus anyway.
      if (ms < 2147483647) {
        state.expiryTimer = setTimeout(() => signOut(SESSION_ENDED), ms);
      }
    }
    showSignedIn();
    startClient();
    loadCues();
  }

  function signOut(notice) {
    state.generation += 1;
    clearTimeout(state.expiryTimer);
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    state.token = null;
    state.claims = null;
    sessionStorage.removeItem(TOKEN_KEY);
    const client = state.client;
    state.client = null;
    if (client) client.close();
    state.rooms = new Map();
    state.users = new Map();
    state.cues = [];
    clearTimeout(cuesRetry);
    pendingLines.length = 0;
    state.deleted = new Set();
    state.loaded = false;
    roomEls.clear();
    $('rooms').replaceChildren();
    webcams.stop();
    showSignedOut(notice);
  }

  function showSignedOut(notice) {
    setConn('signed-out');
    $('signed-in-view').hidden = true;
    $('signed-out-view').hidden = false;
    $('who').hidden = true;
    const n = $('signed-out-notice');
    n.textContent = notice || '';
    n.hidden = !notice;
    document.body.dataset.auth = 'signed-out';
  }

  function showSignedIn() {
    const c = state.claims;
    $('signed-out-view').hidden = true;
    $('signed-in-view').hidden = false;
    $('who').hidden = false;
    $('signed-out-notice').hidden = true;
    $('who-name').textContent = c.name || c.username || c.sub || 'Signed in';
    fillAvatar($('who-avatar'), c.sub, c.name || c.sub, avatarUrlFromClaim(c));
    $('rooms-loading').hidden = false;
    $('rooms-empty').hidden = true;
    document.body.dataset.auth = 'signed-in';
  }

  function avatarUrlFromClaim(c) {
    const a = c.avatar;
    if (!a || typeof a !== 'string') return null;
    if (/^https:\/\//.test(a) || /^data:image\//.test(a)) return a;
    if (/^[a-z0-9_]+$/i.test(a) && c.sub) {
      return 'https://cdn.discordapp.com/avatars/' + encodeURIComponent(c.sub) + '/' + a + '.png?size=64';
    }
    return null;
  }

  // ---------- rendering ----------
  const roomEls = new Map(); // channelId -> {li, title, meta, members, actions, msg}

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function initials(name) {
    const words = String(name || '').split(/[^\p{L}\p{N}]+/u).filter(Boolean);
    if (!words.length) return '?';
    const first = Array.from(words[0]);
    const s = words.length > 1 ? first[0] + Array.from(words[1])[0] : first.slice(0, 2).join('');
    return s.toUpperCase();
  }

  // A stable palette index 0..11 from an id (FNV-1a, so neighbouring ids differ).
  function palette(id) {
    let h = 0x811c9dc5;
    for (const ch of String(id)) { h ^= ch.charCodeAt(0); h = Math.imul(h, 0x01000193) >>> 0; }
    return h % 12;
  }

  function fillAvatar(node, id, name, url) {
    node.replaceChildren();
    node.dataset.hue = String(palette(id || name)); // 12 palettes in CSS
    if (url && (/^https:\/\/cdn\.discordapp\.com\//.test(url) || /^data:image\//.test(url) || url.startsWith('/'))) {
      const img = document.createElement('img');
      img.alt = '';
      img.src = url;
      img.loading = 'lazy';
      img.referrerPolicy = 'no-referrer';
      img.addEventListener('error', () => { node.replaceChildren(el('span', 'initials', initials(name))); });
      node.appendChild(img);
    } else {
      node.appendChild(el('span', 'initials', initials(name)));
    }
  }

  function renderAll() {
    const list = $('rooms');
    for (const id of Array.from(roomEls.keys())) {
      if (!state.rooms.has(id)) { roomEls.get(id).li.remove(); roomEls.delete(id); }
    }
    for (const room of state.rooms.values()) renderRoom(room);
    // Keep DOM order = model order.
    let i = 0;
    for (const room of state.rooms.values()) {
      const li = roomEls.get(room.channelId).li;
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      i++;
    }
    renderSummary();
  }

  function renderRooms(ids) {
    for (const id of ids) {
      const room = state.rooms.get(id);
      if (room) {
        const isNew = !roomEls.has(id);
        renderRoom(room);
        if (isNew) $('rooms').appendChild(roomEls.get(id).li);
      } else if (roomEls.has(id)) {
        roomEls.get(id).li.remove();
        roomEls.delete(id);
      }
    }
    renderSummary();
  }

  function renderSummary() {
    $('rooms-loading').hidden = state.loaded;
    $('rooms-empty').hidden = !state.loaded || state.rooms.size > 0;
    $('rooms-count').textContent = state.loaded ? '(' + state.rooms.size + ')' : '';
  }

  function makeRoomEl(room) {
    const id = room.channelId;
    const li = el('li', 'card room');
    li.dataset.testid = 'room-' + id;
    li.setAttribute('data-testid', 'room-' + id);
    li.dataset.channelId = id;
    const titleId = 'room-title-' + id;
    li.setAttribute('aria-labelledby', titleId);

    const head = el('div', 'room-head');
    const title = el('h3', 'room-name');
    title.id = titleId;
    title.setAttribute('data-testid', 'room-name-' + id);
    const meta = el('span', 'room-meta');
    meta.setAttribute('data-testid', 'room-count-' + id);
    head.append(title, meta);

    const members = el('ul', 'members');
    members.setAttribute('aria-label', 'People in this room');
    members.setAttribute('data-testid', 'members-' + id);

    const actions = el('div', 'room-actions');
    const botToggle = button('Bot', 'btn btn-small bot-toggle', 'bot-menu-' + id);
    botToggle.setAttribute('aria-expanded', 'false');
    botToggle.setAttribute('aria-controls', 'bot-' + id);
    botToggle.setAttribute('aria-label', 'Bot actions');
    const end = button('End room', 'btn btn-small btn-danger-outline', 'end-room-' + id);
    actions.append(botToggle, end);
    const botButtons = el('div', 'bot-buttons');
    botButtons.id = 'bot-' + id;
    botButtons.hidden = true;
    const botJoin = button('Bot joins', 'btn btn-small', 'bot-join-' + id);
    const botLeave = button('Bot leaves', 'btn btn-small', 'bot-leave-' + id);
    const cueButtons = el('span', 'cue-buttons');
    cueButtons.setAttribute('role', 'group');
    cueButtons.setAttribute('aria-label', 'Play a cue');
    cueButtons.setAttribute('data-testid', 'cues-' + id);
    botButtons.append(botJoin, botLeave, cueButtons);
    botToggle.addEventListener('click', () => {
      const open = botButtons.hidden;
      botButtons.hidden = !open;
      botToggle.setAttribute('aria-expanded', String(open));
    });

    const confirm = el('div', 'confirm');
    confirm.hidden = true;
    confirm.setAttribute('role', 'group');
    const confirmText = el('span', 'confirm-text', 'End this room for everyone?');
    const yes = button('Yes, end it', 'btn btn-small btn-danger', 'confirm-end-' + id);
    const no = button('Keep', 'btn btn-small', 'cancel-end-' + id);
    confirm.append(confirmText, yes, no);

    const msg = el('p', 'room-msg');
    msg.setAttribute('role', 'status');
    msg.setAttribute('data-testid', 'room-msg-' + id);
    msg.hidden = true;

    li.append(head, members, actions, botButtons, confirm, msg);
    const refs = { id, li, title, meta, members, actions, confirm, msg, cueButtons };
    renderCueButtons(refs);

    end.addEventListener('click', () => {
      actions.hidden = true;
      confirm.hidden = false;
      confirmText.textContent = 'End “' + (state.rooms.get(id) || room).name + '” for everyone?';
      no.focus();
    });
    no.addEventListener('click', () => {
      confirm.hidden = true;
      actions.hidden = false;
      end.focus();
    });
    yes.addEventListener('click', () => runAction(refs, [yes, no], async () => {
      await call(() => state.client.endRoom(id));
      // The room.deleted event removes it everywhere; remove it here now too.
      handleLocalDelete(id);
      return null;
    }, () => { confirm.hidden = true; actions.hidden = false; }));
    botJoin.addEventListener('click', () => runAction(refs, [botJoin], async () => {
      await call(() => state.client.botJoin(id));
      return 'The bot is joining.';
    }));
    botLeave.addEventListener('click', () => runAction(refs, [botLeave], async () => {
      await call(() => state.client.botLeave(id));
      return 'The bot is leaving.';
    }));
    return refs;
  }

  // One "Play …" button per cue the hub lists.
  function renderCueButtons(refs) {
    const buttons = state.cues.map((c) => {
      const label = typeof c.label === 'string' && c.label ? c.label : c.name;
      const b = button('▶ ' + label, 'btn btn-small', 'cue-' + c.name + '-' + refs.id);
      b.setAttribute('aria-label', 'Play ' + label.toLowerCase());
      b.addEventListener('click', () => runAction(refs, [b], async () => {
        await call(() => state.client.playCue(refs.id, c.name));
        return label + ' played.';
      }));
      return b;
    });
    refs.cueButtons.replaceChildren(...buttons);
  }

  function button(text, cls, testid) {
    const b = el('button', cls, text);
    b.type = 'button';
    b.setAttribute('data-testid', testid);
    return b;
  }

  async function runAction(refs, buttons, fn, onError) {
    for (const b of buttons) b.disabled = true;
    refs.msg.hidden = true;
    refs.msg.classList.remove('error');
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

  function showRoomMsg(refs, text, isError) {
    refs.msg.textContent = text;
    refs.msg.classList.toggle('error', !!isError);
    refs.msg.hidden = false;
    clearTimeout(refs.msgTimer);
    if (!isError) refs.msgTimer = setTimeout(() => { refs.msg.hidden = true; }, 4000);
  }

  function handleLocalDelete(id) {
    const room = state.rooms.get(id);
    state.deleted.add(id);
    if (room) {
      state.rooms.delete(id);
      announce('Room ' + room.name + ' ended.');
      renderRooms([id]);
    }
  }

  function renderRoom(room) {
    let refs = roomEls.get(room.channelId);
    if (!refs) { refs = makeRoomEl(room); roomEls.set(room.channelId, refs); }
    refs.title.textContent = room.name;
    const n = room.members.size;
    refs.meta.textContent = room.userLimit > 0 ? n + ' / ' + room.userLimit : n + (n === 1 ? ' person' : ' people');
    refs.meta.setAttribute('aria-label', room.userLimit > 0
      ? n + ' of ' + room.userLimit + ' seats taken'
      : n + (n === 1 ? ' person' : ' people') + ', no seat limit');
    refs.li.classList.toggle('full', room.userLimit > 0 && n >= room.userLimit);

    const items = [];
    for (const m of room.members.values()) items.push(memberEl(m));
    if (!items.length) {
      const empty = el('li', 'member-empty', 'Nobody here yet');
      items.push(empty);
    }
    refs.members.replaceChildren(...items);
    webcams.room(room.channelId, refs.li,
      Array.from(room.members.values(), (m) => ({ userId: m.userId, name: displayName(m.userId), speaking: !!m.speaking })));
  }

  function memberEl(m) {
    const u = state.users.get(m.userId) || {};
    const name = displayName(m.userId);
    const li = el('li', 'member');
    li.setAttribute('data-testid', 'member-' + m.userId);
    li.dataset.userId = m.userId;
    if (m.speaking) { li.classList.add('speaking'); li.dataset.speaking = 'true'; }
    const av = el('span', 'avatar');
    av.setAttribute('aria-hidden', 'true');
    fillAvatar(av, m.userId, name, u.avatarUrl);
    const nm = el('span', 'member-name', name);
    if (!u.name) nm.classList.add('mono');
    if (state.claims && state.claims.sub === m.userId) {
      nm.append(el('span', 'you', ' (you)'));
    }
    li.append(av, nm);

    const badges = el('span', 'badges');
    const add = (cls, label, title) => {
      const b = el('span', 'badge ' + cls, label);
      b.title = title;
      b.setAttribute('data-testid', 'badge-' + cls);
      badges.appendChild(b);
    };
    if (m.speaking) add('speaking', 'speaking', 'Speaking');
    if (m.mute) add('mute', 'server muted', 'Muted by a moderator');
    else if (m.selfMute) add('mute', 'muted', 'Muted');
    if (m.deaf) add('deaf', 'server deafened', 'Deafened by a moderator');
    else if (m.selfDeaf) add('deaf', 'deafened', 'Deafened');
    if (m.selfVideo) add('video', 'camera', 'Camera on');
    if (m.selfStream) add('stream', 'live', 'Streaming');
    if (m.suppress) add('suppress', 'suppressed', 'Suppressed');
    if (badges.childNodes.length) li.appendChild(badges);
    return li;
  }

  function showRoomsError(message) {
    $('rooms-loading').hidden = false;
    $('rooms-loading').textContent = 'Could not load rooms: ' + message + ' Retrying…';
  }

  // polite announcements for screen readers, one line at a time
  let announceTimer = null;
  function announce(text) {
    const a = $('announcer');
    const line = el('p', null, text);
    a.appendChild(line);
    while (a.childNodes.length > 5) a.removeChild(a.firstChild);
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => a.replaceChildren(), 10000);
  }

  // ---------- create ----------
  function setupCreateForm() {
    const form = $('create-room-form');
    const err = $('create-error');
    const submit = $('create-submit');
    const nameIn = $('room-name');
    const limitIn = $('room-limit');
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      nameIn.removeAttribute('aria-invalid');
      limitIn.removeAttribute('aria-invalid');
      const name = nameIn.value.trim();
      const limitText = limitIn.value.trim();
      const limit = limitText === '' ? 4 : Number(limitText);
      if (!Number.isInteger(limit) || limit < 0 || limit > 99) {
        showFormError('Seats must be a whole number from 0 to 99.', limitIn);
        return;
      }
      if (name.length > 100) {
        showFormError('The name can be at most 100 characters.', nameIn);
        return;
      }
      const body = { userLimit: limit };
      if (name) body.name = name;
      submit.disabled = true;
      submit.textContent = 'Creating…';
      try {
        // One Idempotency-Key per submit, made by the package.
        const res = await call(() => state.client.createRoom(body));
        if (res && res.channelId) {
          const cid = String(res.channelId);
          if (!state.deleted.has(cid) && !state.rooms.has(cid)) {
            state.rooms.set(cid, { channelId: cid, name: res.name || name || 'Room', parentId: null, userLimit: limit, members: new Map() });
            renderRooms([cid]);
            announce('Room ' + (res.name || name) + ' created.');
          }
          nameIn.value = '';
        }
      } catch (ex) {
        if (ex.status !== 401) {
          const field = ex.code === 'VALIDATION_FAILED' && /limit/i.test(ex.message) ? limitIn
            : ex.code === 'VALIDATION_FAILED' && /name/i.test(ex.message) ? nameIn : null;
          showFormError(ex.message, field);
        }
      } finally {
        submit.disabled = false;
        submit.textContent = 'Create room';
      }
    });
    function showFormError(text, field) {
      err.textContent = text;
      err.hidden = false;
      if (field) { field.setAttribute('aria-invalid', 'true'); field.focus(); }
    }
  }

  // ---------- boot ----------
  function boot() {
    $('sign-out').addEventListener('click', () => signOut(null));
    $('retry-now').addEventListener('click', reconnectNow);
    window.addEventListener('online', reconnectNow);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible') return;
      if (state.claims && expired(state.claims)) signOut(SESSION_ENDED);
      else reconnectNow();
    });
    setupCreateForm();
    // A login that lands while the page is already open (same document, new hash).
    window.addEventListener('hashchange', () => {
      const { token, error } = takeToken();
      if (token) {
        if (state.token) signOut(null);
        signIn(token);
      } else if (error && !state.token) {
        showSignedOut('Sign-in did not complete: ' + error);
      }
    });

    const { token, error } = takeToken();
    if (token) {
      signIn(token);
    } else {
      const saved = sessionStorage.getItem(TOKEN_KEY);
      if (saved) signIn(saved);
      else showSignedOut(error ? 'Sign-in did not complete: ' + error : null);
    }
  }

  // Test hook: lets an end-to-end test cut the live socket as a network drop would.
  // It exposes no token and no model, only the ability to drop the connection.
  window.covenLobby = Object.freeze({
    dropConnection() { if (state.client) state.client.reconnect(); },
    lastSeq() { return state.client ? state.client.lastSeq ?? null : null; },
  });

  boot();
}
