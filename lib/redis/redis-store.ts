// RedisStore: presence shared by many processes through Redis or a Redis Cluster, with atomic scripts, leases and pub/sub.

import createDebug from 'debug';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { PLATFORMS, type Platform } from '../core/platforms.js';
import type { EndNotice, InstanceStatus, PresenceStats } from '../core/types.js';
import type {
  StoreChange,
  StoreContext,
  StoreLoginRequest,
  StoredUser,
  StoreAvailabilityRequest,
  StoreAvailabilityResult,
  StoreCustomStatusRequest,
  StoreKickRequest,
  StorePushOnlineRequest,
  StoreRemoveRequest,
  StoreUserState,
} from '../core/store.js';
import type { Availability } from '../core/availability.js';
import { presenceLibrary, type ScriptName } from './scripts.js';
import { FUNCTION_MISSING, LibraryLoader } from './functions.js';
import { BUCKETS, BUCKET_TAGS, LAYOUT_VERSION, RedisLayout, bucketOf, slotOf } from './layout.js';
import { positiveInteger } from '../util/positive-integer.js';
import { refuseUnknownKeys } from '../util/did-you-mean.js';
import { isStoreUnavailable, StoreUnavailableError } from '../core/errors.js';
import { RedisRooms } from './rooms.js';
import { planLogin, planRemove, RecordMemory, type Plan } from './planned.js';
import { PlanBatches, type BatchAnswer, type BatchEntry } from './batch.js';
import { toChange, toChanges, toState, toStoredUser, type RawChange, type RawState, type UserRecord } from './record.js';
import { SharedStore, type RememberedEnd, type RememberedKick, type SharedLoginResult } from '../store/shared-store.js';

const debug = createDebug('express-presence:redis');

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

/** A fault of the code or of what it was given (a TypeError, a record that is not JSON), not of Redis: never an outage. */
function isCodeError(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError;
}

/** Redis answers that mean it cannot serve now (loading after a restart, a failover, a busy script), not a refusal of the command. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS)\b/;

/**
 * A failed Redis call as the engine must see it: anything but an answer of Redis itself (the connection refused or
 * lost, ioredis giving up its retries) is a StoreUnavailableError, so routes refuse with 503 instead of failing with 500.
 */
function storeError(error: unknown): unknown {
  if (isStoreUnavailable(error) || error instanceof StoreLayoutError || isCodeError(error)) return error;
  const isReply = error instanceof Error && error.name === 'ReplyError';
  if (isReply && !UNAVAILABLE_REPLY.test(error.message)) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new StoreUnavailableError(`Redis cannot be reached (${detail.slice(0, 200)}); try again shortly`, { cause: error });
}

/** A cluster node's refusal of a key it does not serve (a slot moved): the call changed nothing there. */
const ELSEWHERE = /^(MOVED|ASK|CROSSSLOT|TRYAGAIN)\b|non local key/;

/** Recent ends and admin kicks sent to Redis at once when applied again. */
const REAPPLY_BATCH = 500;

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

/**
 * Presence in Redis, so that every process behind a load balancer shares it: queries answer for
 * all users, the login policy is decided atomically in a script, kicks reach sockets on every
 * process, and the devices of a process that died are closed once its lease runs out. The protocol
 * between processes (outage queue, lease, sweeps, reconciliation, end memory) is SharedStore's; this
 * class is its binding to Redis: the scripts, the key layout and the subscription to ends.
 */
export class RedisStore extends SharedStore {
  readonly prefix: string;
  /** Key names (lib/redis/layout.ts). */
  readonly layout: RedisLayout;
  private readonly client: Redis | Cluster;
  /** Each user's record as this process last saw it, for planned logins and removes. */
  private readonly records = new RecordMemory();
  /** Planned changes on their way to Redis, one call per node at a time. */
  private readonly batches = new PlanBatches((entries) => this.sendBatch(entries));
  /**
   * The last plan of each user still waiting for its answer: a full function on that user waits for it first, so that the
   * user's changes reach Redis in the order they were made, as when every call went out at once.
   */
  private readonly plansInFlight = new Map<string, Promise<unknown>>();
  /** True on a Redis Cluster: sharded pub/sub, and pipelines grouped by node. */
  private readonly isCluster: boolean;
  private subscriber: Redis | Cluster | undefined;
  /** The layout check, once: a refusal (StoreLayoutError) is kept and given to every call. */
  private layoutChecked: Promise<void> | undefined;
  private layoutReported = false;
  private readonly offlineTtl: number;
  /** The function library (lib/redis/lua/presence.lua), loaded on each master at the first call and whenever one lost it. */
  private readonly library: LibraryLoader;
  private readonly maxRevokedSessionsPerUser: number;

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
    super({
      backend: 'Redis',
      leaseTtl: positiveInteger('RedisStore', 'leaseTtl', options.leaseTtl, 10_000, 'milliseconds'),
      sweepInterval: positiveInteger('RedisStore', 'sweepInterval', options.sweepInterval, 1000, 'milliseconds'),
    });
    this.client = options.client;
    this.isCluster = (options.client as { isCluster?: unknown }).isCluster === true;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.layout = new RedisLayout(this.prefix);
    this.offlineTtl = positiveInteger('RedisStore', 'offlineTtl', options.offlineTtl, 30 * 24 * 3600 * 1000, 'milliseconds');
    this.maxRevokedSessionsPerUser = positiveInteger('RedisStore', 'maxRevokedSessionsPerUser', options.maxRevokedSessionsPerUser, 1000);
    this.library = new LibraryLoader(
      options.client,
      presenceLibrary(),
      (answer) =>
        new StoreLayoutError(
          `RedisStore needs Redis 7.0 or later (it runs as a Redis function library, FUNCTION LOAD and FCALL); this Redis answered: ${answer}`,
        ),
    );
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

  protected connected(): boolean {
    return this.client.status === 'ready';
  }

  protected subscriptionUp(): boolean {
    return this.subscriber?.status === 'ready';
  }

  protected open(context: StoreContext): void {
    this.client.on('error', this.onError);
    this.client.on('ready', this.onReady);
    this.client.on('close', this.onClose);
    // On a cluster, sharded pub/sub (each channel served by its slot's node; ioredis needs shardedSubscribers for it).
    const subscriber = this.isCluster ? (this.client as Cluster).duplicate(undefined, { shardedSubscribers: true }) : (this.client as Redis).duplicate();
    this.subscriber = subscriber;
    subscriber.on('error', () => {}); // reported once through the main client's episode
    subscriber.on(this.isCluster ? 'smessage' : 'message', (_channel: string, message: string) => this.onEnded(message));
    // Kicks published while the subscriber was away were missed: re-asserting the live devices finds them revoked.
    let subscribedBefore = false;
    subscriber.on('ready', () => {
      if (subscribedBefore) this.subscribed(false);
      subscribedBefore = true;
    });
    // Each bucket's channel of ends aimed at this process, and the one for ends nobody is known to hold.
    const channels = (bucket: number) => [this.layout.endedChannel(bucket, context.owner), this.layout.endedChannel(bucket)];
    const subscriptions = this.isCluster
      ? ALL_BUCKETS.map((bucket) => (subscriber as Cluster).ssubscribe(...channels(bucket)))
      : [(subscriber as Redis).subscribe(...ALL_BUCKETS.flatMap(channels))];
    Promise.all(subscriptions).then(
      () => this.subscribed(true),
      (error: unknown) => this.report(error),
    );
  }

  protected shut(): void {
    this.client.off('error', this.onError);
    this.client.off('ready', this.onReady);
    this.client.off('close', this.onClose);
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber) subscriber.disconnect();
  }

  private readonly onError = (error: unknown): void => this.report(error);
  private readonly onReady = (): void => this.backendReady();
  private readonly onClose = (): void => this.backendClosed();

  /** Layout refusals are not outages: Redis answers, but holds data this version must not touch; nor are faults of the code. */
  protected override isOutage(error: unknown): boolean {
    return !(error instanceof StoreLayoutError) && !isCodeError(error);
  }

  /** Said once; every call refuses with it. */
  protected override refused(error: unknown): void {
    if (!(error instanceof StoreLayoutError)) return;
    if (!this.layoutReported) this.context?.logger.error(`express-presence: ${error.message}`);
    this.layoutReported = true;
  }

  protected override asStoreError(error: unknown): unknown {
    return storeError(error);
  }

  /**
   * `reassert`: a device re-asserted after an outage yields (is revoked) rather than kick a login made meanwhile, and yields
   * to an admin kick made after `takenUpAt` (when this process took it up) that did not find it in Redis.
   */
  protected async loginStep(request: StoreLoginRequest, reassert: boolean, takenUpAt: number | undefined): Promise<SharedLoginResult> {
    const owner = request.owner ?? this.owner;
    if (!reassert) {
      const seen = this.records.get(request.userId);
      const plan = seen === undefined ? null : planLogin(seen, request, owner);
      if (plan && (await this.runPlan('L', request.userId, plan)))
        return { outcome: 'created', sessionId: request.newSessionId, change: toChange(plan.change) };
    }
    const raw = await this.runRecorded(
      'login',
      request.userId,
      [
        request.userId,
        request.platform,
        request.instanceId,
        request.resumeSessionId ?? '',
        request.newSessionId,
        request.version ?? '',
        request.limits.loginPolicy,
        request.limits.maxInstancesPerPlatform,
        request.limits.maxWebInstances,
        owner,
        reassert ? '1' : '0',
        takenUpAt ?? '',
      ],
      request.at,
    );
    const result = JSON.parse(raw as string) as {
      outcome: 'revoked' | 'resumed' | 'created';
      sessionId: string;
      change?: RawChange;
      notice?: string;
      quiet?: boolean;
    };
    if (result.outcome === 'revoked') return result.notice ? { outcome: 'revoked', notice: JSON.parse(result.notice) as EndNotice } : { outcome: 'revoked' };
    const change = result.change ? toChange(result.change) : null;
    if (result.outcome === 'created')
      return { outcome: 'created', sessionId: result.sessionId, change: change as StoreChange, ...(result.quiet ? { quiet: true } : {}) };
    return { outcome: 'resumed', sessionId: result.sessionId, change };
  }

  protected async pushOnlineStep(request: StorePushOnlineRequest): Promise<StoreChange | null> {
    const { userId, instanceId, sessionId, at, lastSeen, owner } = request;
    return this.single(await this.runRecorded('linkLost', userId, [userId, instanceId, sessionId, lastSeen, owner ?? ''], at));
  }

  protected async removeStep(request: StoreRemoveRequest): Promise<StoreChange | null> {
    const { userId, instanceId, sessionId, at, lastSeen, revoke, owner } = request;
    const seen = this.records.get(userId);
    // A logout's caller has ended its own connection to the device already: its end is not published to it.
    const plan = seen === undefined ? null : planRemove(seen, request, revoke ? this.owner : '', !this.isCluster);
    if (plan && (await this.runPlan('R', userId, plan))) return toChange(plan.change);
    return this.single(await this.runRecorded('remove', userId, [userId, instanceId, sessionId ?? '', lastSeen, revoke ? '1' : '0', owner ?? ''], at, revoke));
  }

  protected async kickStep(request: StoreKickRequest, now: number): Promise<StoreChange[]> {
    const { userId, at } = request;
    const args = [userId, request.platform ?? '', request.instanceId ?? '', at, this.endMemory];
    return toChanges(await this.runRecorded('kick', userId, args, Math.max(now, at)));
  }

  protected async setCustomStatusStep(request: StoreCustomStatusRequest): Promise<StoreUserState | null> {
    const { userId, customStatus, at } = request;
    const raw = await this.runRecorded(
      'setCustomStatus',
      userId,
      [userId, customStatus ?? '', customStatus === null ? '1' : '0', request.expiresAt ?? '', request.ifExpiresAt ?? ''],
      at,
    );
    return raw === null || raw === false ? null : toState(userId, JSON.parse(raw as string) as RawState);
  }

  protected async setAvailabilityStep(request: StoreAvailabilityRequest): Promise<StoreAvailabilityResult | null> {
    const arg = request.kind === 'set' ? request.availability : request.kind === 'idle' ? request.idleSince : '';
    const raw = await this.runRecorded('setAvailability', request.userId, [request.userId, request.kind, arg], request.at);
    if (raw === null || raw === false) return null;
    const answer = JSON.parse(raw as string) as { state: RawState; previous: Availability; previousIdle: number | false };
    return {
      state: toState(request.userId, answer.state),
      previousAvailability: answer.previous,
      previousIdleSince: answer.previousIdle === false ? null : answer.previousIdle,
    };
  }

  /** One MGET for all the users (on a cluster, one per slot, pipelined per node), and one JSON.parse for all their records. */
  protected async getStep(userIds: readonly string[]): Promise<(StoredUser | undefined)[]> {
    await this.checkLayout();
    const texts = await this.readRecords(userIds);
    let joined = '[';
    for (let i = 0; i < texts.length; i++) joined += (i === 0 ? '' : ',') + (texts[i] ?? '0');
    const records = JSON.parse(joined + ']') as (UserRecord | 0)[];
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

  /** Each bucket counts its own users; one HGETALL per bucket, pipelined per node. */
  protected async statsStep(): Promise<PresenceStats> {
    const totals = new Map<string, number>();
    await this.checkLayout();
    const replies = await this.pipelined(ALL_BUCKETS, (pipeline, bucket) => pipeline.hgetall(this.layout.shared(bucket)[0]));
    for (const [error, hash] of replies) {
      if (error) throw error;
      for (const [field, value] of Object.entries(hash as Record<string, string>)) totals.set(field, (totals.get(field) ?? 0) + Number(value));
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

  /** One step per bucket; answers true when some bucket did not list this process as live (first lease, or reaped since). */
  protected async writeLease(until: number): Promise<boolean> {
    const replies = await this.runInBuckets('renew', ALL_BUCKETS, [this.owner, until]);
    return replies.some((reply) => reply === 1);
  }

  /** One step per bucket: no sweep sees the lease gone without the handover (REAP). */
  protected async leave(handoverUntil: number | undefined): Promise<void> {
    await this.runInBuckets('leave', ALL_BUCKETS, [this.owner, handoverUntil ?? '']);
  }

  /**
   * Revokes each session again, removes it if its holder re-asserted it, publishes its end again, and writes each admin kick's
   * mark again: by bucket (one script touches one slot), at most REAPPLY_BATCH of each per script.
   */
  protected async reapply(ends: readonly RememberedEnd[], kicks: readonly RememberedKick[]): Promise<void> {
    const byBucket = new Map<number, { ends: [string, string, string, string][]; kicks: [string, string, string, number][] }>();
    const entry = (userId: string) => {
      const bucket = bucketOf(userId);
      let lists = byBucket.get(bucket);
      if (!lists) byBucket.set(bucket, (lists = { ends: [], kicks: [] }));
      return lists;
    };
    for (const end of ends) entry(end.userId).ends.push([end.userId, end.instanceId, end.sessionId, end.notice]);
    for (const kick of kicks) entry(kick.userId).kicks.push([kick.userId, kick.platform, kick.instanceId, kick.at]);
    for (const [bucket, lists] of byBucket) {
      for (let start = 0; start < Math.max(lists.ends.length, lists.kicks.length); start += REAPPLY_BATCH) {
        const users = new Map<string, number>();
        const indexOf = (userId: string) => {
          let index = users.get(userId);
          if (index === undefined) users.set(userId, (index = users.size + 1));
          return index;
        };
        const endList = lists.ends.slice(start, start + REAPPLY_BATCH).map((end) => [indexOf(end[0]), ...end]);
        const kickList = lists.kicks.slice(start, start + REAPPLY_BATCH).map((kick) => [indexOf(kick[0]), ...kick]);
        await this.run('reapplyEnds', bucket, [...users.keys()], [this.endMemory, JSON.stringify(endList), JSON.stringify(kickList)]);
      }
    }
  }

  /**
   * Takes due PushOnline expiries and closes the devices of processes whose lease is gone, once their grace is over. One probe
   * per bucket (two range reads, pipelined per node) finds both; the work is done in slices of SLICE devices, each one short
   * script, so no call blocks Redis for long whatever a dead process held.
   */
  protected async sweepOnce(context: StoreContext): Promise<void> {
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
      // Not while this process is (or was a moment ago) cut off from Redis or slowed by it (SharedStore.mayReap).
      const reaps = this.mayReap(context.clock.now());
      for (const owner of dead) if (owner !== context.owner && !this.closed && reaps) await this.reapBucket(context, bucket, owner);
    }
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
    // After the reads above: a cluster client knows its masters by then.
    await this.loadLibrary();
  }

  /**
   * ARGV[1..6] of every function: see scripts.ts. `ownEnds`: the engine has ended this process's own connections of the sessions
   * the call ends (a logout, the devices a login displaced, an admin kick), so they are not published to this process.
   */
  /**
   * `ownEnds`: the ends this call makes are not published to this process (a logout: its engine ended its own connections before
   * the call, so even an answer lost in a failover leaves them ended). A login's kicks and an admin kick are ended here only when
   * their answer arrives, so they are published to this process too: an answer lost on the way still ends them.
   */
  private commonArgs(at: number | undefined, ownEnds = false): (string | number)[] {
    const context = this.context;
    if (!context) throw new Error('RedisStore used before createPresence() initialised it');
    return [
      at ?? context.clock.now(),
      context.pushOnlineTtl,
      this.offlineTtl,
      this.isCluster ? 'SPUBLISH' : 'PUBLISH',
      this.maxRevokedSessionsPerUser,
      ownEnds ? context.owner : '',
    ];
  }

  /**
   * Loads the library (FUNCTION LOAD REPLACE) on the Redis, or on every master of a cluster: at the first call, and again when
   * a call finds it missing (a Redis restarted empty, a replica promoted before it had it, a master added since). A Redis older
   * than 7.0 has no functions: refused for good, with what to do.
   */
  private loadLibrary(): Promise<void> {
    return this.library.load();
  }

  /** KEYS of a script in a bucket: its shared keys, then each user's. */
  private scriptKeys(bucket: number, userIds: readonly string[]): string[] {
    const keys: string[] = this.layout.shared(bucket);
    for (const userId of userIds) keys.push(...this.layout.userKeys(userId));
    return keys;
  }

  /** Runs a script on one user's slot. */
  private runForUser(name: ScriptName, userId: string, args: (string | number)[], at?: number, ownEnds = false): Promise<unknown> {
    return this.run(name, bucketOf(userId), [userId], args, at, ownEnds);
  }

  /**
   * Runs a planned change (lib/redis/planned.ts), a login ('L') or a device's end ('R'), in the node's next batch: true when
   * Redis still held the record it was planned from and applied it; false when the record changed meanwhile (the caller runs
   * the full function).
   */
  private async runPlan(kind: 'L' | 'R', userId: string, plan: Plan): Promise<boolean> {
    const bucket = bucketOf(userId);
    const [stats, expiry, owned] = this.layout.shared(bucket);
    const [record, revoked] = this.layout.userKeys(userId);
    const keys = kind === 'L' ? [record, owned] : [record, owned, revoked, expiry];
    const entry: BatchEntry = { stats, keys, args: [kind, plan.args.length, ...plan.args] };
    // Noted before anything is awaited: a full function on the user called after this one waits for it.
    const answer = (async () => {
      await this.checkLayout();
      return this.batches.add(this.nodeOf(bucket), entry);
    })();
    this.plansInFlight.set(userId, answer);
    const applied = await this.recording(userId, async () => {
      try {
        return await answer;
      } catch (error) {
        throw storeError(error);
      } finally {
        if (this.plansInFlight.get(userId) === answer) this.plansInFlight.delete(userId);
      }
    });
    this.records.set(userId, applied ? plan.next : false);
    return applied;
  }

  /**
   * One plannedBatch call (presence.lua). On a cluster only the first entry's keys are declared (a call's declared keys share a
   * slot); the others' follow in ARGV. When the cluster moved a slot since the batch was grouped, the node refuses before it
   * changed anything (the function reads every key it writes first), and each entry is sent alone (routed by its own keys).
   */
  private async sendBatch(entries: readonly BatchEntry[]): Promise<BatchAnswer[]> {
    const context = this.context;
    if (!context) throw new Error('RedisStore used before createPresence() initialised it');
    const first = entries[0] as BatchEntry;
    const keys: string[] = [first.stats];
    const args: (string | number)[] = [];
    for (const entry of entries) keys.push(...entry.keys);
    const declared = this.isCluster ? 1 + first.keys.length : keys.length;
    args.push(keys.length - declared, ...keys.slice(declared));
    args.push(context.pushOnlineTtl, this.offlineTtl, this.isCluster ? 'SPUBLISH' : 'PUBLISH', this.maxRevokedSessionsPerUser, this.isCluster ? '1' : '');
    for (const entry of entries) args.push(...entry.args);
    try {
      const answers = (await this.library.call('plannedBatch', keys.slice(0, declared), args)) as number[];
      return answers.map((answer) => answer === 1);
    } catch (error) {
      if (entries.length === 1 || !this.isCluster || !ELSEWHERE.test(error instanceof Error ? error.message : '')) throw error;
      // Each alone, each with its own outcome: one refused again fails only itself.
      const alone = await Promise.allSettled(entries.map((entry) => this.sendBatch([entry])));
      return alone.map((result) => (result.status === 'fulfilled' ? (result.value[0] as BatchAnswer) : { error: result.reason as unknown }));
    }
  }

  /** Runs a function on one user, which answers [its answer, the user's record as it left it]: remembered for the next plan. */
  private async runRecorded(
    name: 'login' | 'linkLost' | 'remove' | 'kick' | 'setCustomStatus' | 'setAvailability',
    userId: string,
    args: (string | number)[],
    at?: number,
    ownEnds = false,
  ): Promise<unknown> {
    const planned = this.plansInFlight.get(userId);
    if (planned) await planned.catch(() => {});
    const [answer, record] = (await this.recording(userId, () => this.runForUser(name, userId, args, at, ownEnds))) as [unknown, unknown];
    this.records.set(userId, record);
    return answer;
  }

  /** A call on the user whose outcome is unknown when it fails: the record remembered is forgotten. */
  private async recording<T>(userId: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      this.records.forget(userId);
      throw error;
    }
  }

  /** Calls a function on a bucket's slot, loading the library when Redis lost it (restarted empty, a new node, a promoted replica). */
  private async run(name: ScriptName, bucket: number, userIds: readonly string[], args: (string | number)[], at?: number, ownEnds = false): Promise<unknown> {
    await this.checkLayout();
    const keys = this.scriptKeys(bucket, userIds);
    try {
      return await this.library.call(name, keys, [...this.commonArgs(at, ownEnds), ...args]);
    } catch (error) {
      throw storeError(error);
    }
  }

  /** Runs a script in each of `buckets` (no users), pipelined per node; answers each bucket's reply, or throws the first error. */
  private async runInBuckets(name: ScriptName, buckets: readonly number[], args: (string | number)[]): Promise<unknown[]> {
    await this.checkLayout();
    const fn = this.library.functionOf(name);
    const replies = await this.pipelined(buckets, (pipeline, bucket) => {
      const keys = this.scriptKeys(bucket, []);
      pipeline.fcall(fn, keys.length, ...keys, ...this.commonArgs(undefined), ...args);
    });
    return Promise.all(
      replies.map(([error, reply], i) => {
        if (!error) return reply;
        if (FUNCTION_MISSING.test(error.message)) return this.run(name, buckets[i] as number, [], args);
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
      this.endHeard(sid, by ? { reason, by } : { reason });
    } catch (error) {
      this.context?.logger.warn('express-presence: ignored a malformed message on the ended channel', error);
    }
  }
}
