// The presence engine: devices' states, their timers, and change events, over a store; no transport here.

import { EventEmitter } from 'node:events';
import { randomFillSync } from 'node:crypto';
import createDebug from 'debug';
import type { StoreAvailabilityRequest, StoreAvailabilityResult, StoreChange, StoreLoginResult, StoredUser, StoreUserState } from '../core/store.js';
import { deriveUserStatus, isPromiseLike, type MaybePromise, type PresenceStore } from '../core/store.js';
import { StoreTimeoutError } from '../core/errors.js';
import { parsePlatform, platformClass, hasPushOnline, PLATFORM_NAMES_FOR_ERRORS, type Platform, type PlatformClass } from '../core/platforms.js';
import { Scheduler, type Scheduled } from '../core/scheduler.js';
import type { EngineConfig } from './config.js';
import { gateUntilReady } from './store-gate.js';
import { isoTime } from '../util/iso-time.js';
import { refuseUnknownKeys } from '../util/did-you-mean.js';
import { effectiveAvailability, parseAvailability, type Availability, type UserTruth } from '../core/availability.js';
import type {
  AvailabilityChange,
  ChangeAction,
  ChangeReason,
  CustomStatusChange,
  EndNotice,
  InstancePresence,
  InstanceRef,
  PresenceChange,
  PresenceStats,
  UserPresence,
  UserStatus,
} from '../core/types.js';

const debug = createDebug('express-presence:engine');

/** Longest user id, instance id, session id and version string accepted. */
export const MAX_ID_LENGTH = 128;
/** Longest custom status, in bytes of UTF-8. */
export const MAX_CUSTOM_STATUS_BYTES = 100;

const KICK_FILTER_KEYS = ['platform', 'instanceId'] as const;
const CUSTOM_STATUS_OPTION_KEYS = ['ttl'] as const;
/** The shortest and longest custom status ttl (ms). */
export const MIN_CUSTOM_STATUS_TTL = 1000;
export const MAX_CUSTOM_STATUS_TTL = 365 * 24 * 3600 * 1000;
const QUERY_OPTION_KEYS = ['detail'] as const;

export type PresenceErrorCode = 'UNAUTHENTICATED' | 'BAD_PLATFORM' | 'BAD_REQUEST' | 'SESSION_REVOKED';

/** A refusal with a code clients can act on. */
export class PresenceError extends Error {
  constructor(
    readonly code: PresenceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PresenceError';
  }
}

export interface ConnectRequest {
  /** Who this is, as established by the app's authentication; never taken from the client. */
  userId: string;
  platform: unknown;
  instanceId?: unknown;
  sessionId?: unknown;
  version?: unknown;
  clientIp?: string | undefined;
}

/** One live connection (one socket) of one device. */
export interface Connection {
  readonly userId: string;
  readonly instanceId: string;
  readonly platform: Platform;
  readonly sessionId: string;
  /** False once the connection was released or its device ended. */
  readonly open: boolean;
}

export interface ConnectResult {
  connection: Connection;
  /** True when an existing session was taken up again. */
  resumed: boolean;
  /** Devices this login displaced. */
  kicked: InstanceRef[];
  /** The heartbeat interval to tell the client: the configured one, at most half its class's heartbeat timeout. */
  heartbeatInterval: number;
}

/** Told to a connection when the server ends its device (kick, logout elsewhere, timeout). */
export type EndListener = (notice: EndNotice) => void;

/** A device with a live connection to this process. */
class LocalInstance implements Scheduled {
  dueAt = Infinity;
  heapIndex = -1;
  lastActivity: number;
  background = false;
  backgroundSince = 0;
  /** When its last connection closed, while the reconnect grace runs; -1 otherwise. */
  graceSince = -1;
  /** Its connection closed because this server is shutting down: it waits for the handover grace (if longer), to be resumed elsewhere. */
  handingOver = false;
  ended = false;
  /** The last user activity (`presence:activity`, the login) seen here; heartbeats do not count. */
  lastUserActivity: number;
  /** The user's idle tracking in this process, while idleTimeout is on. */
  user: LocalUser | undefined = undefined;
  /**
   * Its live connections: most devices have one, kept as is; several (other tabs) are an array that
   * is never changed in place but replaced, so a listener that disconnects while it is being told
   * cannot disturb the loop telling it. Undefined once it has none: ending a device allocates nothing.
   */
  connections: LocalConnection | readonly LocalConnection[] | undefined = undefined;

  constructor(
    readonly userId: string,
    readonly instanceId: string,
    readonly platform: Platform,
    readonly cls: PlatformClass,
    readonly sessionId: string,
    readonly version: string | undefined,
    readonly clientIp: string | undefined,
    /** When this process took the device up (LiveInstance.takenUpAt). */
    readonly takenUpAt: number,
  ) {
    this.lastActivity = takenUpAt;
    this.lastUserActivity = takenUpAt;
  }
}

/** A user with devices live here, while idleTimeout is on: their idle deadline. */
class LocalUser implements Scheduled {
  dueAt = Infinity;
  heapIndex = -1;
  instances: LocalInstance[] = [];
  /** Believed away by idleness (this process marked it, or the store said so): the next activity is written at once. */
  idle = false;
  /** When an activity was last written to the store (so other processes' idle writes see it). */
  activityWrittenAt = -Infinity;
  /** The user's last activity here, on any device (also one gone since): their idleSince once away. */
  lastActivity = -Infinity;
  constructor(readonly userId: string) {}
}

/** A custom status with a ttl set through this process: cleared when it runs out. */
class StatusExpiry implements Scheduled {
  dueAt = Infinity;
  heapIndex = -1;
  constructor(
    readonly userId: string,
    readonly expiresAt: number,
  ) {}
}

type UserTimer = LocalUser | StatusExpiry;

/** Calls `each` on every connection of the instance. */
function forEachConnection(instance: LocalInstance, each: (connection: LocalConnection) => void): void {
  const connections = instance.connections;
  if (connections instanceof LocalConnection) each(connections);
  else if (connections) connections.forEach(each);
}

class LocalConnection implements Connection {
  open = true;
  constructor(
    readonly instance: LocalInstance,
    readonly onEnd: EndListener,
  ) {}
  get userId(): string {
    return this.instance.userId;
  }
  get instanceId(): string {
    return this.instance.instanceId;
  }
  get platform(): Platform {
    return this.instance.platform;
  }
  get sessionId(): string {
    return this.instance.sessionId;
  }
}

/** Takes a closed connection out of its device's connections (a new array: see LocalInstance.connections). */
function removeConnection(instance: LocalInstance, connection: LocalConnection): void {
  const connections = instance.connections;
  if (connections === connection) {
    instance.connections = undefined;
  } else if (connections && !(connections instanceof LocalConnection) && connections.includes(connection)) {
    const rest = connections.filter((other) => other !== connection);
    // Back to one connection: the array goes.
    instance.connections = rest.length === 1 ? rest[0] : rest;
  }
}

const ID_BYTES = 12;
/** Ids are cut from a pool of random bytes refilled 256 ids at a time: one randomBytes call per id costs a login more than the rest of it. */
const idPool = Buffer.alloc(ID_BYTES * 256);
let idPoolOffset = idPool.length;

export function newId(): string {
  if (idPoolOffset === idPool.length) {
    randomFillSync(idPool);
    idPoolOffset = 0;
  }
  idPoolOffset += ID_BYTES;
  return idPool.toString('base64url', idPoolOffset - ID_BYTES, idPoolOffset);
}

function optionalId(name: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw new PresenceError('BAD_REQUEST', `${name} must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
  }
  return value;
}

/** Checks a user id given to any entry point; throws a TypeError naming the parameter. */
export function checkUserId(userId: unknown, name = 'userId'): asserts userId is string {
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_ID_LENGTH) {
    throw new TypeError(
      `${name} must be a non-empty string of at most ${MAX_ID_LENGTH} characters; got ${typeof userId === 'string' ? JSON.stringify(userId.slice(0, 40)) : typeof userId}`,
    );
  }
}

/** Validates a custom status: a string of at most 100 bytes of UTF-8, or null / '' to clear. */
export function parseCustomStatus(value: unknown): string | null {
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new TypeError(`customStatus must be a string or null; got ${typeof value}`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_CUSTOM_STATUS_BYTES) throw new TypeError(`customStatus must be at most ${MAX_CUSTOM_STATUS_BYTES} bytes of UTF-8; got ${bytes}`);
  return value;
}

function storeName(store: object): string {
  return (store.constructor as { name?: string } | undefined)?.name ?? 'this store';
}

function iso(ms: number | null): string | null {
  return ms === null ? null : isoTime(ms);
}

export interface PresenceEngineEvents {
  change: [PresenceChange];
  'custom-status': [CustomStatusChange];
  availability: [AvailabilityChange];
  /**
   * Internal, for adapters: a user's custom status or availability changed; the whole truth after it, and for an
   * availability change the availability shown before it (null for a custom status change).
   */
  'user-state': [UserTruth, Availability | null];
}

/** The truth of a user from a store's state answer. */
export function truthOfState(state: StoreUserState, now: number): UserTruth {
  return {
    userId: state.userId,
    status: state.userStatus,
    availability: effectiveAvailability(state.availability, state.idleSince),
    idleSince: state.availability === 'available' ? state.idleSince : null,
    customStatus: state.customStatus,
    lastSeen: state.userStatus === 'Online' ? now : state.lastSeen,
    frozenLastSeen: state.frozenLastSeen,
    frozenCustomStatus: state.frozenCustomStatus,
  };
}

/** The truth of a stored user (undefined: never seen). */
export function truthOfUser(userId: string, user: StoredUser | undefined, now: number): UserTruth {
  if (!user) {
    return {
      userId,
      status: 'Offline',
      availability: 'available',
      idleSince: null,
      customStatus: null,
      lastSeen: null,
      frozenLastSeen: null,
      frozenCustomStatus: null,
    };
  }
  const status = deriveUserStatus(user.instances);
  const idleSince = (user.availability ?? 'available') === 'available' ? (user.idleSince ?? null) : null;
  return {
    userId,
    status,
    availability: effectiveAvailability(user.availability, idleSince),
    idleSince,
    customStatus: user.customStatus,
    lastSeen: status === 'Online' ? now : user.lastSeen,
    frozenLastSeen: user.frozenLastSeen ?? null,
    frozenCustomStatus: user.frozenCustomStatus ?? null,
  };
}

/** Reads a custom status ttl: ms (1 s to 365 days) or a duration string such as '30m'. */
export function parseCustomStatusTtl(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = typeof value === 'string' ? parseTtlText(value) : value;
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < MIN_CUSTOM_STATUS_TTL || ms > MAX_CUSTOM_STATUS_TTL) {
    throw new TypeError(
      `ttl must be milliseconds from ${MIN_CUSTOM_STATUS_TTL} to ${MAX_CUSTOM_STATUS_TTL} (365 days) or a string such as "30m", "8h", "7d"; got ${typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : String(value)}`,
    );
  }
  return ms;
}

const TTL_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
function parseTtlText(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/i.exec(text);
  if (!match?.[1] || !match[2]) return undefined;
  return Math.round(Number(match[1]) * (TTL_UNITS[match[2].toLowerCase()] as number));
}

/**
 * Keeps every device's state and timers, decides transitions, and emits one `change` per
 * transition. Transports call `connect`, `heartbeat`, `background`, `foreground`, `disconnect`
 * and `logout`; the app calls `query`, `kick` and `setCustomStatus`.
 */
export class PresenceEngine extends EventEmitter<PresenceEngineEvents> {
  private readonly local = new Map<string, LocalInstance>();
  /**
   * Sessions whose login is waiting for the store, and the end (a kick, a logout elsewhere) that came
   * for one meanwhile: such a device must not come alive here once its login answers.
   */
  private readonly loginsInFlight = new Map<string, { count: number; ended: EndNotice | undefined }>();
  private readonly scheduler: Scheduler<LocalInstance>;
  /** Idle deadlines and custom status expiries. */
  private readonly userScheduler: Scheduler<UserTimer>;
  /** Users with devices here, while idleTimeout is on. */
  private readonly localUsers = new Map<string, LocalUser>();
  private readonly statusExpiries = new Map<string, StatusExpiry>();
  /** Whether any class goes idle; with none, activity is a heartbeat. */
  private readonly idleOn: boolean;
  /** How often an ongoing activity is written to the store (a quarter of the shortest idle timeout). */
  private readonly activityWriteEvery: number;
  private closed = false;
  /** Store logins not answered yet, and who waits for them all to settle (close). */
  private pendingLogins = 0;
  private loginsSettled: (() => void) | undefined;
  /** A store call outlasted storeTimeout and none has answered in time since: warned once per episode. */
  private storeStalled = false;
  /** Transitions written to the store and not yet emitted (close waits for them), and who waits for them. */
  private pendingWrites = 0;
  private writesSettled: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  /** Names this process to the store, so a device's late close here cannot undo its login elsewhere. */
  readonly owner = newId();
  /** The store, held back behind its init while that runs (see store-gate.ts). */
  readonly store: PresenceStore;
  private readonly storeReady: Promise<void>;

  constructor(readonly config: EngineConfig) {
    super();
    this.scheduler = new Scheduler(
      config.clock,
      (instance, now) => this.onDue(instance, now),
      (error) => config.logger.error('express-presence: timer failed', error),
    );
    this.userScheduler = new Scheduler<UserTimer>(
      config.clock,
      (timer, now) => (timer instanceof LocalUser ? this.onIdleDue(timer, now) : this.onStatusExpired(timer)),
      (error) => config.logger.error('express-presence: an idle or custom status timer failed', error),
    );
    const idleTimeouts = Object.values(config.idleTimeout).filter((ms) => ms > 0);
    this.idleOn = idleTimeouts.length > 0;
    this.activityWriteEvery = this.idleOn ? Math.max(1, Math.floor(Math.min(...idleTimeouts) / 4)) : Infinity;
    const ready = config.store.init?.({
      clock: config.clock,
      pushOnlineTtl: config.pushOnlineTtl,
      reconnectGrace: config.reconnectGrace,
      logger: config.logger,
      owner: this.owner,
      storeTimeout: config.storeTimeout,
      expired: (change) => this.emitChange(change, 'Logout', 'Expired', undefined),
      changed: (change, action, reason) => this.emitChange(change, action, reason, undefined),
      ended: (sessionId, notice) => this.endLocal(sessionId, notice),
      liveInstances: () => this.local.values(),
    });
    if (isPromiseLike(ready)) {
      const gated = gateUntilReady(config.store, ready, config.storeTimeout);
      this.store = gated.store;
      this.storeReady = gated.ready;
      this.storeReady.catch((error: unknown) => config.logger.error('express-presence: the store failed to start; every store call is refused', error));
    } else {
      this.store = config.store;
      this.storeReady = Promise.resolve();
    }
  }

  /** Resolves once the store is ready (its init done: at once for a store whose init is synchronous); rejects if it failed. */
  ready(): Promise<void> {
    return this.storeReady;
  }

  /** Logs a device in (or resumes its session) for one new connection. Throws a PresenceError to refuse. */
  async connect(request: ConnectRequest, onEnd: EndListener): Promise<ConnectResult> {
    this.assertOpen();
    checkUserId(request.userId);
    const platform = parsePlatform(request.platform);
    if (!platform) {
      throw new PresenceError(
        'BAD_PLATFORM',
        `platform must be one of ${PLATFORM_NAMES_FOR_ERRORS}; got ${typeof request.platform === 'string' ? JSON.stringify(request.platform.slice(0, 40)) : typeof request.platform}`,
      );
    }
    const instanceId = optionalId('instanceId', request.instanceId) ?? newId();
    const sessionId = optionalId('sessionId', request.sessionId);
    const version = optionalId('version', request.version);
    const cls = platformClass(platform);
    const heartbeatInterval = Math.max(1, Math.min(this.config.heartbeatInterval, Math.floor(this.config.heartbeatTimeout[cls] / 2)));

    // Another connection of a device that is live here (a second tab), or one back within its grace; asked of the store instead
    // while this process may have missed an end of it made elsewhere.
    const live = sessionId === undefined ? undefined : this.local.get(sessionId);
    if (live && live.userId === request.userId && live.instanceId === instanceId && live.platform === platform && !this.store.mayMissEnds?.()) {
      const now = this.config.clock.now();
      live.lastActivity = now;
      // A login is activity (a second tab, or a return within the grace).
      this.noteActivity(live, now);
      // A new connection is an app in the foreground, whatever the device said before it went.
      const wasBackground = live.background;
      live.background = false;
      if (live.graceSince >= 0) {
        debug('%s/%s back within its reconnect grace', live.userId, instanceId);
        live.graceSince = -1;
        live.handingOver = false;
        this.reschedule(live);
      } else if (wasBackground) {
        this.reschedule(live);
      }
      return { connection: this.attachConnection(live, onEnd), resumed: true, kicked: [], heartbeatInterval };
    }

    const at = this.config.clock.now();
    const newSessionId = newId();
    const tracked = sessionId === undefined ? [newSessionId] : [newSessionId, sessionId];
    for (const id of tracked) {
      const entry = this.loginsInFlight.get(id);
      if (entry) entry.count++;
      else this.loginsInFlight.set(id, { count: 1, ended: undefined });
    }
    this.pendingLogins++;
    // Released when the store answers, even after the caller gave up waiting (close() waits for every login the store takes).
    const release = (): void => {
      for (const id of tracked) {
        const entry = this.loginsInFlight.get(id) as { count: number };
        if (--entry.count === 0) this.loginsInFlight.delete(id);
      }
      if (--this.pendingLogins === 0) this.loginsSettled?.();
    };
    const endedOf = (answer: StoreLoginResult): EndNotice | undefined =>
      answer.outcome === 'revoked' ? undefined : this.loginsInFlight.get(answer.sessionId)?.ended;
    let answer: MaybePromise<StoreLoginResult>;
    try {
      answer = this.store.login({
        userId: request.userId,
        platform,
        instanceId,
        resumeSessionId: sessionId,
        newSessionId,
        version,
        at,
        limits: this.config,
        owner: this.owner,
      });
    } catch (error) {
      release();
      throw error;
    }
    let result: StoreLoginResult;
    let endedMeanwhile: EndNotice | undefined;
    if (!isPromiseLike(answer)) {
      // A synchronous store (the memory store): no timer, nothing to wait for.
      result = answer;
      endedMeanwhile = endedOf(result);
      release();
    } else {
      const settled = answer.then(
        (stored) => ({ stored, ended: endedOf(stored) }),
        (error: unknown) => {
          release();
          throw error;
        },
      );
      const late = (answered: { stored: StoreLoginResult; ended: EndNotice | undefined }): void => {
        try {
          this.abandonLogin(answered.stored, answered.ended, request, platform, instanceId, cls, version);
        } finally {
          release();
        }
      };
      // Timed out: `late` releases once the store answers. Answered in time: released once the answer is taken in
      // below, so a close() waiting for logins finds this device among its own (not a microtask too early).
      ({ stored: result, ended: endedMeanwhile } = await this.bounded('login', settled, late));
      try {
        return this.takeLogin(result, endedMeanwhile, request, sessionId, platform, instanceId, cls, version, onEnd, heartbeatInterval);
      } finally {
        release();
      }
    }
    return this.takeLogin(result, endedMeanwhile, request, sessionId, platform, instanceId, cls, version, onEnd, heartbeatInterval);
  }

  /** A login the store answered: refused if revoked, reported, and its connection attached. */
  private takeLogin(
    result: StoreLoginResult,
    endedMeanwhile: EndNotice | undefined,
    request: ConnectRequest,
    /** The session the client asked to resume, if any. */
    sessionId: string | undefined,
    platform: Platform,
    instanceId: string,
    cls: PlatformClass,
    version: string | undefined,
    onEnd: EndListener,
    heartbeatInterval: number,
  ): ConnectResult {
    if (result.outcome === 'revoked') {
      // A session still live here that the store revoked: an end this process missed; its other connections are told now.
      if (sessionId !== undefined && this.local.has(sessionId)) this.endLocal(sessionId, result.notice ?? { reason: 'AdminKick' });
      throw new PresenceError('SESSION_REVOKED', 'this session was ended by a logout or a kick; log in again without it');
    }
    if (this.closed) {
      // Closed while the store took the login: it happened there (and kicked whom it kicked), so it
      // is reported like any other; the connection is refused, and close() (which waits for this
      // login) ends the device or hands it over with the others here.
      this.reportLogin(result, platform, instanceId, request.clientIp);
      if (!this.local.has(result.sessionId)) {
        const left = new LocalInstance(request.userId, instanceId, platform, cls, result.sessionId, version, request.clientIp, this.config.clock.now());
        this.local.set(result.sessionId, left);
      }
      this.assertOpen();
    }

    let instance = this.local.get(result.sessionId);
    if (!instance) {
      instance = new LocalInstance(request.userId, instanceId, platform, cls, result.sessionId, version, request.clientIp, this.config.clock.now());
      this.local.set(result.sessionId, instance);
    }
    instance.graceSince = -1;
    instance.handingOver = false;
    instance.background = false;
    this.reschedule(instance);
    const connection = this.attachConnection(instance, onEnd);
    const kicked = this.reportLogin(result, platform, instanceId, request.clientIp);
    // A login is activity: it ends idleness, here and in the store.
    if (this.idleOn && !instance.ended) {
      const user = this.trackUser(instance);
      instance.lastUserActivity = user.lastActivity = this.config.clock.now();
      this.writeActivity(user, instance.lastUserActivity);
    }
    // Kicked (or logged out elsewhere) before its login answered here: tell it now rather than leave a ghost.
    if (endedMeanwhile) this.endLocal(result.sessionId, endedMeanwhile);
    debug('%s/%s %s (%s), kicked %o', request.userId, instanceId, result.outcome, platform, kicked);
    return { connection, resumed: result.outcome === 'resumed', kicked, heartbeatInterval };
  }

  /**
   * A login the store answered after its caller was refused (storeTimeout): it happened in the store, so it is reported
   * like any other, and then the device is treated as a connection that closed at once (kept for its reconnect grace,
   * so a client retrying with its session resumes it, then ended as LinkClose): no device stays Online without a connection.
   */
  private abandonLogin(
    result: StoreLoginResult,
    endedMeanwhile: EndNotice | undefined,
    request: ConnectRequest,
    platform: Platform,
    instanceId: string,
    cls: PlatformClass,
    version: string | undefined,
  ): void {
    if (result.outcome === 'revoked') return;
    debug('%s/%s: login answered after storeTimeout; closing it', request.userId, instanceId);
    this.reportLogin(result, platform, instanceId, request.clientIp);
    // Closed meanwhile: the store ends it (see connect); ended meanwhile (a kick): whoever ended it recorded that.
    if (this.closed || endedMeanwhile || this.local.has(result.sessionId)) return;
    const instance = new LocalInstance(request.userId, instanceId, platform, cls, result.sessionId, version, request.clientIp, this.config.clock.now());
    this.local.set(result.sessionId, instance);
    if (this.config.reconnectGrace[cls] > 0) {
      instance.graceSince = this.config.clock.now();
      this.reschedule(instance);
    } else {
      this.endByTransport(instance, 'LinkClose', this.config.clock.now());
    }
  }

  /**
   * Waits on a store call for at most `storeTimeout`, then rejects with a StoreTimeoutError. A synchronous answer is
   * passed through untouched (no timer). The work itself is not cancelled: what it does once it answers (`late`, or the
   * caller's own chained steps) still happens, so nothing the store did is left unreported.
   */
  private bounded<T>(operation: string, work: MaybePromise<T>, late?: (value: T) => void): MaybePromise<T> {
    if (!isPromiseLike(work)) return work;
    const timeout = this.config.storeTimeout;
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        if (!this.storeStalled) {
          this.storeStalled = true;
          this.config.logger.warn(
            `express-presence: the store did not answer ${operation} within storeTimeout (${timeout} ms); requests are refused until it answers in time`,
          );
        }
        reject(new StoreTimeoutError(operation, timeout));
      }, timeout);
      timer.unref();
      work.then(
        (value) => {
          clearTimeout(timer);
          if (!timedOut) {
            this.storeStalled = false;
            resolve(value);
          } else if (late) {
            try {
              late(value);
            } catch (error) {
              this.config.logger.error(`express-presence: handling a late answer of the store's ${operation} failed`, error);
            }
          }
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (!timedOut) reject(error);
          else debug('store %s failed after its caller gave up: %o', operation, error);
        },
      );
    });
  }

  /** Ends the devices a login displaced here and emits its change; answers who was kicked. */
  private reportLogin(
    result: Exclude<StoreLoginResult, { outcome: 'revoked' }>,
    platform: Platform,
    instanceId: string,
    clientIp: string | undefined,
  ): InstanceRef[] {
    const kicked: InstanceRef[] = [];
    if (!result.change) return kicked;
    const by: InstanceRef = { platform, instanceId };
    for (const displaced of result.change.kicked) {
      kicked.push({ platform: displaced.platform, instanceId: displaced.instanceId });
      this.endLocal(displaced.sessionId, { reason: 'LoginElsewhere', by });
    }
    this.emitChange(result.change, 'Login', 'Register', clientIp);
    return kicked;
  }

  /** Any traffic from the connection: the hot path, one clock read and one store to a field. */
  heartbeat(connection: Connection): void {
    (connection as LocalConnection).instance.lastActivity = this.config.clock.now();
  }

  /**
   * User activity on the connection (`presence:activity`): a heartbeat that also keeps the user from going idle, and ends
   * idleness. Written to the store only when it ends idleness, or once per quarter of the idle timeout.
   */
  activity(connection: Connection): void {
    const instance = (connection as LocalConnection).instance;
    const now = this.config.clock.now();
    instance.lastActivity = now;
    this.noteActivity(instance, now);
  }

  private noteActivity(instance: LocalInstance, now: number): void {
    instance.lastUserActivity = now;
    const user = instance.user;
    if (!user) return;
    user.lastActivity = now;
    if (user.idle || now - user.activityWrittenAt >= this.activityWriteEvery) this.writeActivity(user, now);
    else if (user.heapIndex < 0) this.rescheduleIdle(user);
  }

  /**
   * Sets a user's availability (`presence.setAvailability`, or a device's `presence:set-availability` with `from`: then
   * also activity of that device). A choice is activity: it ends idleness. Throws a TypeError for an unknown value.
   */
  async setAvailability(userId: string, availability: unknown, from?: Connection): Promise<AvailabilityChange | null> {
    this.assertOpen();
    checkUserId(userId);
    const value = parseAvailability(availability);
    if (typeof this.store.setAvailability !== 'function')
      throw new Error(`${storeName(this.config.store)} does not support availability (it has no setAvailability())`);
    const now = this.config.clock.now();
    if (from) {
      const instance = (from as LocalConnection).instance;
      instance.lastActivity = instance.lastUserActivity = now;
    } else {
      // A choice made for the user counts as their activity on every device here.
      for (const instance of this.localUsers.get(userId)?.instances ?? []) instance.lastUserActivity = now;
    }
    const user = this.localUsers.get(userId);
    if (user) {
      user.lastActivity = now;
      user.idle = false;
      user.activityWrittenAt = now;
      this.rescheduleIdle(user);
    }
    return this.writeAvailability({ kind: 'set', userId, at: now, availability: value }, 'set');
  }

  /** One availability write; its change, if any, is emitted. */
  private async writeAvailability(request: StoreAvailabilityRequest, reason: AvailabilityChange['reason']): Promise<AvailabilityChange | null> {
    const store = this.store;
    if (typeof store.setAvailability !== 'function') return null;
    const written = store.setAvailability(request);
    const report = (result: StoreAvailabilityResult | null): AvailabilityChange | null => (result ? this.emitAvailability(result, reason, request.at) : null);
    if (!isPromiseLike(written)) return report(written);
    this.pendingWrites++;
    return this.bounded(
      'setAvailability',
      written.then(report).finally(() => this.writeSettled()),
    );
  }

  /** Writes an activity of the user (ending idleness) and re-arms their idle deadline. */
  private writeActivity(user: LocalUser, now: number): void {
    const wasIdle = user.idle;
    user.idle = false;
    user.activityWrittenAt = now;
    this.rescheduleIdle(user);
    this.writeAvailability({ kind: 'activity', userId: user.userId, at: now }, 'active').then(
      (change) => {
        if (debug.enabled && (change || wasIdle)) debug('%s active again', user.userId);
      },
      (error: unknown) => this.config.logger.error(`express-presence: recording the activity of ${user.userId} failed`, error),
    );
  }

  private emitAvailability(result: StoreAvailabilityResult, reason: AvailabilityChange['reason'], at: number): AvailabilityChange {
    const truth = truthOfState(result.state, at);
    const user = this.localUsers.get(truth.userId);
    if (user) user.idle = truth.idleSince !== null;
    const change: AvailabilityChange = {
      userId: truth.userId,
      availability: truth.availability,
      previousAvailability: result.previousAvailability,
      idleSince: iso(truth.idleSince),
      reason,
      userStatus: truth.status,
      customStatus: truth.customStatus,
      at,
    };
    this.emitSafely('availability', change);
    this.emitState(truth, result.previousAvailability);
    return change;
  }

  /** The user's idle tracking here, with this device in it. */
  private trackUser(instance: LocalInstance): LocalUser {
    if (instance.user) return instance.user;
    let user = this.localUsers.get(instance.userId);
    if (!user) {
      user = new LocalUser(instance.userId);
      this.localUsers.set(instance.userId, user);
    }
    user.instances.push(instance);
    instance.user = user;
    return user;
  }

  private untrackUser(instance: LocalInstance): void {
    const user = instance.user;
    if (!user) return;
    instance.user = undefined;
    user.instances = user.instances.filter((other) => other !== instance);
    if (user.instances.length === 0) {
      this.userScheduler.cancel(user);
      if (this.localUsers.get(user.userId) === user) this.localUsers.delete(user.userId);
    } else if (!user.idle) {
      // The device that held idleness off may be the one gone.
      this.rescheduleIdle(user);
    }
  }

  /** When the user goes idle: once every device here is idle for its class's timeout; never while one of a class without it is here. */
  private idleDueOf(user: LocalUser): number {
    let due = -Infinity;
    for (const instance of user.instances) {
      const timeout = this.config.idleTimeout[instance.cls];
      if (timeout === 0) return Infinity;
      due = Math.max(due, instance.lastUserActivity + timeout);
    }
    return due === -Infinity ? Infinity : due;
  }

  private rescheduleIdle(user: LocalUser): void {
    const due = this.idleDueOf(user);
    if (due === Infinity) this.userScheduler.cancel(user);
    else this.userScheduler.schedule(user, due);
  }

  private onIdleDue(user: LocalUser, now: number): void {
    if (user.idle || user.instances.length === 0) return;
    // A device transition due at the same instant goes first (a device timing out is not an idle user's device).
    for (const instance of [...user.instances]) if (!instance.ended && this.dueOf(instance) <= now) this.onDue(instance, now);
    if (user.idle || user.instances.length === 0) return;
    const due = this.idleDueOf(user);
    if (due > now) {
      if (due !== Infinity) this.userScheduler.schedule(user, due);
      return;
    }
    const idleSince = user.lastActivity;
    user.idle = true;
    this.userScheduler.cancel(user);
    debug('%s idle since %d', user.userId, idleSince);
    this.writeAvailability({ kind: 'idle', userId: user.userId, at: now, idleSince }, 'idle').catch((error: unknown) =>
      this.config.logger.error(`express-presence: marking ${user.userId} away after idleTimeout failed`, error),
    );
  }

  private onStatusExpired(expiry: StatusExpiry): void {
    if (this.statusExpiries.get(expiry.userId) === expiry) this.statusExpiries.delete(expiry.userId);
    this.writeCustomStatus(expiry.userId, null, this.config.clock.now(), { ifExpiresAt: expiry.expiresAt }, 'expired').catch((error: unknown) =>
      this.config.logger.error(`express-presence: clearing the expired custom status of ${expiry.userId} failed`, error),
    );
  }

  background(connection: Connection): void {
    const instance = this.liveInstance(connection);
    if (!instance || instance.background) return;
    instance.background = true;
    instance.backgroundSince = instance.lastActivity = this.config.clock.now();
    this.reschedule(instance);
  }

  foreground(connection: Connection): void {
    const instance = this.liveInstance(connection);
    if (!instance) return;
    instance.background = false;
    instance.lastActivity = this.config.clock.now();
    this.reschedule(instance);
  }

  /**
   * This connection is gone. `closed`: the transport closed (FIN/RST, page or app killed);
   * `timeout`: the transport stopped hearing from it; `shutdown`: this server closed it because it
   * is shutting down (Socket.IO's `io.close()`), so the client reconnects to another process: with
   * a store that hands over, the device waits `handoverGrace` (or its reconnect grace, if longer)
   * for that, otherwise it is a close. The device transitions when its last connection goes (after
   * the grace, for a close).
   */
  disconnect(connection: Connection, cause: 'closed' | 'timeout' | 'shutdown'): void {
    const conn = connection as LocalConnection;
    if (!conn.open) return;
    conn.open = false;
    const instance = conn.instance;
    removeConnection(instance, conn);
    if (instance.ended || instance.connections) return;
    if (cause === 'timeout') {
      this.endByTransport(instance, 'TimeOut', instance.lastActivity);
    } else if (cause === 'shutdown' && this.handsOver()) {
      instance.graceSince = this.config.clock.now();
      instance.handingOver = true;
      this.reschedule(instance);
    } else if (this.config.reconnectGrace[instance.cls] > 0) {
      instance.graceSince = this.config.clock.now();
      this.reschedule(instance);
    } else {
      this.endByTransport(instance, 'LinkClose', this.config.clock.now());
    }
  }

  /** The device logs out: it is gone and its session revoked; its other connections are told. */
  async logout(connection: Connection): Promise<void> {
    const conn = connection as LocalConnection;
    const instance = conn.instance;
    if (instance.ended) return;
    conn.open = false;
    this.endLocal(instance.sessionId, { reason: 'Logout' });
    const now = this.config.clock.now();
    const removed = this.store.remove({
      userId: instance.userId,
      instanceId: instance.instanceId,
      sessionId: instance.sessionId,
      at: now,
      lastSeen: now,
      revoke: true,
    });
    const report = (change: StoreChange | null): void => {
      if (change) this.emitChange(change, 'Logout', 'Unregister', instance.clientIp);
    };
    if (!isPromiseLike(removed)) return report(removed);
    // Reported when the store answers, even after the caller stopped waiting (storeTimeout); close() waits for it.
    this.pendingWrites++;
    await this.bounded(
      'remove',
      removed.then(report).finally(() => this.writeSettled()),
    );
  }

  /** Admin kick of every device of a user, or of those on one platform or with one instance id. */
  async kick(userId: string, filter: { platform?: unknown; instanceId?: unknown } = {}): Promise<InstanceRef[]> {
    this.assertOpen();
    checkUserId(userId);
    if (typeof filter !== 'object' || filter === null) throw new TypeError('kick filter must be an object { platform?, instanceId? }');
    // A misspelt `platfrom` must not turn a one-device kick into an every-device kick.
    refuseUnknownKeys('filter', filter, KICK_FILTER_KEYS);
    let platform: Platform | undefined;
    if (filter.platform !== undefined) {
      platform = parsePlatform(filter.platform);
      if (!platform) throw new TypeError(`platform must be one of ${PLATFORM_NAMES_FOR_ERRORS}; got ${JSON.stringify(filter.platform)}`);
    }
    if (filter.instanceId !== undefined && (typeof filter.instanceId !== 'string' || filter.instanceId === '' || filter.instanceId.length > MAX_ID_LENGTH)) {
      throw new TypeError(`instanceId must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
    }
    const report = (changes: StoreChange[]): InstanceRef[] =>
      changes.map((change) => {
        this.endLocal(change.sessionId, { reason: 'AdminKick' });
        this.emitChange(change, 'Logout', 'Kicked', undefined);
        return { platform: change.platform, instanceId: change.instanceId };
      });
    const kicked = this.store.kick({ userId, platform, instanceId: filter.instanceId as string | undefined, at: this.config.clock.now() });
    if (!isPromiseLike(kicked)) return report(kicked);
    // A kick the store makes after the caller stopped waiting (storeTimeout) still ends its sockets and is reported; close() waits for it.
    this.pendingWrites++;
    return this.bounded(
      'kick',
      kicked.then(report).finally(() => this.writeSettled()),
    );
  }

  /**
   * Sets (or with null / '' clears) a user's custom status, at most 100 bytes of UTF-8; with `ttl` (ms or '30m', 1 s to
   * 365 days) it is cleared when that runs out, with a change event like any clearing.
   */
  async setCustomStatus(userId: string, customStatus: string | null, options: { ttl?: number | string } = {}): Promise<void> {
    this.assertOpen();
    checkUserId(userId);
    const text = parseCustomStatus(customStatus);
    if (typeof options !== 'object' || options === null)
      throw new TypeError(`setCustomStatus options must be an object { ttl? }; got ${options === null ? 'null' : typeof options}`);
    refuseUnknownKeys('options', options, CUSTOM_STATUS_OPTION_KEYS);
    const ttl = parseCustomStatusTtl(options.ttl);
    const at = this.config.clock.now();
    const expiresAt = text === null || ttl === undefined ? null : at + ttl;
    await this.writeCustomStatus(userId, text, at, { expiresAt }, 'set');
  }

  private async writeCustomStatus(
    userId: string,
    text: string | null,
    at: number,
    options: { expiresAt?: number | null; ifExpiresAt?: number },
    reason: CustomStatusChange['reason'],
  ): Promise<void> {
    const report = (answer: UserStatus | StoreUserState | null): void => {
      if (answer === null) return;
      const expiresAt = options.expiresAt ?? null;
      if (reason === 'set') this.scheduleExpiry(userId, expiresAt);
      const state: StoreUserState | undefined = typeof answer === 'string' ? undefined : answer;
      const truth = state ? truthOfState(state, at) : undefined;
      this.emitSafely('custom-status', {
        userId,
        customStatus: text,
        userStatus: typeof answer === 'string' ? answer : answer.userStatus,
        availability: truth?.availability ?? 'available',
        reason,
        expiresAt: iso(expiresAt),
        at,
      });
      if (truth) this.emitState(truth, null);
      // A store that answers only the status (older third-party stores): the truth is read back for the adapters.
      else
        this.truths([userId]).then(
          ([read]) => read && this.emitState(read, null),
          (error: unknown) => this.config.logger.error('express-presence: could not read a user to relay a custom status change', error),
        );
    };
    const stored = this.store.setCustomStatus({ userId, customStatus: text, at, ...options });
    if (!isPromiseLike(stored)) return report(stored);
    this.pendingWrites++;
    await this.bounded(
      'setCustomStatus',
      stored.then(report).finally(() => this.writeSettled()),
    );
  }

  /** Arms (or with null disarms) the clearing of the user's custom status set here. */
  private scheduleExpiry(userId: string, expiresAt: number | null): void {
    const existing = this.statusExpiries.get(userId);
    if (existing) {
      this.userScheduler.cancel(existing);
      this.statusExpiries.delete(userId);
    }
    if (expiresAt === null || this.closed) return;
    const expiry = new StatusExpiry(userId, expiresAt);
    this.statusExpiries.set(userId, expiry);
    this.userScheduler.schedule(expiry, expiresAt);
  }

  /** The presence of each user asked for, in order (with each device unless `detail: false`). */
  query(userIds: readonly string[], options: { detail?: boolean } = {}): Promise<UserPresence[]> {
    if (typeof options !== 'object' || options === null || (options.detail !== undefined && typeof options.detail !== 'boolean')) {
      return Promise.reject(
        new TypeError(
          `query options must be an object { detail?: boolean }; got ${options === null ? 'null' : typeof options === 'object' ? `detail ${JSON.stringify(options.detail)}` : typeof options}`,
        ),
      );
    }
    try {
      refuseUnknownKeys('options', options, QUERY_OPTION_KEYS);
    } catch (error) {
      return Promise.reject(error);
    }
    const detail = options.detail !== false;
    return this.lookup(userIds).then((users) => this.present(userIds, users, detail));
  }

  /**
   * The stored records of the users asked for, in order (undefined for users never seen): the lean
   * read behind `query`, for adapters that build their own answer (the querystate route).
   */
  lookup(userIds: readonly string[]): Promise<readonly (StoredUser | undefined)[]> {
    try {
      if (!Array.isArray(userIds)) throw new TypeError(`userIds must be an array of user ids; got ${typeof userIds}`);
      for (let i = 0; i < userIds.length; i++) checkUserId(userIds[i], `userIds[${i}]`);
      return Promise.resolve(this.bounded('get', this.store.get(userIds)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The truth of each user asked for, in order: what adapters cut down for each viewer (see viewFor). */
  truths(userIds: readonly string[]): Promise<UserTruth[]> {
    return this.lookup(userIds).then((users) => {
      const now = this.config.clock.now();
      return userIds.map((userId, i) => truthOfUser(userId, users[i], now));
    });
  }

  async stats(): Promise<PresenceStats> {
    return this.bounded('stats', this.store.stats());
  }

  /** Devices with a live connection to this process. */
  get liveInstances(): number {
    return this.local.size;
  }

  /**
   * Stops every timer and lets go of this process's devices: with a store that hands over (Redis
   * mode) and `handoverGrace` above 0 they are left to be resumed on other processes (no
   * transition here); otherwise each is ended now as a closed connection (mobile PushOnline, the
   * others gone). Resolves once every transition it caused, or that was under way, is written to
   * the store and emitted. The transports' connections are no longer open for presence: their
   * close that follows is no transition.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    const at = this.config.clock.now();
    this.closed = true;
    this.scheduler.close();
    this.userScheduler.close();
    // Adapters read `open`: from here a closing presence has no open connections, and a transport
    // closing one now (io.close() after presence.close()) changes nothing.
    for (const instance of this.local.values()) forEachConnection(instance, (connection) => (connection.open = false));
    // Logins the store is taking now are reported (see connect), and their devices let go with the others.
    if (this.pendingLogins > 0) await new Promise<void>((resolve) => (this.loginsSettled = resolve));
    const handOver = this.handsOver();
    for (const instance of [...this.local.values()]) {
      if (handOver) this.forget(instance);
      else this.endByTransport(instance, 'LinkClose', instance.graceSince >= 0 ? instance.graceSince : this.config.clock.now());
    }
    this.local.clear();
    const store = this.store;
    if (handOver) await store.handOver?.(at + this.config.handoverGrace);
    // After the ends were sent: a store closing gives up those still waiting for it (an outage), which settles them.
    await store.close?.();
    if (this.pendingWrites > 0) await new Promise<void>((resolve) => (this.writesSettled = resolve));
  }

  /** Whether close() (and a shutdown's disconnects) leave devices to other processes rather than end them. */
  private handsOver(): boolean {
    return this.config.handoverGrace > 0 && typeof this.store.handOver === 'function';
  }

  private writeSettled(): void {
    if (--this.pendingWrites === 0) this.writesSettled?.();
  }

  private present(userIds: readonly string[], users: readonly (StoredUser | undefined)[], detail: boolean): UserPresence[] {
    const nowText = isoTime(this.config.clock.now());
    const result: UserPresence[] = new Array(userIds.length);
    for (let i = 0; i < userIds.length; i++) {
      const user = users[i];
      const userId = userIds[i] as string;
      if (!user) {
        result[i] = detail
          ? { userId, status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null, instances: [] }
          : { userId, status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null };
        continue;
      }
      const status = deriveUserStatus(user.instances);
      const lastSeen = status === 'Online' ? nowText : iso(user.lastSeen);
      const idleMs = (user.availability ?? 'available') === 'available' ? (user.idleSince ?? null) : null;
      const availability = effectiveAvailability(user.availability, idleMs);
      const idleSince = iso(idleMs);
      if (!detail) {
        result[i] = { userId, status, lastSeen, customStatus: user.customStatus, availability, idleSince };
        continue;
      }
      const instances: InstancePresence[] = new Array(user.instances.length);
      for (let j = 0; j < user.instances.length; j++) {
        const instance = user.instances[j]!;
        instances[j] = {
          instanceId: instance.instanceId,
          platform: instance.platform,
          status: instance.status,
          since: isoTime(instance.since),
          version: instance.version ?? null,
        };
      }
      result[i] = { userId, status, lastSeen, customStatus: user.customStatus, availability, idleSince, instances };
    }
    return result;
  }

  private attachConnection(instance: LocalInstance, onEnd: EndListener): LocalConnection {
    const connection = new LocalConnection(instance, onEnd);
    const connections = instance.connections;
    if (!connections) instance.connections = connection;
    else if (connections instanceof LocalConnection) instance.connections = [connections, connection];
    else instance.connections = [...connections, connection];
    return connection;
  }

  private liveInstance(connection: Connection): LocalInstance | undefined {
    const conn = connection as LocalConnection;
    return conn.open && !conn.instance.ended ? conn.instance : undefined;
  }

  private dueOf(instance: LocalInstance): number {
    const cls = instance.cls;
    if (instance.graceSince >= 0) {
      const grace = this.config.reconnectGrace[cls];
      return instance.graceSince + (instance.handingOver ? Math.max(grace, this.config.handoverGrace) : grace);
    }
    let due = instance.lastActivity + this.config.heartbeatTimeout[cls];
    const backgroundTimeout = this.config.backgroundTimeout[cls];
    if (instance.background && backgroundTimeout > 0) due = Math.min(due, instance.backgroundSince + backgroundTimeout);
    return due;
  }

  private reschedule(instance: LocalInstance): void {
    if (!instance.ended) this.scheduler.schedule(instance, this.dueOf(instance));
  }

  private onDue(instance: LocalInstance, now: number): void {
    if (instance.ended) return;
    const due = this.dueOf(instance);
    if (due > now) {
      this.scheduler.schedule(instance, due);
    } else if (instance.graceSince >= 0) {
      this.endByTransport(instance, 'LinkClose', instance.graceSince);
    } else {
      // Heartbeat or background timeout: the transport may still look open, so close it.
      const lastSeen = instance.background ? Math.min(instance.lastActivity, instance.backgroundSince) : instance.lastActivity;
      // endLocal(instance.sessionId, …) without looking the device up again: it is the one `local` holds.
      const notice: EndNotice = { reason: 'TimeOut' };
      this.noteEndedLogin(instance.sessionId, notice);
      this.endInstance(instance, notice);
      this.endByTransport(instance, 'TimeOut', Math.max(lastSeen, 0));
    }
  }

  /** The device lost its link: mobile devices become PushOnline, the others are gone. */
  private endByTransport(instance: LocalInstance, reason: 'LinkClose' | 'TimeOut', lastSeen: number): void {
    this.forget(instance);
    const now = this.config.clock.now();
    const request = { userId: instance.userId, instanceId: instance.instanceId, sessionId: instance.sessionId, at: now, lastSeen, owner: this.owner };
    const result = hasPushOnline(instance.platform) ? this.store.markPushOnline(request) : this.store.remove({ ...request, revoke: false });
    // A synchronous store (the memory store) answers at once: no closure per device on a mass expiry.
    if (isPromiseLike(result)) {
      this.pendingWrites++;
      result
        .then(
          (change) => {
            if (change) this.emitChange(change, 'Disconnect', reason, instance.clientIp);
          },
          (error: unknown) => this.config.logger.error('express-presence: store failed to record a closed connection', error),
        )
        .finally(() => this.writeSettled());
    } else if (result) {
      this.emitChange(result, 'Disconnect', reason, instance.clientIp);
    }
  }

  /** Ends the local device holding `sessionId`, if any, telling each of its connections why. */
  private endLocal(sessionId: string, notice: EndNotice): void {
    this.noteEndedLogin(sessionId, notice);
    const instance = this.local.get(sessionId);
    if (instance) this.endInstance(instance, notice);
  }

  /** A login of that session waiting for the store must not come alive once it answers. */
  private noteEndedLogin(sessionId: string, notice: EndNotice): void {
    const connecting = this.loginsInFlight.get(sessionId);
    if (connecting) connecting.ended ??= notice;
  }

  /** Ends a device live here, telling each of its connections why. */
  private endInstance(instance: LocalInstance, notice: EndNotice): void {
    this.forget(instance);
    const connections = instance.connections;
    instance.connections = undefined;
    if (!connections) return;
    if (connections instanceof LocalConnection) {
      this.tell(connections, notice);
      return;
    }
    for (let i = 0; i < connections.length; i++) this.tell(connections[i] as LocalConnection, notice);
  }

  private tell(connection: LocalConnection, notice: EndNotice): void {
    if (!connection.open) return;
    connection.open = false;
    try {
      connection.onEnd(notice);
    } catch (error) {
      this.config.logger.error('express-presence: a connection end listener threw', error);
    }
  }

  private forget(instance: LocalInstance): void {
    // Once ended a device is out of `local` and of the scheduler (forgotten, or the engine closed).
    if (instance.ended) return;
    instance.ended = true;
    this.scheduler.cancel(instance);
    if (instance.user) this.untrackUser(instance);
    if (this.local.get(instance.sessionId) === instance) this.local.delete(instance.sessionId);
  }

  private emitChange(change: StoreChange, action: ChangeAction, reason: ChangeReason, clientIp: string | undefined): void {
    const event: PresenceChange = {
      userId: change.userId,
      instanceId: change.instanceId,
      platform: change.platform,
      action,
      reason,
      instanceStatus: change.instanceStatus,
      userStatus: change.userStatus,
      previousUserStatus: change.previousUserStatus,
      kicked: change.kicked.length === 0 ? [] : change.kicked.map(({ platform, instanceId }) => ({ platform, instanceId })),
      seq: change.seq,
      at: change.at,
      lastSeen: iso(change.userStatus === 'Online' ? change.at : change.lastSeen),
      customStatus: change.customStatus,
      availability: effectiveAvailability(change.availability, change.idleSince),
      idleSince: (change.availability ?? 'available') === 'available' ? iso(change.idleSince ?? null) : null,
    };
    if (clientIp !== undefined) event.clientIp = clientIp;
    if (change.version !== undefined) event.version = change.version;
    // Checked here: a call with seven arguments builds its argument list even when debug is off.
    if (debug.enabled) debug('change %s %s/%s %s/%s -> %s', event.userId, event.platform, event.instanceId, action, reason, event.userStatus);
    this.emitSafely('change', event);
  }

  private emitState(truth: UserTruth, previousAvailability: Availability | null): void {
    for (const listener of this.listeners('user-state') as ((truth: UserTruth, previous: Availability | null) => void)[]) {
      try {
        listener(truth, previousAvailability);
      } catch (error) {
        this.config.logger.error("express-presence: a 'user-state' listener threw", error);
      }
    }
  }

  /** Emits to every listener; one that throws is logged and does not stop the others or the engine. */
  private emitSafely<K extends keyof PresenceEngineEvents>(name: K, payload: PresenceEngineEvents[K][0]): void {
    for (const listener of this.listeners(name) as ((payload: PresenceEngineEvents[K][0]) => void)[]) {
      try {
        listener(payload);
      } catch (error) {
        this.config.logger.error(`express-presence: a '${name}' listener threw`, error);
      }
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('this presence was closed');
  }
}
