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
  /**
   * The core's state for this connection (its rooms), kept on the adapter's object rather than in
   * a registry Map keyed by connection: adapters declare the field (`roomState: unknown =
   * undefined`) and never touch it. A connection object belongs to one registry.
   */
  roomState?: unknown;
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

/**
 * A user joining a room or in several: what their memberships share. A user resting in one room
 * has none (the registry's user index holds their member, which carries the status itself): a
 * record cost 80 bytes a membership.
 */
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

/** One user in one room. Their status is copied into each of their members (userChanged updates every copy). */
class Member {
  meta: JsonValue = null;
  /**
   * The user's connections in the room: live, or closed and held for the reconnect grace (their
   * ConnectionRooms says which). Held here directly, not as a per-connection object: that cost 48
   * bytes a membership.
   */
  connections: Slot<RoomConnection> = undefined;
  /** The member as shown, built when first asked for and dropped at each change. */
  view: RoomMember | undefined = undefined;
  constructor(
    readonly userId: string,
    readonly room: Room,
    /** Its place in the room's join order: pages run by it. */
    readonly seq: number,
    public status: UserStatus,
    public customStatus: string | null,
    public availability: Availability,
  ) {}
  /** Out of the room (its last connection left); it stays in the room's order until swept. No field of its own: a member always has a connection while in. */
  get removed(): boolean {
    return this.connections === undefined;
  }
  /** Its meta as JSON, encoded when asked (rarely: an update's comparison, the shared store's writes), not kept beside it. */
  get metaJson(): string {
    return JSON.stringify(this.meta);
  }
}

/** A join waiting for canJoin or the store: it holds a place so concurrent joins cannot overshoot maxRoomsPerConnection. */
class Pending {
  /** Set when its connection closed while it waited. */
  closed = false;
  constructor(readonly name: string) {}
}

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
  /** Members in the room (removed ones not counted). Found by user through the registry's user index: a Map of them per room cost ~37 bytes a membership. */
  size = 0;
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
    return this.size - this.invisible;
  }
}

/**
 * The rooms of one connection, by name, once it is in two or closed (a connection live in one room
 * holds its member, or its pending join, in its own `roomState`: this object cost 64 bytes). The
 * first room is kept in two fields and a Map made only for a third: a Map of one entry costs about
 * 180 bytes.
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

type Entry = Member | Pending;

/** A connection's `roomState`: nothing, its one room's entry while live, or its ConnectionRooms. */
type ConnectionState = Entry | ConnectionRooms | undefined;

/** A connection that closed with nothing held (or whose held rooms all went): joins in flight on it are refused. */
const CLOSED = new ConnectionRooms();
CLOSED.closed = true;

function entryName(entry: Entry): string {
  return entry instanceof Member ? entry.room.name : entry.name;
}

function stateOf(connection: RoomConnection): ConnectionState {
  return connection.roomState as ConnectionState;
}

function roomCount(connection: RoomConnection): number {
  const state = stateOf(connection);
  return state === undefined ? 0 : state instanceof ConnectionRooms ? state.size : 1;
}

function entryOf(connection: RoomConnection, name: string): Entry | undefined {
  const state = stateOf(connection);
  if (state === undefined) return undefined;
  if (state instanceof ConnectionRooms) return state.get(name);
  return entryName(state) === name ? state : undefined;
}

/** The connection's ConnectionRooms, made from its single entry if need be. */
function expanded(connection: RoomConnection): ConnectionRooms {
  const state = stateOf(connection);
  if (state instanceof ConnectionRooms && state !== CLOSED) return state;
  const rooms = new ConnectionRooms();
  if (state instanceof ConnectionRooms) rooms.closed = true;
  else if (state !== undefined) rooms.set(entryName(state), state);
  connection.roomState = rooms;
  return rooms;
}

function setEntry(connection: RoomConnection, name: string, entry: Entry): void {
  const state = stateOf(connection);
  if (state === undefined || (!(state instanceof ConnectionRooms) && entryName(state) === name)) connection.roomState = entry;
  else expanded(connection).set(name, entry);
}

/** A live connection back to one room (or none) holds it in its own field again. */
function compact(connection: RoomConnection): void {
  const state = stateOf(connection);
  if (!(state instanceof ConnectionRooms) || state.closed || state.holdTimer !== undefined || state.size > 1) return;
  connection.roomState = state.size === 0 ? undefined : state.entries()[0]![1];
}

function deleteEntry(connection: RoomConnection, name: string): void {
  const state = stateOf(connection);
  if (state instanceof ConnectionRooms) {
    state.delete(name);
    compact(connection);
  } else if (state !== undefined && entryName(state) === name) connection.roomState = undefined;
}

function isClosed(connection: RoomConnection): boolean {
  const state = stateOf(connection);
  return state instanceof ConnectionRooms && state.closed;
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
  /** Each user in (or joining) a room here: their member while they rest in one room, else their record. */
  private readonly users = new Map<string, UserRecord | Member>();
  /** Connections whose rooms are held for their grace: their timers, for close(). */
  private readonly holding = new Set<ConnectionRooms>();
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
    return this.rooms.get(room)?.size ?? 0;
  }

  /** The rooms with at least one member. */
  get size(): number {
    let occupied = 0;
    for (const room of this.rooms.values()) if (room.size > 0) occupied++;
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
    return roomCount(connection);
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
    // Closed with nothing held: a connection like a new one (as when the registry forgot it).
    if (stateOf(connection) === CLOSED) connection.roomState = undefined;
    if (isClosed(connection)) throw new RoomError('NOT_LOGGED_IN', 'this connection is closed');
    const existing = entryOf(connection, name);
    if (existing instanceof Pending) throw new RoomError('BAD_REQUEST', `a join of room ${JSON.stringify(name)} is already in progress on this connection`);
    if (!existing && roomCount(connection) >= this.options.maxRoomsPerConnection) {
      throw new RoomError(
        'TOO_MANY_ROOMS',
        `a connection may be in at most ${this.options.maxRoomsPerConnection} rooms (maxRoomsPerConnection); leave one first`,
      );
    }
    const placeholder = existing ?? new Pending(name);
    if (!existing) setEntry(connection, name, placeholder);
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
      if (entryOf(connection, name) === placeholder && placeholder instanceof Pending) deleteEntry(connection, name);
      this.dropUserIfIdle(user);
      throw error;
    }
    user.joining--;
    if (hooked) queueMicrotask(() => hooks.afterJoin?.(connection, name));
    const closed = isClosed(connection) || (placeholder instanceof Pending && placeholder.closed);
    if (closed || this.closed || entryOf(connection, name) !== placeholder) {
      this.dropUserIfIdle(user);
      if (closed || this.closed) throw new RoomError('NOT_LOGGED_IN', 'the connection closed before the join completed');
      throw new RoomError('BAD_REQUEST', `room ${JSON.stringify(name)} was left before the join completed`);
    }
    const snapshot = this.enter(connection, name, user, placeholder, parsed);
    this.dropUserIfIdle(user);
    return snapshot;
  }

  /** The synchronous half of a join: nothing can come between the change and the answer. */
  private enter(
    connection: C,
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
    let member = this.memberIn(room, user.userId);
    const occupied = room.size === 0;
    this.touch(room, user.userId, member);
    if (!member) {
      member = new Member(user.userId, room, room.nextSeq++, user.status, user.customStatus, user.availability);
      room.size++;
      if (member.availability === 'invisible') room.invisible++;
      room.order.push(member);
      user.members = slotAdd(user.members, member);
    }
    if (placeholder instanceof Pending) {
      this.adoptHeld(member, connection);
      member.connections = slotAdd(member.connections, connection);
      setEntry(connection, name, member);
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
    this.forgetHeld(held, member.room.name);
  }

  /** A held membership of a closed connection goes; the connection is forgotten once it holds none. */
  private forgetHeld(connection: RoomConnection, name: string): void {
    const rooms = stateOf(connection);
    if (!(rooms instanceof ConnectionRooms) || rooms === CLOSED) return;
    rooms.delete(name);
    if (rooms.size > 0) return;
    if (rooms.holdTimer !== undefined) this.options.clock.clearTimeout(rooms.holdTimer);
    rooms.holdTimer = undefined;
    this.holding.delete(rooms);
    connection.roomState = CLOSED;
  }

  /** Takes the connection out of the room (nothing if it is not in it). */
  leave(connection: C, roomName: string): void {
    const name = checkRoomName(roomName);
    const entry = entryOf(connection, name);
    if (!entry) return;
    const closed = isClosed(connection);
    if (closed) this.forgetHeld(connection, name);
    else deleteEntry(connection, name);
    if (entry instanceof Member) {
      if (!closed) this.delivery?.exit(connection, name);
      this.removeConnection(entry, connection);
    }
  }

  /** Sets the member's meta (latest wins): an update, never a leave and a join. */
  update(connection: C, roomName: string, meta: unknown): void {
    const name = checkRoomName(roomName);
    const parsed = parseMeta(meta);
    const member = entryOf(connection, name);
    if (!(member instanceof Member) || isClosed(connection))
      throw new RoomError('BAD_REQUEST', `this connection is not in room ${JSON.stringify(name)}; join it first`);
    if (member.metaJson === parsed.json) return;
    this.touch(member.room, member.userId, member);
    member.meta = parsed.value;
    member.view = undefined;
  }

  /**
   * The connection is gone. `holdMs` > 0 (a close within the reconnect grace) keeps its
   * memberships that long for a connection of the same device to take over; 0 leaves at once
   * (a kick, logout, timeout, or no grace).
   */
  connectionClosed(connection: C, holdMs: number): void {
    if (stateOf(connection) === undefined || isClosed(connection)) return;
    const rooms = expanded(connection);
    rooms.closed = true;
    for (const [name, entry] of rooms.entries()) {
      if (entry instanceof Pending) {
        entry.closed = true;
        rooms.delete(name);
      } else if (holdMs <= 0) {
        rooms.delete(name);
        this.removeConnection(entry, connection);
      }
      // Otherwise held: `rooms.closed` marks the membership as waiting for the connection's return.
    }
    if (rooms.size === 0 || holdMs <= 0) {
      connection.roomState = CLOSED;
      return;
    }
    rooms.holdTimer = this.options.clock.setTimeout(() => this.releaseHeld(connection, rooms), holdMs);
    rooms.holdTimer.unref?.();
    this.holding.add(rooms);
  }

  /** The grace ran out: the held memberships leave. */
  private releaseHeld(connection: C, rooms: ConnectionRooms): void {
    this.holding.delete(rooms);
    rooms.holdTimer = undefined;
    if (stateOf(connection) !== rooms) return;
    connection.roomState = CLOSED;
    for (const [, entry] of rooms.entries()) if (entry instanceof Member) this.removeConnection(entry, connection);
  }

  /** The engine ended the device (kick, logout, PushOnline): memberships held for its return leave now. */
  deviceGone(userId: string, instanceId: string): void {
    for (const member of this.membersOfUser(userId)) {
      for (const held of slotItems(member.connections)) {
        if (this.isLive(held) || held.instanceId !== instanceId) continue;
        this.forgetHeld(held, member.room.name);
        this.removeConnection(member, held);
      }
    }
  }

  /** The user's status, availability or custom status changed: an `updated` in each of their rooms (for clients, a `left` or `joined` when invisibility changed). */
  userChanged(userId: string, change: { status?: UserStatus; customStatus?: string | null; availability?: Availability }): void {
    const entry = this.users.get(userId);
    if (!entry) return;
    if (entry instanceof Member) {
      // At rest in one room: the member's status is the truth (its join read it).
      const status = change.status ?? entry.status;
      const customStatus = change.customStatus === undefined ? entry.customStatus : change.customStatus;
      const availability = change.availability ?? entry.availability;
      if (status === entry.status && customStatus === entry.customStatus && availability === entry.availability) return;
      this.touch(entry.room, userId, entry);
      entry.room.invisible += (availability === 'invisible' ? 1 : 0) - (entry.availability === 'invisible' ? 1 : 0);
      entry.status = status;
      entry.customStatus = customStatus;
      entry.availability = availability;
      entry.view = undefined;
      return;
    }
    const user = entry;
    const status = change.status ?? user.status;
    const customStatus = change.customStatus === undefined ? user.customStatus : change.customStatus;
    const availability = change.availability ?? user.availability;
    const known = user.known;
    user.known = true;
    if (known && status === user.status && customStatus === user.customStatus && availability === user.availability) return;
    const members = slotItems(user.members);
    for (const member of members) this.touch(member.room, userId, member);
    // A member's copy may be provisional (a record made before the store answered): each one's own state counts.
    const invisibleDelta = availability === 'invisible' ? 1 : 0;
    user.status = status;
    user.customStatus = customStatus;
    user.availability = availability;
    for (const member of members) {
      member.view = undefined;
      member.room.invisible += invisibleDelta - (member.availability === 'invisible' ? 1 : 0);
      member.status = status;
      member.customStatus = customStatus;
      member.availability = availability;
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
    return { members, count: room.size, nextCursor: i < order.length && last ? String(last.seq) : null };
  }

  /** The connections (live or held) of the user in the room, local and otherwise. */
  connectionsIn(roomName: string, userId: string): C[] {
    const room = this.rooms.get(roomName);
    const member = room && this.memberIn(room, userId);
    return member ? (slotItems(member.connections) as C[]) : [];
  }

  /** The user ids of the room's members. */
  membersOf(roomName: string): string[] {
    const room = this.rooms.get(roomName);
    return room ? room.order.filter((member) => !member.removed).map((member) => member.userId) : [];
  }

  /** The member's meta as JSON, or undefined when the user is not in the room. */
  metaOf(roomName: string, userId: string): string | undefined {
    const room = this.rooms.get(roomName);
    return room && this.memberIn(room, userId)?.metaJson;
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
    for (const rooms of this.holding) if (rooms.holdTimer !== undefined) this.options.clock.clearTimeout(rooms.holdTimer);
    this.rooms.clear();
    this.users.clear();
    this.holding.clear();
  }

  /** The user's record, made (from their one member, if they rest in a room) for a join to wait on. */
  private userRecord(userId: string): UserRecord {
    const entry = this.users.get(userId);
    if (entry instanceof UserRecord) return entry;
    const user = new UserRecord(userId);
    if (entry) {
      user.status = entry.status;
      user.customStatus = entry.customStatus;
      user.availability = entry.availability;
      user.known = true;
      user.members = entry;
    }
    this.users.set(userId, user);
    return user;
  }

  /** A record no join waits on goes: the user is forgotten when in no room, and held by their member when in one. */
  private dropUserIfIdle(user: UserRecord): void {
    if (user.joining !== 0 || this.users.get(user.userId) !== user) return;
    const members = user.members;
    if (members === undefined) this.users.delete(user.userId);
    else if (!Array.isArray(members)) this.users.set(user.userId, members);
  }

  /** The user's members, one per room. */
  private membersOfUser(userId: string): Member[] {
    const entry = this.users.get(userId);
    return entry === undefined ? [] : entry instanceof Member ? [entry] : slotItems(entry.members);
  }

  /** The user's member in the room, if they are in it. */
  private memberIn(room: Room, userId: string): Member | undefined {
    const entry = this.users.get(userId);
    if (entry === undefined) return undefined;
    const members = entry instanceof Member ? entry : entry.members;
    if (members === undefined) return undefined;
    if (!Array.isArray(members)) return members.room === room ? members : undefined;
    for (const member of members) if (member.room === room) return member;
    return undefined;
  }

  /** Whether the connection is open (not closed and held for its grace). */
  private isLive(connection: RoomConnection): boolean {
    return stateOf(connection) !== undefined && !isClosed(connection);
  }

  private removeConnection(member: Member, connection: RoomConnection): void {
    if (!slotHas(member.connections, connection)) return;
    const room = member.room;
    this.touch(room, member.userId, member);
    member.connections = slotRemove(member.connections, connection);
    member.view = undefined;
    if (member.connections !== undefined) return;
    room.size--;
    if (member.availability === 'invisible') room.invisible--;
    room.removedInOrder++;
    if (room.removedInOrder > 32 && room.removedInOrder * 2 > room.order.length) {
      room.order = room.order.filter((kept) => !kept.removed);
      room.removedInOrder = 0;
    }
    const user = this.users.get(member.userId);
    if (user === member) this.users.delete(member.userId);
    else if (user instanceof UserRecord) {
      user.members = slotRemove(user.members, member);
      this.dropUserIfIdle(user);
    }
    if (room.size === 0 && !this.hooks.announcesEvents) this.emitSafely('room-vacated', { room: room.name });
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
    member.view = Object.freeze({
      userId: member.userId,
      status: member.status,
      availability: member.availability,
      customStatus: member.customStatus,
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
      const member = this.memberIn(room, entry.userId);
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
    if (!isEmpty(truth) && !this.hooks.announcesEvents) this.emitSafely('room-change', { room: room.name, ...truth, count: room.size } satisfies RoomChange);
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
        if (isClosed(connection) || !(entryOf(connection, room.name) instanceof Member)) continue;
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
      const member = this.memberIn(room, entry.userId);
      if (member) member.view = undefined;
    }
    if (room.size === 0 && !room.batch && this.rooms.get(room.name) === room) this.rooms.delete(room.name);
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
