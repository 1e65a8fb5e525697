// Frames of a camera for card recognition (docs/clients.md "Webcams", docs/spec.md §12):
// `frames(stream, { fps }, onFrame)` hands `onFrame` a `VideoFrame` or an `ImageBitmap`
// of `stream` at most `fps` times a second until the returned function is called.
// Paced by `requestVideoFrameCallback` where the browser has it (a frame is then never
// delivered twice); elsewhere by `requestAnimationFrame`, or a timer where neither exists.

/** What {@link frames} delivers: a WebCodecs `VideoFrame` or an `ImageBitmap`. */
export type FrameKind = 'videoframe' | 'bitmap';

/** How often and as what {@link frames} delivers. */
export interface FrameOptions {
  /** Frames per second at most (default 2; a positive number, held to 0.1–60). The camera's own rate caps it. */
  fps?: number;
  /** `'videoframe'` (default where WebCodecs exists; the receiver must `close()` it) or `'bitmap'`. */
  as?: FrameKind;
}

/** One delivered frame and its size. */
export interface FrameInfo<F extends VideoFrame | ImageBitmap = VideoFrame | ImageBitmap> {
  /** The frame; a `VideoFrame` must be `close()`d, an `ImageBitmap` should be (or be transferred). */
  frame: F;
  /** Its width in pixels (> 0). */
  width: number;
  /** Its height in pixels (> 0). */
  height: number;
  /** `performance.now()` when the video presented it, in milliseconds. */
  time: number;
}

/** The lowest and highest rates {@link frames} accepts. */
const MIN_FPS = 0.1;
const MAX_FPS = 60;

/** A video element with the optional `requestVideoFrameCallback` (not in every browser). */
type PacedVideo = HTMLVideoElement & {
  requestVideoFrameCallback?: (cb: (now: number) => void) => number;
  cancelVideoFrameCallback?: (handle: number) => void;
};

/**
 * Delivers frames of `stream` (e.g. a remote player's camera from `Webcams`) to
 * `onFrame` at most `options.fps` times a second; returns a function that stops it
 * (no call of `onFrame` after it returns). A frame that cannot be grabbed is skipped.
 * Throws a `RangeError` for an `fps` that is not a positive number, a `TypeError` for an
 * unknown `as`, `'videoframe'` without WebCodecs, or a stream without a video track.
 */
export function frames(stream: MediaStream, options: FrameOptions & { as: 'bitmap' }, onFrame: (info: FrameInfo<ImageBitmap>) => void): () => void;
export function frames(stream: MediaStream, options: FrameOptions & { as: 'videoframe' }, onFrame: (info: FrameInfo<VideoFrame>) => void): () => void;
export function frames(stream: MediaStream, options: FrameOptions, onFrame: (info: FrameInfo) => void): () => void;
export function frames(
  stream: MediaStream,
  options: FrameOptions,
  onFrame: ((info: FrameInfo<ImageBitmap>) => void) | ((info: FrameInfo<VideoFrame>) => void),
): () => void {
  // `as` decides the frame's type, as the overloads above say.
  const deliverTo = onFrame as (info: FrameInfo) => void;
  const asked = options.fps ?? 2;
  if (typeof asked !== 'number' || !Number.isFinite(asked) || asked <= 0) throw new RangeError(`frames: fps must be a positive number, not ${String(asked)}`);
  const fps = Math.min(MAX_FPS, Math.max(MIN_FPS, asked));
  const interval = 1000 / fps;
  const hasWebCodecs = typeof VideoFrame === 'function';
  const as: FrameKind = options.as ?? (hasWebCodecs ? 'videoframe' : 'bitmap');
  if (as !== 'videoframe' && as !== 'bitmap') throw new TypeError(`frames: as must be 'videoframe' or 'bitmap', not ${String(as)}`);
  if (as === 'videoframe' && !hasWebCodecs) throw new TypeError("frames: this browser has no VideoFrame (WebCodecs): ask for as: 'bitmap'");
  if (stream.getVideoTracks().length === 0) throw new TypeError('frames: the stream has no video track');
  const video = document.createElement('video') as PacedVideo;
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  let stopped = false;
  let next = 0; // when the next frame is due (performance.now() ms)
  let pending: (() => void) | undefined;

  const deliver = async (now: number): Promise<void> => {
    const frame = as === 'videoframe'
      ? new VideoFrame(video, { timestamp: Math.round(now * 1000) })
      : await createImageBitmap(video);
    if (stopped) {
      frame.close();
      return;
    }
    const width = 'displayWidth' in frame ? frame.displayWidth : frame.width;
    const height = 'displayHeight' in frame ? frame.displayHeight : frame.height;
    deliverTo({ frame, width, height, time: now });
  };

  const tick = (now: number): void => {
    pending = undefined;
    if (stopped) return;
    if (now >= next && video.videoWidth > 0 && video.readyState >= 2) {
      // Keep the average at `fps` when the source is faster; restart the clock after a stall.
      next += interval;
      if (next <= now) next = now + interval;
      deliver(now).catch(() => { /* a frame that cannot be grabbed is skipped */ });
    }
    schedule();
  };

  const schedule = (): void => {
    if (stopped) return;
    if (typeof video.requestVideoFrameCallback === 'function') {
      const handle = video.requestVideoFrameCallback(tick);
      pending = () => video.cancelVideoFrameCallback?.(handle);
    } else if (typeof requestAnimationFrame === 'function') {
      const handle = requestAnimationFrame(tick);
      pending = () => cancelAnimationFrame(handle);
    } else {
      const handle = setTimeout(() => tick(performance.now()), interval);
      pending = () => clearTimeout(handle);
    }
  };

  video.play().catch(() => { /* muted playback is allowed; the ticks wait for data */ });
  schedule();
  return () => {
    if (stopped) return;
    stopped = true;
    pending?.();
    pending = undefined;
    video.pause();
    video.srcObject = null;
  };
}
