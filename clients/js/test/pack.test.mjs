// The package as a web developer gets it: `npm pack`, `npm install <tarball>` into a
// fresh app, then the app's TypeScript (the docs/clients.md example, in plain TS)
// type-checks against the published `.d.ts` — typed event payloads, typed errors —
// and the ESM entry point loads in Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HERE } from './support.mjs';

const PKG = path.resolve(HERE, '..');
const TSC = path.join(PKG, 'node_modules/typescript/bin/tsc');

const example = `
import { connect, frames, HubApiError, Webcams, type GatewayClient, type LiveRoom, type VoiceJoined } from '@spell-coven/gateway-client';

export function start(getToken: () => Promise<string>): GatewayClient {
  const hub = connect({ url: 'http://127.0.0.1:3000', getToken: () => getToken() });
  hub.on('voice.joined', (payload, frame) => {
    const who: string = payload.userId;
    const seq: number = frame.seq;
    const same: VoiceJoined = payload;
    void who; void seq; void same;
    // @ts-expect-error a voice.joined payload has no 'speaking'
    void payload.speaking;
  });
  hub.on('voice.state', (payload) => { const muted: boolean = payload.selfMute; void muted; });
  hub.on('rooms', (rooms: readonly LiveRoom[]) => rooms.map((r) => r.members.length));
  // @ts-expect-error not an event of the contract
  hub.on('voice.jumped', () => {});
  void hub.createRoom({ name: 'Commander night', userLimit: 4 }).catch((e: unknown) => {
    if (e instanceof HubApiError && e.code === 'RATE_LIMITED') return e.retryAfter;
    return undefined;
  });
  // @ts-expect-error userLimit is a number
  void hub.createRoom({ userLimit: 'four' });
  return hub;
}

// The README's card-recognition example (clients/js/README.md "Webcams and card recognition").
export function recognise(hub: GatewayClient, me: string, recogniser: Worker): Webcams {
  const cams = new Webcams({ client: hub, me });
  void cams.cameraOn();
  const stops = new Map<string, () => void>();
  cams.on('stream', (userId: string, stream: MediaStream | null) => {
    stops.get(userId)?.();
    stops.delete(userId);
    if (stream) {
      stops.set(userId, frames(stream, { fps: 2, as: 'bitmap' }, ({ frame, width, height }) => {
        const bitmap: ImageBitmap = frame;
        recogniser.postMessage({ userId, frame: bitmap, width, height }, [bitmap]);
      }));
    }
  });
  const all: Map<string, MediaStream> = cams.remoteStreams();
  void all;
  // A VideoFrame by default: close it when done.
  const stop = frames(new MediaStream(), { fps: 5, as: 'videoframe' }, ({ frame }) => { const f: VideoFrame = frame; f.close(); });
  stop();
  // @ts-expect-error a bitmap is not a VideoFrame
  frames(new MediaStream(), { as: 'bitmap' }, ({ frame }) => { const f: VideoFrame = frame; void f; });
  return cams;
}
`;

test('npm pack → npm install → the example type-checks and imports', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gateway-client-pack-'));
  try {
    execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: PKG, stdio: ['ignore', 'pipe', 'inherit'] });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made a tarball');
    const files = execFileSync('tar', ['-tzf', path.join(dir, tarball)], { encoding: 'utf8' }).split('\n');
    assert.ok(files.includes('package/dist/index.js') && files.includes('package/dist/index.d.ts'), files.join(', '));
    assert.ok(!files.some((f) => f.includes('/test/') || f.includes('/src/')), 'only dist and the README ship');

    const app = path.join(dir, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', path.join(dir, tarball)], { cwd: app, stdio: ['ignore', 'pipe', 'inherit'] });
    writeFileSync(path.join(app, 'example.ts'), example);
    writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], types: [], strict: true, noEmit: true },
      files: ['example.ts'],
    }));
    execFileSync(process.execPath, [TSC, '-p', app], { cwd: app, stdio: ['ignore', 'inherit', 'inherit'] });
    const loaded = execFileSync(process.execPath, ['--input-type=module', '-e',
      "const m = await import('@spell-coven/gateway-client'); console.log(typeof m.connect, m.EVENT_NAMES.length)"], { cwd: app, encoding: 'utf8' });
    assert.equal(loaded.trim(), 'function 6');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
