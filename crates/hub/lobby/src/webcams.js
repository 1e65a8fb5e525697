// Spell Coven lobby: the webcams' UI (docs/spec.md §12, docs/lobby.md "Webcams at the
// table"). The mesh itself (camera, peers per table member authorised by presence,
// signalling) is the package's `Webcams` (clients/js/src/webcams.ts), bundled with this
// file into ../app.js; this file only draws it on the room cards: the camera button, a
// tile per player, "Join in Discord", and in `coven demo` "Sit at this table".
// app.js calls `start` at sign-in, `room` for every room card it renders, `stop` at
// sign-out. The page's card-recognition hooks and test hooks are at the end.
import { MAX_PLAYERS, Webcams, frames } from '../../../../clients/js/src/index.ts';

let mesh = null; // the package's Webcams while signed in
let client = null;
let token = null;
const rooms = new Map(); // channelId -> {card, members: [{userId, name, speaking}]}
const tileCache = new Map(); // userId -> li, reused so playback never restarts
let demo = null; // null unknown, true/false once asked
let demoAsked = false;
let offMessage = null;

/** Signed in: a mesh following `gatewayClient` as user `me`. */
export function start(gatewayClient, me, jwt) {
  stop();
  client = gatewayClient;
  token = jwt;
  mesh = new Webcams({ client, me });
  mesh.on('change', renderAll);
  mesh.on('error', (err) => { if (err.code === 'FORBIDDEN' || err.code === 'RATE_LIMITED') console.warn('webcams:', err.message); });
  // auth.ok brings the guild's id for "Join in Discord" (the client has it just after).
  offMessage = client.on('message', (msg) => { if (msg.type === 'ack') queueMicrotask(renderAll); });
}

/** Signed out: camera off, every peer closed. */
export function stop() {
  if (mesh) mesh.close();
  if (offMessage) offMessage();
  offMessage = null;
  mesh = null;
  client = null;
  token = null;
  rooms.clear();
  tileCache.clear();
}

/** app.js rendered the card of a room with these members (names as the page shows them). */
export function room(channelId, card, members) {
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
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, testid, onClick) {
  const b = el('button', 'btn btn-small', text);
  b.type = 'button';
  b.setAttribute('data-testid', testid);
  b.addEventListener('click', onClick);
  return b;
}

/** The webcams section of a room card, made once. */
function ui(channelId) {
  const r = rooms.get(channelId);
  if (!r || !r.card) return null;
  let box = r.card.querySelector(':scope > .webcams');
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
    r.card.appendChild(box);
  }
  return { box, bar: box.children[0], note: box.children[1], tiles: box.children[2] };
}

function showNote(refs, text) {
  refs.note.textContent = text || '';
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
    bar.push(camera
      ? button('Turn off camera', 'camera-toggle-' + channelId, () => mesh && mesh.cameraOff())
      : button('Turn on camera', 'camera-toggle-' + channelId, () => mesh && mesh.cameraOn()));
  } else {
    const join = el('a', 'btn btn-small', 'Join in Discord');
    join.href = 'https://discord.com/channels/' + encodeURIComponent((client && client.guildId) || '') + '/' + encodeURIComponent(channelId);
    join.target = '_blank';
    join.rel = 'noopener noreferrer';
    join.setAttribute('data-testid', 'join-discord-' + channelId);
    bar.push(join);
    if (demo) bar.push(button('Sit at this table', 'sit-' + channelId, () => sit(channelId)));
    else if (!demoAsked) askDemo(channelId);
  }
  refs.bar.replaceChildren(...bar);

  const error = mesh.lastError;
  if (here && !camera && error && error.code === 'CAMERA') {
    showNote(refs, 'The camera could not be opened: ' + error.message);
  } else if (here && mesh.overCapacity) {
    showNote(refs, 'Video works for tables of up to ' + MAX_PLAYERS + ' players; this room has ' + r.members.length + '. The first ' + MAX_PLAYERS + ' cameras connect.');
  } else if (refs.note.textContent.startsWith('Video works') || refs.note.textContent.startsWith('The camera')) {
    showNote(refs, '');
  }

  const tiles = [];
  if (here && camera) {
    tiles.push(tile(mesh.userId, camera, r, true, null));
    for (const peer of mesh.peers()) tiles.push(tile(peer.userId, peer.stream, r, false, peer.connectionState));
  }
  refs.tiles.replaceChildren(...tiles);
  refs.box.hidden = false;
}

/** A tile: the player's `<video>` and name. */
function tile(userId, stream, r, self, connectionState) {
  let li = tileCache.get(userId);
  if (!li) {
    li = el('li', 'tile');
    const video = el('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // voice is Discord's; a tile only shows the board
    li.append(video, el('span', 'tile-name'));
    tileCache.set(userId, li);
  }
  li.setAttribute('data-testid', 'tile-' + userId);
  li.dataset.userId = userId;
  const video = li.firstChild;
  if (video.srcObject !== (stream || null)) video.srcObject = stream || null;
  const member = r.members.find((m) => m.userId === userId) || {};
  li.lastChild.textContent = (member.name || userId) + (self ? ' (you)' : '');
  li.classList.toggle('speaking', !!member.speaking);
  li.dataset.speaking = member.speaking ? 'true' : 'false';
  if (connectionState) li.dataset.state = connectionState;
  else delete li.dataset.state;
  return li;
}

async function askDemo(channelId) {
  demoAsked = true;
  try {
    const res = await fetch('/api/demo/sit/' + encodeURIComponent(channelId), { cache: 'no-store' });
    demo = res.ok;
  } catch (_) { demo = false; }
  if (demo) renderAll();
}

async function sit(channelId) {
  const refs = ui(channelId);
  try {
    const res = await fetch('/api/demo/sit/' + encodeURIComponent(channelId), {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store',
    });
    if (!res.ok && refs) showNote(refs, 'Could not sit at this table (' + res.status + ').');
    // The move arrives as voice.left / voice.joined like any other.
  } catch (_) {
    if (refs) showNote(refs, 'The hub could not be reached.');
  }
}

// ---------- card recognition and test hooks ----------
// For other code of the page and the end-to-end tests (e2e/webcams*.test.mjs): no
// token, no TURN credential, only what the page shows.

/** The `framesDecoded` of the video coming from `userId` (0 until frames arrive). */
async function framesDecoded(userId) {
  const stats = mesh && await mesh.stats(userId);
  let n = 0;
  if (stats) stats.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
  return n;
}

/** The candidate types of the selected pair with `userId` (e.g. ['relay','relay']). */
async function selectedCandidates(userId) {
  const stats = mesh && await mesh.stats(userId);
  if (!stats) return null;
  let pair = null;
  stats.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (!pair) return null;
  return [stats.get(pair.localCandidateId).candidateType, stats.get(pair.remoteCandidateId).candidateType];
}

/** Frame samplers started by `sampleFrames`, by id: counts only, every frame closed at once. */
const samplers = new Map();
let samplerIds = 0;

window.covenWebcams = Object.freeze({
  /** Every remote player's camera now (user id → MediaStream), for card recognition. */
  remoteStreams() { return mesh ? mesh.remoteStreams() : new Map(); },
  /** The package's frame helper (docs/clients.md): frames(stream, {fps, as}, onFrame) → stop. */
  frames,
  state() {
    return {
      room: mesh ? mesh.room : null,
      camera: !!(mesh && mesh.localStream),
      peers: mesh ? mesh.peers().map((p) => ({ userId: p.userId, connectionState: p.connectionState, hasStream: !!p.stream })) : [],
    };
  },
  framesDecoded,
  selectedCandidates,
  /** ICE candidate errors (e.g. 401 from a TURN server refusing a credential) with `userId`. */
  candidateErrors(userId) { return mesh ? mesh.candidateErrors(userId) : []; },
  lastError() { const e = mesh && mesh.lastError; return e ? { code: e.code, message: e.message } : null; },
  /** auth.ok's iceServers, without credentials. */
  iceServers() { return mesh ? mesh.iceServers.map((s) => ({ urls: s.urls, username: s.username })) : []; },
  /** Sends a raw message on the socket (to prove the hub refuses what it must). */
  sendRaw(message) { if (client) client.send(message); },
  /** For the next peers: the ICE transport policy ('all' or 'relay'), and the ICE servers
   *  (null: auth.ok's; [] host candidates only), optionally with another TURN credential. */
  configureIce({ policy, servers, credential }) {
    if (!mesh) return;
    let list = servers === null || servers === undefined ? null : servers;
    if (credential) list = mesh.iceServers.map((s) => (s.credential ? Object.assign({}, s, { credential }) : s));
    mesh.configureIce({ policy: policy || 'all', servers: list });
  },
  /** Starts counting frames of `userId`'s camera (`self`: this page's) through `frames`;
   *  returns a sampler id, or null when there is no such stream. */
  sampleFrames(userId, fps, as) {
    const stream = userId === 'self' ? mesh && mesh.localStream : mesh && mesh.remoteStreams().get(userId);
    if (!stream) return null;
    const id = ++samplerIds;
    const s = { count: 0, sizes: new Set(), kinds: new Set(), first: 0, last: 0, stop: null };
    s.stop = frames(stream, { fps, as }, ({ frame, width, height, time }) => {
      s.count += 1;
      if (!s.first) s.first = time;
      s.last = time;
      s.sizes.add(width + 'x' + height);
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
  stopSampling(id) { const s = samplers.get(id); if (s) s.stop(); },
});
