// Rooms shared by several processes: each process mirrors the rooms its connections are in, from a store that keeps every process's part of each room.

import type { PresenceEngine } from '../engine/engine.js';
import type { Platform } from '../core/platforms.js';
import type { UserTruth } from '../core/availability.js';
import type { RoomConnection, RoomRegistry } from './registry.js';
import type { JsonValue, RoomMember, RoomPage } from './types.js';
import type { SharedOwners, SharedRoomMessage, SharedRoomsBackend } from '../core/shared-rooms.js';

export type {
  SharedDevice,
  SharedOwners,
  SharedRoomMessage,
  SharedRoomUser,
  SharedRoomState,
  SharedRoomsListener,
  SharedRoomsBackend,
} from '../core/shared-rooms.js';

/** A member's device on another process, as this process's registry holds it: a connection of its own. */
export class RemoteConnection implements RoomConnection {
  readonly sessionId: string;
  /** The room core's state for this device (RoomConnection.roomState). */
  roomState: unknown = undefined;
  constructor(
    readonly owner: string,
    readonly userId: string,
    readonly instanceId: string,
    readonly platform: Platform,
  ) {
    this.sessionId = `remote:${owner}:${instanceId}`;
  }
}

/** How long a failed write of this process's part waits before it is tried again. */
const RETRY_MS = 1000;

/** One room this process mirrors (its connections are in it). */
class Mirror {
  /** The version of the last change applied; -1 while loading. */
  version = -1;
  /** Messages that came while loading. */
  queue: SharedRoomMessage[] = [];
  /** The remote devices held in the registry, by user, then by `owner|instanceId`. */
  readonly remotes = new Map<string, Map<string, RemoteConnection>>();
  /** The meta each member carries in the store, as JSON. */
  readonly metas = new Map<string, string>();
  /** Changes apply one after the other. */
  chain: Promise<void> = Promise.resolve();
  loaded: Promise<void> | undefined;
  dropped = false;
  /** Local joins between beforeJoin and their entry: the mirror must not be dropped under them. */
  joining = 0;
}

function parseMetaJson(json: string): JsonValue {
  try {
    return JSON.parse(json) as JsonValue;
  } catch {
    return null;
  }
}

/**
 * Keeps the registry's rooms the same on every process: each local change of a member is written
 * as this process's part; each change heard from the store is applied to the mirrored rooms, other
 * processes' devices held as RemoteConnections. Counts and pages for the backend come from the
 * store, the same on every process.
 */
export class SharedRooms<C extends RoomConnection> {
  private readonly mirrors = new Map<string, Mirror>();
  /** What this process last wrote of each `room\0userId`, and the write in flight. */
  private readonly written = new Map<string, string>();
  private readonly writes = new Map<string, Promise<void>>();
  /** Writes in flight by room: a room leaves this process's list only with none. */
  private readonly inFlight = new Map<string, number>();
  private readonly dirty = new Set<string>();
  private flushScheduled = false;
  private announcing: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly owner: string;

  constructor(
    private readonly engine: PresenceEngine,
    private readonly registry: RoomRegistry<C>,
    private readonly backend: SharedRoomsBackend,
  ) {
    this.owner = engine.owner;
    registry.hooks = {
      announcesEvents: true,
      beforeJoin: async (connection, room, meta) => {
        if (connection instanceof RemoteConnection) return;
        await this.mirror(room, true);
        await this.sync(`${room}\0${connection.userId}`, { connection, meta });
      },
      afterJoin: (connection, room) => {
        if (connection instanceof RemoteConnection) return;
        const mirror = this.mirrors.get(room);
        if (mirror && mirror.joining > 0) mirror.joining--;
        if (mirror) this.dropIfUnused(room, mirror);
        // A refused or abandoned join wrote its part ahead: the registry's state is written again.
        this.touched(room, connection.userId);
      },
      touched: (room, userId) => this.touched(room, userId),
      close: () => void this.close(),
    };
    backend.start(this.owner, {
      message: (message) => this.heard(message),
      status: (userId, by) => {
        if (by !== this.owner && registry.hasUser(userId)) void this.refreshStatus(userId);
      },
      resync: () => {
        // Redis may have been restarted empty: this process's parts are written again, then every mirrored room reloaded.
        this.written.clear();
        for (const room of this.mirrors.keys()) for (const userId of this.registry.membersOf(room)) this.touched(room, userId);
        for (const [room, mirror] of this.mirrors) this.enqueue(mirror, () => this.reload(room, mirror));
      },
    });
    const statusChanged = (userId: string): void => {
      if (registry.hasUser(userId)) backend.status(userId);
    };
    engine.on('change', (change) => statusChanged(change.userId));
    engine.on('custom-status', (change) => statusChanged(change.userId));
    // Availability too: the other processes must leave an invisible member out of what their clients are told.
    engine.on('user-state', (truth) => statusChanged(truth.userId));
  }

  count(room: string): Promise<number> {
    return this.backend.count(room);
  }

  /** A page from the store, with each member's status looked up now. */
  async page(room: string, limit: number, after: number): Promise<RoomPage> {
    const { users, count, more } = await this.backend.page(room, limit, after);
    // In order: one answer per user asked.
    const found = await this.engine.truths(users.map((user) => user.userId));
    const members: RoomMember[] = users.map((user, i) => {
      const stored = found[i];
      const devices: { platform: Platform; instanceId: string }[] = [];
      for (const list of Object.values(user.owners)) {
        for (const [platform, instanceId] of list) if (!devices.some((device) => device.instanceId === instanceId)) devices.push({ platform, instanceId });
      }
      return {
        userId: user.userId,
        status: stored?.status ?? 'Offline',
        // The backend's view: the truth, an invisible member marked so.
        availability: stored?.availability ?? 'available',
        customStatus: stored?.customStatus ?? null,
        meta: parseMetaJson(user.meta),
        devices,
      };
    });
    const last = users.at(-1);
    return { members, count, nextCursor: more && last ? String(last.seq) : null };
  }

  /** Loads the room's members elsewhere before a local connection's join is entered. */
  private mirror(room: string, joining = false): Promise<void> {
    let mirror = this.mirrors.get(room);
    if (!mirror || mirror.dropped) {
      const created = new Mirror();
      mirror = created;
      this.mirrors.set(room, created);
      created.loaded = new Promise<void>((resolve, reject) => this.enqueue(created, () => this.reload(room, created).then(resolve, reject)));
    }
    if (joining) mirror.joining++;
    return mirror.loaded as Promise<void>;
  }

  private enqueue(mirror: Mirror, task: () => Promise<void>): void {
    mirror.chain = mirror.chain
      .then(task)
      .catch((error: unknown) => this.engine.config.logger.error('express-presence: applying a shared room change failed', error));
  }

  /** The store's state of the room replaces the mirror's; then the changes heard meanwhile follow. */
  private async reload(room: string, mirror: Mirror): Promise<void> {
    if (mirror.dropped || this.closed) return;
    const state = await this.backend.state(room);
    const present = new Set(state.users.map((user) => user.userId));
    // Users side by side: each remote member's join looks its status up in the store, and a big room's lookups then share round trips.
    await Promise.all([
      ...state.users.map((user) => this.applyUser(room, mirror, user.userId, user.owners, user.meta)),
      ...[...mirror.remotes.keys()].filter((userId) => !present.has(userId)).map((userId) => this.applyUser(room, mirror, userId, null, 'null')),
    ]);
    mirror.version = state.version;
    const queued = mirror.queue;
    mirror.queue = [];
    for (const message of queued) await this.applyMessage(room, mirror, message);
  }

  private heard(message: SharedRoomMessage): void {
    if (message.by === this.owner) this.announce(message);
    const mirror = this.mirrors.get(message.room);
    if (!mirror || mirror.dropped) return;
    if (mirror.version < 0) {
      mirror.queue.push(message);
      return;
    }
    this.enqueue(mirror, () => this.applyMessage(message.room, mirror, message));
  }

  private async applyMessage(room: string, mirror: Mirror, message: SharedRoomMessage): Promise<void> {
    if (mirror.dropped) return;
    if (mirror.version < 0) {
      mirror.queue.push(message);
      return;
    }
    if (message.version <= mirror.version) return;
    if (message.version > mirror.version + 1) {
      // A change was missed: the whole room again.
      await this.reload(room, mirror);
      return;
    }
    mirror.version = message.version;
    await this.applyUser(room, mirror, message.userId, message.owners, message.meta);
  }

  /** Makes the registry hold exactly the user's devices on other processes, and the store's meta. */
  private async applyUser(room: string, mirror: Mirror, userId: string, owners: SharedOwners | null, meta: string): Promise<void> {
    const wanted = new Map<string, [string, string, Platform]>();
    if (owners) {
      for (const [owner, devices] of Object.entries(owners)) {
        if (owner === this.owner) continue;
        for (const [platform, instanceId] of devices) wanted.set(`${owner}|${instanceId}`, [owner, instanceId, platform]);
      }
    }
    let held = mirror.remotes.get(userId);
    if (!held) {
      held = new Map();
      mirror.remotes.set(userId, held);
    }
    if (owners) mirror.metas.set(userId, meta);
    else mirror.metas.delete(userId);
    const metaValue = parseMetaJson(meta);
    for (const [key, [owner, instanceId, platform]] of wanted) {
      if (held.has(key)) continue;
      const connection = new RemoteConnection(owner, userId, instanceId, platform);
      held.set(key, connection);
      await this.registry.join(connection as unknown as C, room, owners ? metaValue : undefined).catch((error: unknown) => {
        held.delete(key);
        // Dropped meanwhile, or this process closing: nothing to hold any more.
        if (!mirror.dropped && !this.closed) throw error;
      });
    }
    for (const [key, connection] of held) {
      if (wanted.has(key)) continue;
      held.delete(key);
      this.registry.leave(connection as unknown as C, room);
    }
    if (held.size === 0) mirror.remotes.delete(userId);
    // The meta the store holds wins, whichever process set it.
    const any = this.registry.connectionsIn(room, userId).find((connection) => connection instanceof RemoteConnection);
    if (owners && any && this.registry.metaOf(room, userId) !== meta) this.registry.update(any as unknown as C, room, metaValue);
  }

  private touched(room: string, userId: string): void {
    if (this.closed) return;
    this.dirty.add(`${room}\0${userId}`);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      const keys = [...this.dirty];
      this.dirty.clear();
      for (const key of keys) this.sync(key);
    });
  }

  /** Writes this process's part of a member when it changed: its local devices and, when set here, its meta. */
  private sync(key: string, joining?: { connection: RoomConnection; meta: string | undefined }): Promise<void> {
    if (this.closed) return Promise.resolve();
    const [room, userId] = key.split('\0') as [string, string];
    const local = this.registry.connectionsIn(room, userId).filter((connection) => !(connection instanceof RemoteConnection));
    // A join about to be entered counts already: its part is in the store before its answer goes out.
    if (joining) local.push(joining.connection as C);
    const devices: [Platform, string][] = [];
    for (const connection of local)
      if (!devices.some(([, instanceId]) => instanceId === connection.instanceId)) devices.push([connection.platform, connection.instanceId]);
    devices.sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    // A join without meta keeps the member's; a new member's is null.
    const metaHere =
      devices.length === 0 ? undefined : joining ? (joining.meta ?? this.registry.metaOf(room, userId) ?? 'null') : this.registry.metaOf(room, userId);
    // A join that was entered while the room's mirror was being dropped (its last other local member leaving): mirror it again.
    if (devices.length > 0 && !this.mirrors.get(room)) void this.mirror(room).catch(() => undefined);
    const mirror = this.mirrors.get(room);
    const stored = mirror?.metas.get(userId);
    // Meta goes with the part when it was set here, and when the part is written afresh (after a resync the store may have lost it).
    const meta = metaHere !== undefined && (metaHere !== stored || !this.written.has(key)) ? metaHere : undefined;
    const signature = JSON.stringify([devices, meta ?? stored ?? null]);
    if (this.written.get(key) === signature && meta === undefined) return this.writes.get(key) ?? Promise.resolve();
    if (devices.length === 0 && !this.written.has(key)) return Promise.resolve();
    if (devices.length === 0) this.written.delete(key);
    else this.written.set(key, signature);
    if (meta !== undefined && mirror) mirror.metas.set(userId, meta);
    const previous = this.writes.get(key) ?? Promise.resolve();
    this.inFlight.set(room, (this.inFlight.get(room) ?? 0) + 1);
    const write = previous
      .then(() => this.backend.set(room, userId, devices, meta))
      .catch((error: unknown) => {
        this.written.delete(key);
        this.engine.config.logger.error(`express-presence: writing room ${JSON.stringify(room)} to the store failed; retrying`, error);
        // Written again from the registry's state then, whatever it is by that time.
        const retry = this.engine.config.clock.setTimeout(() => this.touched(room, userId), RETRY_MS);
        retry.unref?.();
      })
      .finally(() => {
        if (this.writes.get(key) === write) this.writes.delete(key);
        const left = (this.inFlight.get(room) ?? 1) - 1;
        if (left > 0) this.inFlight.set(room, left);
        else this.inFlight.delete(room);
        if (left <= 0 && devices.length === 0 && !this.closed && !this.hasLocal(room) && !(this.mirrors.get(room)?.joining ?? 0)) this.backend.unlist(room);
      });
    this.writes.set(key, write);
    if (devices.length === 0 && mirror) this.dropIfUnused(room, mirror);
    return write;
  }

  /** Once no connection of this process is in the room or joining it, the mirror goes (in turn with its changes, so none is half applied). */
  private dropIfUnused(room: string, mirror: Mirror): void {
    this.enqueue(mirror, () => {
      if (!mirror.dropped && mirror.joining === 0 && !this.hasLocal(room)) this.drop(room, mirror);
      return Promise.resolve();
    });
  }

  private hasLocal(room: string): boolean {
    return this.registry
      .membersOf(room)
      .some((userId) => this.registry.connectionsIn(room, userId).some((connection) => !(connection instanceof RemoteConnection)));
  }

  /** No connection of this process is in the room any more: stop mirroring it. */
  private drop(room: string, mirror: Mirror): void {
    mirror.dropped = true;
    if (this.mirrors.get(room) === mirror) this.mirrors.delete(room);
    for (const held of mirror.remotes.values()) for (const connection of held.values()) this.registry.leave(connection as unknown as C, room);
    mirror.remotes.clear();
  }

  private async refreshStatus(userId: string): Promise<void> {
    try {
      const [truth] = await this.engine.truths([userId]);
      this.registry.userChanged(userId, {
        status: truth?.status ?? 'Offline',
        customStatus: truth?.customStatus ?? null,
        availability: truth?.availability ?? 'available',
      });
    } catch (error) {
      this.engine.config.logger.error('express-presence: refreshing a room member status failed', error);
    }
  }

  /** The backend events, once in the cluster: by the process whose write made the change. */
  private announce(message: SharedRoomMessage): void {
    const { room, kind, count, userId } = message;
    // In order: a member's status is looked up for joins and updates, and a leave must not overtake them.
    this.announcing = this.announcing.then(async () => {
      if (kind === 'left') {
        this.registry.announce('room-change', { room, joined: [], left: [userId], updated: [], count });
        if (count === 0) this.registry.announce('room-vacated', { room });
        return;
      }
      if (kind === 'joined' && count === 1) this.registry.announce('room-occupied', { room });
      const member = await this.memberOf(message);
      this.registry.announce('room-change', { room, joined: kind === 'joined' ? [member] : [], left: [], updated: kind === 'updated' ? [member] : [], count });
    });
  }

  private async memberOf(message: SharedRoomMessage): Promise<RoomMember> {
    const [user] = await this.engine.truths([message.userId]).catch((): UserTruth[] => []);
    const devices: { platform: Platform; instanceId: string }[] = [];
    for (const list of Object.values(message.owners ?? {})) {
      for (const [platform, instanceId] of list) if (!devices.some((device) => device.instanceId === instanceId)) devices.push({ platform, instanceId });
    }
    return {
      userId: message.userId,
      status: user?.status ?? 'Offline',
      availability: user?.availability ?? 'available',
      customStatus: user?.customStatus ?? null,
      meta: parseMetaJson(message.meta),
      devices,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.writes.values()]);
    await this.backend.close(this.engine.config.handoverGrace);
  }
}
