// The sign-in hand-off (docs/spec.md §7, §11): the app sends the browser to the
// hub's `/auth/login`; the hub's callback lands on `<page>#token=<jwt>` (or
// `#error=…`). `takeToken` reads that fragment once and removes it from the
// address bar and the history, so the token is never bookmarked, shared or logged.
import { hubOrigin } from './api.js';

/** What the callback left in the page's fragment. */
export interface SignInResult {
  /** The app's JWT, when sign-in succeeded. */
  token: string | null;
  /** Why it did not, when Discord or the hub said so. */
  error: string | null;
}

/** The URL to send the browser to for signing in with Discord. */
export function loginUrl(url?: string): string {
  return hubOrigin(url) + '/auth/login';
}

/** The parts of `window` the hand-off reads; injectable for tests. */
export interface LocationLike {
  location: { hash: string; pathname: string; search: string };
  history: { replaceState(data: unknown, unused: string, url: string): void };
}

/** Reads `#token=` / `#error=` once, removing the fragment from the address bar and the history. */
export function takeToken(win: LocationLike = globalThis as unknown as LocationLike): SignInResult {
  const hash = win.location.hash;
  if (!hash || hash.length < 2) return { token: null, error: null };
  const params = new URLSearchParams(hash.slice(1));
  const token = params.get('token');
  const error = params.get('error_description') ?? params.get('error');
  if (token || error) win.history.replaceState(null, '', win.location.pathname + win.location.search);
  return { token, error };
}
