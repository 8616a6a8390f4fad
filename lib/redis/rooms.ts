// Rooms in Redis: each room's keys share one hash slot ({r:<room>}), every script declares its keys, changes go to every process over pub/sub, dead processes' parts are reaped.

import type { Cluster, Redis } from 'ioredis';
import { LibraryLoader, luaLibrary } from './functions.js';
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

  /** The rooms' function library (lib/redis/lua/rooms.lua). */
  private readonly library: LibraryLoader;

  constructor(private readonly options: RedisRoomsOptions) {
    this.channel = `${options.prefix}rooms`;
    this.library = new LibraryLoader(
      options.client,
      luaLibrary('rooms.lua', 'express_rooms_'),
      (answer) => new Error(`express-presence: rooms in Redis need Redis 7.0 or later (a Redis function library); this Redis answered: ${answer}`),
    );
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
    await this.library.call('set', this.roomKeys(room), [
      room,
      this.owner,
      userId,
      devices.length === 0 ? '' : JSON.stringify(devices),
      meta ?? '',
      this.channel,
      EMPTY_ROOM_TTL,
      this.owner,
    ]);
  }

  async state(room: string): Promise<SharedRoomState> {
    const [order, , parts, meta, version] = this.roomKeys(room) as [string, string, string, string, string];
    const flat = (await this.library.call('state', [order, parts, meta, version], [])) as unknown[];
    return { version: Number(flat[0]), users: usersOf(flat, 1) };
  }

  count(room: string): Promise<number> {
    return this.options.client.zcard(this.roomKeys(room)[0] as string);
  }

  async page(room: string, limit: number, after: number): Promise<{ users: SharedRoomUser[]; count: number; more: boolean }> {
    const [order, , parts, meta] = this.roomKeys(room) as [string, string, string, string];
    const flat = (await this.library.call('page', [order, parts, meta], [after, limit])) as unknown[];
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
          await this.library.call('reap', this.roomKeys(room), [room, owner, this.channel, EMPTY_ROOM_TTL, this.owner]);
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
