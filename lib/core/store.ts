// The store interface: where presence lives (memory by default, Redis for many processes).

import type { Clock } from './clock.js';
import type { PolicyLimits } from './policy.js';
import type { Platform, PlatformClass } from './platforms.js';
import type { ChangeAction, ChangeReason, EndNotice, InstanceRef, InstanceStatus, PresenceStats, UserStatus } from './types.js';
import type { Logger } from './types.js';
import type { SharedRoomsBackend } from './shared-rooms.js';
import type { Availability } from './availability.js';

export type MaybePromise<T> = T | Promise<T>;

/** One logged-in device as the store keeps it. */
export interface StoredInstance {
  readonly instanceId: string;
  readonly platform: Platform;
  readonly status: InstanceStatus;
  /** When it entered its current status (ms). */
  readonly since: number;
  readonly version: string | undefined;
  readonly sessionId: string;
  /** Grows with each login or resume of the user: the policy kicks the lowest first. */
  readonly order: number;
}

export interface StoredUser {
  readonly userId: string;
  readonly instances: readonly StoredInstance[];
  /** When the user was last Online (ms), or null. */
  readonly lastSeen: number | null;
  readonly customStatus: string | null;
  /** The availability the user chose; absent means `available` (a store without availability). */
  readonly availability?: Availability;
  /** While automatic away holds (over a chosen `available`): the user's last activity (ms); null or absent otherwise. */
  readonly idleSince?: number | null;
  /** When the custom status runs out (ms); null or absent when it does not. A store answers an expired one as null. */
  readonly customStatusExpiresAt?: number | null;
  /** While invisible: what others are shown, frozen when the user went invisible (last seen ms, custom status). */
  readonly frozenLastSeen?: number | null;
  readonly frozenCustomStatus?: string | null;
}

/** The user's availability state after a store call, as change events need it. */
export interface StoreUserState {
  readonly userId: string;
  readonly userStatus: UserStatus;
  readonly lastSeen: number | null;
  readonly customStatus: string | null;
  readonly customStatusExpiresAt: number | null;
  readonly availability: Availability;
  readonly idleSince: number | null;
  readonly frozenLastSeen: number | null;
  readonly frozenCustomStatus: string | null;
}

/**
 * One availability write, atomic in the store. `set`: the user chose `availability` (this is activity too: idleness ends);
 * `activity`: the user did something (raises the last activity, ends automatic away); `idle`: automatic away from
 * `idleSince`, taken only if the chosen availability is `available` and no activity later than `idleSince` was recorded.
 */
export type StoreAvailabilityRequest =
  | { readonly kind: 'set'; readonly userId: string; readonly at: number; readonly availability: Availability }
  | { readonly kind: 'activity'; readonly userId: string; readonly at: number }
  | { readonly kind: 'idle'; readonly userId: string; readonly at: number; readonly idleSince: number };

/** What an availability write did: the state after it and the availability shown before it. */
export interface StoreAvailabilityResult {
  readonly state: StoreUserState;
  readonly previousAvailability: Availability;
  readonly previousIdleSince: number | null;
}

/**
 * Sets (customStatus a string) or clears (null) the user's custom status. `expiresAt` (ms): when it runs out (null or absent:
 * never). `ifExpiresAt`: clear only a status whose expiry is exactly that (a timer clearing what ran out), answering null otherwise.
 */
export interface StoreCustomStatusRequest {
  readonly userId: string;
  readonly customStatus: string | null;
  readonly at: number;
  readonly expiresAt?: number | null;
  readonly ifExpiresAt?: number;
}

/** A device a login displaced, with the session that is now revoked. */
export interface StoreKicked extends InstanceRef {
  readonly sessionId: string;
}

/** What one store operation changed for one device; the engine adds action and reason. */
export interface StoreChange {
  readonly userId: string;
  readonly instanceId: string;
  readonly platform: Platform;
  readonly sessionId: string;
  /** The device's status after the change; `Offline` when it is gone. */
  readonly instanceStatus: UserStatus;
  readonly userStatus: UserStatus;
  readonly previousUserStatus: UserStatus;
  readonly seq: number;
  readonly at: number;
  readonly kicked: readonly StoreKicked[];
  readonly version: string | undefined;
  /** The user's last-seen time and custom status after the change. */
  readonly lastSeen: number | null;
  readonly customStatus: string | null;
  /** The user's chosen availability and idleness (absent: `available`, not idle). */
  readonly availability?: Availability;
  readonly idleSince?: number | null;
}

export interface StoreLoginRequest {
  readonly userId: string;
  readonly platform: Platform;
  readonly instanceId: string;
  /** The session the client asks to resume, if any. */
  readonly resumeSessionId: string | undefined;
  /** The session to create if this is a fresh login. */
  readonly newSessionId: string;
  readonly version: string | undefined;
  readonly at: number;
  readonly limits: PolicyLimits;
  /** The owner token of the process taking the connection (see StoreContext.owner). */
  readonly owner?: string | undefined;
}

export type StoreLoginResult =
  /**
   * The session was revoked by a logout or kick: refuse the connection. `notice`, when the store kept it, says what ended it
   * (told to a device re-asserted after an outage that missed its end).
   */
  | { readonly outcome: 'revoked'; readonly notice?: EndNotice }
  /** The instance was still logged in with that session; `change` is null if it was already Online. */
  | { readonly outcome: 'resumed'; readonly sessionId: string; readonly change: StoreChange | null }
  | { readonly outcome: 'created'; readonly sessionId: string; readonly change: StoreChange };

/**
 * A mobile device lost its connection: Online → PushOnline, if it still holds `sessionId` (and, when `owner` is given, is still
 * held by that process: a device that moved to another process is not touched by its old process's late close).
 */
export interface StorePushOnlineRequest {
  readonly userId: string;
  readonly instanceId: string;
  readonly sessionId: string;
  readonly at: number;
  /** When the device was last heard (ms): the user's last seen if it was Online. */
  readonly lastSeen: number;
  readonly owner?: string | undefined;
}

/**
 * A device is gone (logout, closed, timed out), if it still holds `sessionId` (any session when absent). `revoke` (a logout)
 * refuses later resumes of the session. With `owner`, a device other processes still hold only loses this process as a holder.
 */
export interface StoreRemoveRequest {
  readonly userId: string;
  readonly instanceId: string;
  readonly sessionId?: string | undefined;
  readonly at: number;
  /** When the device was last heard (ms). */
  readonly lastSeen: number;
  readonly revoke: boolean;
  readonly owner?: string | undefined;
}

/** Admin kick: removes and revokes the user's devices matching `platform` and `instanceId` (every device without either). */
export interface StoreKickRequest {
  readonly userId: string;
  readonly platform?: Platform | undefined;
  readonly instanceId?: string | undefined;
  readonly at: number;
}

/** A device with a live connection to this process, as the engine reports it to its store. */
export interface LiveInstance {
  readonly userId: string;
  readonly instanceId: string;
  readonly platform: Platform;
  readonly sessionId: string;
  readonly version: string | undefined;
  /** When this process took the device up (its login or resume answered here), by the engine's clock. */
  readonly takenUpAt?: number;
}

/**
 * What `createPresence` hands its store before first use. A single-process store needs the clock, the TTL and `expired`; the
 * rest serves the multi-process part.
 */
export interface StoreContext {
  readonly clock: Clock;
  readonly pushOnlineTtl: number;
  /** The reconnect grace of each class (ms): a store closing another process's devices holds each back this long after that process went. */
  readonly reconnectGrace: Readonly<Record<PlatformClass, number>>;
  readonly logger: Logger;
  /** This process's owner token: the engine passes it with every login and transport end. */
  readonly owner: string;
  /** The longest the engine waits on one store call for a request or login (ms): a store's own waits need not be longer. */
  readonly storeTimeout?: number;
  /** Report a PushOnline device that reached its TTL and is gone (exactly once in the whole cluster). */
  readonly expired: (change: StoreChange) => void;
  /** Report a change the store made by itself (e.g. closing the devices of a dead process), exactly once in the cluster. */
  readonly changed: (change: StoreChange, action: ChangeAction, reason: ChangeReason) => void;
  /** Tell this process that a session was ended elsewhere (a kick on another process), so its connections are told. */
  readonly ended: (sessionId: string, notice: EndNotice) => void;
  /** The devices connected to this process right now, for a store re-asserting them after an outage. */
  readonly liveInstances: () => Iterable<LiveInstance>;
}

/** Which of a user's devices an admin kick ends (every device without either). */
export type KickFilter = Pick<StoreKickRequest, 'platform' | 'instanceId'>;

/**
 * The required core of a store: where presence lives. Every method may answer a value or a promise, and is one atomic step for
 * the user it touches: `login` decides the policy's kicks and applies them together, so two racing logins (even on two
 * processes) never leave more devices than the policy allows.
 */
export interface PresenceStoreCore {
  login(request: StoreLoginRequest): MaybePromise<StoreLoginResult>;
  markPushOnline(request: StorePushOnlineRequest): MaybePromise<StoreChange | null>;
  remove(request: StoreRemoveRequest): MaybePromise<StoreChange | null>;
  kick(request: StoreKickRequest): MaybePromise<StoreChange[]>;
  /**
   * Answers the user's state after the write, or (a store without availability) only the user's status; null when `ifExpiresAt`
   * did not match.
   */
  setCustomStatus(request: StoreCustomStatusRequest): MaybePromise<UserStatus | StoreUserState | null>;
  /** The users asked for, in order; undefined for users never seen (or forgotten). */
  get(userIds: readonly string[]): MaybePromise<readonly (StoredUser | undefined)[]>;
  stats(): MaybePromise<PresenceStats>;
}

/**
 * The multi-process part: a store shared by several processes implements both methods (createPresence refuses one without the
 * other). A single-process store implements neither.
 */
export interface MultiProcessStore {
  /**
   * Closes the store like `close()`, but leaves this process's live devices to be resumed on other processes until `until` (ms;
   * each class's reconnect grace from now, if later). One not resumed by then is ended as a closed connection by whichever
   * process sweeps, once. Without it, `close()` of the presence ends them.
   */
  handOver(until: number): MaybePromise<void>;
  /**
   * True while this process may not have heard of ends made elsewhere (RedisStore: its subscription to them is not in place
   * yet, or it is reconciling after a reconnection). The engine then checks a new connection of a session live here with the
   * store rather than joining it locally, so that a session kicked meanwhile is refused.
   */
  mayMissEnds(): boolean;
}

/**
 * A store: the required core, the optional parts (init, close, availability, rooms), and for stores shared by several processes
 * the multi-process part. docs/STORES.md says what each must do; `express-presence/testing` checks it.
 */
export interface PresenceStore extends PresenceStoreCore, Partial<MultiProcessStore> {
  /**
   * Called once by createPresence, before any other call. A promise holds every store call back until it resolves (a store
   * loading its state, connecting, checking its data); a rejection fails them with StoreUnavailableError and fails
   * `presence.ready()`.
   */
  init?(context: StoreContext): MaybePromise<void>;
  /** Stops timers and releases resources. */
  close?(): MaybePromise<void>;
  /** Availability (without it `setAvailability` and idleness are refused). Answers null when nothing changed. */
  setAvailability?(request: StoreAvailabilityRequest): MaybePromise<StoreAvailabilityResult | null>;
  /**
   * How this store supports rooms: `'in-process'` when every connection it knows is in this process (the MemoryStore), so rooms
   * kept by the mount are exact; `'shared'` when it shares them with the other processes through `sharedRooms()` (RedisStore).
   * A store without it refuses room joins and `presence.room()` rather than answer for one process as if for all.
   */
  readonly rooms?: 'in-process' | 'shared';
  /** With `rooms: 'shared'`: the binding that shares rooms with the other processes (called once by createPresence). */
  sharedRooms?(): SharedRoomsBackend;
}

/** The methods of the required core, for stores and checks that list them. */
export const STORE_CORE_METHODS = [
  'login',
  'markPushOnline',
  'remove',
  'kick',
  'setCustomStatus',
  'get',
  'stats',
] as const satisfies readonly (keyof PresenceStoreCore)[];
/** The methods of the multi-process part. */
export const MULTI_PROCESS_METHODS = ['handOver', 'mayMissEnds'] as const satisfies readonly (keyof MultiProcessStore)[];

/** The user's status derived from their devices. */
export function deriveUserStatus(instances: readonly { readonly status: InstanceStatus }[]): UserStatus {
  let status: UserStatus = 'Offline';
  for (const instance of instances) {
    if (instance.status === 'Online') return 'Online';
    status = 'PushOnline';
  }
  return status;
}

export function isPromiseLike<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | null)?.then === 'function';
}
