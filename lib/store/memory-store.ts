// The default store: presence in this process's memory, with PushOnline expiry and bounded caches.

import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../core/clock.js';
import { kickOldestBeyondLimit } from '../core/policy.js';
import { hasPushOnline, PLATFORMS, type Platform } from '../core/platforms.js';
import { Scheduler, type Scheduled } from '../core/scheduler.js';
import type { InstanceStatus, PresenceStats, UserStatus } from '../core/types.js';
import type { TimerHandle } from '../core/clock.js';
import type { PersistedRevokedSession, PersistedState, PersistedUser, Persistence } from './persistence.js';
import { Revocations } from './revocations.js';
import { effectiveAvailability, type Availability } from '../core/availability.js';
import type {
  MaybePromise,
  PresenceStore,
  StoreAvailabilityRequest,
  StoreAvailabilityResult,
  StoreChange,
  StoreCustomStatusRequest,
  StoreKickRequest,
  StorePushOnlineRequest,
  StoreRemoveRequest,
  StoreUserState,
  StoreContext,
  StoreKicked,
  StoreLoginRequest,
  StoreLoginResult,
  StoredUser,
} from '../core/store.js';
import { deriveUserStatus } from '../core/store.js';
import { positiveInteger } from '../util/positive-integer.js';
import { refuseUnknownKeys } from '../util/did-you-mean.js';

export interface MemoryStoreOptions {
  /** Offline users whose last-seen time and custom status are remembered (least recently used go first). Defaults to 100000. */
  maxOfflineUsers?: number;
  /**
   * Revoked sessions remembered in all so a kicked device cannot resume (each for the PushOnline TTL); beyond it, the user
   * with the most revocations forgets their oldest (never another user's). Defaults to 100000.
   */
  maxRevokedSessions?: number;
  /** Revoked sessions remembered for one user; beyond it, that user's oldest is forgotten. Defaults to 1000. */
  maxRevokedSessionsPerUser?: number;
  /** Keeps presence across restarts in the app's own database: loaded at start, saved behind in batches. Defaults to none. */
  persistence?: Persistence;
}

class InstanceEntry implements Scheduled {
  dueAt = Infinity;
  heapIndex = -1;
  constructor(
    readonly userId: string,
    readonly instanceId: string,
    readonly platform: Platform,
    public status: InstanceStatus,
    public since: number,
    readonly version: string | undefined,
    readonly sessionId: string,
    public order: number,
  ) {}
}

class UserEntry implements StoredUser {
  instances: InstanceEntry[] = [];
  lastSeen: number | null = null;
  customStatus: string | null = null;
  customStatusExpiresAt: number | null = null;
  availability: Availability = 'available';
  idleSince: number | null = null;
  /** The latest user activity recorded (ms), or null: an idle write older than it is refused. */
  lastActivity: number | null = null;
  frozenLastSeen: number | null = null;
  frozenCustomStatus: string | null = null;
  seq = 0;
  /** False until this store (this process) numbers one of the user's changes: the first starts from the clock (see nextSeq). */
  numbered = false;
  order = 0;
  constructor(readonly userId: string) {}
}

const EMPTY_KICKS: readonly StoreKicked[] = Object.freeze([]);
/** Where revocations persisted without their user are kept (user ids are never empty). */
const NO_USER = '';

/** Presence in this process. Fast and zero-configuration; kept across restarts only with `persistence`. */
export class MemoryStore implements PresenceStore {
  /** Every connection of this store is in this process: the mount's rooms, kept here, are exact. */
  readonly rooms = 'in-process';
  private readonly users = new Map<string, UserEntry>();
  private readonly offline: LRUCache<string, UserEntry>;
  /** Until init() (which gives the clock), nothing can be revoked: no login can happen before it. */
  private revoked: Revocations | undefined;
  private readonly maxRevokedSessions: number;
  private readonly maxRevokedSessionsPerUser: number;
  private context: StoreContext | undefined;
  private expiry: Scheduler<InstanceEntry> | undefined;
  private ttl = 604_800_000;
  private clock: Clock = systemClock;
  private readonly instanceCounts = new Map<Platform, Record<InstanceStatus, number>>(PLATFORMS.map((platform) => [platform, { Online: 0, PushOnline: 0 }]));
  private onlineUsers = 0;
  private pushOnlineUsers = 0;
  private readonly persistence: Persistence | undefined;
  /** Until the persisted state is loaded, every operation waits for it (createPresence's gate, and each method when called directly). */
  private loading: Promise<void> | undefined;
  /** Users changed since the last save (only with persistence). */
  private dirty: Set<string> | undefined;
  private revokedSinceSave: PersistedRevokedSession[] = [];
  private flushTimer: TimerHandle | undefined;
  private saving: Promise<void> = Promise.resolve();
  /** The highest sequence number of the users the offline cache evicted: one that comes back starts above it. */
  private forgottenSeq = 0;

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('MemoryStore options must be an object');
    const known = ['maxOfflineUsers', 'maxRevokedSessions', 'maxRevokedSessionsPerUser', 'persistence'];
    refuseUnknownKeys('MemoryStore', options, known);
    const persistence = options.persistence;
    if (persistence !== undefined) {
      if (typeof persistence !== 'object' || persistence === null || typeof persistence.load !== 'function' || typeof persistence.save !== 'function') {
        throw new TypeError('MemoryStore: persistence must be an object { load(), save(batch), flushInterval? }');
      }
      positiveInteger('MemoryStore', 'persistence.flushInterval', persistence.flushInterval, 1000, 'milliseconds');
      this.persistence = persistence;
      this.dirty = new Set();
    }
    // Bounded by maxSize rather than max: lru-cache preallocates `max` slots, tens of ms for 100,000.
    this.offline = new LRUCache({
      maxSize: positiveInteger('MemoryStore', 'maxOfflineUsers', options.maxOfflineUsers, 100_000),
      sizeCalculation: () => 1,
      dispose: (user, _userId, reason) => {
        if (reason === 'evict' && user.seq > this.forgottenSeq) this.forgottenSeq = user.seq;
      },
    });
    this.maxRevokedSessions = positiveInteger('MemoryStore', 'maxRevokedSessions', options.maxRevokedSessions, 100_000);
    this.maxRevokedSessionsPerUser = positiveInteger('MemoryStore', 'maxRevokedSessionsPerUser', options.maxRevokedSessionsPerUser, 1000);
  }

  /** With persistence, answers the loading of the saved state: createPresence holds every call back until it is done. */
  init(context: StoreContext): Promise<void> | undefined {
    if (this.context) throw new Error('this MemoryStore is already used by another createPresence(); give each its own store');
    this.context = context;
    this.clock = context.clock;
    this.ttl = context.pushOnlineTtl;
    this.revoked = new Revocations(context.clock, { perUser: this.maxRevokedSessionsPerUser, total: this.maxRevokedSessions }, context.logger);
    this.expiry = new Scheduler(
      context.clock,
      (entry, now) => this.expire(entry, now),
      (error) => context.logger.error('express-presence: PushOnline expiry failed', error),
    );
    const persistence = this.persistence;
    if (persistence) {
      this.loading = Promise.resolve()
        .then(() => persistence.load())
        .then(
          (state) => {
            try {
              this.restore(state);
            } catch (error) {
              context.logger.error('express-presence: restoring persisted presence failed part way; starting with what was restored', error);
            }
          },
          (error: unknown) => context.logger.error('express-presence: loading persisted presence failed; starting empty', error),
        )
        .finally(() => {
          this.loading = undefined;
          this.scheduleFlush();
        });
    }
    return this.loading;
  }

  /** Resolves once the persisted state is loaded (at once without persistence). */
  ready(): Promise<void> {
    return this.loading ?? Promise.resolve();
  }

  login(request: StoreLoginRequest): MaybePromise<StoreLoginResult> {
    if (this.loading) return this.loading.then(() => this.login(request));
    const { userId, instanceId, resumeSessionId, at } = request;
    if (resumeSessionId !== undefined && this.isRevoked(resumeSessionId)) return { outcome: 'revoked' };
    const user = this.userFor(userId);
    const previousUserStatus = deriveUserStatus(user.instances);
    const existing = user.instances.find((instance) => instance.instanceId === instanceId);

    if (existing && resumeSessionId !== undefined && existing.sessionId === resumeSessionId && existing.platform === request.platform) {
      if (existing.status === 'Online') return { outcome: 'resumed', sessionId: existing.sessionId, change: null };
      this.setStatus(existing, 'Online', at);
      existing.order = ++user.order;
      user.lastSeen = at;
      return { outcome: 'resumed', sessionId: existing.sessionId, change: this.change(user, existing, 'Online', previousUserStatus, at, EMPTY_KICKS) };
    }

    // A fresh login made before the device's current state began yields to it (a late attempt: see docs/STORES.md).
    if (existing && at < existing.since) {
      return { outcome: 'revoked', notice: { reason: 'LoginElsewhere', by: { platform: existing.platform, instanceId: existing.instanceId } } };
    }
    // A fresh login. The same instance under another session is displaced like any device in the way.
    const others = user.instances.filter((instance) => instance !== existing);
    const displaced = kickOldestBeyondLimit(others, request.platform, request.limits);
    if (existing) {
      // Kicks are listed oldest first, the device's own earlier session among them.
      displaced.push(existing);
      displaced.sort((a, b) => a.order - b.order);
    }
    const kicked: StoreKicked[] = [];
    for (const instance of displaced) {
      this.detach(user, instance);
      this.revoke(userId, instance.sessionId);
      kicked.push({ platform: instance.platform, instanceId: instance.instanceId, sessionId: instance.sessionId });
    }
    const entry = new InstanceEntry(userId, instanceId, request.platform, 'Online', at, request.version, request.newSessionId, ++user.order);
    // concat() allocates exactly the size needed; push() and spread reserve room for ~16 more devices per user.
    user.instances = user.instances.concat(entry);
    this.count(entry.platform, 'Online', 1);
    user.lastSeen = at;
    const change = this.change(user, entry, 'Online', previousUserStatus, at, kicked);
    return { outcome: 'created', sessionId: entry.sessionId, change };
  }

  markPushOnline(request: StorePushOnlineRequest): MaybePromise<StoreChange | null> {
    if (this.loading) return this.loading.then(() => this.markPushOnline(request));
    return this.pushOnline(request.userId, request.instanceId, request.sessionId, request.at, request.lastSeen);
  }

  private pushOnline(userId: string, instanceId: string, sessionId: string, at: number, lastSeen: number): StoreChange | null {
    const user = this.users.get(userId);
    const entry = user === undefined ? undefined : findInstance(user, instanceId, sessionId);
    if (!user || !entry || entry.status !== 'Online') return null;
    const previousUserStatus = deriveUserStatus(user.instances);
    this.noteLastSeen(user, lastSeen);
    this.setStatus(entry, 'PushOnline', at);
    return this.change(user, entry, 'PushOnline', previousUserStatus, at, EMPTY_KICKS);
  }

  remove(request: StoreRemoveRequest): MaybePromise<StoreChange | null> {
    if (this.loading) return this.loading.then(() => this.remove(request));
    const user = this.users.get(request.userId);
    const entry = user === undefined ? undefined : findInstance(user, request.instanceId, request.sessionId);
    if (!user || !entry) return null;
    return this.removeEntry(user, entry, request.at, request.revoke, request.lastSeen);
  }

  kick(request: StoreKickRequest): MaybePromise<StoreChange[]> {
    if (this.loading) return this.loading.then(() => this.kick(request));
    const { platform, instanceId, at } = request;
    const user = this.users.get(request.userId);
    if (!user) return [];
    const targets = user.instances.filter(
      (instance) => (platform === undefined || instance.platform === platform) && (instanceId === undefined || instance.instanceId === instanceId),
    );
    return targets.map((entry) => this.removeEntry(user, entry, at, true, at));
  }

  setCustomStatus(request: StoreCustomStatusRequest): MaybePromise<StoreUserState | null> {
    if (this.loading) return this.loading.then(() => this.setCustomStatus(request));
    const { userId, customStatus, ifExpiresAt } = request;
    if (ifExpiresAt !== undefined) {
      const user = this.users.get(userId) ?? this.offline.peek(userId);
      if (!user || user.customStatusExpiresAt !== ifExpiresAt) return null;
    }
    this.dirty?.add(userId);
    const user = this.anyUser(userId);
    user.customStatus = customStatus;
    user.customStatusExpiresAt = customStatus === null ? null : (request.expiresAt ?? null);
    return stateOf(user);
  }

  setAvailability(request: StoreAvailabilityRequest): MaybePromise<StoreAvailabilityResult | null> {
    if (this.loading) return this.loading.then(() => this.setAvailability(request));
    const { userId, at } = request;
    const known = this.users.get(userId) ?? this.offline.peek(userId);
    // Idleness of a user the store does not know changes nothing.
    if (!known && request.kind === 'idle') return null;
    const user = known ?? this.anyUser(userId);
    const previousAvailability = effectiveAvailability(user.availability, user.idleSince);
    const previousIdleSince = user.idleSince;
    switch (request.kind) {
      case 'set':
        if (request.availability === 'invisible' && user.availability !== 'invisible') {
          // Others keep seeing what they saw at this moment, as if the user had gone offline now.
          user.frozenLastSeen = deriveUserStatus(user.instances) === 'Online' ? at : user.lastSeen;
          user.frozenCustomStatus = user.customStatus;
        }
        user.availability = request.availability;
        user.idleSince = null;
        user.lastActivity = Math.max(user.lastActivity ?? at, at);
        break;
      case 'activity':
        user.lastActivity = Math.max(user.lastActivity ?? at, at);
        user.idleSince = null;
        break;
      case 'idle':
        if (user.availability !== 'available' || user.idleSince !== null) return null;
        if (user.lastActivity !== null && user.lastActivity > request.idleSince) return null;
        user.idleSince = request.idleSince;
        break;
      default: {
        const never: never = request;
        throw new TypeError(`unknown availability request ${JSON.stringify(never)}`);
      }
    }
    this.dirty?.add(userId);
    if (previousAvailability === effectiveAvailability(user.availability, user.idleSince) && previousIdleSince === user.idleSince) return null;
    return { state: stateOf(user), previousAvailability, previousIdleSince };
  }

  /** The user's entry, created (as an offline user) if the store has none. */
  private anyUser(userId: string): UserEntry {
    let user = this.users.get(userId) ?? this.offline.get(userId);
    if (!user) {
      user = new UserEntry(userId);
      this.offline.set(userId, user);
    }
    return user;
  }

  get(userIds: readonly string[]): MaybePromise<(StoredUser | undefined)[]> {
    if (!Array.isArray(userIds)) throw new TypeError(`MemoryStore get(userIds): userIds must be an array of user ids; got ${typeof userIds}`);
    if (this.loading) return this.loading.then(() => this.get(userIds));
    const found: (StoredUser | undefined)[] = new Array(userIds.length);
    for (let i = 0; i < userIds.length; i++) {
      const userId = userIds[i] as string;
      const user = this.users.get(userId) ?? this.offline.peek(userId);
      // A custom status past its expiry is answered as none, even before the engine's timer clears it.
      found[i] = user && user.customStatusExpiresAt !== null && user.customStatusExpiresAt <= this.clock.now() ? withoutCustomStatus(user) : user;
    }
    return found;
  }

  stats(): MaybePromise<PresenceStats> {
    if (this.loading) return this.loading.then(() => this.stats());
    const platforms = {} as Record<Platform, Record<InstanceStatus, number>>;
    const instances = { Online: 0, PushOnline: 0 };
    for (const [platform, counts] of this.instanceCounts) {
      platforms[platform] = { ...counts };
      instances.Online += counts.Online;
      instances.PushOnline += counts.PushOnline;
    }
    return { users: { Online: this.onlineUsers, PushOnline: this.pushOnlineUsers, Offline: this.offline.size }, instances, platforms };
  }

  /** Stops timers and, with persistence, writes the last batch. */
  async close(): Promise<void> {
    await this.loading;
    this.expiry?.close();
    this.revoked?.close();
    if (this.flushTimer) this.clock.clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.persistence) await this.flush();
  }

  private scheduleFlush(): void {
    const persistence = this.persistence;
    if (!persistence || this.expiry === undefined) return;
    this.flushTimer = this.clock.setTimeout(() => {
      this.scheduleFlush();
      void this.flush();
    }, persistence.flushInterval ?? 1000);
    this.flushTimer.unref?.();
  }

  /** Writes the users changed since the last save; on failure they stay dirty for the next batch. */
  private flush(): Promise<void> {
    const persistence = this.persistence;
    const dirty = this.dirty;
    if (!persistence || !dirty || (dirty.size === 0 && this.revokedSinceSave.length === 0)) return this.saving;
    const userIds = [...dirty];
    dirty.clear();
    const revokedSessions = this.revokedSinceSave;
    this.revokedSinceSave = [];
    const users: PersistedUser[] = [];
    for (const userId of userIds) {
      const user = this.users.get(userId) ?? this.offline.peek(userId);
      if (user) users.push(persisted(user));
    }
    this.saving = this.saving
      .then(() => persistence.save({ users, revokedSessions }))
      .catch((error: unknown) => {
        for (const userId of userIds) dirty.add(userId);
        this.revokedSinceSave.unshift(...revokedSessions);
        this.context?.logger.error(`express-presence: saving presence of ${users.length} users failed; retrying with the next batch`, error);
      });
    return this.saving;
  }

  /**
   * Brings back what was saved. Devices that were Online when the process stopped lost their
   * connection with it: mobile ones are PushOnline from now, the others are gone; each is reported
   * as a closed connection.
   */
  private restore(state: PersistedState): void {
    const now = this.clock.now();
    const closed: StoreChange[] = [];
    for (const saved of state.users) {
      const user = new UserEntry(saved.userId);
      user.lastSeen = saved.lastSeen;
      user.customStatus = saved.customStatus;
      user.customStatusExpiresAt = saved.customStatusExpiresAt ?? null;
      user.availability = saved.availability ?? 'available';
      user.idleSince = saved.idleSince ?? null;
      user.frozenLastSeen = saved.frozenLastSeen ?? null;
      user.frozenCustomStatus = saved.frozenCustomStatus ?? null;
      user.seq = saved.seq;
      user.order = saved.order;
      const wasOnline: InstanceEntry[] = [];
      for (const device of saved.instances) {
        const entry = new InstanceEntry(
          saved.userId,
          device.instanceId,
          device.platform,
          device.status,
          device.since,
          device.version ?? undefined,
          device.sessionId,
          device.order,
        );
        user.instances = user.instances.concat(entry);
        this.count(entry.platform, entry.status, 1);
        if (entry.status === 'PushOnline') this.expiry?.schedule(entry, entry.since + this.ttl);
        else wasOnline.push(entry);
      }
      const status = deriveUserStatus(user.instances);
      this.countUser(status, 1);
      if (status === 'Offline') this.offline.set(user.userId, user);
      else this.users.set(user.userId, user);
      for (const entry of wasOnline) {
        closed.push(
          hasPushOnline(entry.platform)
            ? (this.pushOnline(user.userId, entry.instanceId, entry.sessionId, now, now) as StoreChange)
            : this.removeEntry(user, entry, now, false, now),
        );
      }
    }
    for (const revoked of state.revokedSessions ?? []) {
      // Saved without the user (by an older version, or a persistence that does not keep it): kept together under no user,
      // outside the per-user bound (only the total bounds them).
      if (revoked.expiresAt > now) this.revoked?.add(revoked.userId ?? NO_USER, revoked.sessionId, revoked.expiresAt, revoked.userId !== undefined);
    }
    for (const change of closed) this.context?.changed(change, 'Disconnect', 'LinkClose');
  }

  /** The live entry for a user, brought back from the offline cache or made new. */
  private userFor(userId: string): UserEntry {
    let user = this.users.get(userId);
    if (user) return user;
    user = this.offline.get(userId) ?? new UserEntry(userId);
    this.offline.delete(userId);
    this.users.set(userId, user);
    return user;
  }

  private removeEntry(user: UserEntry, entry: InstanceEntry, at: number, revoke: boolean, lastSeen: number): StoreChange {
    const previousUserStatus = deriveUserStatus(user.instances);
    if (entry.status === 'Online') this.noteLastSeen(user, lastSeen);
    this.detach(user, entry);
    if (revoke) this.revoke(user.userId, entry.sessionId);
    return this.change(user, entry, 'Offline', previousUserStatus, at, EMPTY_KICKS);
  }

  private revoke(userId: string, sessionId: string): void {
    const expiresAt = this.clock.now() + this.ttl;
    this.revoked?.add(userId, sessionId, expiresAt);
    if (this.persistence) this.revokedSinceSave.push({ userId, sessionId, expiresAt });
  }

  private isRevoked(sessionId: string): boolean {
    return this.revoked?.has(sessionId, this.clock.now()) ?? false;
  }

  private detach(user: UserEntry, entry: InstanceEntry): void {
    removeInstance(user, entry);
    this.count(entry.platform, entry.status, -1);
    this.expiry?.cancel(entry);
  }

  private setStatus(entry: InstanceEntry, status: InstanceStatus, at: number): void {
    this.count(entry.platform, entry.status, -1);
    this.count(entry.platform, status, 1);
    entry.status = status;
    entry.since = at;
    if (status === 'PushOnline') this.expiry?.schedule(entry, at + this.ttl);
    else this.expiry?.cancel(entry);
  }

  private noteLastSeen(user: UserEntry, lastSeen: number): void {
    if (user.lastSeen === null || lastSeen > user.lastSeen) user.lastSeen = lastSeen;
  }

  private count(platform: Platform, status: InstanceStatus, delta: number): void {
    (this.instanceCounts.get(platform) as Record<InstanceStatus, number>)[status] += delta;
  }

  /** Records the change: bumps the user's sequence, keeps user counts, files Offline users in the LRU cache. */
  private change(
    user: UserEntry,
    entry: InstanceEntry,
    instanceStatus: UserStatus,
    previousUserStatus: UserStatus,
    at: number,
    kicked: readonly StoreKicked[],
  ): StoreChange {
    const userStatus = deriveUserStatus(user.instances);
    this.dirty?.add(user.userId);
    this.countUser(previousUserStatus, -1);
    this.countUser(userStatus, 1);
    if (userStatus === 'Offline') {
      this.users.delete(user.userId);
      this.offline.set(user.userId, user);
    }
    return {
      userId: user.userId,
      instanceId: entry.instanceId,
      platform: entry.platform,
      sessionId: entry.sessionId,
      instanceStatus,
      userStatus,
      previousUserStatus,
      seq: this.nextSeq(user),
      at,
      kicked,
      version: entry.version,
      lastSeen: user.lastSeen,
      customStatus: user.customStatus,
      availability: user.availability,
      idleSince: user.idleSince,
    };
  }

  /**
   * Sequence numbers strictly increase per user, across restarts (README "Sequence numbers"): each change adds one, but the
   * first this store numbers for a user (new, evicted, or brought back by persistence, which may have missed the last changes
   * before a crash) starts from the clock in microseconds (ms × 1000), above every number of an earlier run as long as a
   * user makes fewer than 1000 changes per millisecond, and above every user the offline cache forgot.
   */
  private nextSeq(user: UserEntry): number {
    if (user.numbered) return ++user.seq;
    user.numbered = true;
    user.seq = Math.max(user.seq + 1, Math.floor(this.clock.now()) * 1000, this.forgottenSeq + 1);
    return user.seq;
  }

  private countUser(status: UserStatus, delta: number): void {
    if (status === 'Online') this.onlineUsers += delta;
    else if (status === 'PushOnline') this.pushOnlineUsers += delta;
  }

  private expire(entry: InstanceEntry, now: number): void {
    const user = this.users.get(entry.userId);
    if (!user || entry.status !== 'PushOnline' || !user.instances.includes(entry)) return;
    if (entry.dueAt > now) return;
    this.context?.expired(this.removeEntry(user, entry, now, false, now));
  }
}

/** Takes the entry out of the user's list in place: splice() would allocate the list of what it removed. */
function removeInstance(user: UserEntry, entry: InstanceEntry): void {
  const instances = user.instances;
  const index = instances.indexOf(entry);
  if (index < 0) return;
  for (let i = index + 1; i < instances.length; i++) instances[i - 1] = instances[i] as InstanceEntry;
  instances.length--;
}

/** The user's device with that instance id, and that session unless `sessionId` is undefined. */
function findInstance(user: UserEntry, instanceId: string, sessionId: string | undefined): InstanceEntry | undefined {
  const instances = user.instances;
  for (let i = 0; i < instances.length; i++) {
    const instance = instances[i] as InstanceEntry;
    if (instance.instanceId === instanceId && (sessionId === undefined || instance.sessionId === sessionId)) return instance;
  }
  return undefined;
}

function persisted(user: UserEntry): PersistedUser {
  return {
    userId: user.userId,
    lastSeen: user.lastSeen,
    customStatus: user.customStatus,
    customStatusExpiresAt: user.customStatusExpiresAt,
    availability: user.availability,
    idleSince: user.idleSince,
    frozenLastSeen: user.frozenLastSeen,
    frozenCustomStatus: user.frozenCustomStatus,
    seq: user.seq,
    order: user.order,
    instances: user.instances.map((entry) => ({
      instanceId: entry.instanceId,
      platform: entry.platform,
      status: entry.status,
      since: entry.since,
      version: entry.version ?? null,
      sessionId: entry.sessionId,
      order: entry.order,
    })),
  };
}

/** The user's state as an availability or custom-status write answers it. */
function stateOf(user: UserEntry): StoreUserState {
  return {
    userId: user.userId,
    userStatus: deriveUserStatus(user.instances),
    lastSeen: user.lastSeen,
    customStatus: user.customStatus,
    customStatusExpiresAt: user.customStatusExpiresAt,
    availability: user.availability,
    idleSince: user.idleSince,
    frozenLastSeen: user.frozenLastSeen,
    frozenCustomStatus: user.frozenCustomStatus,
  };
}

/** A copy of the user with their (expired) custom status left out. */
function withoutCustomStatus(user: UserEntry): StoredUser {
  return {
    userId: user.userId,
    instances: user.instances,
    lastSeen: user.lastSeen,
    customStatus: null,
    customStatusExpiresAt: null,
    availability: user.availability,
    idleSince: user.idleSince,
    frozenLastSeen: user.frozenLastSeen,
    frozenCustomStatus: user.frozenCustomStatus,
  };
}
