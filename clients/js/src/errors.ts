// Typed errors of the client: an HTTP error of the hub carries the contract's
// error code (docs/contract.md "HTTP errors") and, on 429/503, `Retry-After`; a
// refused sign-in on the socket stops the client with a GatewayAuthError.
import type { ErrorCode } from './contract.js';

/** An error answer of the hub's HTTP API: `{"message","code","details"?}` and its status. */
export class HubApiError extends Error {
  /** The HTTP status (e.g. 403, 429). */
  readonly status: number;
  /** The contract's error code (`FORBIDDEN`, `RATE_LIMITED`, …). */
  readonly code: ErrorCode;
  /** Structured detail, e.g. `{ field: 'userLimit' }`. */
  readonly details: Record<string, unknown> | undefined;
  /** Seconds to wait before trying again (`Retry-After`), when the hub said so. */
  readonly retryAfter: number | undefined;

  constructor(status: number, code: ErrorCode, message: string, details?: Record<string, unknown>, retryAfter?: number) {
    super(message);
    this.name = 'HubApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

/** The hub could not be reached (a network error or a timeout); nothing is known of the outcome. */
export class HubUnreachableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HubUnreachableError';
  }
}

/**
 * The hub refused the token `getToken` gave, twice in a row (close 4401 before
 * `auth.ok`): the client stops instead of retrying forever. Sign in again and
 * call `connect` anew.
 */
export class GatewayAuthError extends Error {
  /** Always `UNAUTHORIZED`. */
  readonly code: ErrorCode = 'UNAUTHORIZED';
  constructor(message: string) {
    super(message);
    this.name = 'GatewayAuthError';
  }
}
