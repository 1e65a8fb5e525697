// Reconnect delays: exponential backoff with "full jitter" (each wait is uniform in
// [0, min(cap, base · 2^attempt)]), so that a hub restart does not bring every
// browser back in the same instant.

/** How long to wait between reconnect attempts. */
export interface BackoffOptions {
  /** The first step, in milliseconds (default 500). */
  baseMs?: number;
  /** The largest step, in milliseconds (default 10 000). */
  maxMs?: number;
  /** A source of randomness in [0, 1) (default `Math.random`; tests inject their own). */
  random?: () => number;
}

/** The wait before reconnect attempt `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 500;
  const max = options.maxMs ?? 10_000;
  const random = options.random ?? Math.random;
  const step = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * step);
}
