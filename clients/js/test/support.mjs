// Test support: a real `coven demo` (started, killed and restarted), a TCP proxy
// between the client and the hub that can add latency and cut every connection
// (a slow or broken network), sign-in through the simulated Discord, and waits on
// conditions with timeouts. Every process started here is killed at the end.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../../..');
export const STEP_MS = Number(process.env.CLIENT_STEP_TIMEOUT_MS || 20000);
const START_MS = Number(process.env.CLIENT_START_TIMEOUT_MS || 120000);

/** A free TCP port on 127.0.0.1. */
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

/** Polls `fn` until it returns a truthy value; throws after `timeout` ms naming `what`. */
export async function until(what, fn, timeout = STEP_MS, interval = 50) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

const running = new Set();
function killAll(signal) {
  for (const child of running) {
    try { process.kill(-child.pid, signal); } catch { /* gone */ }
  }
}
process.once('exit', () => killAll('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { killAll('SIGKILL'); process.exit(130); });

/** A running `coven demo --no-players`: its hub URL, its simulator's control URL. */
export class Demo {
  static binary() {
    const bin = process.env.COVEN_BIN ? path.resolve(process.env.COVEN_BIN) : path.join(ROOT, 'target/debug/coven');
    if (!existsSync(bin)) throw new Error(`coven binary not found at ${bin}: build it (cargo build --bin coven) or set COVEN_BIN`);
    return bin;
  }

  /** Starts a demo on `port`. */
  static async start(port) {
    const demo = new Demo();
    demo.port = port;
    demo.stateDir = mkdtempSync(path.join(tmpdir(), 'coven-client-test-'));
    demo.log = '';
    demo.child = spawn(Demo.binary(), ['demo', '--port', String(port), '--no-players'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STATE_DIR: demo.stateDir, LOG_LEVEL: process.env.LOG_LEVEL || 'WARN' },
    });
    running.add(demo.child);
    demo.exited = new Promise((r) => demo.child.once('exit', r));
    const onData = (chunk) => { demo.log = (demo.log + chunk.toString()).slice(-100000); };
    demo.child.stdout.on('data', onData);
    demo.child.stderr.on('data', onData);
    demo.hubUrl = `http://127.0.0.1:${port}`;
    // A demo that cannot start or dies while starting fails the wait at once.
    const died = new Promise((_, reject) => {
      demo.child.once('error', (e) => reject(new Error(`coven demo could not start: ${e.message}`)));
      demo.child.once('exit', (code, signal) => reject(new Error(`coven demo exited (${code ?? signal}):\n${demo.log}`)));
    });
    died.catch(() => {});
    await Promise.race([died, until('`coven demo` to print its URL', () => demo.log.includes(demo.hubUrl), START_MS, 100)]);
    demo.simUrl = await until('the simulator URL', () => demo.log.match(/(http:\/\/127\.0\.0\.1:\d+)\/_sim\b/)?.[1]);
    await until('the hub to be healthy', async () => (await fetch(demo.hubUrl + '/health')).ok, START_MS, 100);
    // The worker seeds its view from the guild's first GUILD_CREATE, without events:
    // ready once the snapshot holds the seeded rooms.
    const token = await demo.signIn();
    await until('the seeded rooms in the snapshot', async () => {
      const res = await fetch(demo.hubUrl + '/api/rooms', { headers: { authorization: `Bearer ${token}` } });
      return res.ok && (await res.json()).rooms.length > 0;
    }, START_MS, 100);
    return demo;
  }

  /** The simulator's control API. */
  async sim(method, p, body) {
    const res = await fetch(this.simUrl + p, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p} -> ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Signs in through the simulated Discord (it consents at once), as a browser would; returns the JWT. */
  async signIn() {
    const start = await fetch(this.hubUrl + '/auth/login', { redirect: 'manual' });
    if (start.status < 300 || start.status >= 400) throw new Error(`/auth/login answered ${start.status}`);
    const cookie = start.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const consent = await fetch(start.headers.get('location'), { redirect: 'manual' });
    const done = await fetch(consent.headers.get('location'), { redirect: 'manual', headers: { cookie } });
    const target = done.headers.get('location') || '';
    if (!target.startsWith('/#token=')) throw new Error(`the callback answered ${done.status} ${target}`);
    return target.slice('/#token='.length);
  }

  /** Kills the whole demo at once (SIGKILL: no goodbye to the sockets). */
  async kill() {
    try { process.kill(-this.child.pid, 'SIGKILL'); } catch { /* gone */ }
    await this.exited;
    running.delete(this.child);
    rmSync(this.stateDir, { recursive: true, force: true });
  }

  /** Stops the demo gracefully, then forcibly. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.kill();
    try { process.kill(-this.child.pid, 'SIGTERM'); } catch { /* gone */ }
    const timer = setTimeout(() => { try { process.kill(-this.child.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await this.exited;
    clearTimeout(timer);
    running.delete(this.child);
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target` (host:port): `latencyMs` delays
 * every chunk each way (order kept), `cut()` drops every connection as a broken
 * network would, `down` refuses new connections (a balancer whose health check fails).
 */
export class Proxy {
  static async start(targetPort) {
    const proxy = new Proxy();
    proxy.targetPort = targetPort;
    proxy.latencyMs = 0;
    proxy.down = false;
    proxy.sockets = new Set();
    proxy.connections = 0;
    proxy.server = net.createServer((client) => proxy.accept(client));
    await new Promise((r) => proxy.server.listen(0, '127.0.0.1', r));
    proxy.port = proxy.server.address().port;
    proxy.url = `http://127.0.0.1:${proxy.port}`;
    return proxy;
  }

  accept(client) {
    if (this.down) {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    const pipe = (from, to) => {
      let chain = Promise.resolve();
      from.on('data', (chunk) => {
        const delay = this.latencyMs;
        chain = chain.then(() => (delay ? new Promise((r) => setTimeout(r, delay)) : null)).then(() => {
          if (!to.destroyed) to.write(chunk);
        });
      });
      from.on('end', () => { chain.then(() => to.end()); });
    };
    pipe(client, upstream);
    pipe(upstream, client);
  }

  /** Drops every open connection. */
  cut() {
    for (const s of this.sockets) s.destroy();
  }

  close() {
    this.cut();
    return new Promise((r) => this.server.close(r));
  }
}

/** The hub's snapshot as comparable data: room id → sorted member ids with flags. */
export function roomsShape(rooms) {
  const out = {};
  for (const r of rooms) {
    out[r.channelId] = {
      name: r.name,
      members: r.members.map((m) => `${m.userId}:${m.selfMute ? 'm' : ''}${m.selfDeaf ? 'd' : ''}${m.selfVideo ? 'v' : ''}`).sort(),
    };
  }
  return out;
}
