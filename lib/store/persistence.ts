// Persistence hooks for MemoryStore: what is loaded at start and what is written behind, in batches.

import type { Platform } from '../core/platforms.js';
import type { InstanceStatus } from '../core/types.js';
import type { Availability } from '../core/availability.js';

/** One device as persisted. */
export interface PersistedInstance {
  instanceId: string;
  platform: Platform;
  status: InstanceStatus;
  /** When it entered its status (ms). */
  since: number;
  version: string | null;
  sessionId: string;
  order: number;
}

/** One user as persisted: the whole record, written each time it changed. */
export interface PersistedUser {
  userId: string;
  lastSeen: number | null;
  customStatus: string | null;
  /** When the custom status runs out (ms), or null (absent in what older versions saved). */
  customStatusExpiresAt?: number | null;
  /** The chosen availability (absent in what older versions saved: `available`). */
  availability?: Availability;
  idleSince?: number | null;
  /** While invisible: the last seen and custom status others are shown. */
  frozenLastSeen?: number | null;
  frozenCustomStatus?: string | null;
  seq: number;
  order: number;
  instances: PersistedInstance[];
}

export interface PersistedRevokedSession {
  /** The session's user (absent in what older versions saved: such a session is then refused for any user). */
  userId?: string;
  sessionId: string;
  /** When the revocation may be forgotten (ms). */
  expiresAt: number;
}

/** What `load()` answers: everything saved before. */
export interface PersistedState {
  users: Iterable<PersistedUser>;
  revokedSessions?: Iterable<PersistedRevokedSession>;
}

/** What `save()` receives: the users changed since the last save (their whole current record) and sessions revoked since. */
export interface PersistenceBatch {
  users: PersistedUser[];
  revokedSessions: PersistedRevokedSession[];
}

/**
 * Where a MemoryStore keeps its presence across restarts: `new MemoryStore({ persistence })`.
 * `load` runs once at start (the store answers after it); `save` is called behind the live path,
 * at most every `flushInterval`, and once more at `close()`. A failed save is logged and its
 * users are written again with the next batch.
 */
export interface Persistence {
  load(): PersistedState | Promise<PersistedState>;
  save(batch: PersistenceBatch): void | Promise<void>;
  /** Milliseconds between batches. Defaults to 1000. */
  flushInterval?: number;
}
