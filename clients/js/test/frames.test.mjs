// Unit tests of the frame helper (src/frames.ts) in Node with a scripted video element:
// the test plays the camera's frames itself (30 a second of a made-up clock), so the
// pacing is checked exactly, without a browser or a real clock: about `fps` frames a
// second delivered, each frame at most once, none after stop, the requestAnimationFrame
// fallback, and clear errors for bad options. The same in real Chromium, with real
// cameras, is e2e/webcams-hubs.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frames } from '../dist/index.js';

/** A video element whose frame callbacks the test fires. */
class FakeVideo {
  constructor(withRvfc) {
    this.videoWidth = 640;
    this.videoHeight = 480;
    this.readyState = 4;
    this.srcObject = null;
    this.callbacks = new Map();
    this.nextHandle = 1;
    this.paused = true;
    if (!withRvfc) this.requestVideoFrameCallback = undefined;
  }
  async play() { this.paused = false; }
  pause() { this.paused = true; }
  requestVideoFrameCallback(cb) { const h = this.nextHandle++; this.callbacks.set(h, cb); return h; }
  cancelVideoFrameCallback(h) { this.callbacks.delete(h); }
}

/** Installs the browser globals `frames` uses; returns the video and the rAF queue. */
function browser({ rvfc = true, webCodecs = true } = {}) {
  const video = new FakeVideo(rvfc);
  const raf = new Map();
  let rafHandle = 1;
  globalThis.document = { createElement: (tag) => { assert.equal(tag, 'video'); return video; } };
  globalThis.requestAnimationFrame = (cb) => { const h = rafHandle++; raf.set(h, cb); return h; };
  globalThis.cancelAnimationFrame = (h) => raf.delete(h);
  globalThis.createImageBitmap = async (v) => ({ kind: 'bitmap', width: v.videoWidth, height: v.videoHeight, close() { this.closed = true; } });
  if (webCodecs) {
    globalThis.VideoFrame = class {
      constructor(v, init) { this.kind = 'videoframe'; this.displayWidth = v.videoWidth; this.displayHeight = v.videoHeight; this.timestamp = init.timestamp; }
      close() { this.closed = true; }
    };
  } else {
    delete globalThis.VideoFrame;
  }
  return { video, raf };
}

const stream = { getVideoTracks: () => [{}] };

/** Presents `seconds` of a 30 fps camera: fires every pending callback at each frame time. */
async function present(queue, seconds, from = 0) {
  for (let i = 0; i < seconds * 30; i++) {
    const now = from + (i * 1000) / 30;
    const due = [...queue.values()];
    queue.clear();
    for (const cb of due) cb(now);
    await new Promise((r) => setImmediate(r)); // createImageBitmap resolves
  }
}

test('frames arrive at about the chosen rate, each at most once, with their size', async () => {
  const { video } = browser();
  const got = [];
  // 7 fps from a 30 fps camera: gaps of 4 or 5 camera frames, averaging 7 a second
  // (always waiting 1/7 s would give 6).
  const stop = frames(stream, { fps: 7 }, (info) => got.push(info));
  assert.equal(video.srcObject, stream);
  assert.equal(video.paused, false, 'the hidden video plays');
  await present(video.callbacks, 3);
  assert.ok(got.length >= 20 && got.length <= 22, `${got.length} frames in 3 s at 7 fps`);
  assert.ok(got.every((f) => f.frame.kind === 'videoframe' && f.width === 640 && f.height === 480), 'VideoFrames by default, with WebCodecs');
  const times = got.map((f) => f.time);
  assert.equal(new Set(times).size, times.length, 'no frame twice');
  stop();
  assert.equal(video.callbacks.size, 0, 'the pending callback is cancelled');
  assert.equal(video.srcObject, null);
});

test('as: bitmap gives ImageBitmaps; a slower camera caps the rate; nothing after stop', async () => {
  const { video } = browser();
  const got = [];
  const stop = frames(stream, { fps: 60, as: 'bitmap' }, (info) => got.push(info));
  await present(video.callbacks, 1);
  assert.ok(got.length >= 29 && got.length <= 30, `${got.length}: at most the camera's 30 frames`);
  assert.ok(got.every((f) => f.frame.kind === 'bitmap' && f.width === 640));
  // A frame grabbed when stop() comes is closed, not delivered.
  const cb = [...video.callbacks.values()][0];
  cb(5000);
  stop();
  const before = got.length;
  await new Promise((r) => setImmediate(r));
  assert.equal(got.length, before, 'no frame after stop');
  await present(video.callbacks, 1, 6000);
  assert.equal(got.length, before);
});

test('without requestVideoFrameCallback it paces itself on requestAnimationFrame', async () => {
  const { video, raf } = browser({ rvfc: false });
  const got = [];
  const stop = frames(stream, { fps: 2, as: 'bitmap' }, (info) => got.push(info));
  assert.equal(video.callbacks.size, 0);
  await present(raf, 5);
  assert.ok(got.length >= 9 && got.length <= 11, `${got.length} frames in 5 s at 2 fps`);
  stop();
  assert.equal(raf.size, 0);
});

test('no frame before the video has data; a stall restarts the clock', async () => {
  const { video } = browser();
  const got = [];
  video.videoWidth = 0;
  video.readyState = 1;
  frames(stream, { fps: 5 }, (info) => got.push(info));
  await present(video.callbacks, 1);
  assert.equal(got.length, 0);
  video.videoWidth = 640;
  video.readyState = 4;
  await present(video.callbacks, 1, 1000);
  await present(video.callbacks, 1, 60000); // after a long stall: no burst to catch up
  assert.ok(got.length >= 9 && got.length <= 11, `${got.length} frames in 2 s of data at 5 fps`);
});

test('bad options are clear errors', () => {
  browser({ webCodecs: false });
  const noop = () => {};
  for (const fps of [0, -1, Number.NaN, Infinity, '5']) assert.throws(() => frames(stream, { fps }, noop), RangeError, String(fps));
  assert.throws(() => frames(stream, { as: 'jpeg' }, noop), /as must be/);
  assert.throws(() => frames(stream, { as: 'videoframe' }, noop), /no VideoFrame/);
  assert.throws(() => frames({ getVideoTracks: () => [] }, {}, noop), /no video track/);
  // Without WebCodecs the default is an ImageBitmap.
  const { video } = browser({ webCodecs: false });
  const got = [];
  frames(stream, {}, (info) => got.push(info));
  return present(video.callbacks, 1).then(() => assert.ok(got.length >= 2 && got[0].frame.kind === 'bitmap'));
});
