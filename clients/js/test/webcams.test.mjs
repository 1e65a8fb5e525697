// Unit tests of the webcam mesh (src/webcams.ts, docs/spec.md §12) in Node, without a
// browser: a scripted client (its live rooms, its messages, `send` refused until the
// `auth.ok` listeners have run, as GatewayClient does) and a recording fake
// RTCPeerConnection. Peers follow presence: a hello from a member makes a peer (the
// smaller id offers), a leave drops it at once, a move keeps the camera on, a leave with
// no join turns it off; signals for another page or another channel are ignored; the
// hub's FORBIDDEN is reported; a new socket's auth.ok greets the table again.
// The browser behaviour (video, frames) is tested in e2e/webcams*.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Webcams } from '../dist/index.js';
import { until } from './support.mjs';

const ME = '100';
const flags = { selfMute: false, selfDeaf: false, mute: false, deaf: false, selfVideo: false, selfStream: false, suppress: false, speaking: false };
const room = (channelId, ids) => ({ channelId, name: channelId, parentId: null, userLimit: 0, members: ids.map((userId) => ({ userId, name: null, avatarUrl: null, ...flags })) });

/** A scripted GatewayClient: rooms, messages in, sends recorded. */
class FakeClient {
  constructor(rooms) {
    this.rooms = rooms;
    this.sent = [];
    this.authed = true;
    this.listeners = { message: new Set(), rooms: new Set() };
  }
  on(name, cb) { this.listeners[name].add(cb); return () => this.listeners[name].delete(cb); }
  send(message) { if (!this.authed) return false; this.sent.push(message); return true; }
  setRooms(rooms) { this.rooms = rooms; for (const cb of this.listeners.rooms) cb(rooms); }
  message(msg) { for (const cb of this.listeners.message) cb({ v: 1, ...msg }); }
  /** A new socket's auth.ok: like GatewayClient, `send` works only after the listeners ran. */
  authOk(iceServers = []) {
    this.authed = false;
    this.message({ type: 'ack', event: 'auth.ok', guildId: '1', iceServers, ts: 0 });
    this.authed = true;
  }
  signals(kind) { return this.sent.filter((m) => m.type === 'rtc.signal' && (!kind || m.data.kind === kind)); }
}

const closed = [];
const made = [];
class FakePeerConnection {
  constructor(config) {
    made.push(this);
    this.config = config;
    this.connectionState = 'new';
    this.remoteDescription = null;
    this.localDescription = null;
    this.tracks = [];
    this.candidates = [];
    this.handlers = {};
  }
  addTrack(track) { this.tracks.push(track); }
  addEventListener(name, cb) { (this.handlers[name] ||= []).push(cb); }
  fire(name, event) { for (const cb of this.handlers[name] || []) cb(event); }
  async createOffer() { return { type: 'offer', sdp: 'offer-sdp' }; }
  async createAnswer() { return { type: 'answer', sdp: 'answer-sdp' }; }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) { this.remoteDescription = d; }
  async addIceCandidate(c) { this.candidates.push(c); }
  async getStats() { return new Map(); }
  close() { this.connectionState = 'closed'; closed.push(this); }
}
globalThis.RTCPeerConnection = FakePeerConnection;

function camera() {
  const track = { stopped: false, stop() { this.stopped = true; } };
  const stream = { getTracks: () => [track], track };
  return { stream, mediaDevices: { getUserMedia: async () => stream } };
}

function mesh(rooms, options = {}) {
  const client = new FakeClient(rooms);
  const cam = camera();
  const cams = new Webcams({ client, me: ME, mediaDevices: cam.mediaDevices, leaveGraceMs: 50, ...options });
  return { client, cams, cam };
}

const signal = (from, channelId, data) => ({ type: 'rtc.signal', from, channelId, data, ts: 0 });

test('a hello from a member makes a peer; the smaller id offers; answers and candidates follow', async () => {
  const { client, cams } = mesh([room('7', [ME, '200', '50'])]);
  assert.equal(cams.room, '7');
  await cams.cameraOn();
  assert.deepEqual(client.signals('hello').map((m) => [m.to, m.channelId]), [['200', '7'], ['50', '7']], 'camera on greets every other member');
  const sid = client.signals('hello')[0].data.sid;

  client.message(signal('200', '7', { kind: 'hello', sid: 'b' }));
  assert.deepEqual(cams.peers().map((p) => p.userId), ['200']);
  const reply = client.signals('hello').at(-1);
  assert.deepEqual([reply.to, reply.data.reply, reply.data.to], ['200', true, 'b'], 'a hello is answered to that page');
  await until('the offer (100 < 200 offers)', () => client.signals('offer').length === 1);
  assert.equal(client.signals('offer')[0].data.to, 'b');

  client.message(signal('50', '7', { kind: 'hello', sid: 'c', reply: true }));
  await new Promise((r) => setImmediate(r));
  assert.equal(client.signals('offer').length, 1, '50 < 100: the other side offers');
  assert.equal(client.signals('hello').filter((m) => m.to === '50').length, 1, 'a reply is not answered');
  client.message(signal('50', '7', { kind: 'candidate', sid: 'c', to: sid, candidate: { candidate: 'early' } }));
  client.message(signal('50', '7', { kind: 'offer', sid: 'c', to: sid, sdp: 'their-offer' }));
  await until('the answer', () => client.signals('answer').length === 1);
  const pc = closed.length; // none closed so far
  assert.equal(pc, 0);

  // Another page of user 50 (another sid) and another channel are not this mesh's.
  client.message(signal('50', '7', { kind: 'offer', sid: 'c', to: 'another-tab', sdp: 'x' }));
  client.message(signal('50', '8', { kind: 'bye', sid: 'c' }));
  await new Promise((r) => setImmediate(r));
  assert.equal(client.signals('answer').length, 1);
  assert.deepEqual(cams.peers().map((p) => p.userId), ['200', '50']);
  cams.close();
});

test('presence decides: a leave drops the peer at once, a move keeps the camera, a leave alone turns it off', async () => {
  closed.length = 0;
  const { client, cams, cam } = mesh([room('7', [ME, '200']), room('8', ['300'])]);
  await cams.cameraOn();
  client.message(signal('200', '7', { kind: 'hello', sid: 'b' }));
  const streams = [];
  cams.on('stream', (userId, stream) => streams.push([userId, stream && 'stream']));
  const peer = closed.length;
  assert.equal(peer, 0);
  // The remote track arrives, then 200 leaves the channel.
  const pc = made.at(-1);
  pc.fire('track', { streams: [{ id: 's' }], track: {} });
  assert.deepEqual(streams, [['200', 'stream']]);
  assert.equal(cams.remoteStreams().size, 1);
  client.setRooms([room('7', [ME]), room('8', ['300', '200'])]);
  assert.deepEqual(cams.peers(), []);
  assert.equal(closed.length, 1, 'the peer connection is closed');
  assert.deepEqual(streams.at(-1), ['200', null]);

  // A move (leave, then join of the other table): the camera stays on and greets the new table.
  client.setRooms([room('7', []), room('8', ['300', '200'])]);
  assert.equal(cams.room, null);
  client.setRooms([room('7', []), room('8', ['300', '200', ME])]);
  assert.equal(cams.room, '8');
  assert.deepEqual(client.signals('hello').filter((m) => m.channelId === '8').map((m) => m.to), ['300', '200']);
  await new Promise((r) => setTimeout(r, 80));
  assert.ok(cams.localStream, 'the camera stayed on across the move');

  // Leaving with no join: the camera goes off after the grace period.
  client.setRooms([room('7', []), room('8', ['300', '200'])]);
  await until('the camera to go off', () => cams.localStream === null);
  assert.equal(cam.stream.track.stopped, true);
  // Outside a channel the camera does not open.
  await cams.cameraOn();
  assert.equal(cams.localStream, null);
  cams.close();
});

test("the hub's FORBIDDEN is reported; a new socket's auth.ok greets again once it may send; bye drops", async () => {
  const { client, cams } = mesh([room('7', [ME, '200'])]);
  const errors = [];
  cams.on('error', (e) => errors.push(e.code));
  client.message({ type: 'error', error: { code: 'FORBIDDEN', message: 'not in that voice channel' } });
  assert.deepEqual(errors, ['FORBIDDEN']);
  assert.equal(cams.lastError.code, 'FORBIDDEN');

  await cams.cameraOn();
  const before = client.signals('hello').length;
  client.authOk([{ urls: ['turn:127.0.0.1:3478'], username: '1:100', credential: 'c' }]);
  await until('a greeting after auth.ok', () => client.signals('hello').length === before + 1);
  assert.deepEqual(cams.iceServers.map((s) => s.urls[0]), ['turn:127.0.0.1:3478']);
  client.message(signal('200', '7', { kind: 'hello', sid: 'b' }));
  const pc = made.at(-1);
  assert.equal(pc.config.iceServers[0].username, '1:100', "peers use auth.ok's ICE servers");
  client.message(signal('200', '7', { kind: 'bye', sid: 'other-tab' }));
  assert.equal(cams.peers().length, 1, "another page's bye is not this peer's");
  client.message(signal('200', '7', { kind: 'bye', sid: 'b' }));
  assert.equal(cams.peers().length, 0);
  cams.cameraOff();
  assert.equal(client.signals('bye').length, 0, 'no peer left to tell');
  cams.close();
});
