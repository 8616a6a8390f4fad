// Coded store failures: what a store throws when it cannot answer, so every adapter refuses (503, SERVER_ERROR) instead of guessing.

/** Why the store could not answer: its backend is unreachable, or it did not answer within `storeTimeout`. */
export type StoreUnavailableReason = 'unreachable' | 'timeout';

/**
 * Thrown (or rejected with) by a store that cannot reach its backend, and by the engine when a store call outlasts
 * `storeTimeout`. Routes answer it with 503 (source routes: `ErrorCode` 90994), the handshake with `SERVER_ERROR`,
 * and `presence.query()` rejects with it. A custom store should throw it too when its database is down.
 */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE' as const;
  readonly reason: StoreUnavailableReason;

  constructor(message: string, options: { reason?: StoreUnavailableReason; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StoreUnavailableError';
    this.reason = options.reason ?? 'unreachable';
  }
}

/** A store call that did not answer within `storeTimeout`; the operation may still complete in the store afterwards. */
export class StoreTimeoutError extends StoreUnavailableError {
  constructor(
    /** The store operation waited on, e.g. `'login'`, `'get'`. */
    readonly operation: string,
    /** The `storeTimeout` it outlasted, in ms. */
    readonly timeout: number,
  ) {
    super(`the presence store did not answer ${operation} within storeTimeout (${timeout} ms)`, { reason: 'timeout' });
    this.name = 'StoreTimeoutError';
  }
}

/**
 * True for a StoreUnavailableError, by its code rather than `instanceof`, so an error thrown by a store built against
 * another copy of this package (CommonJS and ESM side by side) is recognised too.
 */
export function isStoreUnavailable(error: unknown): error is StoreUnavailableError {
  return error instanceof Error && (error as { code?: unknown }).code === 'STORE_UNAVAILABLE';
}
