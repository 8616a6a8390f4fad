// The presence client over an injected socket.io-client `io`: session resume, heartbeats, visibility, subscriptions.

import type { io as socketIo, ManagerOptions, Socket, SocketOptions } from 'socket.io-client';
import type { Platform } from '../core/platforms.js';
import type { Availability } from '../core/availability.js';
import type {
  AnswerErrorCode,
  ChangedPayload,
  ClientToServerEvents,
  HandshakeErrorCode,
  KickedPayload,
  ServerToClientEvents,
  SessionPayload,
  SubscribeResult,
} from '../socket/protocol.js';
import { TypedEmitter } from './emitter.js';
import type { JsonValue, RoomMessage, RoomSnapshot } from '../rooms/types.js';
import { PresenceRoom, type RoomOwner } from './room.js';

/** socket.io-client's `io` function: the package's export, or the page's global from `/socket.io/socket.io.js`. */
export type IoFactory = typeof socketIo;

/** A platform name the server accepts (`iOS` is `iPhone`). */
export type PresenceClientPlatform = Platform | 'iOS';

/** Where the client keeps its instance and session ids between page loads: `localStorage`, `sessionStorage`, or your own. */
export interface PresenceStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** What the app adds to the handshake for its `authenticate` (a token, say), or a function answering it before each (re)connection. */
export type PresenceClientAuth = Record<string, unknown> | (() => Record<string, unknown> | Promise<Record<string, unknown>>);

export interface PresenceClientOptions {
  /**
   * The server and namespace, such as `https://chat.example.com/presence`. Defaults to the page's origin, namespace `/`;
   * required (and absolute) outside a browser.
   */
  url?: string;
  /** This device's platform. Required. */
  platform: PresenceClientPlatform;
  /** Handshake fields for the server's `authenticate`. Defaults to none. */
  auth?: PresenceClientAuth;
  /** This device's id; the server makes one up when missing (and the client keeps it in `storage`). Defaults to the stored one. */
  instanceId?: string;
  /** The app's version string, shown in queries. Defaults to none. */
  version?: string;
  /** Keeps `instanceId` and `sessionId` across page loads. Defaults to none (kept in memory only). */
  storage?: PresenceStorage;
  /** The storage key. Defaults to `'express-presence'`. */
  storageKey?: string;
  /** socket.io-client's `io`. Defaults to the one imported from `socket.io-client` (`express-presence/client`). */
  io?: IoFactory;
  /** More socket.io-client options (transports, path, reconnection delays...); `auth` and `autoConnect` are the client's. Defaults to none. */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
  /** In a browser, report the page's visibility as background / foreground. Defaults to true. */
  trackVisibility?: boolean;
  /**
   * In a browser, report user input (keys, pointer, touch, wheel) and the page becoming visible as `presence:activity`, so
   * the server's `idleTimeout` shows the user `away` only when they really are. Defaults to true.
   */
  trackActivity?: boolean;
  /** The most often activity is sent, in ms: input in between is covered by the last report. Defaults to 15000. */
  activityThrottle?: number;
  /** Connect at once. Defaults to true. */
  autoConnect?: boolean;
  /** How long a request (subscribe, setStatus, logout) waits for its answer, in ms. Defaults to 10000. */
  requestTimeout?: number;
}

/**
 * Why the client reports a failure: the server's code, or one of the client's own: `REFUSED` (the app's own Socket.IO
 * middleware refused the handshake, `next(new Error(...))`, without a code), `TIMEOUT`, `CLOSED`, and `BAD_OPTIONS`
 * (on the TypeError the constructor throws).
 */
export type PresenceClientErrorCode = HandshakeErrorCode | AnswerErrorCode | 'REFUSED' | 'TIMEOUT' | 'CLOSED' | 'BAD_OPTIONS';

/** A refused handshake (`connect_error`) or a refused request. */
export class PresenceClientError extends Error {
  constructor(
    readonly code: PresenceClientErrorCode,
    message: string,
    /** The refusal's `err.data` as the server sent it (an app middleware's own data, say), when there is one. */
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'PresenceClientError';
  }
}

/** What the constructor throws for bad options: a TypeError naming the option, with `code: 'BAD_OPTIONS'`. */
function badOptions(message: string): TypeError & { code: 'BAD_OPTIONS' } {
  return Object.assign(new TypeError(message), { code: 'BAD_OPTIONS' as const });
}

/** A URL socket.io-client can reach without a page to resolve it against. */
const ABSOLUTE_URL = /^(https?|wss?):\/\//i;

/** Only a page (with an origin) can resolve a missing or relative `url`. */
function inPage(): boolean {
  const location = (globalThis as { location?: { host?: unknown } }).location;
  return typeof location === 'object' && location !== null && typeof location.host === 'string' && location.host !== '';
}

export interface PresenceClientEvents {
  /** Logged in (or resumed) on a connection: after the first connect and each reconnect. */
  session: [SessionPayload];
  /** This device was displaced or kicked by an admin; the client stops reconnecting. */
  kicked: [KickedPayload];
  /** A watched user's status or custom status changed. */
  changed: [ChangedPayload];
  /**
   * The server refused the handshake (presence's code, or `REFUSED` with the message of the app's own middleware), or a
   * resubscription failed. After any refusal but `SERVER_ERROR` (retried with backoff) the client stops until `connect()`.
   */
  error: [PresenceClientError];
  /** The connection is gone, with socket.io-client's reason; it reconnects by itself unless stopped. */
  disconnect: [reason: string];
}

export type ChangeListener = (change: ChangedPayload) => void;

interface VisibilityDocument {
  readonly visibilityState: string;
  addEventListener(type: string, listener: () => void, options?: { passive?: boolean; capture?: boolean }): void;
  removeEventListener(type: string, listener: () => void, options?: { capture?: boolean }): void;
}

/** The input that counts as user activity. */
const ACTIVITY_EVENTS = ['keydown', 'pointerdown', 'pointermove', 'touchstart', 'wheel'] as const;

interface StoredIds {
  instanceId?: string;
  sessionId?: string;
}

type Answered = { ok: true } & Record<string, unknown>;
type LooseEmitter = { emit(event: string, ...args: unknown[]): unknown };

type RequestEvent =
  | 'presence:subscribe'
  | 'presence:unsubscribe'
  | 'presence:set-status'
  | 'presence:set-availability'
  | 'presence:logout'
  | 'presence:join'
  | 'presence:leave'
  | 'presence:room-update';

const noop = (): void => {};

function errorCode(data: unknown): PresenceClientErrorCode | undefined {
  const code = typeof data === 'object' && data !== null ? (data as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? (code as PresenceClientErrorCode) : undefined;
}

/**
 * One device's presence connection. Resumes its session on every reconnect, sends heartbeats at
 * the server's interval, reports background / foreground, re-subscribes after reconnects, and
 * stops for good once kicked, revoked, logged out or closed.
 */
export class PresenceClient extends TypedEmitter<PresenceClientEvents> implements RoomOwner {
  /** The underlying socket.io-client socket, for the app's own events. */
  readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  private current: SessionPayload | undefined;
  private ids: StoredIds;
  private inBackground = false;
  private stopped = false;
  /** The server dropped the connection without a kick (e.g. a background or heartbeat timeout): coming back to the foreground reconnects. */
  private droppedByServer = false;
  /** Delay before retrying a login the server could not take (SERVER_ERROR, e.g. its store is away); doubles to 30 s. */
  private retryDelay = 1000;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private resubscribe = false;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private readonly watchers = new Map<string, Set<ChangeListener | typeof noop>>();
  /** The rooms this client joined, rejoined after each reconnect. */
  private readonly rooms = new Map<string, PresenceRoom>();
  private rejoin = false;
  private readonly requestTimeout: number;
  private readonly storage: PresenceStorage | undefined;
  private readonly storageKey: string;
  private readonly stopWatchingVisibility: () => void;
  private readonly stopWatchingActivity: () => void;
  private readonly activityThrottle: number;
  /** When activity was last sent (ms, performance-free Date.now()); -Infinity before the first. */
  private activitySentAt = -Infinity;

  constructor(private readonly options: PresenceClientOptions & { io: IoFactory }) {
    super();
    if (typeof options !== 'object' || options === null) throw badOptions('createPresenceClient takes an options object { platform, url?, auth?, ... }');
    if (typeof options.platform !== 'string' || options.platform.length === 0)
      throw badOptions('platform must be a platform name such as "Web", "Android" or "iPhone"');
    if (typeof options.io !== 'function') throw badOptions("io must be socket.io-client's io function");
    if (options.url !== undefined && typeof options.url !== 'string')
      throw badOptions(`url must be a string such as "https://chat.example.com"; got ${typeof options.url}`);
    // Without a page, socket.io-client would try "undefined//undefined" and retry it forever without a word.
    if (!inPage() && (options.url === undefined || !ABSOLUTE_URL.test(options.url))) {
      throw badOptions(
        `url must be an absolute URL such as "http://localhost:3000" (plus the namespace, if any) outside a browser; got ${options.url === undefined ? 'none' : JSON.stringify(options.url)}`,
      );
    }
    if (options.activityThrottle !== undefined && (typeof options.activityThrottle !== 'number' || !(options.activityThrottle >= 0))) {
      throw badOptions(`activityThrottle must be a number of milliseconds (0 or more); got ${JSON.stringify(options.activityThrottle)}`);
    }
    this.activityThrottle = options.activityThrottle ?? 15_000;
    this.requestTimeout = options.requestTimeout ?? 10_000;
    this.storage = options.storage;
    this.storageKey = options.storageKey ?? 'express-presence';
    this.ids = this.load();
    if (options.instanceId !== undefined) this.ids.instanceId = options.instanceId;

    const socketOptions: Partial<ManagerOptions & SocketOptions> = {
      ...options.socketOptions,
      autoConnect: false,
      // Read before each connection attempt, so a reconnect resumes the latest session.
      auth: (send: (data: object) => void) => {
        this.handshakeAuth().then(send, (error: unknown) => {
          this.emit('error', new PresenceClientError('UNAUTHENTICATED', `the auth option failed: ${String(error)}`));
          this.socket.disconnect();
        });
      },
    };
    this.socket = (options.url === undefined ? options.io(socketOptions) : options.io(options.url, socketOptions)) as Socket<
      ServerToClientEvents,
      ClientToServerEvents
    >;
    this.listen();
    this.stopWatchingVisibility = options.trackVisibility === false ? noop : this.watchVisibility();
    this.stopWatchingActivity = options.trackActivity === false ? noop : this.watchActivity();
    if (options.autoConnect !== false) this.connect();
  }

  /** The session of the current connection, once told. */
  get session(): SessionPayload | undefined {
    return this.current;
  }

  get instanceId(): string | undefined {
    return this.ids.instanceId;
  }

  get sessionId(): string | undefined {
    return this.ids.sessionId;
  }

  /** Connects (again, after a kick, revocation, logout or close: then as a fresh login). */
  connect(): this {
    this.stopped = false;
    this.droppedByServer = false;
    this.socket.connect();
    return this;
  }

  /** The app went to the background (sent at once, and again after each reconnect while it lasts). */
  background(): void {
    if (this.inBackground) return;
    this.inBackground = true;
    if (this.socket.connected) this.send('presence:background');
  }

  foreground(): void {
    if (!this.inBackground) return;
    this.inBackground = false;
    if (this.socket.connected) this.send('presence:foreground');
    else if (this.droppedByServer) this.connect();
  }

  /**
   * Watches users; `onChange` is called with each change of theirs (the `changed` event fires
   * too). Resolves with their presence now and the ids the server's visibility rule refused.
   */
  async subscribe(userIds: readonly string[], onChange?: ChangeListener): Promise<SubscribeResult> {
    const listener = onChange ?? noop;
    for (const userId of userIds) {
      let set = this.watchers.get(userId);
      if (!set) this.watchers.set(userId, (set = new Set()));
      set.add(listener);
    }
    try {
      const answer = (await this.request('presence:subscribe', { userIds: [...userIds] })) as unknown as SubscribeResult;
      for (const userId of answer.denied) this.forget(userId, listener);
      return { users: answer.users, denied: answer.denied };
    } catch (error) {
      for (const userId of userIds) this.forget(userId, listener);
      throw error;
    }
  }

  /** Stops `onChange` (or every listener, without one) watching these users. */
  async unsubscribe(userIds: readonly string[], onChange?: ChangeListener): Promise<void> {
    const released: string[] = [];
    for (const userId of userIds) {
      if (this.forget(userId, onChange)) released.push(userId);
    }
    if (released.length > 0 && this.socket.connected) await this.request('presence:unsubscribe', { userIds: released });
  }

  /** Sets this user's custom status (at most 100 bytes of UTF-8); null or '' clears it; with `ttl` (ms or '30m') it clears itself. */
  async setStatus(customStatus: string | null, options: { ttl?: number | string } = {}): Promise<void> {
    await this.request('presence:set-status', options.ttl === undefined ? { customStatus } : { customStatus, ttl: options.ttl });
  }

  /** Sets this user's availability on all their devices: `'available'`, `'away'`, `'dnd'` or `'invisible'`. */
  async setAvailability(availability: Availability): Promise<void> {
    await this.request('presence:set-availability', { availability });
  }

  /**
   * Reports user activity (the server's `idleTimeout` counts from the last one), at most once per `activityThrottle`:
   * calls in between are dropped. The browser's input events call it by themselves unless `trackActivity` is false.
   */
  activity(): void {
    const now = Date.now();
    if (now - this.activitySentAt < this.activityThrottle || !this.socket.connected) return;
    this.activitySentAt = now;
    this.socket.emit('presence:activity');
  }

  /**
   * Joins a room (the server's `canJoin` decides) and resolves with it, live: `members`, `count`,
   * events `change` / `join` / `leave` / `update`, `leave()`, `update(meta)`. After a reconnect the
   * client rejoins it by itself (within the server's reconnect grace, the others see nothing).
   * Joining a room already joined sets its meta and answers the same object.
   */
  async join(room: string, meta?: JsonValue): Promise<PresenceRoom> {
    let joined: PresenceRoom | undefined;
    // The room takes its answer as the answer arrives, not a tick later: a presence:room read right behind it applies to it.
    await this.request('presence:join', meta === undefined ? { room } : { room, meta }, (answer) => {
      joined = this.rooms.get(room);
      if (joined && !joined.left) {
        if (meta !== undefined) joined.meta = meta;
      } else {
        joined = new PresenceRoom(room, meta, this);
        this.rooms.set(room, joined);
      }
      joined.reset(answer as unknown as RoomSnapshot, true);
    });
    return joined as PresenceRoom;
  }

  /** Part of PresenceRoom's `leave()`. */
  async leaveRoom(room: PresenceRoom): Promise<void> {
    room.left = true;
    if (this.rooms.get(room.name) === room) this.rooms.delete(room.name);
    if (this.socket.connected) await this.request('presence:leave', { room: room.name });
  }

  /** Part of PresenceRoom's `update()`. */
  async updateRoom(room: PresenceRoom, meta: JsonValue): Promise<void> {
    await this.request('presence:room-update', { room: room.name, meta });
    room.meta = meta;
  }

  /** Logs this device out: it is gone at once and its session revoked; the client stops. */
  async logout(): Promise<void> {
    try {
      await this.request('presence:logout');
      this.clearSession();
    } finally {
      this.stop();
    }
  }

  /** Closes the connection without logging out (a mobile device goes PushOnline); the session is kept for a later resume. */
  close(): void {
    this.stop();
    this.stopWatchingVisibility();
    this.stopWatchingActivity();
  }

  private listen(): void {
    const socket = this.socket;
    socket.on('presence:session', (session) => {
      this.current = session;
      this.ids = { instanceId: session.instanceId, sessionId: session.sessionId };
      this.save();
      this.startHeartbeats(session.heartbeatInterval);
      this.retryDelay = 1000;
      if (this.inBackground) this.send('presence:background');
      if (this.resubscribe && this.watchers.size > 0) this.resubscribeAll();
      this.resubscribe = false;
      if (this.rejoin) this.rejoinAll();
      this.rejoin = false;
      this.emit('session', session);
    });
    socket.on('presence:kicked', (notice) => {
      // The session is revoked: forget it, and never reconnect with it.
      this.clearSession();
      this.stop();
      this.emit('kicked', notice);
    });
    socket.on('presence:changed', (change) => {
      const set = this.watchers.get(change.userId);
      if (set) {
        for (const listener of [...set]) {
          try {
            listener(change);
          } catch (error) {
            setTimeout(() => {
              throw error;
            }, 0);
          }
        }
      }
      this.emit('changed', change);
    });
    socket.on('presence:room', (message: RoomMessage) => {
      this.rooms.get(message.room)?.apply(message);
    });
    socket.on('connect_error', (error: Error & { data?: unknown }) => {
      // A transport failure leaves the socket active (socket.io-client retries by itself); a refusal by any middleware,
      // presence's or the app's own, ends it: socket.io-client does not retry those.
      if (socket.active) return;
      const code = errorCode(error.data) ?? 'REFUSED';
      if (code === 'SESSION_REVOKED') {
        this.clearSession();
        this.stop();
      } else if (code !== 'SERVER_ERROR') {
        // UNAUTHENTICATED, REFUSED and the like: retrying with the same credentials would be refused again.
        this.stop();
      } else if (!this.stopped) {
        // socket.io-client gives up after a middleware refusal; a server fault is worth retrying.
        if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          if (!this.stopped && !this.socket.connected) this.socket.connect();
        }, this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, 30_000);
      }
      this.emit('error', new PresenceClientError(code, error.message, error.data));
    });
    socket.on('disconnect', (reason) => {
      this.stopHeartbeats();
      this.current = undefined;
      this.resubscribe = true;
      this.rejoin = true;
      // The server ended this socket (kick, logout, server decision): socket.io-client will not reconnect.
      if (reason === 'io server disconnect') {
        this.droppedByServer = !this.stopped;
        this.stopped = true;
      }
      this.emit('disconnect', reason);
    });
  }

  private async handshakeAuth(): Promise<Record<string, unknown>> {
    const given = this.options.auth;
    const extra = typeof given === 'function' ? await given() : given;
    const auth: Record<string, unknown> = { ...extra, platform: this.options.platform };
    if (this.ids.instanceId !== undefined) auth.instanceId = this.ids.instanceId;
    if (this.ids.sessionId !== undefined) auth.sessionId = this.ids.sessionId;
    if (this.options.version !== undefined) auth.version = this.options.version;
    return auth;
  }

  private startHeartbeats(interval: number): void {
    this.stopHeartbeats();
    if (!(interval > 0)) return;
    this.heartbeatTimer = setInterval(() => {
      if (this.socket.connected) this.send('presence:heartbeat');
    }, interval);
  }

  private stopHeartbeats(): void {
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private stop(): void {
    this.stopped = true;
    this.droppedByServer = false;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.stopHeartbeats();
    this.socket.disconnect();
  }

  private resubscribeAll(): void {
    const userIds = [...this.watchers.keys()];
    this.request('presence:subscribe', { userIds }).then(
      (answer) => {
        const result = answer as unknown as SubscribeResult;
        for (const userId of result.denied) this.forget(userId);
        // Whatever changed while the connection was down is told now.
        for (const user of result.users) {
          for (const listener of [...(this.watchers.get(user.userId) ?? [])]) listener(user);
          this.emit('changed', user);
        }
      },
      (error: unknown) => {
        if (error instanceof PresenceClientError) this.emit('error', error);
      },
    );
  }

  /** After a reconnect: each room is joined again with its meta; what changed meanwhile is told as a change. */
  private rejoinAll(): void {
    for (const room of this.rooms.values()) {
      const payload = room.meta === undefined ? { room: room.name } : { room: room.name, meta: room.meta };
      this.request('presence:join', payload, (answer) => {
        if (!room.left) room.reset(answer as unknown as RoomSnapshot, false);
      }).then(
        () => undefined,
        (error: unknown) => {
          if (error instanceof PresenceClientError) this.emit('error', error);
        },
      );
    }
  }

  /** Removes a listener (or all) of a user; true if nobody watches the user any more. */
  private forget(userId: string, listener?: ChangeListener): boolean {
    const set = this.watchers.get(userId);
    if (!set) return false;
    if (listener) set.delete(listener);
    else set.clear();
    if (set.size > 0) return false;
    this.watchers.delete(userId);
    return true;
  }

  /** Fire and forget: no answer asked for. */
  private send(event: 'presence:heartbeat' | 'presence:background' | 'presence:foreground' | 'presence:activity'): void {
    this.socket.emit(event);
  }

  /** `onOk` runs in the acknowledgement itself, before any later message of the socket is handled. */
  private request(event: RequestEvent, payload?: object, onOk?: (answer: Answered) => void): Promise<Answered> {
    if (this.stopped && event !== 'presence:logout')
      return Promise.reject(new PresenceClientError('CLOSED', 'the presence client is stopped; call connect() first'));
    return new Promise((resolve, reject) => {
      const onAnswer = (error: Error | null, answer: unknown): void => {
        if (error) return reject(new PresenceClientError('TIMEOUT', `${event} got no answer within ${this.requestTimeout} ms`));
        const result = answer as { ok?: unknown; code?: unknown; message?: unknown } | undefined;
        if (result?.ok === true) {
          onOk?.(result as Answered);
          return resolve(result as Answered);
        }
        reject(new PresenceClientError(errorCode(result) ?? 'SERVER_ERROR', typeof result?.message === 'string' ? result.message : `${event} failed`));
      };
      const emitter = this.socket.timeout(this.requestTimeout) as unknown as LooseEmitter;
      if (payload === undefined) emitter.emit(event, onAnswer);
      else emitter.emit(event, payload, onAnswer);
    });
  }

  private watchVisibility(): () => void {
    const doc = (globalThis as { document?: VisibilityDocument }).document;
    if (!doc || typeof doc.addEventListener !== 'function') return noop;
    const onChange = (): void => {
      if (doc.visibilityState === 'hidden') this.background();
      else this.foreground();
    };
    this.inBackground = doc.visibilityState === 'hidden';
    doc.addEventListener('visibilitychange', onChange);
    return () => doc.removeEventListener('visibilitychange', onChange);
  }

  /** Input and the page becoming visible are activity (throttled by activity()). */
  private watchActivity(): () => void {
    const doc = (globalThis as { document?: VisibilityDocument }).document;
    if (!doc || typeof doc.addEventListener !== 'function') return noop;
    const onInput = (): void => this.activity();
    const onVisibility = (): void => {
      if (doc.visibilityState === 'visible') this.activity();
    };
    for (const type of ACTIVITY_EVENTS) doc.addEventListener(type, onInput, { passive: true, capture: true });
    doc.addEventListener('visibilitychange', onVisibility);
    return () => {
      for (const type of ACTIVITY_EVENTS) doc.removeEventListener(type, onInput, { capture: true });
      doc.removeEventListener('visibilitychange', onVisibility);
    };
  }

  private load(): StoredIds {
    try {
      const raw = this.storage?.getItem(this.storageKey);
      const parsed: unknown = raw ? JSON.parse(raw) : undefined;
      if (typeof parsed !== 'object' || parsed === null) return {};
      const { instanceId, sessionId } = parsed as Record<string, unknown>;
      return { instanceId: typeof instanceId === 'string' ? instanceId : undefined, sessionId: typeof sessionId === 'string' ? sessionId : undefined };
    } catch {
      return {}; // storage unavailable (private mode) or garbled: start afresh
    }
  }

  private save(): void {
    try {
      this.storage?.setItem(this.storageKey, JSON.stringify(this.ids));
    } catch {
      // storage full or unavailable: the ids live in memory only
    }
  }

  private clearSession(): void {
    this.ids = { instanceId: this.ids.instanceId };
    this.save();
  }
}
