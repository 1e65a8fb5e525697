// Helpers shared by the browser tests (lobby, webcams, webcams-hubs): a free loopback
// port, waiting on a condition with a deadline (never a bare sleep), the simulator's
// control API (docs/simulator.md), the processes a test starts, and Chromium with cameras.

import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns a truthy value or `timeout` passes; returns that value. */
export async function until(what, fn, timeout, interval = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** One call of the simulator's control API at `simUrl` (`/_sim/…` paths); its JSON answer. */
export async function simCall(simUrl, method, p, body) {
  const res = await fetch(simUrl + p, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p} -> ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * The processes a test started (`coven`, redis-server, coturn…), each in its own
 * process group so that stopping one stops its children, with their output: `log`
 * (every process, labelled, the last 200–400 kB) and `output(name)` (one process's
 * first 100 kB, e.g. what `coven sim` printed). Stopped on exit and on SIGINT/SIGTERM.
 */
export class Processes {
  constructor(cwd) {
    this.cwd = cwd;
    this.children = [];
    this.log = '';
    this.outputs = new Map();
    for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { this.signal('SIGKILL'); process.exit(130); });
    process.once('exit', () => this.signal('SIGKILL'));
  }

  /** Starts `bin` with `args` and exactly the environment `env`. */
  start(name, bin, args, env) {
    const child = spawn(bin, args, { cwd: this.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
    const onData = (chunk) => {
      const seen = this.outputs.get(name) || '';
      if (seen.length < 100000) this.outputs.set(name, seen + chunk);
      this.log += `[${name}] ${chunk}`;
      if (this.log.length > 400000) this.log = this.log.slice(-200000);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    this.children.push(child);
    return child;
  }

  /** What `name` has printed so far (its first 100 kB). */
  output(name) {
    return this.outputs.get(name) || '';
  }

  /** Throws, with the output, if any process has exited. */
  noneExited() {
    for (const c of this.children) if (c.exitCode !== null) throw new Error(`a process exited:\n${this.log}`);
  }

  /** Sends `signal` to every process group still running. */
  signal(signal) {
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) { try { process.kill(-c.pid, signal); } catch { /* gone */ } }
    }
  }

  /** SIGTERM, up to 6 s for each to exit, then SIGKILL for what is left. */
  async stopAll() {
    this.signal('SIGTERM');
    await Promise.all(this.children.map((c) => (c.exitCode !== null ? null : Promise.race([
      new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 6000)),
    ]))));
    this.signal('SIGKILL');
  }
}

/** A test's end: closes `browser`, stops `procs`, removes `dirs` (each best effort). */
export async function tearDown({ browser, procs, dirs = [] }) {
  try { if (browser) await browser.close(); } catch { /* closing anyway */ }
  if (procs) await procs.stopAll();
  for (const d of dirs) {
    if (d) { try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ } }
  }
}

/**
 * Headless Chromium with fake camera devices (no permission prompt), allowed to use
 * loopback and real addresses for ICE on one machine (no mDNS names).
 */
export function launchWithCameras(chromium, executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
}

/**
 * The webcams tests' cast, from the simulator's world (`sim`: a control API call):
 * carol and dave at Table 1, erin at Table 2, whatever the seed had them do. Returns
 * their user ids and the two tables' channel ids, as strings.
 */
export async function seatPlayers(sim) {
  const world = await sim('GET', '/_sim/state');
  const userId = (name) => String(world.users.find((u) => u.username === name).id);
  const voice = world.channels.filter((c) => c.type === 2);
  const tableA = String((voice.find((c) => c.name === 'Table 1') || voice[0]).id);
  const tableB = String((voice.find((c) => c.name === 'Table 2') || voice[1]).id);
  const [carol, dave, erin] = ['carol', 'dave', 'erin'].map(userId);
  for (const u of [carol, dave, erin]) {
    if (world.voice_states.some((v) => String(v.user_id) === u)) await sim('POST', `/_sim/users/${u}/leave`);
  }
  await sim('POST', `/_sim/users/${carol}/join`, { channel_id: tableA });
  await sim('POST', `/_sim/users/${dave}/join`, { channel_id: tableA });
  await sim('POST', `/_sim/users/${erin}/join`, { channel_id: tableB });
  return { world, carol, dave, erin, tableA, tableB };
}
