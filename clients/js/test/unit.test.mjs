// Unit tests of the package without a hub: the live-rooms rules (docs/lobby.md
// "Live"), full-jitter backoff, and the socket's token handling against a scripted
// fake hub (ws + http on loopback): an expired token (4401 after auth.ok) asks
// getToken for a fresh one and resumes with lastSeq; a gap in seq reloads the snapshot; a
// name refresh whose snapshot predates the join asks again after the hub's cache window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { LiveRooms, backoffDelay, connect, loginUrl, takeToken } from '../dist/index.js';
import { until } from './support.mjs';

const flags = { selfMute: false, selfDeaf: false, mute: false, deaf: false, selfVideo: false, selfStream: false, suppress: false };
const snapshot = (seq, rooms) => ({ guildId: '1', seq, rooms });
const room = (channelId, members = []) => ({ channelId, name: `Table ${channelId}`, parentId: null, userLimit: 4, members });
const member = (userId, name = null) => ({ userId, name, avatarUrl: null, ...flags });

test('live rooms follow the lobby rules', () => {
  const live = new LiveRooms();
  live.reset(snapshot(10, [room('2', [member('7', 'carol')]), room('3')]));
  const first = live.list();
  assert.equal(live.list(), first, 'the same list until a change');
  assert.equal(live.apply('voice.joined', { guildId: '1', channelId: '2', userId: '7' }), false, 'a join of someone there changes nothing');
  assert.equal(live.apply('voice.left', { guildId: '1', channelId: '3', userId: '7' }), false, 'a leave of someone absent changes nothing');
  assert.equal(live.apply('voice.joined', { guildId: '1', channelId: '3', userId: '7' }), true);
  assert.notEqual(live.list(), first);
  assert.deepEqual(live.list().map((r) => r.members.map((m) => m.userId)), [[], ['7']], 'a join moves the user');
  assert.equal(live.list()[1].members[0].name, 'carol', 'the name is kept across the move');
  live.apply('voice.state', { guildId: '1', channelId: '2', userId: '7', ...flags, selfMute: true });
  assert.deepEqual(live.list().map((r) => r.members.map((m) => `${m.userId}${m.selfMute ? 'm' : ''}`)), [['7m'], []], 'a state in another room moves the user');
  live.apply('voice.speaking', { guildId: '1', channelId: '2', userId: '7', speaking: true });
  assert.equal(live.list()[0].members[0].speaking, true);
  assert.equal(live.apply('stage.opened', { channelId: '2' }), false, 'unknown events are ignored');
  live.apply('room.created', { channelId: '10', guildId: '1', name: 'New', parentId: null, userLimit: 0 });
  assert.deepEqual(live.list().map((r) => r.channelId), ['2', '3', '10'], 'ordered by id as numbers');
  live.apply('room.deleted', { channelId: '2', guildId: '1' });
  assert.deepEqual(live.list().map((r) => r.channelId), ['3', '10']);
  assert.ok(Object.isFrozen(live.list()) && Object.isFrozen(live.list()[0]));
});

test('backoff is exponential with full jitter, capped', () => {
  assert.equal(backoffDelay(0, { random: () => 0 }), 0);
  assert.equal(backoffDelay(0, { random: () => 0.999999 }), 499);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(50, { random: () => 0.999999 }), 9999, 'capped at 10 s');
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(2);
    assert.ok(d >= 0 && d < 2000);
  }
});

/** A scripted hub: `onAuth(message, socket, n)` decides what each connection gets. */
async function fakeHub(onAuth, snapshots) {
  let snapshotCalls = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/api/rooms') {
      const snap = snapshots[Math.min(snapshotCalls++, snapshots.length - 1)];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(snap));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const wss = new WebSocketServer({ server, path: '/api/ws' });
  const auths = [];
  wss.on('connection', (socket) => {
    socket.once('message', (data) => {
      const message = JSON.parse(String(data));
      auths.push(message);
      onAuth(message, socket, auths.length);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    auths,
    snapshotCalls: () => snapshotCalls,
    close: () => { for (const c of wss.clients) c.terminate(); wss.close(); server.close(); },
  };
}

const ack = (extra = {}) => JSON.stringify({ v: 1, type: 'ack', event: 'auth.ok', guildId: '1', ts: 1, ...extra });
const joined = (seq, userId, channelId = '2') => JSON.stringify({ v: 1, type: 'event', event: 'voice.joined', payload: { guildId: '1', channelId, userId }, ts: 1, seq });

test('an expired token: getToken({refresh:true}), then resume with lastSeq', async () => {
  const hub = await fakeHub((message, socket, n) => {
    if (n === 1) {
      socket.send(ack());
      setTimeout(() => socket.send(joined(101, '7')), 50);
      setTimeout(() => {
        socket.send(JSON.stringify({ v: 1, type: 'error', error: { code: 'UNAUTHORIZED', message: 'token expired' }, ts: 2 }));
        socket.close(4401, 'token expired');
      }, 150);
    } else {
      socket.send(ack({ resumed: true }));
      socket.send(joined(102, '8'));
    }
  }, [snapshot(100, [room('2')])]);
  const calls = [];
  let refreshed = false;
  const c = connect({
    url: hub.url,
    WebSocket,
    getToken: (req) => {
      calls.push(req);
      refreshed ||= req.refresh;
      return refreshed ? 'fresh' : 'old';
    },
  });
  try {
    await until('both joins', () => c.rooms[0]?.members.length === 2, 5000);
    assert.equal(calls.filter((r) => r.refresh).length, 1, 'one refresh, after the 4401');
    assert.deepEqual(hub.auths, [{ type: 'auth', token: 'old' }, { type: 'auth', token: 'fresh', lastSeq: 101 }]);
    assert.equal(hub.snapshotCalls(), 1, 'resumed: no second snapshot');
    assert.equal(c.state, 'live');
  } finally {
    c.close();
    hub.close();
  }
});

test('a gap in seq, and resumed:false, reload the snapshot; events in flight are kept', async () => {
  const hub = await fakeHub((message, socket, n) => {
    if (n === 1) {
      socket.send(ack());
      setTimeout(() => socket.send(joined(105, '9')), 50); // 101..104 never came
      setTimeout(() => socket.close(1001), 150);
    } else {
      socket.send(ack({ resumed: false }));
    }
  }, [snapshot(100, [room('2')]), snapshot(105, [room('2', [member('9', 'ivy')])]), snapshot(200, [room('2', [member('5')])])]);
  const snapshots = [];
  const c = connect({ url: hub.url, WebSocket, getToken: () => 't', backoff: { baseMs: 10 } });
  c.on('snapshot', (s) => snapshots.push(s.seq));
  try {
    await until('three snapshots', () => snapshots.length === 3, 5000);
    assert.deepEqual(snapshots, [100, 105, 200]);
    await until('the last snapshot applied', () => c.lastSeq === 200 && c.state === 'live', 5000);
    assert.deepEqual(c.rooms[0].members.map((m) => m.userId), ['5']);
    assert.equal(hub.auths[1].lastSeq, 105);
  } finally {
    c.close();
    hub.close();
  }
});

test('a name refresh asks again when the snapshot (cached up to 1 s by the hub) predates the join', async () => {
  const hub = await fakeHub((message, socket) => {
    socket.send(ack());
    setTimeout(() => socket.send(joined(101, '7')), 50);
  }, [snapshot(100, [room('2')]), snapshot(100, [room('2')]), snapshot(101, [room('2', [member('7', 'ivy')])])]);
  const c = connect({ url: hub.url, WebSocket, getToken: () => 't' });
  try {
    await until('the joiner named from a snapshot as new as the join', () => c.rooms[0]?.members[0]?.name === 'ivy', 5000);
    assert.equal(hub.snapshotCalls(), 3, 'the first load, the stale refresh, the one after the cache window');
  } finally {
    c.close();
    hub.close();
  }
});

test('no auth.ok within the deadline: the client gives the connection up and tries again', async () => {
  const closes = [];
  const hub = await fakeHub((message, socket, n) => {
    socket.on('close', (code) => closes.push(code));
    if (n >= 2) socket.send(ack());
    // the first connection never gets an answer
  }, [snapshot(100, [room('2')])]);
  const c = connect({ url: hub.url, WebSocket, getToken: () => 't', authTimeoutMs: 200, backoff: { baseMs: 10 } });
  try {
    await c.whenLive();
    assert.equal(hub.auths.length, 2);
    assert.deepEqual(closes, [4000], 'the silent connection was closed by the client');
  } finally {
    c.close();
    hub.close();
  }
});

test('createRoom retries a lost answer with the same Idempotency-Key; a new call gets a new key', async () => {
  const keys = [];
  const server = http.createServer((req, res) => {
    keys.push(req.headers['idempotency-key']);
    if (keys.length === 1) {
      req.socket.destroy(); // the answer is lost
      return;
    }
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ channelId: '77', name: 'Table', guildId: '1' }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { HubApi } = await import('../dist/index.js');
  const api = new HubApi({ url: `http://127.0.0.1:${server.address().port}`, getToken: () => 't' });
  try {
    assert.deepEqual(await api.createRoom({ name: 'Table' }), { channelId: '77', name: 'Table', guildId: '1' });
    assert.equal(keys.length, 2);
    assert.match(keys[0], /^[0-9a-f]{32}$/);
    assert.equal(keys[1], keys[0], 'the retry carries the same key');
    await api.createRoom({ name: 'Table' });
    assert.notEqual(keys[2], keys[0], 'another call, another key');
  } finally {
    server.close();
  }
});

test('the sign-in hand-off takes the token out of the address bar', () => {
  const replaced = [];
  const win = (hash) => ({
    location: { hash, pathname: '/lobby', search: '?x=1' },
    history: { replaceState: (_d, _u, url) => replaced.push(url) },
  });
  assert.deepEqual(takeToken(win('#token=abc.def.ghi')), { token: 'abc.def.ghi', error: null });
  assert.deepEqual(replaced, ['/lobby?x=1']);
  assert.deepEqual(takeToken(win('#error=access_denied')), { token: null, error: 'access_denied' });
  assert.deepEqual(takeToken(win('')), { token: null, error: null });
  assert.equal(replaced.length, 2, 'nothing to remove, nothing replaced');
  assert.equal(loginUrl('https://hub.example.com/'), 'https://hub.example.com/auth/login');
});
