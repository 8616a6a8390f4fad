// The room core: who is in which room, counts, pages, and batched, coalesced diffs; no transport here (adapters deliver).

import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { Platform } from '../core/platforms.js';
import type { UserStatus } from '../core/types.js';
import type { Logger } from '../core/types.js';
import type { MaybePromise } from '../core/store.js';
import type { Availability, JsonValue, RoomChange, RoomDevice, RoomEvents, RoomMember, RoomMessage, RoomPage, RoomSnapshot } from './types.js';
import { checkRoomName, parseMeta } from './validate.js';

/** One connection as the core sees it: which user and device it belongs to. Adapters pass their own objects (compared by identity). */
export interface RoomConnection {
  readonly userId: string;
  readonly sessionId: string;
  readonly instanceId: string;
  readonly platform: Platform;
}

/** How an adapter reaches connections: the core decides what to send, the adapter sends it. */
export interface RoomDelivery<C extends RoomConnection> {
  /** The connection now hears the room's broadcasts. */
  enter(connection: C, room: string): void;
  /** The connection no longer hears them. */
  exit(connection: C, room: string): void;
  /** To every connection hearing the room but those in `except`. */
  broadcast(room: string, message: RoomMessage, except: readonly C[]): void;
  send(connection: C, message: RoomMessage): void;
}

/** What the core needs to know of a user when they first join a room. */
export interface RoomUserInfo {
  readonly status: UserStatus;
  readonly customStatus: string | null;
  /** Absent: `available`. */
  readonly availability?: Availability;
}

export interface RoomRegistryOptions {
  readonly clock: Clock;
  /** Members listed in answers and diffs; above it, the count only. */
  readonly memberLimit: number;
  /** ms between two messages of one room. */
  readonly batchInterval: number;
  readonly maxRoomsPerConnection: number;
  /** A user's status and custom status, read once when they join their first room; later changes come through `userChanged`. */
  readonly lookup: (userId: string) => MaybePromise<RoomUserInfo>;
  readonly logger: Logger;
}

/**
 * What a layer sharing the rooms with other processes (lib/rooms/shared.ts) hooks into: it keeps
 * this registry's rooms complete (members of other processes as connections of their own) and
 * announces the backend events once in the cluster instead of each process.
 */
export interface RoomHooks {
  /** Before a join of `connection` is entered (after canJoin): the room's members elsewhere are loaded. */
  beforeJoin?(connection: RoomConnection, room: string, metaJson: string | undefined): MaybePromise<void>;
  /** The join that called beforeJoin settled (entered or refused). */
  afterJoin?(connection: RoomConnection, room: string): void;
  /** A member of the room is about to change (called before the change). */
  touched?(room: string, userId: string): void;
  /** The backend events come from the hooks (true) rather than from this registry. */
  readonly announcesEvents?: boolean;
  close?(): void;
}

/** The backend's view of rooms shared across processes: the same answers on every process. */
export interface SharedRoomsView {
  count(room: string): Promise<number>;
  page(room: string, limit: number, after: number): Promise<RoomPage>;
  close(): Promise<void>;
}

export type RoomErrorCode = 'TOO_MANY_ROOMS' | 'FORBIDDEN' | 'NOT_LOGGED_IN' | 'BAD_REQUEST';

/** A refusal with a code adapters pass on (`{ ok: false, code }` on sockets). Bad input is a TypeError instead. */
export class RoomError extends Error {
  constructor(
    readonly code: RoomErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RoomError';
  }
}

/**
 * What a client may see of a member, or null when it must not see them at all: invisible members are left out (their going
 * invisible is a `left`, coming back a `joined`), and the counts clients get leave them out too (Room.invisible).
 */
function shownToClients(member: RoomMember | null): RoomMember | null {
  return member === null || member.availability === 'invisible' ? null : member;
}

/**
 * One item, several, or none: most users are in one room and most members have one connection, and
 * an array of one costs 56 bytes (its object and its elements) where a field holding the item
 * costs nothing more. Items are objects, never arrays, so the two cannot be confused.
 */
type Slot<T extends object> = T | T[] | undefined;

function slotAdd<T extends object>(slot: Slot<T>, item: T): Slot<T> {
  if (slot === undefined) return item;
  if (Array.isArray(slot)) {
    slot.push(item);
    return slot;
  }
  return [slot, item];
}

function slotRemove<T extends object>(slot: Slot<T>, item: T): Slot<T> {
  if (slot === item) return undefined;
  if (!Array.isArray(slot)) return slot;
  const at = slot.indexOf(item);
  if (at >= 0) slot.splice(at, 1);
  return slot.length === 0 ? undefined : slot.length === 1 ? slot[0] : slot;
}

function slotHas<T extends object>(slot: Slot<T>, item: T): boolean {
  return slot === item || (Array.isArray(slot) && slot.includes(item));
}

/** A copy to iterate over while the slot may change. */
function slotItems<T extends object>(slot: Slot<T>): T[] {
  return slot === undefined ? [] : Array.isArray(slot) ? [...slot] : [slot];
}

/** A user who is in (or joining) at least one room: what all their memberships share. */
class UserRecord {
  status: UserStatus = 'Online';
  customStatus: string | null = null;
  availability: Availability = 'available';
  /** False until the store answered or an event told the truth: until then the fields above are provisional. */
  known = false;
  /** Joins waiting (for canJoin or the store): the record must outlive them. */
  joining = 0;
  /** Its memberships, one per room. */
  members: Slot<Member> = undefined;
  constructor(readonly userId: string) {}
}

/** One user in one room. */
class Member {
  meta: JsonValue = null;
  /**
   * The user's connections in the room: live, or closed and held for the reconnect grace (their
   * ConnectionRooms says which). Held here directly, not as a per-connection object: that cost 48
   * bytes a membership.
   */
  connections: Slot<RoomConnection> = undefined;
  /** Out of the room (its last connection left); it stays in the room's order until swept. No field of its own: a member always has a connection while in. */
  get removed(): boolean {
    return this.connections === undefined;
  }
  /** Its meta as JSON, encoded when asked (rarely: an update's comparison, the shared store's writes), not kept beside it. */
  get metaJson(): string {
    return JSON.stringify(this.meta);
  }
  /** The member as shown, built when first asked for and dropped at each change. */
  view: RoomMember | undefined = undefined;
  constructor(
    readonly user: UserRecord,
    readonly room: Room,
    /** Its place in the room's join order: pages run by it. */
    readonly seq: number,
  ) {}
}

/** A join waiting for canJoin or the store: it holds a place so concurrent joins cannot overshoot maxRoomsPerConnection. */
class Pending {}

/** One touched user of a batch: their state before that touch. */
interface LogEntry {
  readonly userId: string;
  readonly before: RoomMember | null;
}

/** A connection that joined during the batch: its join answer is its starting point, not the batch's. */
interface Newcomer {
  /** The log's length right after its join. */
  readonly index: number;
  /** Whether its answer listed the members. */
  readonly listed: boolean;
  readonly count: number;
}

/** Changes of one room waiting for its next message. */
class Batch {
  readonly log: LogEntry[] = [];
  readonly newcomers = new Map<RoomConnection, Newcomer>();
  timer: TimerHandle | undefined = undefined;
  constructor(readonly startCount: number) {}
}

class Room {
  readonly members = new Map<string, Member>();
  /** Members in join order, with removed ones left in place (and swept once they are half). */
  order: Member[] = [];
  removedInOrder = 0;
  nextSeq = 0;
  batch: Batch | undefined = undefined;
  /** Whether the connections hearing the room hold its member list (false while it is beyond memberLimit). */
  listed = true;
  /** Members who are invisible: left out of what clients are told, counts included. */
  invisible = 0;
  constructor(readonly name: string) {}

  /** The count clients are told: invisible members left out. */
  get clientCount(): number {
    return this.members.size - this.invisible;
  }
}

/**
 * The rooms of one connection, by name. The first room is kept in two fields and a Map made only
 * for a second: a Map of one entry costs about 180 bytes, and most connections are in one room.
 */
class ConnectionRooms {
  private firstName: string | undefined = undefined;
  private firstEntry: Member | Pending | undefined = undefined;
  private more: Map<string, Member | Pending> | undefined = undefined;
  holdTimer: TimerHandle | undefined = undefined;
  closed = false;

  get size(): number {
    return (this.firstName === undefined ? 0 : 1) + (this.more?.size ?? 0);
  }

  get(name: string): Member | Pending | undefined {
    return this.firstName === name ? this.firstEntry : this.more?.get(name);
  }

  set(name: string, entry: Member | Pending): void {
    if (this.firstName === name || this.firstName === undefined) {
      this.firstName = name;
      this.firstEntry = entry;
    } else (this.more ??= new Map()).set(name, entry);
  }

  delete(name: string): void {
    if (this.firstName !== name) {
      this.more?.delete(name);
      return;
    }
    // The Map's oldest entry moves into the fields, so join order stays.
    const next = this.more?.entries().next();
    if (next && !next.done) {
      [this.firstName, this.firstEntry] = next.value;
      this.more!.delete(next.value[0]);
    } else {
      this.firstName = undefined;
      this.firstEntry = undefined;
    }
    if (this.more?.size === 0) this.more = undefined;
  }

  /** A copy, in join order. */
  entries(): [string, Member | Pending][] {
    const all: [string, Member | Pending][] = this.firstName === undefined ? [] : [[this.firstName, this.firstEntry!]];
    if (this.more) all.push(...this.more);
    return all;
  }
}

interface Diff {
  joined: RoomMember[];
  left: string[];
  updated: RoomMember[];
}

function sameDevices(a: readonly RoomDevice[], b: readonly RoomDevice[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.instanceId !== b[i]!.instanceId || a[i]!.platform !== b[i]!.platform) return false;
  return true;
}

function sameMember(a: RoomMember, b: RoomMember): boolean {
  if (a === b) return true;
  return (
    a.status === b.status &&
    a.availability === b.availability &&
    a.customStatus === b.customStatus &&
    sameDevices(a.devices, b.devices) &&
    (a.meta === b.meta || JSON.stringify(a.meta) === JSON.stringify(b.meta))
  );
}

function isEmpty(diff: Diff): boolean {
  return diff.joined.length === 0 && diff.left.length === 0 && diff.updated.length === 0;
}

/**
 * Keeps every room of one mount: memberships per connection, members per user (tabs and devices
 * together), O(1) counts, pages in join order, and one coalesced message per room per batch.
 */
export class RoomRegistry<C extends RoomConnection = RoomConnection> extends EventEmitter<RoomEvents> {
  private readonly rooms = new Map<string, Room>();
  private readonly users = new Map<string, UserRecord>();
  private readonly connections = new Map<C, ConnectionRooms>();
  private delivery: RoomDelivery<C> | undefined;
  private closed = false;
  /** Set by a layer sharing rooms across processes. */
  hooks: RoomHooks = {};
  /** Set when rooms are shared across processes: counts and pages come from it. */
  shared: SharedRoomsView | undefined = undefined;

  constructor(private readonly options: RoomRegistryOptions) {
    super();
  }

  /** Set by the transport adapter once it is attached. */
  deliverWith(delivery: RoomDelivery<C>): void {
    this.delivery = delivery;
  }

  /** Members of the room; 0 for a room nobody is in. */
  count(room: string): number {
    return this.rooms.get(room)?.members.size ?? 0;
  }

  /** The rooms with at least one member. */
  get size(): number {
    let occupied = 0;
    for (const room of this.rooms.values()) if (room.members.size > 0) occupied++;
    return occupied;
  }

  /** Rooms whose changes wait for their next message (tests wait for none before comparing what clients hold). */
  get openBatches(): number {
    let open = 0;
    for (const room of this.rooms.values()) if (room.batch) open++;
    return open;
  }

  /** Rooms the connection is in (or joining). */
  roomsOf(connection: C): number {
    return this.connections.get(connection)?.size ?? 0;
  }

  /**
   * Joins the connection to the room; `meta` undefined keeps an existing member's meta. `gate`
   * (canJoin) runs once a place is reserved and refuses by throwing. Answers the room as it is
   * once joined: the connection gets no diff about its own join.
   */
  async join(connection: C, roomName: string, meta: unknown, gate?: () => MaybePromise<void>): Promise<RoomSnapshot> {
    const name = checkRoomName(roomName);
    const parsed = meta === undefined ? undefined : parseMeta(meta);
    if (this.closed) throw new RoomError('NOT_LOGGED_IN', 'this presence was closed');
    let rooms = this.connections.get(connection);
    if (!rooms) {
      rooms = new ConnectionRooms();
      this.connections.set(connection, rooms);
    }
    if (rooms.closed) throw new RoomError('NOT_LOGGED_IN', 'this connection is closed');
    const existing = rooms.get(name);
    if (existing instanceof Pending) throw new RoomError('BAD_REQUEST', `a join of room ${JSON.stringify(name)} is already in progress on this connection`);
    if (!existing && rooms.size >= this.options.maxRoomsPerConnection) {
      this.dropConnectionIfIdle(connection, rooms);
      throw new RoomError(
        'TOO_MANY_ROOMS',
        `a connection may be in at most ${this.options.maxRoomsPerConnection} rooms (maxRoomsPerConnection); leave one first`,
      );
    }
    const placeholder = existing ?? new Pending();
    if (!existing) rooms.set(name, placeholder);
    const user = this.userRecord(connection.userId);
    user.joining++;
    const hooks = this.hooks;
    let hooked = false;
    try {
      if (gate) await gate();
      if (hooks.beforeJoin) {
        hooked = true;
        await hooks.beforeJoin(connection, name, parsed?.json);
      }
      if (!user.known) {
        const info = await this.options.lookup(connection.userId);
        // An event that came while the store answered is newer than the answer.
        if (!user.known) {
          user.status = info.status;
          user.customStatus = info.customStatus;
          user.availability = info.availability ?? 'available';
          user.known = true;
        }
      }
    } catch (error) {
      if (hooked) hooks.afterJoin?.(connection, name);
      user.joining--;
      if (rooms.get(name) === placeholder && placeholder instanceof Pending) rooms.delete(name);
      this.dropUserIfIdle(user);
      this.dropConnectionIfIdle(connection, rooms);
      throw error;
    }
    user.joining--;
    if (hooked) queueMicrotask(() => hooks.afterJoin?.(connection, name));
    if (rooms.closed || this.closed || rooms.get(name) !== placeholder) {
      this.dropUserIfIdle(user);
      if (rooms.closed || this.closed) throw new RoomError('NOT_LOGGED_IN', 'the connection closed before the join completed');
      throw new RoomError('BAD_REQUEST', `room ${JSON.stringify(name)} was left before the join completed`);
    }
    return this.enter(connection, rooms, name, user, placeholder, parsed);
  }

  /** The synchronous half of a join: nothing can come between the change and the answer. */
  private enter(
    connection: C,
    rooms: ConnectionRooms,
    name: string,
    user: UserRecord,
    placeholder: Member | Pending,
    parsed: { value: JsonValue; json: string } | undefined,
  ): RoomSnapshot {
    let room = this.rooms.get(name);
    if (!room) {
      room = new Room(name);
      this.rooms.set(name, room);
    }
    let member = room.members.get(user.userId);
    const occupied = room.members.size === 0;
    this.touch(room, user.userId, member);
    if (!member) {
      member = new Member(user, room, room.nextSeq++);
      room.members.set(user.userId, member);
      if (user.availability === 'invisible') room.invisible++;
      room.order.push(member);
      user.members = slotAdd(user.members, member);
    }
    if (placeholder instanceof Pending) {
      this.adoptHeld(member, connection);
      member.connections = slotAdd(member.connections, connection);
      rooms.set(name, member);
      this.delivery?.enter(connection, name);
    }
    if (parsed) {
      member.meta = parsed.value;
    }
    member.view = undefined;
    const count = room.clientCount;
    const listed = count <= this.options.memberLimit;
    const batch = room.batch as Batch;
    batch.newcomers.set(connection, { index: batch.log.length, listed, count });
    if (occupied && !this.hooks.announcesEvents) this.emitSafely('room-occupied', { room: name });
    return { room: name, count, members: listed ? this.list(room, shownToClients) : null };
  }

  /** A connection of the same device back within its grace takes the closed one's place: no leave, no join. */
  private adoptHeld(member: Member, connection: C): void {
    const held = slotItems(member.connections).find((candidate) => !this.isLive(candidate) && candidate.sessionId === connection.sessionId);
    if (!held) return;
    member.connections = slotRemove(member.connections, held);
    const old = held as C;
    const oldRooms = this.connections.get(old);
    if (!oldRooms) return;
    oldRooms.delete(member.room.name);
    if (oldRooms.size === 0) {
      if (oldRooms.holdTimer !== undefined) this.options.clock.clearTimeout(oldRooms.holdTimer);
      this.connections.delete(old);
    }
  }

  /** Takes the connection out of the room (nothing if it is not in it). */
  leave(connection: C, roomName: string): void {
    const name = checkRoomName(roomName);
    const rooms = this.connections.get(connection);
    const entry = rooms?.get(name);
    if (!rooms || !entry) return;
    rooms.delete(name);
    if (entry instanceof Member) {
      if (!rooms.closed) this.delivery?.exit(connection, name);
      this.removeConnection(entry, connection);
    }
    this.dropConnectionIfIdle(connection, rooms);
  }

  /** Sets the member's meta (latest wins): an update, never a leave and a join. */
  update(connection: C, roomName: string, meta: unknown): void {
    const name = checkRoomName(roomName);
    const parsed = parseMeta(meta);
    const rooms = this.connections.get(connection);
    const member = rooms?.get(name);
    if (!(member instanceof Member) || rooms!.closed)
      throw new RoomError('BAD_REQUEST', `this connection is not in room ${JSON.stringify(name)}; join it first`);
    if (member.metaJson === parsed.json) return;
    this.touch(member.room, member.user.userId, member);
    member.meta = parsed.value;
    member.view = undefined;
  }

  /**
   * The connection is gone. `holdMs` > 0 (a close within the reconnect grace) keeps its
   * memberships that long for a connection of the same device to take over; 0 leaves at once
   * (a kick, logout, timeout, or no grace).
   */
  connectionClosed(connection: C, holdMs: number): void {
    const rooms = this.connections.get(connection);
    if (!rooms || rooms.closed) return;
    rooms.closed = true;
    for (const [name, entry] of rooms.entries()) {
      if (entry instanceof Pending) rooms.delete(name);
      else if (holdMs <= 0) {
        rooms.delete(name);
        this.removeConnection(entry, connection);
      }
      // Otherwise held: `rooms.closed` marks the membership as waiting for the connection's return.
    }
    if (rooms.size === 0 || holdMs <= 0) {
      this.connections.delete(connection);
      return;
    }
    rooms.holdTimer = this.options.clock.setTimeout(() => this.releaseHeld(connection), holdMs);
    rooms.holdTimer.unref?.();
  }

  /** The grace ran out: the held memberships leave. */
  private releaseHeld(connection: C): void {
    const rooms = this.connections.get(connection);
    if (!rooms) return;
    this.connections.delete(connection);
    for (const [, entry] of rooms.entries()) if (entry instanceof Member) this.removeConnection(entry, connection);
  }

  /** The engine ended the device (kick, logout, PushOnline): memberships held for its return leave now. */
  deviceGone(userId: string, instanceId: string): void {
    const user = this.users.get(userId);
    if (!user) return;
    for (const member of slotItems(user.members)) {
      for (const held of slotItems(member.connections)) {
        if (this.isLive(held) || held.instanceId !== instanceId) continue;
        const connection = held as C;
        const rooms = this.connections.get(connection);
        rooms?.delete(member.room.name);
        if (rooms && rooms.size === 0) {
          if (rooms.holdTimer !== undefined) this.options.clock.clearTimeout(rooms.holdTimer);
          this.connections.delete(connection);
        }
        this.removeConnection(member, connection);
      }
    }
  }

  /** The user's status, availability or custom status changed: an `updated` in each of their rooms (for clients, a `left` or `joined` when invisibility changed). */
  userChanged(userId: string, change: { status?: UserStatus; customStatus?: string | null; availability?: Availability }): void {
    const user = this.users.get(userId);
    if (!user) return;
    const status = change.status ?? user.status;
    const customStatus = change.customStatus === undefined ? user.customStatus : change.customStatus;
    const availability = change.availability ?? user.availability;
    const known = user.known;
    user.known = true;
    if (known && status === user.status && customStatus === user.customStatus && availability === user.availability) return;
    const members = slotItems(user.members);
    for (const member of members) this.touch(member.room, userId, member);
    const invisibleDelta = (availability === 'invisible' ? 1 : 0) - (user.availability === 'invisible' ? 1 : 0);
    user.status = status;
    user.customStatus = customStatus;
    user.availability = availability;
    for (const member of members) {
      member.view = undefined;
      member.room.invisible += invisibleDelta;
    }
  }

  /** One page of the room's members, in join order, for the backend (every member, whatever clients may see). */
  page(roomName: string, limit: number, after: number): RoomPage {
    const room = this.rooms.get(roomName);
    if (!room) return { members: [], count: 0, nextCursor: null };
    const order = room.order;
    // The first member joined after the cursor: seqs grow along `order`.
    let low = 0;
    let high = order.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (order[mid]!.seq <= after) low = mid + 1;
      else high = mid;
    }
    const members: RoomMember[] = [];
    let last: Member | undefined;
    let i = low;
    for (; i < order.length && members.length < limit; i++) {
      const member = order[i]!;
      if (member.removed) continue;
      members.push(this.view(member));
      last = member;
    }
    while (i < order.length && order[i]!.removed) i++;
    return { members, count: room.members.size, nextCursor: i < order.length && last ? String(last.seq) : null };
  }

  /** The connections (live or held) of the user in the room, local and otherwise. */
  connectionsIn(roomName: string, userId: string): C[] {
    const member = this.rooms.get(roomName)?.members.get(userId);
    return member ? (slotItems(member.connections) as C[]) : [];
  }

  /** The user ids of the room's members. */
  membersOf(roomName: string): string[] {
    return [...(this.rooms.get(roomName)?.members.keys() ?? [])];
  }

  /** The member's meta as JSON, or undefined when the user is not in the room. */
  metaOf(roomName: string, userId: string): string | undefined {
    return this.rooms.get(roomName)?.members.get(userId)?.metaJson;
  }

  /** Whether the user is in (or joining) any room here. */
  hasUser(userId: string): boolean {
    return this.users.has(userId);
  }

  /** A backend event, announced by the hooks: listeners that throw are logged. */
  announce<K extends keyof RoomEvents>(name: K, payload: RoomEvents[K][0]): void {
    if (!this.closed) this.emitSafely(name, payload);
  }

  /** Stops every timer; no event or message follows. */
  close(): void {
    this.hooks.close?.();
    this.closed = true;
    for (const room of this.rooms.values()) if (room.batch?.timer !== undefined) this.options.clock.clearTimeout(room.batch.timer);
    for (const rooms of this.connections.values()) if (rooms.holdTimer !== undefined) this.options.clock.clearTimeout(rooms.holdTimer);
    this.rooms.clear();
    this.users.clear();
    this.connections.clear();
  }

  private userRecord(userId: string): UserRecord {
    let user = this.users.get(userId);
    if (!user) {
      user = new UserRecord(userId);
      this.users.set(userId, user);
    }
    return user;
  }

  private dropUserIfIdle(user: UserRecord): void {
    if (user.joining === 0 && user.members === undefined && this.users.get(user.userId) === user) this.users.delete(user.userId);
  }

  private dropConnectionIfIdle(connection: C, rooms: ConnectionRooms): void {
    if (rooms.size === 0 && rooms.holdTimer === undefined && this.connections.get(connection) === rooms) this.connections.delete(connection);
  }

  /** Whether the connection is open (not closed and held for its grace). */
  private isLive(connection: RoomConnection): boolean {
    return this.connections.get(connection as C)?.closed === false;
  }

  private removeConnection(member: Member, connection: RoomConnection): void {
    if (!slotHas(member.connections, connection)) return;
    const room = member.room;
    this.touch(room, member.user.userId, member);
    member.connections = slotRemove(member.connections, connection);
    member.view = undefined;
    if (member.connections !== undefined) return;
    room.members.delete(member.user.userId);
    if (member.user.availability === 'invisible') room.invisible--;
    room.removedInOrder++;
    if (room.removedInOrder > 32 && room.removedInOrder * 2 > room.order.length) {
      room.order = room.order.filter((kept) => !kept.removed);
      room.removedInOrder = 0;
    }
    member.user.members = slotRemove(member.user.members, member);
    this.dropUserIfIdle(member.user);
    if (room.members.size === 0 && !this.hooks.announcesEvents) this.emitSafely('room-vacated', { room: room.name });
  }

  /** Notes the member's state before a change, opening the room's batch if none is open. */
  private touch(room: Room, userId: string, member: Member | undefined): void {
    this.hooks.touched?.(room.name, userId);
    let batch = room.batch;
    if (!batch) {
      batch = room.batch = new Batch(room.clientCount);
      const interval = this.options.batchInterval;
      batch.timer = this.options.clock.setTimeout(() => this.flush(room), interval);
      batch.timer.unref?.();
    }
    batch.log.push({ userId, before: member ? this.view(member) : null });
  }

  private view(member: Member): RoomMember {
    if (member.view) return member.view;
    let devices: RoomDevice[];
    const connections = member.connections;
    if (connections === undefined) devices = [];
    else if (!Array.isArray(connections)) {
      // The common case as a literal: exactly one slot.
      const { instanceId, platform } = connections;
      devices = [{ platform, instanceId }];
    } else {
      devices = [];
      for (const { instanceId, platform } of connections) {
        if (!devices.some((device) => device.instanceId === instanceId)) devices.push({ platform, instanceId });
      }
    }
    const user = member.user;
    member.view = Object.freeze({
      userId: user.userId,
      status: user.status,
      availability: user.availability,
      customStatus: user.customStatus,
      meta: member.meta,
      devices: Object.freeze(devices),
    });
    return member.view;
  }

  private list(room: Room, project: (member: RoomMember | null) => RoomMember | null): RoomMember[] {
    const members: RoomMember[] = [];
    for (const member of room.order) {
      if (member.removed) continue;
      const shown = project(this.view(member));
      if (shown) members.push(shown);
    }
    return members;
  }

  /** Each user touched since log position `from`: their state then against now, as seen through `project`. */
  private diffSince(room: Room, log: readonly LogEntry[], from: number, project: (member: RoomMember | null) => RoomMember | null): Diff {
    const diff: Diff = { joined: [], left: [], updated: [] };
    const seen = new Set<string>();
    for (let i = from; i < log.length; i++) {
      const entry = log[i]!;
      if (seen.has(entry.userId)) continue;
      seen.add(entry.userId);
      const member = room.members.get(entry.userId);
      const before = project(entry.before);
      const now = project(member ? this.view(member) : null);
      if (!before && now) diff.joined.push(now);
      else if (before && !now) diff.left.push(entry.userId);
      else if (before && now && !sameMember(before, now)) diff.updated.push(now);
    }
    return diff;
  }

  /** The batch is over: one message to the room's connections, one each to those that joined meanwhile, and `room-change`. */
  private flush(room: Room): void {
    const batch = room.batch;
    if (!batch || this.closed) return;
    room.batch = undefined;
    const truth = this.diffSince(room, batch.log, 0, (member) => member);
    if (!isEmpty(truth) && !this.hooks.announcesEvents)
      this.emitSafely('room-change', { room: room.name, ...truth, count: room.members.size } satisfies RoomChange);
    // What clients are told leaves invisible members out, their count too.
    const count = room.clientCount;

    const delivery = this.delivery;
    if (delivery) {
      const listed = count <= this.options.memberLimit;
      const countOnly: RoomMessage = { room: room.name, count, joined: [], left: [], updated: [], members: null };
      let resync: RoomMessage | undefined;
      const fullList = (): RoomMessage => (resync ??= { room: room.name, count, joined: [], left: [], updated: [], members: this.list(room, shownToClients) });
      const except: C[] = [];
      const personal: [C, RoomMessage][] = [];
      for (const [connection, newcomer] of batch.newcomers as Map<C, Newcomer>) {
        const rooms = this.connections.get(connection);
        if (!rooms || rooms.closed || !(rooms.get(room.name) instanceof Member)) continue;
        except.push(connection);
        if (!listed) {
          if (newcomer.listed || newcomer.count !== count) personal.push([connection, countOnly]);
        } else if (!newcomer.listed) {
          personal.push([connection, fullList()]);
        } else {
          const diff = this.diffSince(room, batch.log, newcomer.index, shownToClients);
          if (!isEmpty(diff)) personal.push([connection, { room: room.name, count, ...diff }]);
        }
      }
      try {
        if (!listed) {
          if (room.listed || count !== batch.startCount) delivery.broadcast(room.name, countOnly, except);
        } else if (!room.listed) {
          delivery.broadcast(room.name, fullList(), except);
        } else {
          const diff = this.diffSince(room, batch.log, 0, shownToClients);
          if (!isEmpty(diff)) delivery.broadcast(room.name, { room: room.name, count, ...diff }, except);
        }
        for (const [connection, message] of personal) delivery.send(connection, message);
      } catch (error) {
        this.options.logger.error('express-presence: delivering a room message failed', error);
      }
      room.listed = listed;
    }
    // Built views go with their batch: kept, they would cost every member of a quiet room a copy of itself.
    for (const entry of batch.log) {
      const member = room.members.get(entry.userId);
      if (member) member.view = undefined;
    }
    if (room.members.size === 0 && !room.batch && this.rooms.get(room.name) === room) this.rooms.delete(room.name);
  }

  /** Emits to every listener; one that throws is logged and stops neither the others nor the rooms. */
  private emitSafely<K extends keyof RoomEvents>(name: K, payload: RoomEvents[K][0]): void {
    for (const listener of this.listeners(name) as ((payload: RoomEvents[K][0]) => void)[]) {
      try {
        listener(payload);
      } catch (error) {
        this.options.logger.error(`express-presence: a '${name}' listener threw`, error);
      }
    }
  }
}
