// Spell Coven lobby: webcams at the table (docs/spec.md §12, docs/lobby.md "Webcams").
//
// Each player's camera shows their board. Discord lets neither bots nor web pages see
// its video, so the browsers send video to each other over WebRTC (a full mesh of at
// most 6 players), and the hub relays only their signalling (`rtc.signal`), only
// between members of the same voice channel: Discord's voice presence decides who
// sees whom. This module knows nothing of the socket itself: app.js tells it about
// every message and every room it renders (DOM events `coven:message`, `coven:room`,
// `coven:signed-out`) and hands it a `send` function.
//
// Signalling `data` (opaque to the hub): {kind: 'hello'|'offer'|'answer'|'candidate'|'bye',
// sid, to?, sdp?, candidate?}. `sid` is a random id per page, so that a second tab of
// the same user neither answers for this one nor confuses it; `to` names the page a
// message is for. Of two pages, the one whose user id is smaller makes the offer.
//
// Card recognition: `remoteStreams()`, `onRemoteStream(cb)` and `frames(stream, opts, cb)`
// below give other code every remote player's camera, frame by frame (docs/lobby.md).
'use strict';

const MAX_PLAYERS = 6;
const SID = randomId();

const state = {
  me: null, // my user id
  token: null,
  guildId: null,
  send: null, // (message) => void, the live socket's
  iceServers: [],
  authIceServers: [], // as auth.ok gave them
  iceTransportPolicy: 'all',
  rooms: new Map(), // channelId -> {card, members: [{userId, name, speaking}]}
  room: null, // the channel I am in, per presence
  camera: null, // my MediaStream while the camera is on
  peers: new Map(), // userId -> Peer
  lastError: null,
  demo: null, // null unknown, true/false once asked
  demoAsked: false,
};
const streamListeners = new Set();

function randomId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function smaller(a, b) {
  try { return BigInt(a) < BigInt(b); } catch (_) { return a < b; }
}

// ---------- signalling ----------
function signal(to, data) {
  if (!state.send || !state.room) return;
  state.send({ type: 'rtc.signal', to, channelId: state.room, data: Object.assign({ sid: SID }, data) });
}

function onSignal(msg) {
  const from = String(msg.from);
  const data = msg.data || {};
  if (msg.channelId !== state.room || !state.camera || from === state.me) return;
  if (data.to && data.to !== SID) return; // for another tab of mine
  if (data.kind === 'bye') { dropPeer(from); return; }
  if (data.kind === 'hello') {
    let peer = state.peers.get(from);
    if (peer && peer.sid !== data.sid) { dropPeer(from); peer = null; }
    if (!peer) {
      if (state.peers.size >= MAX_PLAYERS - 1) { renderRoomUi(state.room); return; }
      peer = newPeer(from, data.sid);
      if (!data.reply) signal(from, { kind: 'hello', reply: true, to: data.sid });
      if (smaller(state.me, from)) makeOffer(peer);
    }
    return;
  }
  const peer = state.peers.get(from);
  if (!peer || peer.sid !== data.sid) return;
  if (data.kind === 'offer') acceptOffer(peer, data.sdp);
  else if (data.kind === 'answer') acceptAnswer(peer, data.sdp);
  else if (data.kind === 'candidate') addCandidate(peer, data.candidate);
}

// ---------- peers ----------
function newPeer(userId, sid) {
  const pc = new RTCPeerConnection({ iceServers: state.iceServers, iceTransportPolicy: state.iceTransportPolicy });
  const peer = { userId, sid, pc, stream: null, pending: [], tile: null, candidateErrors: [] };
  pc.addEventListener('icecandidateerror', (e) => { peer.candidateErrors.push(e.errorCode); });
  for (const track of state.camera.getTracks()) pc.addTrack(track, state.camera);
  pc.addEventListener('icecandidate', (e) => {
    if (e.candidate) signal(userId, { kind: 'candidate', to: sid, candidate: e.candidate.toJSON() });
  });
  pc.addEventListener('track', (e) => {
    peer.stream = e.streams[0] || new MediaStream([e.track]);
    renderRoomUi(state.room);
    for (const cb of streamListeners) safe(cb, userId, peer.stream);
  });
  pc.addEventListener('connectionstatechange', () => {
    if (peer.tile) peer.tile.dataset.state = pc.connectionState;
  });
  state.peers.set(userId, peer);
  renderRoomUi(state.room);
  return peer;
}

async function makeOffer(peer) {
  try {
    await peer.pc.setLocalDescription(await peer.pc.createOffer());
    signal(peer.userId, { kind: 'offer', to: peer.sid, sdp: peer.pc.localDescription.sdp });
  } catch (err) { console.warn('webcams: offer failed', err); }
}

async function acceptOffer(peer, sdp) {
  try {
    await peer.pc.setRemoteDescription({ type: 'offer', sdp });
    await flushCandidates(peer);
    await peer.pc.setLocalDescription(await peer.pc.createAnswer());
    signal(peer.userId, { kind: 'answer', to: peer.sid, sdp: peer.pc.localDescription.sdp });
  } catch (err) { console.warn('webcams: answer failed', err); }
}

async function acceptAnswer(peer, sdp) {
  try {
    await peer.pc.setRemoteDescription({ type: 'answer', sdp });
    await flushCandidates(peer);
  } catch (err) { console.warn('webcams: bad answer', err); }
}

async function addCandidate(peer, candidate) {
  if (!candidate) return;
  if (!peer.pc.remoteDescription) { peer.pending.push(candidate); return; }
  try { await peer.pc.addIceCandidate(candidate); } catch (err) { console.warn('webcams: bad candidate', err); }
}

async function flushCandidates(peer) {
  const pending = peer.pending.splice(0);
  for (const c of pending) await addCandidate(peer, c);
}

function dropPeer(userId) {
  const peer = state.peers.get(userId);
  if (!peer) return;
  state.peers.delete(userId);
  try { peer.pc.close(); } catch (_) { /* closing anyway */ }
  if (peer.stream) for (const cb of streamListeners) safe(cb, userId, null);
  renderRoomUi(state.room);
}

function dropAllPeers() {
  for (const userId of Array.from(state.peers.keys())) dropPeer(userId);
}

// ---------- camera ----------
async function cameraOn() {
  if (state.camera || !state.room) return;
  try {
    state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    state.lastError = { code: 'CAMERA', message: String(err && err.message || err) };
    showNote(state.room, 'The camera could not be opened: ' + state.lastError.message);
    return;
  }
  greet();
  renderRoomUi(state.room);
}

function cameraOff() {
  if (!state.camera) return;
  for (const peer of state.peers.values()) signal(peer.userId, { kind: 'bye', to: peer.sid });
  dropAllPeers();
  for (const t of state.camera.getTracks()) t.stop();
  state.camera = null;
  renderRoomUi(state.room);
}

/** Tells every other member of my room that my camera is on. */
function greet() {
  const room = state.rooms.get(state.room);
  if (!room || !state.camera) return;
  for (const m of room.members) if (m.userId !== state.me) signal(m.userId, { kind: 'hello' });
}

// ---------- presence ----------
function onRoom(detail) {
  state.me = detail.me;
  state.token = detail.token;
  const members = detail.members || [];
  state.rooms.set(detail.channelId, { card: detail.card, members });
  const mine = members.some((m) => m.userId === state.me);
  if (mine && state.room !== detail.channelId) enterRoom(detail.channelId);
  else if (!mine && state.room === detail.channelId) enterRoom(currentRoom());
  if (state.room === detail.channelId) {
    // Whoever left the channel leaves the mesh.
    const here = new Set(members.map((m) => m.userId));
    for (const userId of Array.from(state.peers.keys())) if (!here.has(userId)) dropPeer(userId);
  }
  renderRoomUi(detail.channelId);
}

function currentRoom() {
  for (const [id, room] of state.rooms) if (room.members.some((m) => m.userId === state.me)) return id;
  return null;
}

/** Presence moved me (Discord, or "Sit at this table"): a new mesh, or none. */
function enterRoom(channelId) {
  const before = state.room;
  if (before === channelId) return;
  dropAllPeers();
  state.room = channelId;
  // A move is a leave then a join: the camera stays on across it, and goes off
  // when no join follows.
  if (!channelId && state.camera) setTimeout(() => { if (!state.room) cameraOff(); }, 2000);
  if (before) renderRoomUi(before);
  if (channelId) { greet(); renderRoomUi(channelId); }
}

function onMessage(detail) {
  const msg = detail.msg;
  state.send = detail.send;
  if (msg.type === 'ack' && msg.event === 'auth.ok') {
    state.guildId = msg.guildId;
    state.authIceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    state.iceServers = state.authIceServers;
    // A new socket (a reconnect): peers already connected stay; newcomers greet us.
    greet();
    for (const id of state.rooms.keys()) renderRoomUi(id); // now with the guild's id for "Join in Discord"
  } else if (msg.type === 'rtc.signal') {
    onSignal(msg);
  } else if (msg.type === 'error' && msg.error) {
    state.lastError = msg.error;
    if (msg.error.code === 'FORBIDDEN' || msg.error.code === 'RATE_LIMITED') console.warn('webcams:', msg.error.message);
  } else if (msg.type === 'event' && msg.event === 'room.deleted' && msg.payload) {
    const id = msg.payload.channelId;
    state.rooms.delete(id);
    if (state.room === id) enterRoom(null);
  }
}

function onSignedOut() {
  cameraOff();
  dropAllPeers();
  state.room = null;
  state.rooms.clear();
  state.send = null;
  state.token = null;
}

// ---------- UI ----------
function ui(channelId) {
  const room = state.rooms.get(channelId);
  if (!room || !room.card) return null;
  let box = room.card.querySelector(':scope > .webcams');
  if (!box) {
    box = el('section', 'webcams');
    box.setAttribute('aria-label', 'Webcams');
    box.setAttribute('data-testid', 'webcams-' + channelId);
    const bar = el('div', 'webcams-bar');
    const note = el('p', 'webcams-note');
    note.setAttribute('data-testid', 'webcams-note-' + channelId);
    note.setAttribute('role', 'status');
    note.hidden = true;
    const tiles = el('ul', 'tiles');
    tiles.setAttribute('data-testid', 'tiles-' + channelId);
    box.append(bar, note, tiles);
    room.card.appendChild(box);
  }
  return { box, bar: box.children[0], note: box.children[1], tiles: box.children[2] };
}

function showNote(channelId, text) {
  const refs = ui(channelId);
  if (!refs) return;
  refs.note.textContent = text || '';
  refs.note.hidden = !text;
}

function button(text, testid, onClick) {
  const b = el('button', 'btn btn-small', text);
  b.type = 'button';
  b.setAttribute('data-testid', testid);
  b.addEventListener('click', onClick);
  return b;
}

function renderRoomUi(channelId) {
  if (!channelId) return;
  const refs = ui(channelId);
  if (!refs) return;
  const room = state.rooms.get(channelId);
  const here = state.room === channelId;
  const bar = [];
  if (here) {
    bar.push(state.camera
      ? button('Turn off camera', 'camera-toggle-' + channelId, cameraOff)
      : button('Turn on camera', 'camera-toggle-' + channelId, cameraOn));
  } else {
    const join = el('a', 'btn btn-small', 'Join in Discord');
    join.href = 'https://discord.com/channels/' + encodeURIComponent(state.guildId || '') + '/' + encodeURIComponent(channelId);
    join.target = '_blank';
    join.rel = 'noopener noreferrer';
    join.setAttribute('data-testid', 'join-discord-' + channelId);
    bar.push(join);
    if (state.demo) bar.push(button('Sit at this table', 'sit-' + channelId, () => sit(channelId)));
    else if (!state.demoAsked) askDemo(channelId);
  }
  refs.bar.replaceChildren(...bar);

  const players = room.members.length;
  if (here && players > MAX_PLAYERS) {
    showNote(channelId, 'Video works for tables of up to ' + MAX_PLAYERS + ' players; this room has ' + players + '. The first ' + MAX_PLAYERS + ' cameras connect.');
  } else if (refs.note.textContent.startsWith('Video works')) {
    showNote(channelId, '');
  }

  const tiles = [];
  if (here && state.camera) {
    tiles.push(tile(channelId, state.me, state.camera, room, true));
    for (const peer of state.peers.values()) tiles.push(tile(channelId, peer.userId, peer.stream, room, false));
  }
  refs.tiles.replaceChildren(...tiles);
  refs.box.hidden = false;
}

/** A tile: the player's `<video>` and name; reused across renders so playback never restarts. */
const tileCache = new Map(); // userId -> li
function tile(channelId, userId, stream, room, self) {
  let li = tileCache.get(userId);
  if (!li) {
    li = el('li', 'tile');
    const video = el('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // voice is Discord's; a tile only shows the board
    const label = el('span', 'tile-name');
    li.append(video, label);
    tileCache.set(userId, li);
  }
  li.setAttribute('data-testid', 'tile-' + userId);
  li.dataset.userId = userId;
  const video = li.firstChild;
  if (video.srcObject !== (stream || null)) video.srcObject = stream || null;
  const member = room.members.find((m) => m.userId === userId) || {};
  li.lastChild.textContent = (member.name || userId) + (self ? ' (you)' : '');
  li.classList.toggle('speaking', !!member.speaking);
  li.dataset.speaking = member.speaking ? 'true' : 'false';
  const peer = state.peers.get(userId);
  if (peer) li.dataset.state = peer.pc.connectionState;
  else delete li.dataset.state;
  return li;
}

async function askDemo(channelId) {
  state.demoAsked = true;
  try {
    const res = await fetch('/api/demo/sit/' + encodeURIComponent(channelId), { cache: 'no-store' });
    state.demo = res.ok;
  } catch (_) { state.demo = false; }
  if (state.demo) for (const id of state.rooms.keys()) renderRoomUi(id);
}

async function sit(channelId) {
  try {
    const res = await fetch('/api/demo/sit/' + encodeURIComponent(channelId), {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + state.token, Accept: 'application/json' },
      cache: 'no-store',
    });
    if (!res.ok) showNote(channelId, 'Could not sit at this table (' + res.status + ').');
    // The move arrives as voice.left / voice.joined like any other.
  } catch (_) {
    showNote(channelId, 'The hub could not be reached.');
  }
}

function safe(fn, ...args) {
  try { fn(...args); } catch (err) { console.warn('webcams: listener failed', err); }
}

document.addEventListener('coven:message', (e) => onMessage(e.detail));
document.addEventListener('coven:room', (e) => onRoom(e.detail));
document.addEventListener('coven:signed-out', onSignedOut);

// ---------- card recognition ----------

/** Every remote player's camera now: a Map of user id → MediaStream. */
export function remoteStreams() {
  const out = new Map();
  for (const peer of state.peers.values()) if (peer.stream) out.set(peer.userId, peer.stream);
  return out;
}

/** Calls `cb(userId, stream)` when a player's camera arrives and `cb(userId, null)` when
 *  it goes; returns a function that stops the calls. */
export function onRemoteStream(cb) {
  streamListeners.add(cb);
  return () => streamListeners.delete(cb);
}

/**
 * Delivers frames of `stream` to `cb` at most `fps` times a second, as a `VideoFrame`
 * (`as: 'videoframe'`, the default where WebCodecs exists; call `frame.close()` when done)
 * or an `ImageBitmap` (`as: 'bitmap'`). Paced by `requestVideoFrameCallback`, so no frame
 * is delivered twice. Returns a function that stops it.
 */
export function frames(stream, opts, cb) {
  const fps = Math.max(0.1, (opts && opts.fps) || 2);
  const as = (opts && opts.as) || (typeof VideoFrame === 'function' ? 'videoframe' : 'bitmap');
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  let stopped = false;
  let last = 0;
  const each = async (now) => {
    if (stopped) return;
    if (now - last >= 1000 / fps && video.videoWidth > 0) {
      last = now;
      try {
        const frame = as === 'videoframe' ? new VideoFrame(video, { timestamp: Math.round(now * 1000) }) : await createImageBitmap(video);
        if (!stopped) cb(frame); else if (frame.close) frame.close();
      } catch (err) { console.warn('webcams: frame failed', err); }
    }
    schedule();
  };
  const schedule = () => {
    if (stopped) return;
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(each);
    else setTimeout(() => each(performance.now()), 1000 / fps);
  };
  video.play().catch(() => { /* muted autoplay is allowed; a paused video retries on frames */ });
  schedule();
  return () => { stopped = true; video.srcObject = null; };
}

// ---------- test hooks ----------
// For the end-to-end test (e2e/webcams.test.mjs): no token, only what the page shows.
window.covenWebcams = Object.freeze({
  state() {
    return {
      room: state.room,
      camera: !!state.camera,
      peers: Array.from(state.peers.values(), (p) => ({ userId: p.userId, connectionState: p.pc.connectionState, hasStream: !!p.stream })),
    };
  },
  /** The `framesDecoded` of the video coming from `userId` (0 until frames arrive). */
  async framesDecoded(userId) {
    const peer = state.peers.get(userId);
    if (!peer) return 0;
    let n = 0;
    (await peer.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
    return n;
  },
  /** The candidate types of the selected pair with `userId` (e.g. ['relay','relay']). */
  async selectedCandidates(userId) {
    const peer = state.peers.get(userId);
    if (!peer) return null;
    const stats = await peer.pc.getStats();
    let pair = null;
    stats.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
    if (!pair) return null;
    return [stats.get(pair.localCandidateId).candidateType, stats.get(pair.remoteCandidateId).candidateType];
  },
  /** ICE candidate errors (e.g. 401 from a TURN server refusing a credential) with `userId`. */
  candidateErrors(userId) { const p = state.peers.get(userId); return p ? p.candidateErrors.slice() : []; },
  lastError() { return state.lastError; },
  /** auth.ok's iceServers, without credentials. */
  iceServers() { return state.authIceServers.map((s) => ({ urls: s.urls, username: s.username })); },
  /** Sends a raw message on the socket (to prove the hub refuses what it must). */
  sendRaw(message) { if (state.send) state.send(message); },
  /** For the next peers: the ICE transport policy ('all' or 'relay'), and the ICE servers
   *  (null: auth.ok's; [] host candidates only), optionally with another TURN credential. */
  configureIce({ policy, servers, credential }) {
    state.iceTransportPolicy = policy || 'all';
    state.iceServers = servers === null || servers === undefined ? state.authIceServers : servers;
    if (credential) state.iceServers = state.iceServers.map((s) => (s.credential ? Object.assign({}, s, { credential }) : s));
  },
});
