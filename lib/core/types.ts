// The public shapes of presence: statuses, change events, query results.

import type { Platform } from './platforms.js';
import type { Availability } from './availability.js';

export type { Platform, PlatformClass } from './platforms.js';
export type { Availability, LastSeenApprox, LastSeenVisibility } from './availability.js';

/** A user's derived status. */
export type UserStatus = 'Online' | 'PushOnline' | 'Offline';

/** The status of one logged-in device; a device that is neither is gone. */
export type InstanceStatus = 'Online' | 'PushOnline';

/** How many devices a user may be logged in on at once. */
export type LoginPolicy = 'single' | 'dual' | 'triple' | 'multi';

/** The callback's `Info.Action`. */
export type ChangeAction = 'Login' | 'Logout' | 'Disconnect';

/**
 * The callback's `Info.Reason`: `Register` (login or resume), `Unregister` (logout),
 * `LinkClose` (connection closed), `TimeOut` (heartbeat or background timeout),
 * `Kicked` (admin kick), `Expired` (PushOnline TTL reached).
 */
export type ChangeReason = 'Register' | 'Unregister' | 'LinkClose' | 'TimeOut' | 'Kicked' | 'Expired';

/** One device, as named in kick lists. */
export interface InstanceRef {
  platform: Platform;
  instanceId: string;
}

/** One state change of one device, as emitted by `presence.on('change')` and sent to the callback. */
export interface PresenceChange {
  userId: string;
  instanceId: string;
  platform: Platform;
  action: ChangeAction;
  reason: ChangeReason;
  /** The device's status after the change; `Offline` when it is gone. */
  instanceStatus: UserStatus;
  userStatus: UserStatus;
  previousUserStatus: UserStatus;
  /** Devices this login displaced (only on `Login`). */
  kicked: InstanceRef[];
  /** Per-user sequence number: strictly increasing with each change of that user, even across restarts (README "Sequence numbers"). */
  seq: number;
  /** When the change happened (ms since the epoch). */
  at: number;
  /** The client's address, when the transport knows it. */
  clientIp?: string;
  /** The client's version string, when it sent one. */
  version?: string;
  /** The user's last-seen time after the change (ISO 8601), as `query` would answer it. */
  lastSeen: string | null;
  customStatus: string | null;
  /** The user's availability after the change (`away` while idle). */
  availability: Availability;
  /** While automatically away: the user's last activity (ISO 8601); null otherwise. */
  idleSince: string | null;
}

/** A change of a user's custom status text. */
export interface CustomStatusChange {
  userId: string;
  customStatus: string | null;
  /** The status it replaced (null when none). */
  previousCustomStatus?: string | null;
  userStatus: UserStatus;
  availability: Availability;
  /** `set` by the user or the server, `expired` when its ttl ran out. */
  reason: 'set' | 'expired';
  /** When it runs out (ISO 8601), or null. */
  expiresAt: string | null;
  at: number;
}

/** A change of a user's availability or of their automatic idleness (`presence.on('availability')`). */
export interface AvailabilityChange {
  userId: string;
  /** The availability shown after the change (`away` while idle). */
  availability: Availability;
  previousAvailability: Availability;
  /** While automatically away: the user's last activity (ISO 8601); null otherwise. */
  idleSince: string | null;
  /** `set` (by a device or the server), `idle` (idleTimeout ran out), `active` (activity after idleness). */
  reason: 'set' | 'idle' | 'active';
  userStatus: UserStatus;
  customStatus: string | null;
  at: number;
}

export interface InstancePresence {
  instanceId: string;
  platform: Platform;
  status: InstanceStatus;
  /** When the device entered its current status (ISO 8601). */
  since: string;
  version: string | null;
}

/** What `presence.query()` and `GET /users/:userId` answer for one user. */
export interface UserPresence {
  userId: string;
  status: UserStatus;
  /** When the user was last Online (ISO 8601); now, for a user who is Online; null if never seen. */
  lastSeen: string | null;
  customStatus: string | null;
  /** The truth, for the backend: `invisible` users are marked so (viewers are shown them Offline). */
  availability: Availability;
  /** While automatically away: the user's last activity (ISO 8601); null otherwise. */
  idleSince: string | null;
  /** Present unless the query asked for `{ detail: false }`. */
  instances?: InstancePresence[];
}

/** Counts answered by `GET /stats`. */
export interface PresenceStats {
  /** `Offline`: offline users the store remembers (MemoryStore's last-seen cache; always 0 for RedisStore). */
  users: Record<UserStatus, number>;
  instances: Record<InstanceStatus, number>;
  platforms: Record<Platform, Record<InstanceStatus, number>>;
}

/** Why the server ended a connection's instance. */
export type EndReason = 'LoginElsewhere' | 'AdminKick' | 'TimeOut' | 'Logout' | 'Expired';

/** What a connection is told when the server ends its instance. */
export interface EndNotice {
  reason: EndReason;
  /** The device that displaced this one (always set for `LoginElsewhere`). */
  by?: InstanceRef;
}

/** Where warnings and errors go. `console` fits. */
export interface Logger {
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}
