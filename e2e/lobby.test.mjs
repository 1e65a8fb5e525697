// End-to-end test of the lobby page in headless Chromium against `coven demo`.
//
// Starts `coven demo --port <free port>` (binary from COVEN_BIN, default target/debug/coven,
// built first when COVEN_BIN is unset), signs in through the simulator's OAuth, creates a
// room, drives simulated players through the simulator's control API (/_sim), and checks
// that the page shows every change live — including one made while its socket was down —
// and that the bot's buttons work: the bot joins the room, a cue is decrypted by a
// simulated listener, a speaking ring lights and goes out, the bot leaves.
//
// Run: ./e2e/run.sh   (or: cd e2e && npm ci && node --test)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, simCall, until as untilWithin } from './support.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const SHOTS = path.join(HERE, 'screenshots');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const STEP_MS = Number(process.env.E2E_STEP_TIMEOUT_MS || 15000);
const until = (what, fn, timeout = STEP_MS, interval) => untilWithin(what, fn, timeout, interval);
const START_MS = Number(process.env.E2E_START_TIMEOUT_MS || 120000);

let demo = null; // the child process (its own process group)
let demoLog = '';
let browser = null;
let userDataDir = null;
let stateDir = null;
let hubUrl = null;
let simUrl = null; // http://127.0.0.1:<sim port> (control API under /_sim)
const sim = (method, p, body) => simCall(simUrl, method, p, body);

// ---------- helpers ----------



function stopDemo() {
  if (!demo || demo.exitCode !== null || demo.signalCode !== null) return;
  try { process.kill(-demo.pid, 'SIGTERM'); } catch { /* already gone */ }
  const d = demo;
  const t = setTimeout(() => { try { process.kill(-d.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
  t.unref();
}

// Always kill what we started, whatever happens to the test.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { stopDemo(); process.exit(130); });
}
process.once('exit', () => {
  if (demo && demo.exitCode === null) { try { process.kill(-demo.pid, 'SIGKILL'); } catch { /* gone */ } }
});

const tid = (id) => `[data-testid="${id}"]`;

// ---------- setup / teardown ----------
before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  let bin = process.env.COVEN_BIN;
  if (!bin) {
    bin = path.join(ROOT, 'target/debug/coven');
    if (process.env.E2E_SKIP_BUILD !== '1') {
      const b = spawnSync('cargo', ['build', '--quiet', '--bin', 'coven'], { cwd: ROOT, stdio: 'inherit' });
      assert.equal(b.status, 0, 'cargo build --bin coven failed');
    }
  }
  assert.ok(existsSync(bin), `coven binary not found at ${bin} (set COVEN_BIN)`);

  // Stop the timer-driven players when the demo can: the test drives the simulator itself.
  const help = spawnSync(bin, ['demo', '--help'], { encoding: 'utf8' });
  const helpText = (help.stdout || '') + (help.stderr || '');
  const extra = [];
  for (const flag of ['--players-off', '--no-players']) {
    if (helpText.includes(flag)) { extra.push(flag); break; }
  }

  const port = await freePort();
  stateDir = mkdtempSync(path.join(tmpdir(), 'coven-e2e-state-'));
  demo = spawn(bin, ['demo', '--port', String(port), ...extra], {
    cwd: ROOT,
    detached: true, // own process group, so every child can be killed at once
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STATE_DIR: stateDir, LOG_LEVEL: process.env.LOG_LEVEL || 'WARN' },
  });
  const onData = (chunk) => { demoLog += chunk.toString(); if (demoLog.length > 200000) demoLog = demoLog.slice(-100000); };
  demo.stdout.on('data', onData);
  demo.stderr.on('data', onData);

  hubUrl = `http://127.0.0.1:${port}/`;
  await until('`coven demo` to print the lobby URL', () => {
    if (demo.exitCode !== null) throw new Error(`coven demo exited with ${demo.exitCode}:\n${demoLog}`);
    return demoLog.includes(`http://127.0.0.1:${port}`);
  }, START_MS, 200);

  // The simulator's control API: a printed URL ending in /_sim (or SIM_URL).
  simUrl = process.env.SIM_URL || await until('the simulator control URL in the demo output', () => {
    const m = demoLog.match(/(http:\/\/127\.0\.0\.1:\d+)\/_sim\b/);
    return m && m[1];
  }, STEP_MS);

  await until('the hub to be healthy', async () => (await fetch(hubUrl + 'health')).ok, START_MS, 200);
  await until('the lobby page to be served', async () => (await fetch(hubUrl)).ok, STEP_MS);

  userDataDir = mkdtempSync(path.join(tmpdir(), 'coven-e2e-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1180, height: 820 },
    colorScheme: 'light',
  });
});

after(async () => {
  try { if (browser) await browser.close(); } catch { /* closing anyway */ }
  stopDemo();
  if (demo && demo.exitCode === null) {
    await Promise.race([new Promise((r) => demo.once('exit', r)), new Promise((r) => setTimeout(r, 6000))]);
  }
  for (const d of [userDataDir, stateDir]) {
    if (d) { try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
  }
});

// ---------- the test ----------
test('lobby: sign in, create, join/move/leave live, resume after a dropped socket, end, sign out', async (t) => {
  const page = browser.pages()[0] || await browser.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  // Step timings, reported as test diagnostics.
  let mark = Date.now();
  const timings = [];
  const step = (name) => { const now = Date.now(); timings.push(`${name}: ${now - mark} ms`); mark = now; };
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true, animations: 'disabled' });

  try {
    // World ids from the simulator (ids as strings: `users` and `channels` carry them so).
    const world = await sim('GET', '/_sim/state');
    const userId = (name) => {
      const u = world.users.find((x) => x.username === name);
      assert.ok(u, `seeded user ${name}`);
      return String(u.id);
    };
    const voiceChannels = world.channels.filter((c) => c.type === 2);
    const table2 = voiceChannels.find((c) => c.name === 'Table 2') || voiceChannels[1];
    assert.ok(table2, 'a second seeded voice channel');
    const table2Id = String(table2.id);
    const carol = userId('carol');
    const dave = userId('dave');
    const erin = userId('erin');
    const frank = userId('frank');

    // Signed out at first.
    await page.goto(hubUrl);
    await page.locator(tid('sign-in')).waitFor({ timeout: STEP_MS });
    await shot('01-signed-out');

    // Sign in through the simulator's OAuth (auto-consent) and back to /#token=…
    await page.locator(tid('sign-in')).click();
    await page.locator(tid('signed-in-user')).waitFor({ timeout: STEP_MS });
    await until('the token to leave the address bar', async () => !(await page.evaluate(() => location.hash)).includes('token'));
    await page.waitForSelector(`${tid('connection-status')}[data-state="live"]`, { timeout: STEP_MS });
    await page.locator(`${tid('room-' + table2Id)}`).waitFor({ timeout: STEP_MS });

    step('signed in');
    // Start from a known place for the players this test drives.
    for (const u of [carol, dave, erin, frank]) {
      if (world.voice_states.some((v) => String(v.user_id) === u)) await sim('POST', `/_sim/users/${u}/leave`);
    }

    // Create a room.
    const roomName = 'Commander night'; // the demo's world is fresh on every start
    await page.locator(tid('room-name')).fill(roomName);
    await page.locator(tid('room-limit')).fill('5');
    await page.locator(tid('create-room')).click();
    const card = page.locator('li.room', { has: page.locator('h3', { hasText: roomName }) });
    await card.waitFor({ timeout: STEP_MS });
    const roomTestId = await card.getAttribute('data-testid');
    const roomId = roomTestId.replace(/^room-/, '');
    assert.match(roomId, /^[1-9]\d*$/);
    const inRoom = (cid, uid) => page.locator(`${tid('room-' + cid)} ${tid('member-' + uid)}`);
    // A join is announced with the name its card shows (never the id while the card
    // has the name); returns that name.
    const joinAnnounced = (cid, uid) => until(`the join of ${uid} announced by the card's name`, async () => {
      const name = (await inRoom(cid, uid).locator('.member-name').textContent()).trim();
      const lines = await page.locator(`${tid('announcer')} p`).allTextContents();
      assert.ok(lines.every((l) => !l.includes(uid) || name === uid), `an id in ${JSON.stringify(lines)}, card says ${name}`);
      return lines.includes(`${name} joined ${roomName}.`) ? name : null;
    });
    // The hub really made it (the simulator knows the channel).
    await until('the simulator to know the new channel', async () =>
      (await sim('GET', '/_sim/state')).channels.some((c) => String(c.id) === roomId));
    await t.test('create shows the room with its seat limit', async () => {
      assert.equal((await page.locator(tid('room-count-' + roomId)).textContent()).trim(), '0 / 5');
    });

    step('created');
    // A create that Discord refuses shows the hub's error message in the form.
    await sim('POST', '/_sim/rest/forbid', { forbid: true });
    try {
      await page.locator(tid('room-name')).fill('Refused table');
      await page.locator(tid('create-room')).click();
      await page.locator(tid('create-error')).waitFor({ timeout: STEP_MS });
      const text = (await page.locator(tid('create-error')).textContent()).trim();
      assert.ok(text.length > 0, 'an error message is shown');
      assert.equal(await page.locator('li.room', { has: page.locator('h3', { hasText: 'Refused table' }) }).count(), 0);
    } finally {
      await sim('POST', '/_sim/rest/forbid', { forbid: false });
    }
    await page.locator(tid('room-name')).fill('');

    step('refused create');
    // A simulated player joins it …
    await sim('POST', `/_sim/users/${carol}/join`, { channel_id: roomId });
    await inRoom(roomId, carol).waitFor({ timeout: STEP_MS });
    assert.match(await joinAnnounced(roomId, carol), /carol/i);
    // … mutes …
    await sim('POST', `/_sim/users/${carol}/flags`, { self_mute: true });
    await inRoom(roomId, carol).locator(tid('badge-mute')).waitFor({ timeout: STEP_MS });
    // … a second one joins and leaves again.
    await sim('POST', `/_sim/users/${dave}/join`, { channel_id: roomId });
    await inRoom(roomId, dave).waitFor({ timeout: STEP_MS });
    await page.locator(tid('room-count-' + roomId)).filter({ hasText: '2 / 5' }).waitFor({ timeout: STEP_MS });
    step('join, mute, second join');
    // Camera and stream badges, in another room.
    await sim('POST', `/_sim/users/${erin}/join`, { channel_id: table2Id });
    await sim('POST', `/_sim/users/${erin}/flags`, { self_video: true });
    await sim('POST', `/_sim/users/${frank}/join`, { channel_id: table2Id });
    await sim('POST', `/_sim/users/${frank}/flags`, { self_stream: true, self_deaf: true });
    await inRoom(table2Id, erin).locator(tid('badge-video')).waitFor({ timeout: STEP_MS });
    await inRoom(table2Id, frank).locator(tid('badge-stream')).waitFor({ timeout: STEP_MS });
    await inRoom(table2Id, frank).locator(tid('badge-deaf')).waitFor({ timeout: STEP_MS });
    // Names, not ids, once the hub knows them (the page learns them from the snapshot).
    for (const [cid, uid, name] of [[roomId, carol, 'carol'], [roomId, dave, 'dave'], [table2Id, erin, 'erin'], [table2Id, frank, 'frank']]) {
      await inRoom(cid, uid).filter({ hasText: new RegExp(name, 'i') }).waitFor({ timeout: STEP_MS });
    }
    await shot('02-room-with-players');
    await page.screenshot({ path: path.join(SHOTS, 'lobby.png'), animations: 'disabled' });
    for (const u of [erin, frank]) await sim('POST', `/_sim/users/${u}/leave`);
    await inRoom(table2Id, frank).waitFor({ state: 'detached', timeout: STEP_MS });
    await sim('POST', `/_sim/users/${dave}/leave`);
    await inRoom(roomId, dave).waitFor({ state: 'detached', timeout: STEP_MS });

    step('badges, names, leave');
    // A move: carol goes from the new room to Table 2.
    await sim('POST', `/_sim/users/${carol}/move`, { channel_id: table2Id });
    await inRoom(table2Id, carol).waitFor({ timeout: STEP_MS });
    await inRoom(roomId, carol).waitFor({ state: 'detached', timeout: STEP_MS });
    assert.equal(await page.locator(tid('member-' + carol)).count(), 1, 'carol is shown in one room only');

    step('move');
    // Drop the page's socket and keep it offline while the world changes.
    const seqBefore = await page.evaluate(() => window.covenLobby.lastSeq());
    await browser.setOffline(true);
    await page.evaluate(() => window.covenLobby.dropConnection());
    await page.waitForSelector(`${tid('connection-status')}[data-state="offline"], ${tid('connection-status')}[data-state="reconnecting"]`, { timeout: STEP_MS });
    await shot('03-offline');
    // Made while offline: dave joins the new room, carol leaves Table 2.
    await sim('POST', `/_sim/users/${dave}/join`, { channel_id: roomId });
    await sim('POST', `/_sim/users/${carol}/leave`);
    // Give the hub time to have these events (it has them once its snapshot shows them).
    await until('the offline events to reach the simulator state', async () => {
      const s = await sim('GET', '/_sim/state');
      return s.voice_states.some((v) => String(v.user_id) === dave && String(v.channel_id) === roomId)
        && !s.voice_states.some((v) => String(v.user_id) === carol);
    });
    // … and the hub has accepted them (so they can only reach the page by replay).
    await until('the hub to have the offline events', async () => {
      const health = await (await fetch(hubUrl + 'health')).json();
      const head = health && health.replay && health.replay.headSeq;
      return typeof head !== 'number' || head >= seqBefore + 2;
    });
    assert.equal(await inRoom(roomId, dave).count(), 0, 'nothing reaches an offline page');
    let snapshotsAfterOutage = 0;
    const countSnapshots = (req) => { if (new URL(req.url()).pathname === '/api/rooms') snapshotsAfterOutage++; };
    page.on('request', countSnapshots);
    await browser.setOffline(false);
    await page.waitForSelector(`${tid('connection-status')}[data-state="live"]`, { timeout: STEP_MS });
    await inRoom(roomId, dave).waitFor({ timeout: STEP_MS });
    await inRoom(table2Id, carol).waitFor({ state: 'detached', timeout: STEP_MS });
    page.off('request', countSnapshots);
    assert.equal(snapshotsAfterOutage, 0, 'recovered by resuming with lastSeq, not by reloading the snapshot');
    const seqAfter = await page.evaluate(() => window.covenLobby.lastSeq());
    assert.ok(seqAfter >= seqBefore + 2, `seq moved on across the outage (${seqBefore} -> ${seqAfter})`);
    // And it is live again afterwards.
    await sim('POST', `/_sim/users/${dave}/leave`);
    await inRoom(roomId, dave).waitFor({ state: 'detached', timeout: STEP_MS });

    step('offline and resume');
    // The bot, for real (done last: a bot that joins changes the room's member count).
    // carol sits in the room: she is the simulated listener of the cue and the speaker.
    const bot = String((world.users.find((u) => /bot/i.test(u.username)) || {}).id || '');
    assert.match(bot, /^[1-9]\d*$/, 'the seeded bot user');
    await sim('POST', `/_sim/users/${carol}/join`, { channel_id: roomId });
    await inRoom(roomId, carol).waitFor({ timeout: STEP_MS });
    const roomMsg = page.locator(tid('room-msg-' + roomId));
    /** Clicks `button` and returns the status of the API call it makes to `pathEnd`. */
    const clickAndAnswer = async (button, method, pathEnd) => {
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === method && new URL(r.url()).pathname.endsWith(pathEnd), { timeout: STEP_MS }),
        button.click(),
      ]);
      return res.status();
    };
    await page.locator(tid('bot-menu-' + roomId)).click();

    // The cue menu is the hub's list (GET /api/cues), one button per cue.
    const listed = await page.evaluate(async () => {
      const res = await fetch('/api/cues', { headers: { Authorization: 'Bearer ' + sessionStorage.getItem('coven.token') } });
      return res.ok ? (await res.json()).cues : null;
    });
    assert.deepEqual(listed.map((c) => c.name), ['turn_chime', 'timer_tick', 'timer_end'], 'GET /api/cues');
    await until('a menu button per listed cue', async () =>
      (await page.locator(`${tid('cues-' + roomId)} button`).count()) === listed.length);
    for (const { name } of listed) assert.equal(await page.locator(tid(`cue-${name}-${roomId}`)).count(), 1, name);

    // The bot joins: 200, a message in the card, and the bot in the room's member list.
    assert.equal(await clickAndAnswer(page.locator(tid('bot-join-' + roomId)), 'POST', '/bot'), 200, 'bot join');
    await roomMsg.filter({ hasText: /joining/i }).waitFor({ timeout: STEP_MS });
    assert.ok(!(await roomMsg.getAttribute('class')).includes('error'), 'no error shown');
    await inRoom(roomId, bot).waitFor({ timeout: STEP_MS });
    // The page had never seen the bot: its announcement waits for its name.
    assert.notEqual(await joinAnnounced(roomId, bot), bot, 'the bot by its name');

    step('bot joins');
    // A cue: 200, and carol's simulated client decrypts its frames (DAVE on: the
    // simulator's Discord-like default, end to end through her own DAVE session).
    await sim('DELETE', `/_sim/voice/users/${carol}/received`);
    assert.equal(await clickAndAnswer(page.locator(tid('cue-turn_chime-' + roomId)), 'POST', '/cue'), 200, 'cue');
    await roomMsg.filter({ hasText: /played/i }).waitFor({ timeout: STEP_MS });
    const frames = listed[0].durationMs / 20; // 20 ms Opus frames
    const heard = await until('carol to decrypt the whole cue', async () => {
      const r = await sim('GET', `/_sim/voice/users/${carol}/received`);
      // All of it, then silence: the cue has ended.
      return r && r.audio_frames >= frames && r.silence_frames >= 5 ? r : null;
    });
    assert.ok(heard.audio_frames <= frames + 3, `one cue, not several: ${JSON.stringify(heard)}`);
    // DAVE is on (the simulator's Discord-like default): every frame decrypted end to end.
    const voice = await sim('GET', '/_sim/voice');
    assert.ok(voice.counters.dave_commits > 0 && voice.counters.dave_errors === 0, `DAVE group: ${JSON.stringify(voice.counters)}`);
    assert.equal(heard.dave_frames, heard.audio_frames, `DAVE-decrypted frames: ${JSON.stringify(heard)}`);
    assert.equal(heard.dave_failures, 0);
    t.diagnostic(`cue heard: ${heard.audio_frames} frames, ${heard.dave_frames} DAVE-decrypted, mode ${heard.mode}`);

    step('cue heard');
    // carol speaks: the bot hears it, voice.speaking lights her ring, then puts it out.
    const ring = page.locator(`${tid('room-' + roomId)} li.member.speaking${tid('member-' + carol)}`);
    await sim('POST', `/_sim/voice/users/${carol}/speak`, { ms: 800 });
    await ring.waitFor({ timeout: STEP_MS });
    await shot('03b-speaking');
    await ring.waitFor({ state: 'detached', timeout: STEP_MS });
    assert.equal(await inRoom(roomId, carol).getAttribute('data-speaking'), null, 'ring out');

    step('speaking ring');
    // The bot leaves: 200 and gone from the list.
    assert.equal(await clickAndAnswer(page.locator(tid('bot-leave-' + roomId)), 'DELETE', '/bot'), 200, 'bot leave');
    await inRoom(roomId, bot).waitFor({ state: 'detached', timeout: STEP_MS });
    await page.locator(tid('bot-menu-' + roomId)).click();

    step('bot leaves');
    // End the room (with its confirm step); it disappears.
    await page.locator(tid('end-room-' + roomId)).click();
    await page.locator(tid('confirm-end-' + roomId)).click();
    await page.locator(tid('room-' + roomId)).waitFor({ state: 'detached', timeout: STEP_MS });
    await until('the simulator to have deleted the channel', async () =>
      !(await sim('GET', '/_sim/state')).channels.some((c) => String(c.id) === roomId));
    // A reload (snapshot from the hub) agrees.
    await page.reload();
    await page.waitForSelector(`${tid('connection-status')}[data-state="live"]`, { timeout: STEP_MS });
    await page.locator(tid('room-' + table2Id)).waitFor({ timeout: STEP_MS });
    assert.equal(await page.locator(tid('room-' + roomId)).count(), 0);
    await shot('04-after-end');

    step('end room, reload');
    // The page never shows the token.
    const html = await page.content();
    assert.ok(!/eyJ[A-Za-z0-9_-]+\.eyJ/.test(html), 'no JWT in the DOM');

    // Sign out.
    await page.locator(tid('sign-out')).click();
    await page.locator(tid('sign-in')).waitFor({ timeout: STEP_MS });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    step('sign out');
    // A token the hub did not sign (or an expired one) ends on the signed-out page.
    const forged = (claims) => {
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return b64({ alg: 'EdDSA', typ: 'JWT', kid: 'nope' }) + '.' + b64(claims) + '.' + 'c2ln';
    };
    const now = Math.floor(Date.now() / 1000);
    for (const token of [forged({ sub: carol, name: 'Forger', exp: now + 600 }), forged({ sub: carol, name: 'Late', exp: now - 5 })]) {
      await page.goto(hubUrl + '#token=' + token);
      await page.locator(tid('sign-in')).waitFor({ timeout: STEP_MS });
      await page.locator('#signed-out-notice').waitFor({ timeout: STEP_MS });
      assert.equal(await page.evaluate(() => sessionStorage.length), 0);
      assert.ok(!(await page.evaluate(() => location.hash)).includes('token'));
    }

    step('forged/expired tokens');
    // Narrow (phone) layout screenshot for a look; signed in again.
    await page.locator(tid('sign-in')).click();
    await page.waitForSelector(`${tid('connection-status')}[data-state="live"]`, { timeout: STEP_MS });
    await page.setViewportSize({ width: 390, height: 844 });
    await shot('05-phone');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('06-phone-dark');

    step('phone');
    t.diagnostic(timings.join(', '));
    // Only the expected failures: the refused create, the forged tokens' 401s, offline.
    const unexpected = consoleErrors.filter((e) => !/ERR_INTERNET_DISCONNECTED|WebSocket|status of (4\d\d|5\d\d)/.test(e));
    assert.deepEqual(unexpected, [], 'no page errors (CSP violations, exceptions)');
  } catch (err) {
    try { await shot('failure'); } catch { /* page may be gone */ }
    console.error(`--- page at failure: ${page.url().replace(/#.*/, '#…')}\n--- coven demo output (tail) ---\n${demoLog.slice(-4000)}`);
    throw err;
  }
});
