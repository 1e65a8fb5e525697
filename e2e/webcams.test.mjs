// End-to-end test of the webcams (docs/spec.md §12) in headless Chromium with fake
// cameras, against `coven demo` and Debian's coturn.
//
// Starts coturn on loopback (`use-auth-secret`, loopback peers allowed) and
// `coven demo --no-players` with TURN_URLS / TURN_SECRET pointing at it, then three
// browser contexts signed in as three simulated users: carol and dave at Table 1, erin
// at Table 2. Checks, each step waiting on a condition with a timeout:
//   1. host candidates only: carol and dave see each other's video (videoWidth > 0,
//      framesDecoded growing); erin gets FORBIDDEN when signalling into Table 1 and sees
//      no tile of theirs;
//   2. dave moves to Table 2 (simulator control API): carol's peer is torn down, dave
//      and erin connect;
//   3. TURN only (iceTransportPolicy 'relay'), dave back at Table 1 through the lobby's
//      "Sit at this table" (`coven demo` only): carol and dave
//      connect through coturn with the credentials the hub minted (the selected pair is
//      relay/relay);
//   4. a credential made with a wrong secret: coturn answers 401 and nothing connects.
//
// Run: ./e2e/run.sh webcams.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Processes, freePort, launchWithCameras, seatPlayers, simCall, tearDown, until as untilWithin } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TURNSERVER = process.env.TURNSERVER_BIN || '/usr/bin/turnserver';
const STEP_MS = Number(process.env.E2E_STEP_TIMEOUT_MS || 20000);
const until = (what, fn, timeout = STEP_MS, interval) => untilWithin(what, fn, timeout, interval);
const START_MS = Number(process.env.E2E_START_TIMEOUT_MS || 120000);
const TURN_SECRET = 'e2e-turn-secret-' + Math.random().toString(16).slice(2);

const procs = new Processes(ROOT);
let browser = null;
let stateDir = null;
let hubUrl = null;
let simUrl = null;
const sim = (method, p, body) => simCall(simUrl, method, p, body);
const start = (name, bin, args, env) => procs.start(name, bin, args, { ...process.env, ...env });

const tid = (id) => `[data-testid="${id}"]`;

before(async () => {
  const bin = path.resolve(process.env.COVEN_BIN || path.join(ROOT, 'target/debug/coven'));
  assert.ok(existsSync(bin), `coven binary not found at ${bin} (set COVEN_BIN)`);
  assert.ok(existsSync(TURNSERVER), `coturn's turnserver not found at ${TURNSERVER} (apt-get install coturn)`);

  stateDir = mkdtempSync(path.join(tmpdir(), 'coven-e2e-webcams-'));
  // coturn on loopback only: TURN REST API credentials (use-auth-secret), relays on
  // 127.0.0.1, and loopback peers allowed (coturn refuses them by default).
  const turnPort = await freePort();
  const relayMin = 40000 + Math.floor(Math.random() * 20000);
  start('coturn', TURNSERVER, [
    '-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${turnPort}`,
    `--min-port=${relayMin}`, `--max-port=${relayMin + 200}`,
    '--use-auth-secret', `--static-auth-secret=${TURN_SECRET}`, '--realm=coven.test',
    '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', '--fingerprint',
    '--log-file=stdout', '--simple-log', '--no-stun-backward-compatibility',
    `--pidfile=${path.join(stateDir, 'turnserver.pid')}`, `--db=${path.join(stateDir, 'turndb')}`,
  ]);

  const port = await freePort();
  start('demo', bin, ['demo', '--port', String(port), '--no-players'], {
    STATE_DIR: stateDir,
    LOG_LEVEL: process.env.LOG_LEVEL || 'WARN',
    TURN_URLS: `turn:127.0.0.1:${turnPort}?transport=udp`,
    TURN_SECRET,
  });
  hubUrl = `http://127.0.0.1:${port}/`;
  await until('`coven demo` to print its URLs', () => {
    procs.noneExited();
    const m = procs.log.match(/(http:\/\/127\.0\.0\.1:\d+)\/_sim\b/);
    simUrl = m && m[1];
    return procs.log.includes(`http://127.0.0.1:${port}`) && simUrl;
  }, START_MS, 200);
  await until('the hub to be healthy', async () => (await fetch(hubUrl + 'health')).ok, START_MS, 200);

  browser = await launchWithCameras(chromium, CHROMIUM);
});

after(() => tearDown({ browser, procs, dirs: [stateDir] }));

test('webcams: a mesh per table, FORBIDDEN elsewhere, moves, TURN only, a wrong TURN secret', async () => {
  const errors = [];
  try {
    await webcamsScenario(errors);
  } catch (err) {
    console.log(`page errors: ${JSON.stringify(errors, null, 1)}`);
    throw err;
  }
  assert.deepEqual(errors, []);
});

async function webcamsScenario(errors) {
  const { carol, dave, erin, tableA, tableB } = await seatPlayers(sim);

  // Three browsers, signed in as three users through the simulated OAuth.
  const pages = {};
  for (const [name, id] of [['carol', carol], ['dave', dave], ['erin', erin]]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`${name}: ${e}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`${name} console: ${m.text()}`); });
    await sim('POST', '/_sim/oauth', { consenting_user: id });
    await page.goto(hubUrl);
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
  const cameraOff = async (id, table) => {
    const toggle = on(id).locator(tid('camera-toggle-' + table));
    await until(`${id}'s camera off button`, async () => (await toggle.textContent()).includes('Turn off'));
    await toggle.click();
    await on(id).locator(tid('tile-' + id)).waitFor({ state: 'detached', timeout: STEP_MS });
  };
  // `viewer` shows `other`'s live video: a tile whose <video> has a width, and frames
  // decoded that keep growing.
  const seesVideo = async (viewer, other) => {
    const video = on(viewer).locator(`${tid('tile-' + other)} video`);
    await video.waitFor({ timeout: STEP_MS });
    await until(`${viewer} to see ${other}'s video`, () => video.evaluate((v) => v.videoWidth > 0));
    const first = await until(`${viewer} to decode ${other}'s frames`, async () => {
      const n = await webcams(viewer, (u) => window.covenWebcams.framesDecoded(u), other);
      return n > 0 && n;
    });
    await until(`${viewer}'s frames of ${other} to keep arriving`, async () =>
      (await webcams(viewer, (u) => window.covenWebcams.framesDecoded(u), other)) >= first + 10);
  };

  // The room card says where video works and where it does not.

  await on(erin).locator(tid('join-discord-' + tableA)).waitFor({ timeout: STEP_MS });
  assert.match(
    await on(erin).locator(tid('join-discord-' + tableA)).getAttribute('href'),
    new RegExp(`^https://discord\\.com/channels/[1-9]\\d*/${tableA}$`),
  );
  await on(erin).locator(tid('sit-' + tableA)).waitFor({ timeout: STEP_MS }); // `coven demo` only

  // 1. Host candidates only.
  for (const id of [carol, dave, erin]) await webcams(id, () => window.covenWebcams.configureIce({ servers: [] }));
  await cameraOn(carol, tableA);
  await cameraOn(dave, tableA);
  await cameraOn(erin, tableB);
  await seesVideo(carol, dave);
  await seesVideo(dave, carol);
  // Erin, at Table 2, signals into Table 1: FORBIDDEN, and no tile of theirs.
  await webcams(erin, ([to, channelId]) => window.covenWebcams.sendRaw({ type: 'rtc.signal', to, channelId, data: { kind: 'hello', sid: 'x' } }), [carol, tableA]);
  await until('erin to be refused', async () => (await webcams(erin, () => window.covenWebcams.lastError()))?.code === 'FORBIDDEN');
  assert.equal(await on(erin).locator(`${tid('tile-' + carol)}, ${tid('tile-' + dave)}`).count(), 0);
  assert.equal(await on(carol).locator(tid('tile-' + erin)).count(), 0);

  // 2. Dave moves to Table 2: carol's peer goes, dave and erin connect.
  await sim('POST', `/_sim/users/${dave}/move`, { channel_id: tableB });
  await on(carol).locator(tid('tile-' + dave)).waitFor({ state: 'detached', timeout: STEP_MS });
  await until('carol to have no peer', async () => (await webcams(carol, () => window.covenWebcams.state())).peers.length === 0);
  await seesVideo(erin, dave);
  await seesVideo(dave, erin);

  // 3. TURN only: dave back at Table 1, both through coturn with the hub's credentials.
  await cameraOff(dave, tableB);
  await cameraOff(carol, tableA);
  const servers = await webcams(carol, () => window.covenWebcams.iceServers());
  assert.equal(servers.length, 1, JSON.stringify(servers));
  assert.match(servers[0].urls[0], /^turn:127\.0\.0\.1:\d+\?transport=udp$/);
  assert.match(servers[0].username, new RegExp(`^\\d+:${carol}$`));
  // Back through "Sit at this table" (`coven demo` only: the simulator's control API).
  await on(dave).locator(tid('sit-' + tableA)).click();
  await on(dave).locator(tid('camera-toggle-' + tableA)).waitFor({ timeout: STEP_MS });
  assert.ok((await sim('GET', '/_sim/state')).voice_states.some((v) => String(v.user_id) === dave && String(v.channel_id) === tableA));
  for (const id of [carol, dave]) await webcams(id, () => window.covenWebcams.configureIce({ policy: 'relay', servers: null }));
  await cameraOn(carol, tableA);
  await cameraOn(dave, tableA);
  await seesVideo(carol, dave);
  await seesVideo(dave, carol);
  const pair = await until('a selected candidate pair', () => webcams(carol, (u) => window.covenWebcams.selectedCandidates(u), dave));
  assert.deepEqual(pair, ['relay', 'relay']);

  // 4. A credential made with another secret: coturn refuses it (401), nothing connects.
  await cameraOff(carol, tableA);
  await cameraOff(dave, tableA);
  for (const id of [carol, dave]) {
    const username = (await webcams(id, () => window.covenWebcams.iceServers()))[0].username;
    const credential = createHmac('sha1', 'not-the-secret').update(username).digest('base64');
    await webcams(id, (c) => window.covenWebcams.configureIce({ policy: 'relay', servers: null, credential: c }), credential);
  }
  await cameraOn(carol, tableA);
  await cameraOn(dave, tableA);
  await until('coturn to refuse the credential (401)', async () =>
    (await webcams(carol, (u) => window.covenWebcams.candidateErrors(u), dave)).includes(401));
  const state = await webcams(carol, () => window.covenWebcams.state());
  assert.ok(state.peers.every((p) => p.connectionState !== 'connected'), JSON.stringify(state));
  assert.equal(await webcams(carol, (u) => window.covenWebcams.framesDecoded(u), dave), 0);
}
