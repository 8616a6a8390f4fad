// RedisStore: presence shared by many processes through Redis or a Redis Cluster, with atomic scripts, leases and pub/sub.

import { createHash } from 'node:crypto';
import createDebug from 'debug';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import type { Clock, TimerHandle } from '../core/clock.js';
import { PLATFORMS, type Platform } from '../core/platforms.js';
import type { EndNotice, InstanceStatus, PresenceStats, UserStatus } from '../core/types.js';
import type {
  KickFilter,
  LiveInstance,
  PresenceStore,
  StoreChange,
  StoreContext,
  StoreKicked,
  StoreLoginRequest,
  StoreLoginResult,
  StoredInstance,
  StoredUser,
  StoreAvailabilityRequest,
  StoreAvailabilityResult,
  StoreCustomStatusOptions,
  StoreUserState,
} from '../core/store.js';
import type { Availability } from '../core/availability.js';
import {
  EXPIRE_DUE,
  KICK,
  LEAVE,
  LINK_LOST,
  LOGIN,
  REAP,
  REAPPLY_ENDS,
  REMOVE,
  RENEW,
  SET_AVAILABILITY,
  SET_CUSTOM_STATUS,
  withRevocationCap,
} from './scripts.js';
import { BUCKETS, BUCKET_TAGS, LAYOUT_VERSION, RedisLayout, bucketOf, slotOf } from './layout.js';
import { positiveInteger } from '../util/positive-integer.js';
import { refuseUnknownKeys } from '../util/did-you-mean.js';
import { isStoreUnavailable, StoreUnavailableError } from '../core/errors.js';
import { RedisRooms } from './rooms.js';

const debug = createDebug('express-presence:redis');

const ADMIN_KICK = JSON.stringify({ reason: 'AdminKick' });

export interface RedisStoreOptions {
  /**
   * An ioredis client: `new Redis(url)` for one Redis, or `new Cluster(nodes)` for a Redis Cluster. The store also makes one
   * duplicate of it for pub/sub (sharded pub/sub on a cluster). Required.
   */
  client: Redis | Cluster;
  /**
   * Prefix of every key and channel; no braces (the store adds its own hash tags). Defaults to `'presence:v2:'` (0.1 kept its
   * data under `'presence:'` in a layout this version does not read: README "Upgrading from 0.1").
   */
  prefix?: string;
  /**
   * How long a process's lease lasts without renewal (renewed every third of it); a dead process's devices are closed within about this plus
   * `sweepInterval`. During an outage a login or admin kick waits for Redis up to the presence's `storeTimeout`, at most this long. Defaults to 10000.
   */
  leaseTtl?: number;
  /** How often each process looks for due PushOnline expiries and dead processes. Defaults to 1000. */
  sweepInterval?: number;
  /** How long an Offline user's last-seen time and custom status are kept. Defaults to 30 days. */
  offlineTtl?: number;
  /**
   * Revoked sessions kept for one user (each for the PushOnline TTL); beyond it, that user's oldest is forgotten, never another
   * user's. Defaults to 1000.
   */
  maxRevokedSessionsPerUser?: number;
}

/** Something that waited for Redis: replayed in order once it is back. */
interface Deferred {
  run(): Promise<unknown>;
  fail(error: unknown): void;
  attempts: number;
  /** A login waiting for Redis: refused when the store closes (a transport end just stays unrecorded). */
  login?: boolean;
  /** A transport end given up at close: it settles unrecorded (other processes reap the device once the lease is gone). */
  drop?: () => void;
}

/** An admin kick waiting for Redis (and for this process's re-assertion): run after it, in order. */
interface WaitingKick {
  run(): Promise<void>;
  fail(error: unknown): void;
  attempts: number;
}

/** A session this process ended (a login's kick, an admin kick), applied again after each reconnection while remembered. */
interface RecentEnd {
  readonly userId: string;
  readonly instanceId: string;
  /** The notice as JSON, {reason, by?}. */
  readonly notice: string;
  until: number;
}

/** An admin kick this process made: its mark in Redis is written again after each reconnection while remembered. */
interface RecentKick {
  readonly userId: string;
  readonly platform: string;
  readonly instanceId: string;
  readonly at: number;
  until: number;
}

/** Redis answers that mean it cannot serve now (loading after a restart, a failover, a busy script), not a refusal of the command. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS)\b/;

/**
 * A failed Redis call as the engine must see it: anything but an answer of Redis itself (the connection refused or
 * lost, ioredis giving up its retries) is a StoreUnavailableError, so routes refuse with 503 instead of failing with 500.
 */
function storeError(error: unknown): unknown {
  if (isStoreUnavailable(error) || error instanceof StoreLayoutError) return error;
  const isReply = error instanceof Error && error.name === 'ReplyError';
  if (isReply && !UNAVAILABLE_REPLY.test(error.message)) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(`Redis cannot be reached (${detail.slice(0, 200)}); try again shortly`, { cause: error });
}

/** Refused at once while Redis is known to be away: nothing is answered from a stale copy. */
function redisAway(): StoreUnavailableError {
  return new StoreUnavailableError('Redis cannot be reached; presence refuses to answer from a stale copy; try again shortly');
}

/** Replays of one waiting operation before it is given up (Redis answers, but refuses it). */
const MAX_REPLAYS = 3;
/** Live devices re-asserted at once after an outage. */
const REASSERT_BATCH = 100;
/** Recent ends and admin kicks remembered at most (the oldest are forgotten first), and sent to Redis at once when applied again. */
const MAX_RECENT_ENDS = 10_000;
const MAX_RECENT_KICKS = 1000;
const REAPPLY_BATCH = 500;
/** How long (in leases) an end is remembered after it was last applied, and an admin kick's mark kept in Redis. */
const END_MEMORY_LEASES = 3;

type ScriptName = 'login' | 'linkLost' | 'remove' | 'kick' | 'setCustomStatus' | 'setAvailability' | 'expireDue' | 'reap' | 'reapplyEnds' | 'renew' | 'leave';

const SOURCES: Record<ScriptName, string> = {
  login: LOGIN,
  linkLost: LINK_LOST,
  remove: REMOVE,
  kick: KICK,
  setCustomStatus: SET_CUSTOM_STATUS,
  setAvailability: SET_AVAILABILITY,
  expireDue: EXPIRE_DUE,
  reap: REAP,
  reapplyEnds: REAPPLY_ENDS,
  renew: RENEW,
  leave: LEAVE,
};

/** The Redis Cluster slot of each bucket. */
const BUCKET_SLOTS = BUCKET_TAGS.map(slotOf);
const ALL_BUCKETS = Array.from({ length: BUCKETS }, (_, bucket) => bucket);
/** Devices handled by one reaping or expiry script: each call stays well under 5 ms of Redis time. */
const SLICE = 32;
/** The default prefix: 0.1 used 'presence:' in the older layout. */
const DEFAULT_PREFIX = 'presence:v2:';
const PREVIOUS_DEFAULT_PREFIX = 'presence:';

/** The data under the prefix was written by a version with another key layout: every call is refused with what to do. */
export class StoreLayoutError extends Error {
  readonly code = 'ERR_PRESENCE_REDIS_LAYOUT';
  constructor(message: string) {
    super(message);
    this.name = 'StoreLayoutError';
  }
}

/** What the scripts encode: cjson writes empty arrays as {} and nil as false; seq is a decimal string (cjson rounds numbers to 14 digits). */
interface RawChange extends Omit<StoreChange, 'kicked' | 'lastSeen' | 'customStatus' | 'seq' | 'availability' | 'idleSince'> {
  seq: string;
  kicked: StoreKicked[] | Record<string, never>;
  lastSeen: number | false;
  customStatus: string | false;
  availability?: Availability | false;
  idleSince?: number | false;
}

/** The user's state as SET_CUSTOM_STATUS and SET_AVAILABILITY answer it (STATE_OF in scripts.ts). */
interface RawState {
  status: UserStatus;
  ls: number | false;
  cs: string | false;
  cx: number | false;
  v: Availability;
  i: number | false;
  f: number | false;
  fc: string | false;
}

function toState(userId: string, raw: RawState): StoreUserState {
  return {
    userId,
    userStatus: raw.status,
    lastSeen: raw.ls === false ? null : raw.ls,
    customStatus: raw.cs === false ? null : raw.cs,
    customStatusExpiresAt: raw.cx === false ? null : raw.cx,
    availability: raw.v,
    idleSince: raw.i === false ? null : raw.i,
    frozenLastSeen: raw.f === false ? null : raw.f,
    frozenCustomStatus: raw.fc === false ? null : raw.fc,
  };
}

function toChange(raw: RawChange): StoreChange {
  return {
    ...raw,
    seq: Number(raw.seq),
    kicked: Array.isArray(raw.kicked) ? raw.kicked : [],
    version: raw.version === '' ? undefined : raw.version,
    lastSeen: raw.lastSeen === false ? null : raw.lastSeen,
    customStatus: raw.customStatus === false ? null : raw.customStatus,
    availability: raw.availability === false || raw.availability === undefined ? 'available' : raw.availability,
    idleSince: raw.idleSince === false || raw.idleSince === undefined ? null : raw.idleSince,
  };
}

/** Settles when `work` does, or after `ms` at the latest. */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function toChanges(raw: unknown): StoreChange[] {
  const list = JSON.parse(raw as string) as RawChange[] | Record<string, never>;
  return Array.isArray(list) ? list.map(toChange) : [];
}

/** A user as the scripts keep it (see scripts.ts); cjson writes an empty list as {}. */
interface UserRecord {
  /** seq (a decimal string; a number from older versions) and order: only the scripts read them. */
  s: string | number;
  o: number;
  l?: number;
  c?: string;
  /** When the custom status expires (ms). */
  x?: number;
  /** Availability: chosen, idleSince, last activity, frozen last seen and custom status (while invisible). */
  a?: { v?: Availability; i?: number; t?: number; f?: number; fc?: string };
  i:
    | [
        instanceId: string,
        platform: Platform,
        status: InstanceStatus,
        since: number,
        order: number,
        sessionId: string,
        /** The processes holding it live: '' none, one owner, or a list while several do (tabs on several processes). */
        owners: string | string[],
        version: string,
      ][]
    | Record<string, never>;
}

/** One user's record, in the shape every store answers; a custom status past its expiry (`now`) is answered as none. */
function toStoredUser(userId: string, record: UserRecord, now: number): StoredUser {
  const list = Array.isArray(record.i) ? record.i : [];
  const instances: StoredInstance[] = new Array(list.length);
  for (let j = 0; j < list.length; j++) {
    const [instanceId, platform, status, since, order, sessionId, , version] = list[j]!;
    instances[j] = { instanceId, platform, status, since, order, sessionId, version: version === '' ? undefined : version };
  }
  const expired = record.x !== undefined && record.x <= now;
  const a = record.a;
  return {
    userId,
    instances,
    lastSeen: record.l ?? null,
    customStatus: expired ? null : (record.c ?? null),
    customStatusExpiresAt: expired ? null : (record.x ?? null),
    availability: a?.v ?? 'available',
    idleSince: a?.i ?? null,
    frozenLastSeen: a?.f ?? null,
    frozenCustomStatus: a?.fc ?? null,
  };
}

/**
 * Presence in Redis, so that every process behind a load balancer shares it: queries answer for
 * all users, the login policy is decided atomically in a script, kicks reach sockets on every
 * process, and the devices of a process that died are closed once its lease runs out.
 */
export class RedisStore implements PresenceStore {
  readonly prefix: string;
  /** Key names (lib/redis/layout.ts). */
  readonly layout: RedisLayout;
  private readonly client: Redis | Cluster;
  /** True on a Redis Cluster: sharded pub/sub, and pipelines grouped by node. */
  private readonly isCluster: boolean;
  private subscriber: Redis | Cluster | undefined;
  /** The layout check, once: a refusal (StoreLayoutError) is kept and given to every call. */
  private layoutChecked: Promise<void> | undefined;
  private layoutReported = false;
  private readonly leaseTtl: number;
  private readonly sweepInterval: number;
  private readonly offlineTtl: number;
  private readonly shas = new Map<ScriptName, string>();
  private readonly sources = new Map<ScriptName, string>();
  private context: StoreContext | undefined;
  private readonly timers = new Set<TimerHandle>();
  /** The periodic tasks (lease, sweep) running now: close waits for them, so the changes a sweep reports come before it resolves. */
  private readonly running = new Set<Promise<void>>();
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Set by handOver: close leaves this process's devices to the others until then instead of at once. */
  private handoverUntil: number | undefined;
  private down = false;
  /**
   * No other process's devices are reaped before this time: after an outage of this process's own, or a renewal or sweep that
   * Redis was slow to answer, the others get one lease to renew theirs, which may have run out only because they could not reach
   * Redis either (on a cluster, a renewal waits for every master: one master away stalls the renewals in the others' buckets too,
   * and ioredis may retry the commands until it is back rather than fail them).
   */
  private reapNotBefore = 0;
  /** When the renewal under way was sent (undefined when none is). */
  private renewingSince: number | undefined;
  /** Transport ends (and logins) that could not reach Redis, replayed in order once it is back. */
  private pending: Deferred[] = [];
  /** Admin kicks made while Redis was away or this process was reconciling: run once its live devices are re-asserted. */
  private waitingKicks: WaitingKick[] = [];
  /**
   * Sessions this process ended and admin kicks it made lately, by session id (oldest first). A Redis restarted empty forgets
   * them, and the process holding such a device may have missed the `ended` message (its subscriber reconnecting) and would
   * re-assert it; so after each reconnection they are applied again, for `endMemory` ms after the last time.
   */
  private readonly recentEnds = new Map<string, RecentEnd>();
  private readonly recentKicks: RecentKick[] = [];
  /** How long an end is remembered after it was last applied (END_MEMORY_LEASES leases). */
  readonly endMemory: number;
  /** True once the first subscription to the ended channel is in place. */
  private subscribedOnce = false;
  /** True once this process's lease was written: a later renewal that finds it gone means other processes reaped us. */
  private leaseHeld = false;
  /** The reconciliation running now, and whether another was asked for meanwhile. */
  private reconciling: Promise<void> | undefined;
  private reconcileAgain = false;
  /** The policy of the last login, for devices re-asserted after an outage. */
  private limits: StoreLoginRequest['limits'] = { loginPolicy: 'single', maxInstancesPerPlatform: 1, maxWebInstances: 1 };

  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('RedisStore options must be an object { client, prefix? }');
    const known = ['client', 'prefix', 'leaseTtl', 'sweepInterval', 'offlineTtl', 'maxRevokedSessionsPerUser'];
    refuseUnknownKeys('RedisStore', options, known);
    const client = options.client as Partial<Redis> | undefined;
    if (!client || typeof client.evalsha !== 'function' || typeof client.pipeline !== 'function' || typeof client.duplicate !== 'function') {
      throw new TypeError('RedisStore: client must be an ioredis client, such as new Redis(process.env.REDIS_URL)');
    }
    if (options.prefix !== undefined && (typeof options.prefix !== 'string' || options.prefix.length > 100))
      throw new TypeError('RedisStore: prefix must be a string of at most 100 characters');
    if (options.prefix?.includes('{') || options.prefix?.includes('}'))
      throw new TypeError(`RedisStore: prefix must not contain braces (the store adds its own hash tags); got ${JSON.stringify(options.prefix)}`);
    this.client = options.client;
    this.isCluster = (options.client as { isCluster?: unknown }).isCluster === true;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.layout = new RedisLayout(this.prefix);
    this.leaseTtl = positiveInteger('RedisStore', 'leaseTtl', options.leaseTtl, 10_000, 'milliseconds');
    this.sweepInterval = positiveInteger('RedisStore', 'sweepInterval', options.sweepInterval, 1000, 'milliseconds');
    this.offlineTtl = positiveInteger('RedisStore', 'offlineTtl', options.offlineTtl, 30 * 24 * 3600 * 1000, 'milliseconds');
    this.endMemory = END_MEMORY_LEASES * this.leaseTtl;
    const maxRevokedSessionsPerUser = positiveInteger('RedisStore', 'maxRevokedSessionsPerUser', options.maxRevokedSessionsPerUser, 1000);
    for (const [name, template] of Object.entries(SOURCES)) {
      const source = withRevocationCap(template, maxRevokedSessionsPerUser);
      this.sources.set(name as ScriptName, source);
      this.shas.set(name as ScriptName, createHash('sha1').update(source).digest('hex'));
    }
  }

  /** Rooms are shared with the other processes through Redis (lib/redis/rooms.ts). */
  readonly rooms = 'shared';

  /** The rooms binding, over this store's client, prefix and lease timings (called once by createPresence). */
  sharedRooms(): RedisRooms {
    const context = this.context;
    if (!context) throw new Error('RedisStore.sharedRooms() needs init() first');
    return new RedisRooms({
      client: this.client,
      prefix: this.prefix,
      leaseTtl: this.leaseTtl,
      sweepInterval: this.sweepInterval,
      reapDelay: Math.max(...Object.values(context.reconnectGrace)),
      clock: context.clock,
      logger: context.logger,
    });
  }

  init(context: StoreContext): void {
    if (this.context) throw new Error('this RedisStore is already used by another createPresence(); give each its own store');
    this.context = context;
    this.client.on('error', this.onError);
    this.client.on('ready', this.onReady);
    this.client.on('close', this.onClose);
    // On a cluster, sharded pub/sub (each channel served by its slot's node; ioredis needs shardedSubscribers for it).
    const subscriber = this.isCluster ? (this.client as Cluster).duplicate(undefined, { shardedSubscribers: true }) : (this.client as Redis).duplicate();
    this.subscriber = subscriber;
    subscriber.on('error', () => {}); // reported once through the main client's episode
    subscriber.on(this.isCluster ? 'smessage' : 'message', (_channel: string, message: string) => this.onEnded(message));
    // Kicks published while the subscriber was away were missed: re-asserting the live devices finds them revoked.
    let subscribed = false;
    subscriber.on('ready', () => {
      if (subscribed) this.reconcile();
      subscribed = true;
    });
    // Each bucket's channel of ends aimed at this process, and the one for ends nobody is known to hold.
    const channels = (bucket: number) => [this.layout.endedChannel(bucket, context.owner), this.layout.endedChannel(bucket)];
    const subscriptions = this.isCluster
      ? ALL_BUCKETS.map((bucket) => (subscriber as Cluster).ssubscribe(...channels(bucket)))
      : [(subscriber as Redis).subscribe(...ALL_BUCKETS.flatMap(channels))];
    Promise.all(subscriptions).then(
      () => (this.subscribedOnce = true),
      (error: unknown) => this.report(error),
    );
    void this.keepLease();
    this.every(Math.max(100, Math.floor(this.leaseTtl / 3)), () => this.keepLease());
    this.every(this.sweepInterval, () => this.sweep());
  }

  /** How long a login or admin kick waits for Redis to come back: no longer than the engine waits for it (storeTimeout). */
  private get waitLimit(): number {
    return Math.min(this.leaseTtl, this.context?.storeTimeout ?? this.leaseTtl);
  }

  /** Names the wait in refusals: `400 ms (leaseTtl)`. */
  private get waitLimitText(): string {
    return `${this.waitLimit} ms (${this.waitLimit === this.leaseTtl ? 'leaseTtl' : 'storeTimeout'})`;
  }

  /**
   * While Redis is away, a login waits for it (in order with the transport ends before it) for up to
   * `storeTimeout` (at most `leaseTtl`): a short outage, such as a restart, delays logins instead of refusing them.
   */
  login(request: StoreLoginRequest): Promise<StoreLoginResult> {
    this.limits = request.limits;
    if (!this.down && this.pending.length === 0) return this.loginScript(request, false);
    const { waitLimit, waitLimitText } = this;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.pending.indexOf(deferred);
        if (index < 0) return;
        this.pending.splice(index, 1);
        // Taken out of the queue: a login nobody waits for any more is never made.
        reject(new StoreUnavailableError(`Redis has not been reachable for ${waitLimitText}; the login was not made, try again shortly`));
      }, waitLimit);
      timer.unref?.();
      const deferred: Deferred = {
        run: () => {
          clearTimeout(timer);
          return this.loginScript(request, false).then(resolve);
        },
        fail: reject,
        attempts: 0,
        login: true,
      };
      this.pending.push(deferred);
    });
  }

  /**
   * `reassert`: a device re-asserted after an outage yields (is revoked) rather than kick a login made meanwhile, and yields
   * to an admin kick made after `takenUpAt` (when this process took it up) that did not find it in Redis.
   */
  private async loginScript(request: StoreLoginRequest, reassert: boolean, takenUpAt?: number): Promise<StoreLoginResult & { quiet?: true }> {
    const raw = await this.runForUser('login', request.userId, [
      request.userId,
      request.platform,
      request.instanceId,
      request.resumeSessionId ?? '',
      request.newSessionId,
      request.version ?? '',
      request.limits.loginPolicy,
      request.limits.maxInstancesPerPlatform,
      request.limits.maxWebInstances,
      request.owner ?? this.owner,
      reassert ? '1' : '0',
      takenUpAt ?? '',
    ]);
    const result = JSON.parse(raw as string) as {
      outcome: 'revoked' | 'resumed' | 'created';
      sessionId: string;
      change?: RawChange;
      notice?: string;
      quiet?: boolean;
    };
    if (result.outcome === 'revoked') return result.notice ? { outcome: 'revoked', notice: JSON.parse(result.notice) as EndNotice } : { outcome: 'revoked' };
    const change = result.change ? toChange(result.change) : null;
    if (result.outcome === 'created') {
      const created = change as StoreChange;
      if (created.kicked.length > 0) {
        const notice = JSON.stringify({ reason: 'LoginElsewhere', by: { platform: request.platform, instanceId: request.instanceId } });
        for (const kicked of created.kicked) this.rememberEnd(kicked.sessionId, request.userId, kicked.instanceId, notice);
      }
      return { outcome: 'created', sessionId: result.sessionId, change: created, ...(result.quiet ? { quiet: true } : {}) };
    }
    return { outcome: 'resumed', sessionId: result.sessionId, change };
  }

  /**
   * While Redis answers but this process may have missed `ended` messages (its subscription not in place yet, or a reconcile
   * after a reconnection still looking for what it missed), a new connection of a session live here is checked in Redis (found
   * by the chaos run: a kicked phone's session resumed as a second tab on a process whose subscriber was reconnecting). While
   * Redis is away, nothing can be checked: it joins locally, and the reconcile ends it if it was revoked.
   */
  mayMissEnds(): boolean {
    if (this.closed || this.down || this.client.status !== 'ready') return false;
    return !this.subscribedOnce || this.subscriber?.status !== 'ready' || this.reconciling !== undefined;
  }

  markPushOnline(userId: string, instanceId: string, sessionId: string, at: number, lastSeen: number, owner?: string): Promise<StoreChange | null> {
    return this.durable(async () => this.single(await this.runForUser('linkLost', userId, [userId, instanceId, sessionId, lastSeen, owner ?? ''], at)));
  }

  remove(
    userId: string,
    instanceId: string,
    sessionId: string | undefined,
    at: number,
    options: { revoke: boolean; lastSeen: number; owner?: string | undefined },
  ): Promise<StoreChange | null> {
    return this.durable(async () =>
      this.single(
        await this.runForUser('remove', userId, [userId, instanceId, sessionId ?? '', options.lastSeen, options.revoke ? '1' : '0', options.owner ?? ''], at),
      ),
    );
  }

  /**
   * While Redis is away (or this process is reconciling), an admin kick waits, like a login, for up to `leaseTtl`, and runs once
   * this process has re-asserted its live devices: it finds them, and leaves a mark that devices other processes re-assert
   * later yield to. `at` is when it was asked: devices taken up after it are not its targets.
   */
  kick(userId: string, filter: KickFilter, at: number): Promise<StoreChange[]> {
    const run = () => this.kickScript(userId, filter, at);
    if (!this.down && this.client.status === 'ready' && !this.reconciling && this.pending.length === 0 && this.waitingKicks.length === 0) return run();
    const { waitLimit, waitLimitText } = this;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waitingKicks.indexOf(waiting);
        if (index < 0) return;
        this.waitingKicks.splice(index, 1);
        reject(new StoreUnavailableError(`Redis has not been reachable for ${waitLimitText}; the kick was not made, try again shortly`));
      }, waitLimit);
      timer.unref?.();
      const waiting: WaitingKick = {
        run: () => {
          clearTimeout(timer);
          return run().then(resolve);
        },
        fail: reject,
        attempts: 0,
      };
      this.waitingKicks.push(waiting);
    });
  }

  private async kickScript(userId: string, filter: KickFilter, at: number): Promise<StoreChange[]> {
    const platform = filter.platform ?? '';
    const instanceId = filter.instanceId ?? '';
    const context = this.context;
    const now = context ? context.clock.now() : at;
    const changes = toChanges(await this.runForUser('kick', userId, [userId, platform, instanceId, at, this.endMemory], Math.max(now, at)));
    this.rememberKick({ userId, platform, instanceId, at, until: now + this.endMemory });
    for (const change of changes) this.rememberEnd(change.sessionId, userId, change.instanceId, ADMIN_KICK);
    return changes;
  }

  async setCustomStatus(userId: string, customStatus: string | null, at: number, options: StoreCustomStatusOptions = {}): Promise<StoreUserState | null> {
    if (this.down) throw redisAway();
    const raw = await this.runForUser(
      'setCustomStatus',
      userId,
      [userId, customStatus ?? '', customStatus === null ? '1' : '0', options.expiresAt ?? '', options.ifExpiresAt ?? ''],
      at,
    );
    return raw === null || raw === false ? null : toState(userId, JSON.parse(raw as string) as RawState);
  }

  async setAvailability(request: StoreAvailabilityRequest): Promise<StoreAvailabilityResult | null> {
    if (this.down) throw redisAway();
    const arg = request.kind === 'set' ? request.availability : request.kind === 'idle' ? request.idleSince : '';
    const raw = await this.runForUser('setAvailability', request.userId, [request.userId, request.kind, arg], request.at);
    if (raw === null || raw === false) return null;
    const answer = JSON.parse(raw as string) as { state: RawState; previous: Availability; previousIdle: number | false };
    return {
      state: toState(request.userId, answer.state),
      previousAvailability: answer.previous,
      previousIdleSince: answer.previousIdle === false ? null : answer.previousIdle,
    };
  }

  /** One MGET for all the users (on a cluster, one per slot, pipelined per node), and one JSON.parse for all their records. */
  async get(userIds: readonly string[]): Promise<(StoredUser | undefined)[]> {
    // Refused rather than guessed: a copy from before the outage would call users connected meanwhile Offline.
    if (this.down) throw redisAway();
    if (userIds.length === 0) return [];
    let records: (UserRecord | 0)[];
    try {
      await this.checkLayout();
      const texts = await this.readRecords(userIds);
      let joined = '[';
      for (let i = 0; i < texts.length; i++) joined += (i === 0 ? '' : ',') + (texts[i] ?? '0');
      records = JSON.parse(joined + ']') as (UserRecord | 0)[];
    } catch (error) {
      if (!(error instanceof StoreLayoutError)) this.report(error);
      throw storeError(error);
    }
    const users: (StoredUser | undefined)[] = new Array(userIds.length);
    const now = this.context ? this.context.clock.now() : Date.now();
    for (let i = 0; i < userIds.length; i++) {
      const record = records[i];
      users[i] = record ? toStoredUser(userIds[i] as string, record, now) : undefined;
    }
    return users;
  }

  /** The users' records as stored, in order (null: none). */
  private async readRecords(userIds: readonly string[]): Promise<(string | null)[]> {
    if (!this.isCluster) return (this.client as Redis).mget(userIds.map((userId) => this.layout.user(userId)));
    const byBucket = new Map<number, number[]>();
    for (let i = 0; i < userIds.length; i++) {
      const bucket = bucketOf(userIds[i] as string);
      const indexes = byBucket.get(bucket);
      if (indexes) indexes.push(i);
      else byBucket.set(bucket, [i]);
    }
    const buckets = [...byBucket.keys()];
    const replies = await this.pipelined(buckets, (pipeline, bucket) =>
      pipeline.mget((byBucket.get(bucket) as number[]).map((i) => this.layout.user(userIds[i] as string))),
    );
    const texts: (string | null)[] = new Array(userIds.length);
    buckets.forEach((bucket, j) => {
      const [error, reply] = replies[j] as [Error | null, unknown];
      if (error) throw error;
      const indexes = byBucket.get(bucket) as number[];
      for (let k = 0; k < indexes.length; k++) texts[indexes[k] as number] = (reply as (string | null)[])[k] ?? null;
    });
    return texts;
  }

  async stats(): Promise<PresenceStats> {
    if (this.down) throw redisAway();
    // Each bucket counts its own users; one HGETALL per bucket, pipelined per node.
    const totals = new Map<string, number>();
    try {
      await this.checkLayout();
      const replies = await this.pipelined(ALL_BUCKETS, (pipeline, bucket) => pipeline.hgetall(this.layout.shared(bucket)[0]));
      for (const [error, hash] of replies) {
        if (error) throw error;
        for (const [field, value] of Object.entries(hash as Record<string, string>)) totals.set(field, (totals.get(field) ?? 0) + Number(value));
      }
    } catch (error) {
      if (!(error instanceof StoreLayoutError)) this.report(error);
      throw storeError(error);
    }
    const read = (field: string) => totals.get(field) ?? 0;
    const platforms = {} as Record<Platform, Record<InstanceStatus, number>>;
    const instances = { Online: 0, PushOnline: 0 };
    for (const platform of PLATFORMS) {
      platforms[platform] = { Online: read(`i:${platform}:Online`), PushOnline: read(`i:${platform}:PushOnline`) };
      instances.Online += platforms[platform].Online;
      instances.PushOnline += platforms[platform].PushOnline;
    }
    // Offline users are kept with an expiry, not counted.
    return { users: { Online: read('u:Online'), PushOnline: read('u:PushOnline'), Offline: 0 }, instances, platforms };
  }

  /**
   * Closes the store leaving this process's live devices to the others: its lease is given up and marked handed over until
   * `until`, so that a device resumed on another process by then moves there with no transition, and the others are closed by
   * whichever process sweeps once their grace is over (`until`, or their class's reconnect grace from now if later).
   */
  handOver(until: number): Promise<void> {
    this.handoverUntil ??= until;
    return this.close();
  }

  /**
   * Stops timers and gives up the lease, so that other processes close this one's remaining devices at their sweep once the
   * reconnect grace of each (counted from now) is over.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) this.context?.clock.clearTimeout(timer);
    this.timers.clear();
    this.client.off('error', this.onError);
    this.client.off('ready', this.onReady);
    this.client.off('close', this.onClose);
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber) subscriber.disconnect();
    for (const deferred of this.pending.splice(0)) {
      if (deferred.login) deferred.fail(new Error('express-presence: the presence was closed'));
      else deferred.drop?.();
    }
    for (const waiting of this.waitingKicks.splice(0)) waiting.fail(new Error('express-presence: the presence was closed; the kick was not made'));
    // What a sweep or a reconciliation under way reports is emitted before close resolves (bounded: Redis may be going away).
    const busy = [...this.running, ...(this.reconciling ? [this.reconciling] : [])];
    if (busy.length > 0) await within(Promise.allSettled(busy), this.leaseTtl);
    if (this.client.status !== 'ready') return;
    // One step per bucket: no sweep sees the lease gone without the handover (REAP).
    await this.runInBuckets('leave', ALL_BUCKETS, [this.owner, this.handoverUntil ?? '']).catch(() => undefined);
  }

  private get owner(): string {
    if (!this.context) throw new Error('RedisStore used before createPresence() initialised it');
    return this.context.owner;
  }

  /**
   * The layout check, once per store: data of another key layout under this prefix refuses every call (StoreLayoutError, with
   * what to do); an unreachable Redis is checked again at the next call.
   */
  private checkLayout(): Promise<void> {
    this.layoutChecked ??= this.checkLayoutOnce().catch((error: unknown) => {
      if (!(error instanceof StoreLayoutError)) this.layoutChecked = undefined;
      throw storeError(error);
    });
    return this.layoutChecked;
  }

  private async checkLayoutOnce(): Promise<void> {
    const client = this.client;
    const key = this.layout.layout;
    let version = await client.get(key);
    if (version === null) {
      // 0.1 kept one statistics hash and one process set right under the prefix, with no layout key.
      const old = (await client.exists(`${this.prefix}stats`)) + (await client.exists(`${this.prefix}procs`));
      if (old > 0) {
        throw new StoreLayoutError(
          `RedisStore: the keys under prefix ${JSON.stringify(this.prefix)} were written by express-presence 0.1, in a key layout this ` +
            `version does not read; give this version its own prefix (the default is now ${JSON.stringify(DEFAULT_PREFIX)}), or stop every ` +
            `process of the old version and delete its keys (README "Upgrading from 0.1")`,
        );
      }
      await client.set(key, LAYOUT_VERSION, 'NX');
      version = await client.get(key);
    }
    if (version !== LAYOUT_VERSION) {
      throw new StoreLayoutError(
        `RedisStore: the keys under prefix ${JSON.stringify(this.prefix)} use key layout ${JSON.stringify(version)}; this version reads ` +
          `layout ${LAYOUT_VERSION}: run it under another prefix, or with the version that wrote them`,
      );
    }
    if (this.prefix === DEFAULT_PREFIX && (await client.exists(`${PREVIOUS_DEFAULT_PREFIX}procs`)) === 1) {
      this.context?.logger.warn(
        `express-presence: Redis also holds presence data of express-presence 0.1 (prefix ${JSON.stringify(PREVIOUS_DEFAULT_PREFIX)}); ` +
          `this version keeps its own under ${JSON.stringify(DEFAULT_PREFIX)}, so processes of the two versions do not see each other's devices ` +
          `(README "Upgrading from 0.1")`,
      );
    }
  }

  /** ARGV[1..5] of every script in a bucket: see scripts.ts. */
  private commonArgs(bucket: number, at: number | undefined): (string | number)[] {
    const context = this.context;
    if (!context) throw new Error('RedisStore used before createPresence() initialised it');
    return [this.layout.endedChannel(bucket), at ?? context.clock.now(), context.pushOnlineTtl, this.offlineTtl, this.isCluster ? 'SPUBLISH' : 'PUBLISH'];
  }

  /** KEYS of a script in a bucket: its shared keys, then each user's. */
  private scriptKeys(bucket: number, userIds: readonly string[]): string[] {
    const keys: string[] = this.layout.shared(bucket);
    for (const userId of userIds) keys.push(...this.layout.userKeys(userId));
    return keys;
  }

  /** Runs a script on one user's slot. */
  private runForUser(name: ScriptName, userId: string, args: (string | number)[], at?: number): Promise<unknown> {
    return this.run(name, bucketOf(userId), [userId], args, at);
  }

  /** Runs a script by its SHA on a bucket's slot, loading it when Redis does not know it (a new node, a promoted replica). */
  private async run(name: ScriptName, bucket: number, userIds: readonly string[], args: (string | number)[], at?: number): Promise<unknown> {
    await this.checkLayout();
    const keys = this.scriptKeys(bucket, userIds);
    const argv = [...this.commonArgs(bucket, at), ...args];
    try {
      return await this.client.evalsha(this.shas.get(name) as string, keys.length, ...keys, ...argv);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw storeError(error);
      return this.client.eval(this.sources.get(name) as string, keys.length, ...keys, ...argv).catch((retried: unknown) => {
        throw storeError(retried);
      });
    }
  }

  /** Runs a script in each of `buckets` (no users), pipelined per node; answers each bucket's reply, or throws the first error. */
  private async runInBuckets(name: ScriptName, buckets: readonly number[], args: (string | number)[]): Promise<unknown[]> {
    await this.checkLayout();
    const sha = this.shas.get(name) as string;
    const replies = await this.pipelined(buckets, (pipeline, bucket) => {
      const keys = this.scriptKeys(bucket, []);
      pipeline.evalsha(sha, keys.length, ...keys, ...this.commonArgs(bucket, undefined), ...args);
    });
    return Promise.all(
      replies.map(([error, reply], i) => {
        if (!error) return reply;
        if (error.message.includes('NOSCRIPT')) return this.run(name, buckets[i] as number, [], args);
        throw storeError(error);
      }),
    );
  }

  /** The node serving a bucket ('' on one Redis): pipelines on a cluster go to one node each. */
  private nodeOf(bucket: number): string {
    if (!this.isCluster) return '';
    return (this.client as Cluster).slots[BUCKET_SLOTS[bucket] as number]?.join(',') ?? '';
  }

  /** One command per item (a bucket), pipelined per node; answers [error, reply] per item, in order. */
  private async pipelined(buckets: readonly number[], add: (pipeline: ChainableCommander, bucket: number) => void): Promise<[Error | null, unknown][]> {
    const groups = new Map<string, number[]>();
    for (let i = 0; i < buckets.length; i++) {
      const node = this.nodeOf(buckets[i] as number);
      const group = groups.get(node);
      if (group) group.push(i);
      else groups.set(node, [i]);
    }
    const replies: [Error | null, unknown][] = new Array(buckets.length);
    await Promise.all(
      [...groups.values()].map(async (indexes) => {
        const pipeline = this.client.pipeline();
        for (const i of indexes) add(pipeline, buckets[i] as number);
        let results: [Error | null, unknown][] | null;
        try {
          results = await pipeline.exec();
        } catch (error) {
          throw storeError(error);
        }
        if (!results) throw new StoreUnavailableError('Redis discarded a pipeline; try again shortly');
        // ioredis follows a redirection in a pipeline only when every command got the same one, and then does not refresh its
        // slots: a master that restarted (dropped from its pool) would be missed for good. Refreshing puts it back.
        if (this.isCluster && results.some(([error]) => error !== null && /^(MOVED|ASK) /.test(error.message))) {
          (this.client as Cluster).refreshSlotsCache();
        }
        for (let j = 0; j < indexes.length; j++) replies[indexes[j] as number] = results[j] ?? [new Error('no reply'), null];
      }),
    );
    return replies;
  }

  private single(raw: unknown): StoreChange | null {
    return raw === null || raw === undefined || raw === false ? null : toChange(JSON.parse(raw as string) as RawChange);
  }

  /** A transport end must not be lost: when Redis cannot take it now, it is replayed once Redis is back. */
  private durable(operation: () => Promise<StoreChange | null>): Promise<StoreChange | null> {
    const later = () =>
      new Promise<StoreChange | null>((resolve, reject) => {
        if (this.closed) resolve(null);
        else this.pending.push({ run: () => operation().then(resolve), fail: reject, attempts: 0, drop: () => resolve(null) });
      });
    if (this.down || this.pending.length > 0) return later();
    return operation().catch((error: unknown) => {
      this.report(error);
      return later();
    });
  }

  private readonly onError = (error: unknown): void => this.report(error);

  /** Logs the first error of an outage; the rest of the episode is quiet. */
  private report(error: unknown): void {
    if (error instanceof StoreLayoutError) {
      // Not an outage: Redis answers, but holds data this version must not touch. Said once; every call refuses with it.
      if (!this.layoutReported) this.context?.logger.error(`express-presence: ${error.message}`);
      this.layoutReported = true;
      return;
    }
    if (this.down || this.closed) return;
    this.down = true;
    this.context?.logger.error('express-presence: Redis is unreachable; presence keeps local connections and will reconcile when it is back', error);
  }

  /** Redis answers again: the episode is over. */
  private recover(): void {
    if (this.closed) return;
    if (this.down) {
      this.down = false;
      this.reapNotBefore = (this.context?.clock.now() ?? Date.now()) + this.leaseTtl;
      this.context?.logger.warn('express-presence: Redis is back; reconciling');
    }
    this.reconcile();
  }

  private readonly onReady = (): void => this.recover();

  /** The connection dropped: whatever happened to the lease meanwhile, the reconnection re-asserts everything. */
  private readonly onClose = (): void => {
    this.leaseHeld = false;
  };

  /** Runs one reconciliation at a time; one asked for meanwhile runs after it. */
  private reconcile(): void {
    if (this.closed) return;
    if (this.reconciling) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        await this.reconcileOnce();
      } while (this.reconcileAgain && !this.closed && !this.down);
    })().finally(() => {
      this.reconciling = undefined;
      // An admin kick that came after the last pass ran its waiting kicks: one more pass runs it.
      if (this.waitingKicks.length > 0 && !this.down && !this.closed && this.client.status === 'ready') this.reconcile();
    });
  }

  /**
   * After an outage or a lost lease: renew the lease, replay what waited for Redis in order, apply
   * again the ends this process made lately, re-assert every live device (Redis may have restarted
   * empty, or other processes may have closed this one's devices while it could not renew its lease),
   * then run the admin kicks that waited.
   */
  private async reconcileOnce(): Promise<void> {
    const context = this.context;
    if (!context || this.client.status !== 'ready') return;
    try {
      await this.renewLease();
    } catch (error) {
      this.report(error);
      return;
    }
    while (this.pending.length > 0 && this.client.status === 'ready' && !this.closed) {
      const deferred = this.pending[0] as Deferred;
      try {
        await deferred.run();
        this.pending.shift();
      } catch (error) {
        // Tried again at the next recovery; an operation Redis keeps refusing is given up after a few tries.
        if (++deferred.attempts >= MAX_REPLAYS) {
          this.pending.shift();
          deferred.fail(error);
        }
        this.report(error);
        return;
      }
    }
    // Before the re-assertions (here and, mostly, on the other processes): a device ended lately is then refused, not re-created.
    try {
      await this.reapplyEnds(context);
    } catch (error) {
      this.report(error);
      return;
    }
    const live = [...context.liveInstances()];
    for (let start = 0; start < live.length; start += REASSERT_BATCH) {
      try {
        await Promise.all(live.slice(start, start + REASSERT_BATCH).map((instance) => this.reassert(context, instance)));
      } catch (error) {
        this.report(error);
        return;
      }
    }
    while (this.waitingKicks.length > 0 && this.client.status === 'ready' && !this.closed) {
      const waiting = this.waitingKicks[0] as WaitingKick;
      try {
        await waiting.run();
        this.waitingKicks.shift();
      } catch (error) {
        if (++waiting.attempts >= MAX_REPLAYS) {
          this.waitingKicks.shift();
          waiting.fail(error);
        }
        this.report(error);
        return;
      }
    }
  }

  /** Remembers a session this process ended (the newest last), for reapplyEnds. */
  private rememberEnd(sessionId: string, userId: string, instanceId: string, notice: string): void {
    const now = this.context?.clock.now() ?? Date.now();
    this.forgetOldEnds(now);
    this.recentEnds.delete(sessionId);
    this.recentEnds.set(sessionId, { userId, instanceId, notice, until: now + this.endMemory });
    if (this.recentEnds.size > MAX_RECENT_ENDS) this.recentEnds.delete(this.recentEnds.keys().next().value as string);
  }

  private rememberKick(kick: RecentKick): void {
    this.forgetOldEnds(kick.until - this.endMemory);
    this.recentKicks.push(kick);
    if (this.recentKicks.length > MAX_RECENT_KICKS) this.recentKicks.shift();
  }

  /** Both lists are in the order of their `until` (each application sets every entry's to the same time). */
  private forgetOldEnds(now: number): void {
    for (const [sessionId, end] of this.recentEnds) {
      if (end.until > now) break;
      this.recentEnds.delete(sessionId);
    }
    while (this.recentKicks.length > 0 && (this.recentKicks[0] as RecentKick).until <= now) this.recentKicks.shift();
  }

  /**
   * Applies again the ends this process made lately: revokes each session again, removes it if its holder re-asserted it,
   * publishes its end again, and writes each admin kick's mark again. Each is then remembered for `endMemory` more: a Redis
   * that restarts empty again soon, before a holder heard of the end, gets it once more. A removal here is not reported: the
   * end was (the kick's own change), and the re-assertion it undoes was quiet (found by the chaos run: a second Logout/Kicked
   * callback for a device kicked just before an empty restart).
   */
  private async reapplyEnds(context: StoreContext): Promise<void> {
    const now = context.clock.now();
    this.forgetOldEnds(now);
    if (this.recentEnds.size === 0 && this.recentKicks.length === 0) return;
    // By bucket (one script touches one slot), at most REAPPLY_BATCH of each per script.
    const byBucket = new Map<number, { ends: [string, string, string, string][]; kicks: [string, string, string, number][] }>();
    const entry = (userId: string) => {
      const bucket = bucketOf(userId);
      let lists = byBucket.get(bucket);
      if (!lists) byBucket.set(bucket, (lists = { ends: [], kicks: [] }));
      return lists;
    };
    for (const [sessionId, end] of this.recentEnds) entry(end.userId).ends.push([end.userId, end.instanceId, sessionId, end.notice]);
    for (const kick of this.recentKicks) entry(kick.userId).kicks.push([kick.userId, kick.platform, kick.instanceId, kick.at]);
    for (const [bucket, { ends, kicks }] of byBucket) {
      for (let start = 0; start < Math.max(ends.length, kicks.length); start += REAPPLY_BATCH) {
        const users = new Map<string, number>();
        const indexOf = (userId: string) => {
          let index = users.get(userId);
          if (index === undefined) users.set(userId, (index = users.size + 1));
          return index;
        };
        const endList = ends.slice(start, start + REAPPLY_BATCH).map((end) => [indexOf(end[0]), ...end]);
        const kickList = kicks.slice(start, start + REAPPLY_BATCH).map((kick) => [indexOf(kick[0]), ...kick]);
        await this.run('reapplyEnds', bucket, [...users.keys()], [this.endMemory, JSON.stringify(endList), JSON.stringify(kickList)]);
      }
    }
    const until = context.clock.now() + this.endMemory;
    for (const end of this.recentEnds.values()) end.until = until;
    for (const kick of this.recentKicks) kick.until = until;
  }

  /**
   * Logs a live device in again; one ended meanwhile (kicked, displaced by a newer login) is ended instead, and told why
   * (the notice its revocation was stored with). One that Redis had lost (an empty restart) comes back quietly: it was Online
   * all along, so there is no change event nor callback; one whose end was reported (reaped, PushOnline) is a login again.
   */
  private async reassert(context: StoreContext, live: LiveInstance): Promise<void> {
    const result = await this.loginScript(
      {
        userId: live.userId,
        platform: live.platform,
        instanceId: live.instanceId,
        resumeSessionId: live.sessionId,
        newSessionId: live.sessionId,
        version: live.version,
        at: context.clock.now(),
        limits: this.limits,
        owner: context.owner,
      },
      true,
      live.takenUpAt,
    );
    if (result.outcome === 'revoked') context.ended(live.sessionId, result.notice ?? { reason: 'AdminKick' });
    else if (result.change && !result.quiet) context.changed(result.change, 'Login', 'Register');
  }

  /**
   * Writes the lease; answers true when others found it gone since it was last written (they may have reaped this process's
   * devices, or taken some over), or when this process was not listed among the live ones (first lease, or reaped since).
   */
  private async renewLease(): Promise<boolean> {
    const clock = this.context!.clock;
    const started = clock.now();
    this.renewingSince = started;
    let replies: unknown[];
    try {
      replies = await this.runInBuckets('renew', ALL_BUCKETS, [this.owner, started + this.leaseTtl]);
    } finally {
      this.renewingSince = undefined;
      this.slowAnswer(started);
    }
    const lost = replies.some((reply) => reply === 1) && this.leaseHeld;
    this.leaseHeld = true;
    return lost;
  }

  /** A call sent at `started` took longer than a renewal period: others' renewals may have stalled as well (see reapNotBefore). */
  private slowAnswer(started: number): void {
    const now = this.context?.clock.now() ?? Date.now();
    if (now - started > this.leaseTtl / 3) this.reapNotBefore = Math.max(this.reapNotBefore, now + this.leaseTtl);
  }

  /** Whether this process may reap others' devices now (see reapNotBefore). */
  private mayReap(now: number): boolean {
    if (this.down || now < this.reapNotBefore) return false;
    return this.renewingSince === undefined || now - this.renewingSince <= this.leaseTtl / 3;
  }

  /**
   * The periodic renewal. It also ends an episode that no reconnection ends (a command failed while
   * the connection stayed up), and notices a lease that ran out while this process was stalled (a
   * long pause, a frozen event loop): the others closed its devices, so it re-asserts the live ones.
   */
  private async keepLease(): Promise<void> {
    if (this.closed || this.client.status !== 'ready') return;
    let lost: boolean;
    try {
      lost = await this.renewLease();
    } catch (error) {
      this.report(error);
      return;
    }
    if (this.down) {
      this.recover();
    } else if (lost) {
      this.context?.logger.warn(
        `express-presence: this process's lease ran out (was it stalled for more than leaseTtl, ${this.leaseTtl} ms?); other processes closed its devices, which are re-asserted now`,
      );
      this.reconcile();
    }
  }

  /**
   * Takes due PushOnline expiries and closes the devices of processes whose lease is gone, once their grace is over. One probe
   * per bucket (two range reads, pipelined per node) finds both; the work is done in slices of SLICE devices, each one short
   * script, so no call blocks Redis for long whatever a dead process held.
   */
  private async sweep(): Promise<void> {
    const context = this.context;
    if (!context || this.closed || this.client.status !== 'ready') return;
    try {
      await this.checkLayout();
      const now = context.clock.now();
      const probe = ALL_BUCKETS.flatMap((bucket) => [bucket, bucket]);
      const probed = new Set<number>();
      const replies = await this.pipelined(probe, (pipeline, bucket) => {
        const [, expiry, , leases] = this.layout.shared(bucket);
        // Called twice per bucket, in order: the expiry queue, then the leases.
        if (!probed.has(bucket)) {
          probed.add(bucket);
          pipeline.zrangebyscore(expiry, '-inf', now, 'LIMIT', 0, SLICE);
        } else {
          pipeline.zrangebyscore(leases, '-inf', now, 'LIMIT', 0, 16);
        }
      });
      this.slowAnswer(now);
      for (let i = 0; i < probe.length; i += 2) {
        const bucket = probe[i] as number;
        const [expiryError, due] = replies[i] as [Error | null, string[]];
        const [leasesError, dead] = replies[i + 1] as [Error | null, string[]];
        if (expiryError) throw expiryError;
        if (leasesError) throw leasesError;
        if (due.length > 0) await this.expireBucket(context, bucket, due);
        // Not while this process is (or was a moment ago) cut off from Redis or slowed by it: see reapNotBefore.
        const reaps = this.mayReap(context.clock.now());
        for (const owner of dead) if (owner !== context.owner && !this.closed && reaps) await this.reapBucket(context, bucket, owner);
      }
    } catch (error) {
      this.report(error);
    }
  }

  /** The bucket's due PushOnline expiries, a slice at a time. */
  private async expireBucket(context: StoreContext, bucket: number, due: string[]): Promise<void> {
    const expiry = this.layout.shared(bucket)[1];
    for (;;) {
      const { users, list } = this.slice(due);
      const changes = toChanges(await this.run('expireDue', bucket, users, [JSON.stringify(list)]));
      for (const change of changes) context.expired(change);
      if (due.length < SLICE || this.closed) return;
      due = await this.client.zrangebyscore(expiry, '-inf', context.clock.now(), 'LIMIT', 0, SLICE);
      if (due.length === 0) return;
    }
  }

  /** Reaps a dead process's devices in a bucket, a slice at a time, once their grace is over. */
  private async reapBucket(context: StoreContext, bucket: number, owner: string): Promise<void> {
    const grace = context.reconnectGrace;
    const args = [owner, grace.mobile, grace.desktop, grace.web, grace.miniProgram];
    const started = JSON.parse((await this.run('reap', bucket, [], [...args, '1', '[]'])) as string) as { state: string };
    if (started.state !== 'go') return;
    const owned = this.layout.shared(bucket)[2];
    let from = `[${owner}\0`;
    let reaped = 0;
    for (;;) {
      const members = await this.client.zrangebylex(owned, from, `(${owner}\x01`, 'LIMIT', 0, SLICE);
      const { users, list } = this.slice(members.map((member) => member.slice(owner.length + 1)));
      const result = JSON.parse((await this.run('reap', bucket, users, [...args, '0', JSON.stringify(list)])) as string) as {
        state: string;
        changes: RawChange[] | Record<string, never>;
      };
      const changes = Array.isArray(result.changes) ? result.changes.map(toChange) : [];
      reaped += changes.length;
      for (const change of changes) context.changed(change, 'Disconnect', 'LinkClose');
      if (result.state !== 'go' || members.length < SLICE || this.closed) break;
      from = `(${members[members.length - 1] as string}`;
    }
    if (reaped > 0) debug('reaped %d devices of process %s in bucket %d', reaped, owner, bucket);
  }

  /** Devices as the scripts take them: each user's keys once, and [user's index, userId, instanceId, sid] per device. */
  private slice(members: readonly string[]): { users: string[]; list: [number, string, string, string][] } {
    const users: string[] = [];
    const indexes = new Map<string, number>();
    const list: [number, string, string, string][] = [];
    for (const member of members) {
      const [userId, instanceId, sessionId] = JSON.parse(member) as [string, string, string];
      let index = indexes.get(userId);
      if (index === undefined) {
        users.push(userId);
        indexes.set(userId, (index = users.length));
      }
      list.push([index, userId, instanceId, sessionId]);
    }
    return { users, list };
  }

  private onEnded(message: string): void {
    try {
      const { sid, reason, by } = JSON.parse(message) as { sid: string; reason: EndNotice['reason']; by?: EndNotice['by'] };
      this.context?.ended(sid, by ? { reason, by } : { reason });
    } catch (error) {
      this.context?.logger.warn('express-presence: ignored a malformed message on the ended channel', error);
    }
  }

  private every(ms: number, task: () => Promise<void>): void {
    const clock = this.context?.clock as Clock;
    let handle: TimerHandle;
    const tick = () => {
      this.timers.delete(handle);
      if (this.closed) return;
      const running = task();
      this.running.add(running);
      void running.finally(() => {
        this.running.delete(running);
        if (this.closed) return;
        handle = clock.setTimeout(tick, ms);
        this.timers.add(handle);
      });
    };
    handle = clock.setTimeout(tick, ms);
    this.timers.add(handle);
  }
}
