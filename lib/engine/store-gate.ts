// A store whose init answered a promise: every call waits for it, then goes straight through once it is done.

import { StoreUnavailableError } from '../core/errors.js';
import { STORE_CORE_METHODS, type PresenceStore } from '../core/store.js';

/** The methods that wait for init; `close` and `handOver` wait for it to settle either way (a failed init still releases). */
const GATED = [...STORE_CORE_METHODS, 'setAvailability'] as const;
const RELEASING = ['close', 'handOver'] as const satisfies readonly (keyof PresenceStore)[];

/**
 * The store as the engine uses it while `ready` (its init) runs: calls made before it resolves run after it; if it rejects they
 * reject with a StoreUnavailableError that names the cause, so routes answer 503 and logins SERVER_ERROR.
 */
export function gateUntilReady(store: PresenceStore, ready: PromiseLike<void>): { store: PresenceStore; ready: Promise<void> } {
  let state: 'pending' | 'ready' | 'failed' = 'pending';
  let failure: StoreUnavailableError | undefined;
  const settled = Promise.resolve(ready).then(
    () => {
      state = 'ready';
    },
    (error: unknown) => {
      state = 'failed';
      const text = error instanceof Error ? error.message : String(error);
      failure = new StoreUnavailableError(`the presence store failed to start (its init rejected: ${text})`, { cause: error });
    },
  );
  const gate: Record<string, unknown> = {};
  const methods = store as unknown as Record<string, ((...args: unknown[]) => unknown) | undefined>;
  for (const name of GATED) {
    const method = methods[name];
    if (typeof method !== 'function') continue;
    gate[name] = (...args: unknown[]) => {
      if (state === 'ready') return method.apply(store, args);
      if (state === 'failed') return Promise.reject(failure);
      return settled.then(() => (state === 'ready' ? method.apply(store, args) : Promise.reject(failure)));
    };
  }
  for (const name of RELEASING) {
    const method = methods[name];
    if (typeof method !== 'function') continue;
    gate[name] = (...args: unknown[]) => (state === 'pending' ? settled.then(() => method.apply(store, args)) : method.apply(store, args));
  }
  // Asked synchronously on every connection: straight through (nothing was live before init).
  if (typeof store.mayMissEnds === 'function') gate.mayMissEnds = () => store.mayMissEnds?.() ?? false;
  if (store.rooms !== undefined) gate.rooms = store.rooms;
  if (typeof store.sharedRooms === 'function') gate.sharedRooms = () => store.sharedRooms?.();
  return { store: gate as unknown as PresenceStore, ready: settled.then(() => (failure ? Promise.reject(failure) : undefined)) };
}
