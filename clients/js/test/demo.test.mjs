// The package against a real `coven demo` (docs/clients.md): typed events and live
// rooms while simulated players move, through a slow network, across dropped
// connections (resumed, no snapshot reload) and across the hub killed and
// restarted (a new stream: re-sign-in, snapshot, then events); the rooms API with
// typed errors and idempotent creates; a bad token stops the client. Every frame
// and body the client receives is validated against the checked-in JSON Schemas,
// and the OpenAPI document the hub serves by a real OpenAPI 3.1 validator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import Ajv2020 from 'ajv/dist/2020.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import { connect, GatewayAuthError, HubApiError, HubApi } from '../dist/index.js';
import { Demo, Proxy, ROOT, STEP_MS, freePort, roomsShape, until } from './support.mjs';

const schema = (name) => JSON.parse(readFileSync(path.join(ROOT, 'schema', name), 'utf8'));
const ajv = new Ajv2020({ strict: false, allErrors: true });
const validEvent = ajv.compile(schema('server-message.schema.json'));
const validSnapshot = ajv.compile(schema('snapshot.schema.json'));
function assertValid(validate, value, what) {
  assert.ok(validate(value), `${what} does not match its schema: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
}

let demo;
let proxy;
let port;

before(async () => {
  port = await freePort();
  demo = await Demo.start(port);
  proxy = await Proxy.start(port);
});

after(async () => {
  if (proxy) await proxy.close();
  if (demo) await demo.stop();
});

/** A connected client through the proxy, recording what it emits. */
function client(getToken) {
  const seen = { events: [], snapshots: [], states: [], errors: [], tokenCalls: [] };
  const c = connect({
    url: proxy.url,
    getToken: async (req) => { seen.tokenCalls.push(req); return getToken(req); },
    WebSocket,
    backoff: { baseMs: 200, maxMs: 2000 },
  });
  c.on('event', (frame) => { assertValid(validEvent, frame, 'an event frame'); seen.events.push(frame); });
  c.on('snapshot', (s) => { assertValid(validSnapshot, s, 'the snapshot'); seen.snapshots.push(s); });
  c.on('state', (s) => seen.states.push(s));
  c.on('error', (e) => seen.errors.push(e));
  return { c, seen };
}

async function hubRooms(token) {
  const res = await fetch(demo.hubUrl + '/api/rooms', { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return (await res.json()).rooms;
}

test('the served OpenAPI document is valid OpenAPI 3.1 and the checked-in one', async () => {
  const served = await (await fetch(demo.hubUrl + '/api/openapi.json')).json();
  assert.deepEqual(served, schema('openapi.json'));
  const validator = new Validator();
  const result = await validator.validate(served);
  assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
  assert.equal(validator.version, '3.1');
});

test('typed events and live rooms survive moves, a slow network, drops and a hub restart', async (t) => {
  let token = await demo.signIn();
  const { c, seen } = client(async ({ refresh }) => {
    if (refresh) token = await demo.signIn();
    return token;
  });
  try {
    await c.whenLive();
    assert.equal(seen.snapshots.length, 1, 'the first connect loads the snapshot');
    assert.deepEqual(roomsShape(c.rooms), roomsShape(await hubRooms(token)));

    let world = await demo.sim('GET', '/_sim/state');
    const user = (name) => String(world.users.find((u) => u.username === name).id);
    const voice = world.channels.filter((ch) => ch.type === 2).map((ch) => String(ch.id));
    assert.ok(voice.length >= 2, 'two seeded voice channels');
    const [a, b] = voice;
    const carol = user('carol');
    const dave = user('dave');
    for (const u of [carol, dave]) {
      if (world.voice_states.some((v) => String(v.user_id) === u)) await demo.sim('POST', `/_sim/users/${u}/leave`);
    }
    const inRoom = (cid, uid) => c.rooms.find((r) => r.channelId === cid)?.members.find((m) => m.userId === uid);

    await t.test('typed events: a join, a flag change, a move, a leave', async () => {
      const joined = [];
      const off = c.on('voice.joined', (payload, frame) => {
        assert.equal(typeof payload.userId, 'string');
        assert.equal(frame.event, 'voice.joined');
        joined.push(payload);
      });
      await demo.sim('POST', `/_sim/users/${carol}/join`, { channel_id: a });
      await until('carol in room a', () => inRoom(a, carol));
      await demo.sim('POST', `/_sim/users/${carol}/flags`, { self_mute: true });
      await until('carol muted', () => inRoom(a, carol)?.selfMute === true);
      await demo.sim('POST', `/_sim/users/${carol}/move`, { channel_id: b });
      await until('carol moved to b', () => inRoom(b, carol) && !inRoom(a, carol));
      await demo.sim('POST', `/_sim/users/${carol}/leave`);
      await until('carol gone', () => !inRoom(b, carol));
      off();
      assert.deepEqual(joined.map((p) => p.channelId), [a, b]);
      const seqs = seen.events.map((e) => e.seq);
      assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i), 'every seq once, in order');
      assert.equal(await until('carol to have a name', () => c.rooms.length && true), true);
    });

    await t.test('a slow network: 150 ms each way', async () => {
      proxy.latencyMs = 150;
      proxy.cut(); // new connections through the slow path
      await until('live again', () => c.state === 'live');
      await demo.sim('POST', `/_sim/users/${dave}/join`, { channel_id: a });
      await until('dave in room a, slowly', () => inRoom(a, dave));
      const created = await c.createRoom({ name: 'Slow table', userLimit: 3 });
      await until('the created room, live', () => c.rooms.find((r) => r.channelId === created.channelId && r.userLimit === 3));
      await c.endRoom(created.channelId);
      await until('the ended room gone', () => !c.rooms.some((r) => r.channelId === created.channelId));
      proxy.latencyMs = 0;
    });

    await t.test('a dropped connection resumes with lastSeq: nothing missed, no snapshot reload', async () => {
      const snapshots = seen.snapshots.length;
      const before = c.lastSeq;
      const connections = proxy.connections;
      proxy.down = true;
      proxy.cut();
      await until('the client to notice', () => c.state === 'reconnecting');
      // Events happen while the client is away …
      await demo.sim('POST', `/_sim/users/${dave}/flags`, { self_deaf: true });
      await demo.sim('POST', `/_sim/users/${carol}/join`, { channel_id: b });
      await until('the hub to have both', async () => {
        const rooms = await hubRooms(token);
        const member = (cid, uid) => rooms.find((r) => r.channelId === cid)?.members.find((m) => m.userId === uid);
        return member(a, dave)?.selfDeaf && member(b, carol);
      });
      assert.ok(!inRoom(b, carol), 'the client cannot know yet');
      // … and reach it by resume once the network is back.
      proxy.down = false;
      await until('both changes, after the reconnect', () => inRoom(a, dave)?.selfDeaf && inRoom(b, carol));
      assert.ok(proxy.connections > connections, 'it reconnected');
      assert.equal(seen.snapshots.length, snapshots, 'resumed: no snapshot reload');
      assert.ok(c.lastSeq > before);
      assert.deepEqual(roomsShape(c.rooms), roomsShape(await hubRooms(token)));
    });

    await t.test('the hub killed and restarted: re-sign-in, snapshot, live again', async () => {
      const snapshots = seen.snapshots.length;
      const tokenRefreshes = seen.tokenCalls.filter((r) => r.refresh).length;
      // Like a balancer, send no one to the new hub until it is ready.
      proxy.down = true;
      await demo.kill();
      await until('the client to notice', () => c.state === 'reconnecting');
      demo = await Demo.start(port);
      proxy.down = false;
      await until('live on the new hub', () => c.state === 'live' && seen.snapshots.length > snapshots, 60000);
      // The new hub has new signing keys: the old token was refused once and a fresh one asked for.
      assert.ok(seen.tokenCalls.filter((r) => r.refresh).length > tokenRefreshes, 'getToken({refresh:true}) after the restart');
      assert.deepEqual(roomsShape(c.rooms), roomsShape(await hubRooms(token)));
      world = await demo.sim('GET', '/_sim/state');
      const erin = String(world.users.find((u) => u.username === 'erin').id);
      const table = String(world.channels.filter((ch) => ch.type === 2)[0].id);
      if (world.voice_states.some((v) => String(v.user_id) === erin)) await demo.sim('POST', `/_sim/users/${erin}/leave`);
      await demo.sim('POST', `/_sim/users/${erin}/join`, { channel_id: table });
      await until('events flow after the restart', () => inRoom(table, erin));
      assert.deepEqual(seen.errors.filter((e) => e instanceof GatewayAuthError), []);
    });
  } finally {
    c.close();
  }
});

test('the rooms API: idempotent creates, typed errors with codes and Retry-After', async () => {
  const token = await demo.signIn();
  const api = new HubApi({ url: demo.hubUrl, getToken: () => token });
  const key = `test-${Date.now()}`;
  const first = await api.createRoom({ name: 'Once only' }, { idempotencyKey: key });
  const again = await api.createRoom({ name: 'Once only' }, { idempotencyKey: key });
  assert.equal(again.channelId, first.channelId, 'the same key creates one room');
  const other = await api.createRoom({ name: 'Once only' });
  assert.notEqual(other.channelId, first.channelId, 'each call gets its own key');
  for (const id of [first.channelId, other.channelId]) assert.deepEqual(await api.endRoom(id), { ok: true });

  const refused = await api.createRoom({ userLimit: 100 }).catch((e) => e);
  assert.ok(refused instanceof HubApiError);
  assert.equal(refused.status, 400);
  assert.equal(refused.code, 'VALIDATION_FAILED');
  assert.equal(refused.details?.field, 'userLimit');
  const badId = await api.endRoom('0').catch((e) => e);
  assert.equal(badId.code, 'VALIDATION_FAILED');
  const badCue = await api.playCue('1', 'no_such_cue').catch((e) => e);
  assert.equal(badCue.status, 400);
  assert.match(badCue.message, /turn_chime/);
  const cues = await api.cues();
  assert.ok(cues.cues.some((cue) => cue.name === 'turn_chime'));
  const anonymous = await new HubApi({ url: demo.hubUrl, getToken: () => 'not-a-jwt' }).rooms().catch((e) => e);
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.code, 'UNAUTHORIZED');

  // A rate limit answers 429 with Retry-After, surfaced on the error.
  const limited = await until('a 429 from the per-user rooms API limit', async () => {
    const e = await api.botJoin('1').catch((err) => err);
    return e.status === 429 ? e : null;
  }, STEP_MS, 0);
  assert.equal(limited.code, 'RATE_LIMITED');
  assert.ok(Number.isInteger(limited.retryAfter) && limited.retryAfter >= 0, `Retry-After ${limited.retryAfter}`);
});

test('a bad token stops the client with a clear error after one retry', async () => {
  const { c, seen } = client(() => 'not-a-jwt');
  const error = await c.whenLive().then(() => null, (e) => e);
  assert.ok(error instanceof GatewayAuthError, String(error));
  assert.equal(error.code, 'UNAUTHORIZED');
  assert.equal(c.state, 'stopped');
  assert.deepEqual(seen.tokenCalls, [{ refresh: false }, { refresh: true }]);
});
