// End-to-end test of the webcams across two hubs (docs/spec.md §12, docs/scaling.md)
// and of the package's frame helper for card recognition (clients/js, `frames`), in
// headless Chromium with fake cameras.
//
// Starts its own redis-server, `coven sim --fast` (Discord), `coven worker` (delivering to
// hub 1) and two `coven hub` processes sharing the Redis (`REDIS_URL`), each asking the
// worker for the voice view (`WORKER_ENDPOINT`). Three browser contexts signed in as
// three simulated users, each on a hub: carol (hub 1) and dave (hub 2) at Table 1, erin
// (hub 1) at Table 2. Each step waits on a condition with a timeout:
//   1. carol and dave, on different hubs, see each other's video (videoWidth > 0,
//      framesDecoded growing): their signalling crossed hubs through Redis;
//   2. erin, at Table 2, signals into Table 1 to dave on the other hub: FORBIDDEN, and
//      no tile of theirs;
//   3. card recognition: `frames` delivers carol's own camera as VideoFrames and dave's
//      remote stream as ImageBitmaps at about the chosen rate (counted, with a generous
//      window), with a non-zero size, and nothing more once stopped; with
//      `requestVideoFrameCallback` removed it still delivers (the fallback);
//   4. dave moves to Table 2 (simulator control API): carol's and dave's peers are torn
//      down, and dave (hub 2) and erin (hub 1) connect across the hubs.
//
// Run: ./e2e/run.sh webcams-hubs.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Processes, freePort, launchWithCameras, seatPlayers, simCall, tearDown, until as untilWithin } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const REDIS = process.env.REDIS_SERVER_BIN || 'redis-server';
const STEP_MS = Number(process.env.E2E_STEP_TIMEOUT_MS || 20000);
const until = (what, fn, timeout = STEP_MS, interval) => untilWithin(what, fn, timeout, interval);
const START_MS = Number(process.env.E2E_START_TIMEOUT_MS || 120000);
const HUB_SECRET = 'e2e-hub-secret-' + Math.random().toString(16).slice(2);
const ISSUER = 'http://coven-webcams-hubs.test';

const procs = new Processes(ROOT);
let browser = null;
let stateDir = null;
let simUrl = null;
const hubs = []; // [{url}] hub 1 and hub 2
const sim = (method, p, body) => simCall(simUrl, method, p, body);
const start = (...args) => procs.start(...args);
const noneExited = () => procs.noneExited();

const tid = (id) => `[data-testid="${id}"]`;

/** The value after `label:` in what `coven sim` printed (docs/simulator.md). */
function printed(label) {
  const m = procs.output('sim').match(new RegExp(`^${label}:\\s+(\\S+)`, 'm'));
  return m && m[1];
}

before(async () => {
  const bin = path.resolve(process.env.COVEN_BIN || path.join(ROOT, 'target/debug/coven'));
  assert.ok(existsSync(bin), `coven binary not found at ${bin} (set COVEN_BIN)`);
  stateDir = mkdtempSync(path.join(tmpdir(), 'coven-e2e-webcams-hubs-'));
  const base = { PATH: process.env.PATH, HOME: process.env.HOME || stateDir, LOG_LEVEL: process.env.LOG_LEVEL || 'WARN' };

  const redisPort = await freePort();
  mkdirSync(path.join(stateDir, 'redis'));
  start('redis', REDIS, ['--bind', '127.0.0.1', '--port', String(redisPort), '--dir', path.join(stateDir, 'redis'),
    '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], base);

  // The simulator prints its endpoints line by line (docs/simulator.md).
  start('sim', bin, ['sim', '--port', '0', '--fast'], base);
  await until('`coven sim` to print its endpoints', () => { noneExited(); return printed('limits'); }, START_MS, 100);
  simUrl = printed('api url');
  const world = await sim('GET', '/_sim/state');
  const shared = {
    ...base,
    PRIMARY_GUILD_ID: printed('guild id'),
    HUB_SECRET,
    DISCORD_BOT_TOKEN: printed('bot token'),
    DISCORD_API_URL: simUrl,
    DISCORD_GATEWAY_URL: printed('gateway url'),
  };
  assert.ok(shared.PRIMARY_GUILD_ID && shared.DISCORD_BOT_TOKEN && shared.DISCORD_GATEWAY_URL, procs.log);
  assert.ok(world.users.length >= 3, JSON.stringify(world.users));

  const [port1, port2, workerPort] = [await freePort(), await freePort(), await freePort()];
  mkdirSync(path.join(stateDir, 'worker'));
  start('worker', bin, ['worker'], {
    ...shared,
    HUB_ENDPOINT: `http://127.0.0.1:${port1}/api/internal/events`,
    HEALTH_CHECK_PORT: String(workerPort),
    STATE_DIR: path.join(stateDir, 'worker'),
  });
  for (const [i, port] of [port1, port2].entries()) {
    const dir = path.join(stateDir, `hub${i + 1}`);
    mkdirSync(dir);
    start(`hub${i + 1}`, bin, ['hub'], {
      ...shared,
      HOST: '127.0.0.1',
      PORT: String(port),
      STATE_DIR: dir,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      JWT_ISSUER: ISSUER,
      WORKER_ENDPOINT: `http://127.0.0.1:${workerPort}`,
      DISCORD_CLIENT_ID: printed('oauth client'),
      DISCORD_CLIENT_SECRET: 'sim-client-secret',
      OAUTH_REDIRECT_URI: `http://127.0.0.1:${port}/auth/callback`,
    });
    hubs.push({ url: `http://127.0.0.1:${port}/` });
  }
  for (const hub of hubs) {
    await until(`${hub.url} to be healthy with Redis up`, async () => {
      noneExited();
      const h = await (await fetch(hub.url + 'health')).json();
      return h.status === 'ok' && h.redis === 'up';
    }, START_MS, 200);
  }

  browser = await launchWithCameras(chromium, CHROMIUM);
});

after(() => tearDown({ browser, procs, dirs: [stateDir] }));

test('webcams across two hubs on one Redis, FORBIDDEN elsewhere, a move, and frames for card recognition', async () => {
  const errors = [];
  try {
    await scenario(errors);
  } catch (err) {
    console.log(`page errors: ${JSON.stringify(errors, null, 1)}`);
    console.log(`process output (tail):\n${procs.log.slice(-6000)}`);
    throw err;
  }
  assert.deepEqual(errors, []);
});

async function scenario(errors) {
  const { carol, dave, erin, tableA, tableB } = await seatPlayers(sim);

  // Three browsers, each signed in on its own hub through the simulated OAuth.
  const pages = {};
  for (const [name, id, hub] of [['carol', carol, hubs[0]], ['dave', dave, hubs[1]], ['erin', erin, hubs[0]]]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
    // A failed load is judged by its response below: only `coven demo` answers
    // /api/demo/sit/ (the page asks, and every other hub says 404).
    page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`${name} console: ${m.text()}`); });
    page.on('response', (r) => {
      if (r.status() >= 400 && !(r.status() === 404 && new URL(r.url()).pathname.startsWith('/api/demo/sit/'))) errors.push(`${name}: ${r.status()} ${r.url()}`);
    });
    await sim('POST', '/_sim/oauth', { consenting_user: id });
    await page.goto(hub.url);
    await page.locator(tid('sign-in')).click();
    await page.waitForSelector(`${tid('connection-status')}[data-state="live"]`, { timeout: STEP_MS });
    pages[id] = page;
  }
  const on = (id) => pages[id];
  const webcams = (id, fn, arg) => on(id).evaluate(fn, arg);
  const cameraOn = async (id, table) => {
    const toggle = on(id).locator(tid('camera-toggle-' + table));
    await until(`${id}'s camera button`, async () => (await toggle.textContent()).includes('Turn on'));
    await toggle.click();
    await on(id).locator(`${tid('tiles-' + table)} ${tid('tile-' + id)}`).waitFor({ timeout: STEP_MS });
  };
  const framesDecoded = (viewer, other) => webcams(viewer, (u) => window.covenWebcams.framesDecoded(u), other);
  const seesVideo = async (viewer, other) => {
    const video = on(viewer).locator(`${tid('tile-' + other)} video`);
    await video.waitFor({ timeout: STEP_MS });
    await until(`${viewer} to see ${other}'s video`, () => video.evaluate((v) => v.videoWidth > 0));
    const first = await until(`${viewer} to decode ${other}'s frames`, async () => {
      const n = await framesDecoded(viewer, other);
      return n > 0 && n;
    });
    await until(`${viewer}'s frames of ${other} to keep arriving`, async () => (await framesDecoded(viewer, other)) >= first + 10);
  };

  // 1. Across hubs: carol on hub 1, dave on hub 2 (host candidates: no TURN configured).
  assert.deepEqual(await webcams(carol, () => window.covenWebcams.iceServers()), []);
  await cameraOn(carol, tableA);
  await cameraOn(dave, tableA);
  await cameraOn(erin, tableB);
  await seesVideo(carol, dave);
  await seesVideo(dave, carol);

  // 2. Erin (hub 1, Table 2) signals into Table 1 to dave (hub 2): FORBIDDEN, no tiles.
  await webcams(erin, ([to, channelId]) => window.covenWebcams.sendRaw({ type: 'rtc.signal', to, channelId, data: { kind: 'hello', sid: 'x' } }), [dave, tableA]);
  await until('erin to be refused', async () => (await webcams(erin, () => window.covenWebcams.lastError()))?.code === 'FORBIDDEN');
  assert.equal(await on(erin).locator(`${tid('tile-' + carol)}, ${tid('tile-' + dave)}`).count(), 0);
  for (const id of [carol, dave]) assert.equal(await on(id).locator(tid('tile-' + erin)).count(), 0);
  assert.deepEqual((await webcams(dave, () => window.covenWebcams.state())).peers.map((p) => p.userId), [carol]);

  // 3. Card recognition: frames at about the chosen rate, counted over the page's own
  // clock (a generous window: a loaded CI machine may deliver fewer), then none once stopped.
  const FPS = 5;
  const sample = (id, who, as) => webcams(id, ([u, fps, kind]) => window.covenWebcams.sampleFrames(u, fps, kind), [who, FPS, as]);
  const sampled = (id, sampler) => webcams(id, (s) => window.covenWebcams.sampled(s), sampler);
  const rateOk = async (id, sampler, what, kind) => {
    // At least 3 s of frames (the page's clock), then the count is judged against it.
    const s = await until(`${what} to span 3 s`, async () => {
      const r = await sampled(id, sampler);
      return r && r.spanMs >= 3000 && r;
    });
    const expected = (s.spanMs / 1000) * FPS + 1;
    assert.ok(s.count >= expected * 0.5 && s.count <= expected * 1.5 + 1,
      `${what}: ${s.count} frames in ${s.spanMs} ms at ${FPS} fps (expected about ${expected.toFixed(1)})`);
    assert.ok(s.sizes.length > 0 && s.sizes.every((wh) => /^[1-9]\d*x[1-9]\d*$/.test(wh)), `${what}: sizes ${s.sizes}`);
    assert.deepEqual(s.kinds, [kind], `${what}: kinds`);
    console.log(`${what}: ${s.count} frames in ${s.spanMs.toFixed(0)} ms at ${FPS} fps asked (${((s.count - 1) / (s.spanMs / 1000)).toFixed(2)} fps delivered), sizes ${s.sizes}`);
    return s;
  };
  const own = await sample(carol, 'self', 'videoframe');
  const remote = await sample(carol, dave, 'bitmap');
  assert.ok(own && remote, 'carol has her own camera and dave\'s stream');
  await rateOk(carol, own, "carol's own camera", 'VideoFrame');
  await rateOk(carol, remote, "dave's camera at carol's", 'ImageBitmap');
  await webcams(carol, (s) => window.covenWebcams.stopSampling(s), own);
  const stoppedAt = (await sampled(carol, own)).count;
  const remoteAt = (await sampled(carol, remote)).count;
  // Proving an absence: while the running sampler delivers 2·FPS more frames, the stopped one delivers none.
  await until('the running sampler to go on', async () => (await sampled(carol, remote)).count >= remoteAt + 2 * FPS);
  assert.equal((await sampled(carol, own)).count, stoppedAt, 'no frame after stop');
  await webcams(carol, (s) => window.covenWebcams.stopSampling(s), remote);
  // Without requestVideoFrameCallback (older browsers) the helper paces itself.
  await webcams(erin, () => { delete HTMLVideoElement.prototype.requestVideoFrameCallback; });
  assert.equal(await webcams(erin, () => 'requestVideoFrameCallback' in HTMLVideoElement.prototype), false);
  const fallback = await sample(erin, 'self', 'bitmap');
  await rateOk(erin, fallback, "erin's camera without requestVideoFrameCallback", 'ImageBitmap');
  await webcams(erin, (s) => window.covenWebcams.stopSampling(s), fallback);

  // 4. Dave moves to Table 2: the Table 1 peers go; dave (hub 2) and erin (hub 1) connect.
  await sim('POST', `/_sim/users/${dave}/move`, { channel_id: tableB });
  await on(carol).locator(tid('tile-' + dave)).waitFor({ state: 'detached', timeout: STEP_MS });
  await until('carol to have no peer', async () => (await webcams(carol, () => window.covenWebcams.state())).peers.length === 0);
  await until("dave's Table 1 peer to go", async () =>
    !(await webcams(dave, () => window.covenWebcams.state())).peers.some((p) => p.userId === carol));
  await seesVideo(erin, dave);
  await seesVideo(dave, erin);
  assert.equal(await on(dave).locator(tid('tile-' + carol)).count(), 0);
}
