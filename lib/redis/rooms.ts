// Rooms in Redis: each room's keys share one hash slot ({r:<room>}), every script declares its keys, changes go to every process over pub/sub, dead processes' parts are reaped.

import type { Cluster, Redis } from 'ioredis';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Logger } from '../core/types.js';
import type {
  SharedDevice,
  SharedOwners,
  SharedRoomMessage,
  SharedRoomsBackend,
  SharedRoomsListener,
  SharedRoomState,
  SharedRoomUser,
} from '../core/shared-rooms.js';

/** How long the join order and version of an emptied room are kept (a room refilled within it keeps counting up). */
const EMPTY_ROOM_TTL = 7 * 24 * 3600 * 1000;

/**
 * Sets one process's part of a member. KEYS: order (zset userId → join seq; its size is the count),
 * seq, parts (hash userId → {owner: devices}), meta (hash userId → JSON), version. ARGV: room,
 * owner, userId, devices JSON ('' removes the part), meta JSON ('' keeps it), channel, ttl of an
 * emptied room's counters. Publishes and answers the change, or false when nothing changed.
 */
const SET_PART = `
local userId = ARGV[3]
local raw = redis.call('HGET', KEYS[3], userId)
local owners = {}
if raw then owners = cjson.decode(raw) end
if ARGV[4] == '' then owners[ARGV[2]] = nil else owners[ARGV[2]] = cjson.decode(ARGV[4]) end
local kind
if next(owners) ~= nil then
  redis.call('HSET', KEYS[3], userId, cjson.encode(owners))
  if raw then kind = 'updated' else
    kind = 'joined'
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), userId)
  end
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], userId, ARGV[5]) end
else
  if not raw then return false end
  kind = 'left'
  redis.call('HDEL', KEYS[3], userId)
  redis.call('HDEL', KEYS[4], userId)
  redis.call('ZREM', KEYS[1], userId)
end
local count = redis.call('ZCARD', KEYS[1])
local version = redis.call('INCR', KEYS[5])
if count == 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
else
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[5])
end
local meta = redis.call('HGET', KEYS[4], userId) or 'null'
local parts = false
if kind ~= 'left' then parts = redis.call('HGET', KEYS[3], userId) end
local message = cjson.encode({ room = ARGV[1], version = version, userId = userId, kind = kind, parts = parts, meta = meta, count = count, by = ARGV[8] })
redis.call('PUBLISH', ARGV[6], message)
return message
`;

/**
 * Removes a dead process's parts of every member of a room. KEYS as SET_PART. ARGV: room, dead
 * owner, channel, ttl, this owner. Publishes each change; answers how many members lost a part.
 */
const REAP_PARTS = `
local all = redis.call('HGETALL', KEYS[3])
local touched = 0
for i = 1, #all, 2 do
  local userId = all[i]
  local owners = cjson.decode(all[i + 1])
  if owners[ARGV[2]] ~= nil then
    touched = touched + 1
    owners[ARGV[2]] = nil
    local kind = 'updated'
    local parts = false
    if next(owners) ~= nil then
      parts = cjson.encode(owners)
      redis.call('HSET', KEYS[3], userId, parts)
    else
      kind = 'left'
      redis.call('HDEL', KEYS[3], userId)
      redis.call('ZREM', KEYS[1], userId)
    end
    local meta = redis.call('HGET', KEYS[4], userId) or 'null'
    if kind == 'left' then redis.call('HDEL', KEYS[4], userId) end
    local count = redis.call('ZCARD', KEYS[1])
    local version = redis.call('INCR', KEYS[5])
    if count == 0 then
      redis.call('PEXPIRE', KEYS[2], ARGV[4])
      redis.call('PEXPIRE', KEYS[5], ARGV[4])
    end
    redis.call('PUBLISH', ARGV[3], cjson.encode({ room = ARGV[1], version = version, userId = userId, kind = kind, parts = parts, meta = meta, count = count, by = ARGV[5] }))
  end
end
return touched
`;

/** The whole room, atomically with its version. KEYS: order, parts, meta, version. */
const ROOM_STATE = `
local order = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = { tonumber(redis.call('GET', KEYS[4]) or '0') }
for i = 1, #order, 2 do
  local userId = order[i]
  table.insert(out, userId)
  table.insert(out, order[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], userId) or '{}')
  table.insert(out, redis.call('HGET', KEYS[3], userId) or 'null')
end
return out
`;

/** A page after a join position. KEYS: order, parts, meta. ARGV: after, limit. Answers count, more (0/1), then 4 fields per member. */
const ROOM_PAGE = `
local limit = tonumber(ARGV[2])
local order = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local out = { redis.call('ZCARD', KEYS[1]), 0 }
for i = 1, #order, 2 do
  if (i + 1) / 2 > limit then
    out[2] = 1
    break
  end
  local userId = order[i]
  table.insert(out, userId)
  table.insert(out, order[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], userId) or '{}')
  table.insert(out, redis.call('HGET', KEYS[3], userId) or 'null')
end
return out
`;

export interface RedisRoomsOptions {
  readonly client: Redis | Cluster;
  readonly prefix: string;
  readonly leaseTtl: number;
  readonly sweepInterval: number;
  /** How long after a dead process's lease ran out its members stay (the longest reconnect grace): devices reconnecting elsewhere within it rejoin with no leave. */
  readonly reapDelay: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

interface WireMessage {
  room: string;
  version: number;
  userId: string;
  kind: 'joined' | 'left' | 'updated';
  parts: string | false;
  meta: string;
  count: number;
  by: string;
}

function parseOwners(json: string): SharedOwners {
  const value = JSON.parse(json) as unknown;
  // An emptied Lua table encodes as {}; a part's device list as an array of [platform, instanceId].
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as SharedOwners) : {};
}

function usersOf(flat: readonly unknown[], from: number): SharedRoomUser[] {
  const users: SharedRoomUser[] = [];
  for (let i = from; i + 3 < flat.length; i += 4) {
    users.push({ userId: String(flat[i]), seq: Number(flat[i + 1]), owners: parseOwners(String(flat[i + 2])), meta: String(flat[i + 3]) });
  }
  return users;
}

/**
 * RedisStore's rooms: a room is five keys in one hash slot, `<prefix>{r:<room>}:order|seq|parts|meta|version`;
 * each process lists the rooms it has parts in (`<prefix>{o:<owner>}:rooms`) and holds a room lease
 * (`<prefix>{o:<owner>}:room-lease`), and every process sweeps for processes whose lease is gone.
 */
export class RedisRooms implements SharedRoomsBackend {
  private subscriber: Redis | Cluster | undefined;
  private owner = '';
  private readonly channel: string;
  private readonly timers = new Set<TimerHandle>();
  private closed = false;
  /** Rooms this process has parts in, as written to its list. */
  private readonly listed = new Set<string>();
  /** When this process first saw each dead process's lease gone (its members are reaped reapDelay later). */
  private readonly goneSince = new Map<string, number>();
  /** The list change of each room in flight. */
  private readonly listing = new Map<string, Promise<void>>();

  constructor(private readonly options: RedisRoomsOptions) {
    this.channel = `${options.prefix}rooms`;
  }

  private roomKeys(room: string): string[] {
    const base = `${this.options.prefix}{r:${room}}:`;
    return [`${base}order`, `${base}seq`, `${base}parts`, `${base}meta`, `${base}version`];
  }

  private ownerKey(owner: string, what: 'rooms' | 'room-lease'): string {
    return `${this.options.prefix}{o:${owner}}:${what}`;
  }

  private get procsKey(): string {
    return `${this.options.prefix}room-procs`;
  }

  start(owner: string, listener: SharedRoomsListener): void {
    this.owner = owner;
    // A connection of its own for the subscription (a Cluster's duplicate is a Cluster).
    const subscriber = (this.options.client as { duplicate(): Redis | Cluster }).duplicate();
    this.subscriber = subscriber;
    subscriber.on('error', () => {}); // the main client reports outages
    subscriber.on('message', (_channel: string, text: string) => {
      try {
        const wire = JSON.parse(text) as WireMessage | { status: string; by: string };
        if ('status' in wire) {
          listener.status(wire.status, wire.by);
          return;
        }
        const message: SharedRoomMessage = {
          room: wire.room,
          version: wire.version,
          userId: wire.userId,
          kind: wire.kind,
          owners: wire.parts === false ? null : parseOwners(wire.parts),
          meta: wire.meta,
          count: wire.count,
          by: wire.by,
        };
        listener.message(message);
      } catch (error) {
        this.options.logger.warn('express-presence: ignored a malformed message on the rooms channel', error);
      }
    });
    let subscribed = false;
    subscriber.on('ready', () => {
      // Changes published while the subscriber was away were missed, and an emptied Redis lost this process's room list.
      if (subscribed) {
        this.listed.clear();
        listener.resync();
      }
      subscribed = true;
    });
    void subscriber
      .subscribe(this.channel)
      .catch((error: unknown) => this.options.logger.error('express-presence: subscribing to the rooms channel failed', error));
    void this.renewLease();
    this.every(Math.max(100, Math.floor(this.options.leaseTtl / 3)), () => this.renewLease());
    this.every(this.options.sweepInterval, () => this.sweep());
  }

  async set(room: string, userId: string, devices: readonly SharedDevice[], meta: string | undefined): Promise<void> {
    const client = this.options.client;
    // Listed before the part is written: a process dying in between leaves a listed room with no part (harmless), never a part nobody reaps.
    if (devices.length > 0 && !this.listed.has(room)) {
      this.listed.add(room);
      await this.inTurn(room, () => client.sadd(this.ownerKey(this.owner, 'rooms'), room));
    } else await this.listing.get(room);
    await client.eval(
      SET_PART,
      5,
      ...this.roomKeys(room),
      room,
      this.owner,
      userId,
      devices.length === 0 ? '' : JSON.stringify(devices),
      meta ?? '',
      this.channel,
      EMPTY_ROOM_TTL,
      this.owner,
    );
  }

  async state(room: string): Promise<SharedRoomState> {
    const [order, , parts, meta, version] = this.roomKeys(room) as [string, string, string, string, string];
    const flat = (await this.options.client.eval(ROOM_STATE, 4, order, parts, meta, version)) as unknown[];
    return { version: Number(flat[0]), users: usersOf(flat, 1) };
  }

  count(room: string): Promise<number> {
    return this.options.client.zcard(this.roomKeys(room)[0] as string);
  }

  async page(room: string, limit: number, after: number): Promise<{ users: SharedRoomUser[]; count: number; more: boolean }> {
    const [order, , parts, meta] = this.roomKeys(room) as [string, string, string, string];
    const flat = (await this.options.client.eval(ROOM_PAGE, 3, order, parts, meta, after, limit)) as unknown[];
    return { count: Number(flat[0]), more: Number(flat[1]) === 1, users: usersOf(flat, 2) };
  }

  unlist(room: string): void {
    if (!this.listed.delete(room)) return;
    void this.inTurn(room, () => this.options.client.srem(this.ownerKey(this.owner, 'rooms'), room)).catch(() => {
      // Left listed: the reaper then finds no part of this process there, which is harmless.
    });
  }

  /** Adds and removals of one room in this process's list, in the order asked. */
  private inTurn(room: string, change: () => Promise<unknown>): Promise<void> {
    const done = (this.listing.get(room) ?? Promise.resolve()).then(change, change).then(() => undefined);
    this.listing.set(room, done);
    void done
      .finally(() => {
        if (this.listing.get(room) === done) this.listing.delete(room);
      })
      .catch(() => undefined);
    return done;
  }

  status(userId: string): void {
    void this.options.client
      .publish(this.channel, JSON.stringify({ status: userId, by: this.owner }))
      .catch((error: unknown) => this.options.logger.error('express-presence: publishing a room member status failed', error));
  }

  async close(holdMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) this.options.clock.clearTimeout(timer);
    this.timers.clear();
    this.subscriber?.disconnect();
    this.subscriber = undefined;
    const lease = this.ownerKey(this.owner, 'room-lease');
    // A graceful handover keeps this process's parts for the grace (devices resuming elsewhere rejoin meanwhile: no leave); then the others reap them.
    const write = holdMs > 0 ? this.options.client.set(lease, '1', 'PX', holdMs) : this.options.client.del(lease);
    // Redis away: the lease runs out by itself, so close() does not wait on Redis coming back for longer than a lease.
    let timer: NodeJS.Timeout | undefined;
    const givenUp = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(this.options.leaseTtl, 2000)).unref()));
    try {
      await Promise.race([write, givenUp]);
    } catch {
      // Redis refused: the lease runs out by itself.
    } finally {
      clearTimeout(timer);
    }
    write.catch(() => {});
  }

  private async renewLease(): Promise<void> {
    if (this.closed) return;
    try {
      await this.options.client.set(this.ownerKey(this.owner, 'room-lease'), '1', 'PX', this.options.leaseTtl);
      await this.options.client.sadd(this.procsKey, this.owner);
    } catch {
      // The store reports outages; the next renewal retries.
    }
  }

  /** Removes the parts of every process whose room lease ran out. */
  private async sweep(): Promise<void> {
    if (this.closed) return;
    const client = this.options.client;
    try {
      const owners = await client.smembers(this.procsKey);
      for (const owner of owners) {
        if (owner === this.owner || this.closed) continue;
        if ((await client.exists(this.ownerKey(owner, 'room-lease'))) === 1) {
          this.goneSince.delete(owner);
          continue;
        }
        const now = this.options.clock.now();
        const since = this.goneSince.get(owner) ?? now;
        this.goneSince.set(owner, since);
        if (now - since < this.options.reapDelay) continue;
        const listKey = this.ownerKey(owner, 'rooms');
        const rooms = await client.smembers(listKey);
        for (const room of rooms) {
          await client.eval(REAP_PARTS, 5, ...this.roomKeys(room), room, owner, this.channel, EMPTY_ROOM_TTL, this.owner);
          await client.srem(listKey, room);
        }
        // Gone only once every room is reaped: a sweep cut short is taken up by the next.
        await client.srem(this.procsKey, owner);
        this.goneSince.delete(owner);
      }
    } catch (error) {
      this.options.logger.warn('express-presence: sweeping the rooms of dead processes failed; the next sweep retries', error);
    }
  }

  private every(ms: number, task: () => Promise<void>): void {
    const clock = this.options.clock;
    let handle: TimerHandle;
    const tick = (): void => {
      this.timers.delete(handle);
      if (this.closed) return;
      void task().finally(() => {
        if (this.closed) return;
        handle = clock.setTimeout(tick, ms);
        handle.unref?.();
        this.timers.add(handle);
      });
    };
    handle = clock.setTimeout(tick, ms);
    handle.unref?.();
    this.timers.add(handle);
  }
}
