// A store whose init answered a promise: every call waits for it, then goes straight through once it is done.

import { StoreUnavailableError } from '../core/errors.js';
import type { SharedRoomsBackend } from '../core/shared-rooms.js';
import { STORE_CORE_METHODS, type PresenceStore } from '../core/store.js';

/** The methods that wait for init. */
const GATED = [...STORE_CORE_METHODS, 'setAvailability'] as const;
/** Those that release: they wait for init to settle either way (a failed init still releases), at most `closeWait`. */
const RELEASING = ['close', 'handOver'] as const satisfies readonly (keyof PresenceStore)[];

type Method = (...args: unknown[]) => unknown;

/**
 * The store as the engine uses it while `ready` (its init) runs: calls made before it resolves run after it; if it rejects they
 * reject with a StoreUnavailableError that names the cause, so routes answer 503 and logins SERVER_ERROR. Methods are looked up
 * at each call (a store patched after createPresence is called as patched). `close` waits for init at most `closeWait` ms, so
 * an init that never settles cannot hold a shutdown.
 */
export function gateUntilReady(store: PresenceStore, ready: PromiseLike<void>, closeWait: number): { store: PresenceStore; ready: Promise<void> } {
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
  const methods = store as unknown as Record<string, Method | undefined>;
  const call = (name: string, args: unknown[]): unknown => (methods[name] as Method).apply(store, args);
  /** Runs `work` now once ready, after init when it is pending, or rejects with the failure. */
  const whenReady = <T>(work: () => T): T | Promise<Awaited<T>> => {
    if (state === 'ready') return work();
    if (state === 'failed') return Promise.reject(failure);
    return settled.then(() => (state === 'ready' ? (work() as Awaited<T>) : Promise.reject(failure)));
  };
  const settledOrTimeout = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, closeWait);
      timer.unref?.();
      void settled.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  const gate: Record<string, unknown> = {};
  for (const name of GATED) {
    if (typeof methods[name] !== 'function') continue;
    gate[name] = (...args: unknown[]) => whenReady(() => call(name, args));
  }
  for (const name of RELEASING) {
    if (typeof methods[name] !== 'function') continue;
    gate[name] = (...args: unknown[]) => (state === 'pending' ? settledOrTimeout().then(() => call(name, args)) : call(name, args));
  }
  // Asked synchronously on every connection: straight through (nothing was live before init).
  if (typeof store.mayMissEnds === 'function') gate.mayMissEnds = () => store.mayMissEnds?.() ?? false;
  if (store.rooms !== undefined) gate.rooms = store.rooms;
  if (typeof store.sharedRooms === 'function')
    gate.sharedRooms = () => gateRooms(store.sharedRooms!(), whenReady, settled, settledOrTimeout, () => state === 'ready');
  return { store: gate as unknown as PresenceStore, ready: settled.then(() => (failure ? Promise.reject(failure) : undefined)) };
}

/** The rooms binding behind the same gate: started once the store is ready (never after a failed init), reads wait for it. */
function gateRooms(
  backend: SharedRoomsBackend,
  whenReady: <T>(work: () => T) => T | Promise<Awaited<T>>,
  settled: Promise<void>,
  settledOrTimeout: () => Promise<void>,
  isReady: () => boolean,
): SharedRoomsBackend {
  let started = false;
  const later = (work: () => void): void => {
    if (isReady()) return work();
    void settled.then(() => {
      if (isReady()) work();
    });
  };
  return {
    start: (owner, listener) =>
      later(() => {
        started = true;
        backend.start(owner, listener);
      }),
    set: (...args) => whenReady(() => backend.set(...args)) as Promise<void>,
    state: (room) => whenReady(() => backend.state(room)) as ReturnType<SharedRoomsBackend['state']>,
    count: (room) => whenReady(() => backend.count(room)) as Promise<number>,
    page: (...args) => whenReady(() => backend.page(...args)) as ReturnType<SharedRoomsBackend['page']>,
    status: (userId) => later(() => backend.status(userId)),
    unlist: (room) => later(() => backend.unlist(room)),
    close: async (holdMs) => {
      await settledOrTimeout();
      if (started) await backend.close(holdMs);
    },
  };
}
