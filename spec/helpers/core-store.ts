// A store of its own, as an integrator writes one: the required core (plus init and close) delegating to a MemoryStore,
// without the MemoryStore's own capabilities (in-process rooms, availability), to extend with what a case needs.

import { MemoryStore, type PresenceStore, type PresenceStoreCore } from '../../lib/index.js';

/** The core of `inner` as plain functions (no `rooms`, no `setAvailability`), with its `init` and `close` unless `coreOnly`. */
export function coreStore(inner: MemoryStore = new MemoryStore(), options: { coreOnly?: boolean } = {}): PresenceStore {
  const core: PresenceStoreCore = {
    login: (request) => inner.login(request),
    markPushOnline: (request) => inner.markPushOnline(request),
    remove: (request) => inner.remove(request),
    kick: (request) => inner.kick(request),
    setCustomStatus: (request) => inner.setCustomStatus(request),
    get: (userIds) => inner.get(userIds),
    stats: () => inner.stats(),
  };
  return options.coreOnly ? core : { ...core, init: (context) => inner.init(context), close: () => inner.close() };
}
