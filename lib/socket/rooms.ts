// Rooms over Socket.IO: the presence:join / leave / room-update events, the server's join and leave, and delivering presence:room.

import type { DisconnectReason } from 'socket.io';
import type { PresenceEngine } from '../engine/engine.js';
import { platformClass, type Platform } from '../core/platforms.js';
import type { CanJoin } from '../options.js';
import { RoomError, roomsSupported, roomsUnsupportedMessage, type RoomDelivery, type RoomRegistry } from '../rooms/index.js';
import type { RoomMessage, RoomSnapshot } from '../rooms/types.js';
import { listener, type EventHandler } from './events.js';
import type { Answer, FailedAnswer } from './protocol.js';
import { PRESENCE, type PresenceSocket, type SocketPresence } from './session.js';
import type { PresenceNamespace } from './subscriptions.js';

/** The Socket.IO room of a presence room's connections, in the namespace presence is attached to. */
export const ROOM_PREFIX = 'presence:room:';

/** One socket as the room core sees it. */
export class SocketRoomConnection {
  /** The room core's state for this socket (RoomConnection.roomState). */
  roomState: unknown = undefined;
  constructor(
    readonly socket: PresenceSocket,
    readonly state: SocketPresence,
  ) {}
  get userId(): string {
    return this.state.connection.userId;
  }
  get sessionId(): string {
    return this.state.connection.sessionId;
  }
  get instanceId(): string {
    return this.state.connection.instanceId;
  }
  get platform(): Platform {
    return this.state.connection.platform;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  return Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value;
}

/** A room refusal as an answer; anything else is a fault, answered SERVER_ERROR by the event wrapper. */
function refusal(error: unknown): FailedAnswer {
  if (error instanceof RoomError) return { ok: false, code: error.code, message: error.message };
  if (error instanceof TypeError) return { ok: false, code: 'BAD_REQUEST', message: error.message };
  throw error;
}

/** The rooms adapter of one mount, shared by every namespace it is attached to. */
export class SocketRooms implements RoomDelivery<SocketRoomConnection> {
  private readonly connections = new WeakMap<SocketPresence, SocketRoomConnection>();
  private readonly namespaces = new Set<PresenceNamespace>();
  /** The room events, for `presenceEvents` (so they pass the same per-event entry point as the others). */
  readonly handlers: Readonly<Record<string, EventHandler>>;

  constructor(
    private readonly engine: PresenceEngine,
    private readonly rooms: RoomRegistry<SocketRoomConnection>,
    private readonly canJoin: CanJoin | undefined,
  ) {
    rooms.deliverWith(this);
    this.handlers = this.eventHandlers();
  }

  addNamespace(nsp: PresenceNamespace): void {
    this.namespaces.add(nsp);
  }

  // Rooms shared across processes hold other processes' devices as connections without a socket here (RemoteConnection): nothing to deliver to them.
  enter(connection: SocketRoomConnection, room: string): void {
    if (connection instanceof SocketRoomConnection) void connection.socket.join(ROOM_PREFIX + room);
  }

  exit(connection: SocketRoomConnection, room: string): void {
    if (connection instanceof SocketRoomConnection) void connection.socket.leave(ROOM_PREFIX + room);
  }

  broadcast(room: string, message: RoomMessage, except: readonly SocketRoomConnection[]): void {
    const ids = except.filter((connection) => connection instanceof SocketRoomConnection).map((connection) => connection.socket.id);
    // `local`: with a cluster adapter another process's sockets in a room of the same name are its own rooms' members, not these.
    for (const nsp of this.namespaces) {
      const target = nsp.local.to(ROOM_PREFIX + room);
      (ids.length === 0 ? target : target.except(ids)).emit('presence:room', message);
    }
  }

  send(connection: SocketRoomConnection, message: RoomMessage): void {
    if (connection instanceof SocketRoomConnection) connection.socket.emit('presence:room', message);
  }

  /**
   * Called from the socket's disconnect, before the engine hears of it: a connection the client
   * closed while still logged in keeps its rooms for its class's reconnect grace; one the server
   * ended (kick, logout, timeout: no longer open) or a transport ping timeout leaves at once.
   */
  disconnected(state: SocketPresence, reason: DisconnectReason): void {
    const connection = this.connections.get(state);
    if (!connection) return;
    const open = state.connection.open && reason !== 'ping timeout';
    const grace = open ? this.engine.config.reconnectGrace[platformClass(state.connection.platform)] : 0;
    this.rooms.connectionClosed(connection, grace);
  }

  /** `presence.join(socket, room, meta)`: no canJoin; the client is sent the room as a `presence:room` with `members`. */
  async serverJoin(socket: unknown, room: unknown, meta: unknown): Promise<RoomSnapshot> {
    const connection = this.serverConnection(socket, 'join');
    if (!roomsSupported(this.engine)) throw new Error(roomsUnsupportedMessage(this.engine));
    const snapshot = await this.rooms.join(connection, room as string, meta);
    connection.socket.emit('presence:room', { room: snapshot.room, count: snapshot.count, joined: [], left: [], updated: [], members: snapshot.members });
    return snapshot;
  }

  /** `presence.leave(socket, room)`. */
  serverLeave(socket: unknown, room: unknown): void {
    const connection = this.serverConnection(socket, 'leave');
    this.rooms.leave(connection, room as string);
  }

  private serverConnection(socket: unknown, method: string): SocketRoomConnection {
    const presenceSocket = socket as PresenceSocket | null;
    const state = typeof presenceSocket === 'object' && presenceSocket !== null ? presenceSocket[PRESENCE] : undefined;
    if (!state || !this.namespaces.has(presenceSocket!.nsp as unknown as PresenceNamespace)) {
      throw new TypeError(`${method}() takes a connected socket of a namespace this presence is attached to`);
    }
    if (!state.connection?.open || !presenceSocket!.connected) throw new RoomError('NOT_LOGGED_IN', `${method}(): this socket is no longer logged in`);
    return this.connectionOf(presenceSocket!, state);
  }

  private connectionOf(socket: PresenceSocket, state: SocketPresence): SocketRoomConnection {
    let connection = this.connections.get(state);
    if (!connection) {
      connection = new SocketRoomConnection(socket, state);
      this.connections.set(state, connection);
    }
    return connection;
  }

  private eventHandlers(): Record<string, EventHandler> {
    const engine = this.engine;
    const rooms = this.rooms;
    const shape = (event: string, fields: string, payload: unknown): FailedAnswer => ({
      ok: false,
      code: 'BAD_REQUEST',
      message: `${event} takes ${fields}; got ${kindOf(payload)}`,
    });
    const unsupported = (): FailedAnswer | undefined =>
      roomsSupported(engine) ? undefined : { ok: false, code: 'UNSUPPORTED', message: roomsUnsupportedMessage(engine) };
    return {
      'presence:join': listener(engine, 'presence:join', async (socket, state, payload): Promise<Answer> => {
        if (!isObject(payload)) return shape('presence:join', '{ room, meta? }', payload);
        const refused = unsupported();
        if (refused) return refused;
        const canJoin = this.canJoin;
        if (!canJoin) {
          return {
            ok: false,
            code: 'FORBIDDEN',
            message: 'client joins are refused: the server has no canJoin option (it can still join this connection with presence.join())',
          };
        }
        const { room, meta } = payload;
        try {
          const snapshot = await rooms.join(this.connectionOf(socket, state), room as string, meta, () => this.allowed(canJoin, state, room as string, meta));
          return { ok: true, ...snapshot };
        } catch (error) {
          return refusal(error);
        }
      }),
      'presence:leave': listener(engine, 'presence:leave', (socket, state, payload): Answer => {
        if (!isObject(payload)) return shape('presence:leave', '{ room }', payload);
        try {
          rooms.leave(this.connectionOf(socket, state), payload.room as string);
          return { ok: true };
        } catch (error) {
          return refusal(error);
        }
      }),
      'presence:room-update': listener(engine, 'presence:room-update', (socket, state, payload): Answer => {
        if (!isObject(payload) || !('meta' in payload)) return shape('presence:room-update', '{ room, meta }', payload);
        try {
          rooms.update(this.connectionOf(socket, state), payload.room as string, payload.meta);
          return { ok: true };
        } catch (error) {
          return refusal(error);
        }
      }),
    };
  }

  /** canJoin's verdict; anything but true refuses, and a throw is logged and refuses (failing closed). */
  private async allowed(canJoin: CanJoin, state: SocketPresence, room: string, meta: unknown): Promise<void> {
    let verdict: unknown;
    try {
      verdict = await canJoin(state.connection.userId, room, meta);
    } catch (error) {
      this.engine.config.logger.error('express-presence: canJoin threw; the join is refused', error);
      verdict = false;
    }
    if (verdict !== true) throw new RoomError('FORBIDDEN', `canJoin refused room ${JSON.stringify(room)} to this user`);
  }
}

const adapters = new WeakMap<object, SocketRooms>();

/** The rooms adapter of a mount (created by its first attach), or undefined before any attach. */
export function socketRoomsOf(owner: object): SocketRooms | undefined {
  return adapters.get(owner);
}

/** Creates (once per mount) the rooms adapter and adds the namespace to those it delivers to. */
export function attachRooms(
  owner: object,
  engine: PresenceEngine,
  rooms: RoomRegistry<SocketRoomConnection>,
  nsp: PresenceNamespace,
  canJoin: CanJoin | undefined,
): SocketRooms {
  let adapter = adapters.get(owner);
  if (!adapter) {
    adapter = new SocketRooms(engine, rooms, canJoin);
    adapters.set(owner, adapter);
  }
  adapter.addNamespace(nsp);
  return adapter;
}
