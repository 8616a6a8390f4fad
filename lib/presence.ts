// createPresence: one mount of express-presence, the engine plus its Express and Socket.IO adapters.

import { PresenceEngine } from './engine/engine.js';
import type { Availability } from './core/availability.js';
import type { AvailabilityChange, CustomStatusChange, InstanceRef, PresenceChange, PresenceStats, UserPresence } from './core/types.js';
import { resolveOptions, type PresenceOptions, type ResolvedConfig } from './options.js';
import type { Namespace, Server } from 'socket.io';
import { createPresenceRouter, type PresenceRouter, type RouterOptions } from './http/router.js';
import { attachPresence } from './socket/attach.js';
import { CallbackDelivery, type PresenceCallbackBody } from './callback/delivery.js';
import type { HttpService } from './http/service.js';
import type { SocketService } from './socket/service.js';
import { callbackReceiver, type CallbackHandler, type CallbackReceiver, type CallbackReceiverOptions } from './callback/receiver.js';
import { PresenceMetrics } from './http/metrics.js';
import { didYouMean } from './util/did-you-mean.js';
import { createRooms, roomsSupported, roomsUnsupportedMessage, type RoomRegistry } from './rooms/index.js';
import type { RoomChange, RoomEvent, RoomSnapshot, RoomView } from './rooms/types.js';
import { checkPageLimit, checkRoomName, parseCursor } from './rooms/validate.js';
import { socketRoomsOf, type SocketRoomConnection } from './socket/rooms.js';

export interface PresenceEvents {
  change: [PresenceChange];
  'custom-status': [CustomStatusChange];
  /** A user's availability changed: chosen, or away by idleness (`idleTimeout`) and back. */
  availability: [AvailabilityChange];
  /** A callback still undelivered after `maxRetries`: keep it yourself if it matters. */
  'callback-failed': [PresenceCallbackBody, Error];
  /** A room's first member joined. */
  'room-occupied': [RoomEvent];
  /** A room's last member left. */
  'room-vacated': [RoomEvent];
  /** One batch of a room's changes (every member, whatever clients may see). */
  'room-change': [RoomChange];
}

const ROOM_EVENTS: readonly string[] = ['room-occupied', 'room-vacated', 'room-change'] satisfies (keyof PresenceEvents)[];
const PRESENCE_EVENTS: readonly string[] = [
  'change',
  'custom-status',
  'availability',
  'callback-failed',
  'room-occupied',
  'room-vacated',
  'room-change',
] satisfies (keyof PresenceEvents)[];

/** A listener for an event that never fires is a typo: refuse it, naming the nearest event. */
function checkEvent(event: unknown, listener: unknown): void {
  if (typeof event !== 'string' || !PRESENCE_EVENTS.includes(event)) {
    const near = typeof event === 'string' ? didYouMean(event, PRESENCE_EVENTS) : undefined;
    throw new TypeError(
      `unknown presence event ${typeof event === 'string' ? JSON.stringify(event) : typeof event}${near ? `; did you mean "${near}"?` : ''} (events: ${PRESENCE_EVENTS.join(', ')})`,
    );
  }
  if (typeof listener !== 'function') throw new TypeError(`the '${event}' listener must be a function; got ${typeof listener}`);
}

/** What `createPresence` returns: mount its router, attach it to Socket.IO, query and listen. */
export class Presence implements HttpService, SocketService {
  /** The resolved, readonly configuration. */
  readonly config: ResolvedConfig;
  /** The transport-free core; adapters talk to it. */
  readonly engine: PresenceEngine;
  /** Counters of this mount (transitions, kicks, callback deliveries), also served by `GET /metrics`. */
  readonly metrics: PresenceMetrics;
  /** The transport-free rooms core; the Socket.IO adapter and the room routes talk to it. */
  readonly rooms: RoomRegistry<SocketRoomConnection>;
  private readonly callbacks: CallbackDelivery | undefined;
  private readonly failureListeners = new Set<(body: PresenceCallbackBody, error: Error) => void>();

  constructor(options?: PresenceOptions) {
    this.config = resolveOptions(options);
    this.engine = new PresenceEngine(this.config);
    this.callbacks = this.config.callback
      ? new CallbackDelivery(this.engine, this.config, (body, error) => {
          for (const listener of this.failureListeners) listener(body, error);
        })
      : undefined;
    this.metrics = new PresenceMetrics(this.engine, () => this.callbacks?.stats);
    this.rooms = createRooms(this.engine, this.config);
  }

  /** An Express router (also a plain Node middleware) serving the query, kick and stats routes; needs `authorize`. */
  router(options?: RouterOptions): PresenceRouter {
    return createPresenceRouter(this, options);
  }

  /**
   * An Express middleware receiving the status-change callback: verifies the signature (with this mount's `callback.secret`
   * unless `options.secret` is given), parses the event, awaits `handler(event, req)` and answers what the sender takes as
   * delivered. See `callbackReceiver` for a receiver without a mount.
   */
  callbackReceiver(handler: CallbackHandler, options: CallbackReceiverOptions = {}): CallbackReceiver {
    if (typeof options !== 'object' || options === null) return callbackReceiver(handler, options);
    const secret = options.secret ?? this.config.callback?.secret;
    return callbackReceiver(handler, { logger: this.config.logger, ...options, ...(secret === undefined ? {} : { secret }) });
  }

  /** Authenticates and tracks every connection of a Socket.IO server or namespace; needs `authenticate`. */
  attach(target: Server | Namespace): this {
    attachPresence(this, target);
    return this;
  }

  /**
   * Resolves once the store is ready: at once for the MemoryStore, after loading for one with `persistence`, when its `init`
   * promise settles for a store that starts asynchronously. Rejects with StoreUnavailableError if the store failed to start.
   * Nothing needs to wait for it (calls made before are held back), but a server can await it before it listens.
   */
  ready(): Promise<void> {
    return this.engine.ready();
  }

  /** The presence of each user, in order, with each device unless `{ detail: false }`. */
  query(userIds: readonly string[], options?: { detail?: boolean }): Promise<UserPresence[]> {
    return this.engine.query(userIds, options);
  }

  /** Kicks every device of a user, or those matching `platform` / `instanceId`; answers who was kicked. */
  kick(userId: string, filter?: { platform?: string; instanceId?: string }): Promise<InstanceRef[]> {
    return this.engine.kick(userId, filter);
  }

  /**
   * Sets (or with null clears) a user's custom status, at most 100 bytes of UTF-8; with `{ ttl }` (ms or '30m', 1 s to
   * 365 days) it is cleared when that runs out, with a `custom-status` event (reason `expired`).
   */
  async setCustomStatus(userId: string, customStatus: string | null, options?: { ttl?: number | string }): Promise<void> {
    return this.engine.setCustomStatus(userId, customStatus, options);
  }

  /**
   * Sets a user's availability for all their devices: `'available'`, `'away'`, `'dnd'` or `'invisible'` (shown to
   * everyone else as Offline, the truth to their own devices, the query routes and the callback). Resolves with the
   * change, or null when nothing changed.
   */
  async setAvailability(userId: string, availability: Availability): Promise<AvailabilityChange | null> {
    return this.engine.setAvailability(userId, availability);
  }

  /**
   * Joins a connected socket of an attached namespace to a room, without `canJoin`; `meta` (JSON,
   * at most 1024 bytes) omitted keeps the member's current meta. The client is sent the room as a
   * `presence:room` with `members`. Resolves with the room as the join found it.
   */
  join(socket: unknown, room: string, meta?: unknown): Promise<RoomSnapshot> {
    try {
      const rooms = socketRoomsOf(this);
      if (!rooms) throw new TypeError('join() needs presence.attach(io) first');
      return rooms.serverJoin(socket, room, meta);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Takes a socket out of a room (nothing if it is not in it). */
  leave(socket: unknown, room: string): Promise<void> {
    try {
      const rooms = socketRoomsOf(this);
      if (!rooms) throw new TypeError('leave() needs presence.attach(io) first');
      rooms.serverLeave(socket, room);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** One room as the backend sees it: `count()` (O(1)) and `members({ limit, cursor })` pages. Throws a TypeError for a bad name. */
  room(name: string): RoomView {
    const room = checkRoomName(name);
    if (!roomsSupported(this.engine)) throw new Error(roomsUnsupportedMessage(this.engine));
    const rooms = this.rooms;
    // Shared across processes (Redis mode): the store answers, the same on every process.
    const shared = rooms.shared;
    return {
      count: () => (shared ? shared.count(room) : Promise.resolve(rooms.count(room))),
      members: (options = {}) => {
        try {
          if (typeof options !== 'object' || options === null) throw new TypeError('members() takes { limit?, cursor? }');
          const limit = checkPageLimit(options.limit);
          const after = parseCursor(options.cursor);
          return shared ? shared.page(room, limit, after) : Promise.resolve(rooms.page(room, limit, after));
        } catch (error) {
          return Promise.reject(error);
        }
      },
    };
  }

  /** Counts of users and devices by status and platform. */
  stats(): Promise<PresenceStats> {
    return this.engine.stats();
  }

  on<K extends keyof PresenceEvents>(event: K, listener: (...args: PresenceEvents[K]) => void): this {
    checkEvent(event, listener);
    if (event === 'callback-failed') this.failureListeners.add(listener as (body: PresenceCallbackBody, error: Error) => void);
    else if (ROOM_EVENTS.includes(event)) this.rooms.on(event as 'room-change', listener as never);
    else this.engine.on(event as 'change', listener as never);
    return this;
  }

  off<K extends keyof PresenceEvents>(event: K, listener: (...args: PresenceEvents[K]) => void): this {
    checkEvent(event, listener);
    if (event === 'callback-failed') this.failureListeners.delete(listener as (body: PresenceCallbackBody, error: Error) => void);
    else if (ROOM_EVENTS.includes(event)) this.rooms.off(event as 'room-change', listener as never);
    else this.engine.off(event as 'change', listener as never);
    return this;
  }

  /**
   * Stops every timer, waits for logins the store is taking, hands this process's devices over
   * (Redis mode, `handoverGrace` above 0) or ends them, releases the store once every change is
   * written and emitted, then flushes the callback queue within its deadline: every change made
   * before it resolves is delivered or handed to `callback-failed`.
   */
  async close(): Promise<void> {
    // All three begin before the first await: a login arriving once close() was called is refused at once.
    // Shared rooms stop first, so the ends close() makes are not published as leaves (the others reap after the handover).
    const shared = this.rooms.shared?.close();
    this.rooms.close();
    const engine = this.engine.close();
    await shared;
    await engine;
    await this.callbacks?.close();
    this.metrics.close();
  }
}

/** Creates one presence mount; throws a TypeError naming any invalid option. */
export function createPresence(options?: PresenceOptions): Presence {
  return new Presence(options);
}
