// The public options of createPresence and their resolution, once, into a readonly configuration.

import type { IncomingMessage } from 'node:http';

/** The request `authorize` gets: Express's (typed structurally, so no @types/express is needed). */
export interface AuthorizeRequest extends IncomingMessage {
  /** A request header (Express's `req.get`). */
  get(name: string): string | undefined;
  /** The client address as Express reports it. */
  ip?: string | undefined;
  /** The parsed query string. */
  query?: unknown;
}
import type { Socket } from 'socket.io';
import type { Clock } from './core/clock.js';
import { systemClock } from './core/clock.js';
import { PLATFORM_CLASSES, type Platform, type PlatformClass } from './core/platforms.js';
import type { Logger, LoginPolicy } from './core/types.js';
import type { LastSeenVisibility } from './core/availability.js';
import { MULTI_PROCESS_METHODS, STORE_CORE_METHODS, type PresenceStore } from './core/store.js';
import type { EngineConfig } from './engine/config.js';

export type { Logger } from './core/types.js';
import { MemoryStore } from './store/memory-store.js';
import { didYouMean, refuseUnknownKeys } from './util/did-you-mean.js';

/** A duration: milliseconds, or a string with a unit such as `'500ms'`, `'30s'`, `'5m'`, `'2h'`, `'7d'`. */
export type Duration = number | string;

/** A duration in milliseconds, either one for every platform class or per class (missing classes keep their default). */
export type PerClass<T> = T | Partial<Record<PlatformClass, T>>;

/** The per-connection token bucket for client presence events (every event but `presence:heartbeat`). */
export interface EventRateLimit {
  /** Tokens added per second. */
  perSecond: number;
  /** The bucket's size: events a connection may send at once after a quiet spell. */
  burst: number;
}

/** What the Socket.IO handshake looks like to `authenticate`. */
export interface HandshakeLike {
  auth: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, unknown>;
  address: string;
}

/** What `authenticate` answers: who the handshake belongs to, or `null`/`undefined`/`false` to refuse it with `UNAUTHENTICATED`. */
export type AuthenticateResult = { userId: string } | null | undefined | false;

/**
 * Who the handshake belongs to. The socket comes too, so an identity the app's own `io.use()` already checked (say
 * `socket.data.user`) is reused rather than checked twice; the parameter is checked bivariantly, so a socket typed with the
 * app's own event maps and `SocketData` fits.
 */
export type Authenticate = {
  check(handshake: HandshakeLike, socket: Socket): AuthenticateResult | Promise<AuthenticateResult>;
}['check'];

/** What presence puts on `socket.data.presence` once the device is logged in, for the app's own handlers. */
export interface PresenceSocketData {
  userId: string;
  instanceId: string;
  sessionId: string;
  platform: Platform;
}

/**
 * May this HTTP request use the router? Express hands the router its own request (with `req.get()`, `req.ip`...), so a
 * function typed `(req: express.Request) => boolean` fits: the parameter is checked bivariantly (a method's parameter, as
 * in `{ check(req) }['check']`), since the router passes Express's request where `AuthorizeRequest` only names the part it needs.
 */
export type Authorize<Request = AuthorizeRequest> = { check(req: Request): boolean | Promise<boolean> }['check'];

/** May `viewerId` subscribe to the status of `targetId`? */
export type CanSee = (viewerId: string, targetId: string) => boolean | Promise<boolean>;

/** How much of `targetId`'s last seen `viewerId` is shown: `'exact'`, `'approximate'` (a bucket, no time) or `'hidden'`. */
export type LastSeenVisibilityRule = (viewerId: string, targetId: string) => LastSeenVisibility | Promise<LastSeenVisibility>;

/** The users a user's connections are subscribed to on connect (their contacts). */
export type Contacts = (userId: string) => readonly string[] | Promise<readonly string[]>;

/** May `userId` join `room` from the client (`presence:join`) with this `meta`? */
export type CanJoin = (userId: string, room: string, meta: unknown) => boolean | Promise<boolean>;

export interface CallbackOptions {
  /** The receiver's URL (http or https). Required. */
  url: string;
  /** Signs each body: header `X-Presence-Signature: sha256=<hex HMAC-SHA256>`. Defaults to none (unsigned). */
  secret?: string;
  /** Per-attempt timeout (ms or a string such as `'5s'`). Defaults to 5000. */
  timeout?: Duration;
  /** Retries after the first attempt before the event is given up as `callback-failed`. Defaults to 8. */
  maxRetries?: number;
  /** First retry delay (ms or a string such as `'250ms'`); doubles with jitter, capped at 30 s. Defaults to 250. */
  backoff?: Duration;
  /** Events waiting for delivery, over all users; beyond it new events are dropped, counted and logged. Defaults to 100000. */
  maxQueue?: number;
  /** Users whose events are delivered at the same time (each user's stay in order). Defaults to 16. */
  concurrency?: number;
  /** Undelivered events kept for one user; one user's backlog beyond it is coalesced, never other users' events dropped. Defaults to 1000. */
  maxQueuePerUser?: number;
}

export interface PresenceOptions {
  /** How many platforms a user may be logged in on at once. Defaults to `'single'`. */
  loginPolicy?: LoginPolicy;
  /** Instances a user may have logged in on one native platform. Defaults to 1. */
  maxInstancesPerPlatform?: number;
  /** Instances a user may have logged in on Web and MiniProgram together. Defaults to 1. */
  maxWebInstances?: number;
  /** The heartbeat interval told to clients, in ms (capped at half the class's heartbeat timeout). Defaults to 120000. */
  heartbeatInterval?: Duration;
  /** No traffic for this long ends a connection. Defaults to 400000 for mobile and desktop, 60000 for web and miniProgram. */
  heartbeatTimeout?: PerClass<Duration>;
  /** A device left in background this long counts as a closed connection; 0 = never. Defaults to 30000 for miniProgram, 0 for the others. */
  backgroundTimeout?: PerClass<Duration>;
  /** How long a PushOnline device stays logged in without a new login. Defaults to 604800000 (7 days). */
  pushOnlineTtl?: Duration;
  /** How long a closed connection's transition waits for the same instance to reconnect. Defaults to 0. */
  reconnectGrace?: PerClass<Duration>;
  /** Identifies the user of a Socket.IO handshake, `(handshake, socket) => ({ userId }) | null`. Required by `attach()`. Defaults to none. */
  authenticate?: Authenticate;
  /** Admits HTTP requests to the router. Required by `router()`. Defaults to none. */
  authorize?: Authorize;
  /** The status-change callback. Defaults to none. */
  callback?: CallbackOptions;
  /** Users one connection may watch. Defaults to 1000. */
  maxSubscriptions?: number;
  /** Visibility rule for subscriptions. Defaults to everyone may see everyone. */
  canSee?: CanSee;
  /** Where presence lives. Defaults to `new MemoryStore()`. */
  store?: PresenceStore;
  /** The largest HTTP body the router accepts, in bytes or as `'500kb'`, `'1mb'`. Defaults to `'1mb'`. */
  bodyLimit?: number | string;
  /**
   * In Redis mode, how long after `close()` this process's devices wait to be resumed on another process before they are
   * ended as closed connections (the class's reconnect grace if longer); 0 ends them in `close()` itself. Defaults to 10000.
   */
  handoverGrace?: Duration;
  /** The longest a request, query or login waits on the store before it is refused (503, `SERVER_ERROR`). Defaults to 2000. */
  storeTimeout?: Duration;
  /** Live connections one user may hold (all devices and tabs); one more is refused with `TOO_MANY_CONNECTIONS`. Defaults to 50. */
  maxConnectionsPerUser?: number;
  /** Watched users summed over all of one user's connections (contacts included). Defaults to 20000. */
  maxSubscriptionsPerUser?: number;
  /** Token bucket per connection for client presence events (heartbeats excepted); `false` turns it off. Defaults to `{ perSecond: 20, burst: 40 }`. */
  eventRateLimit?: EventRateLimit | false;
  /** How long an admin route waits for a request body to arrive before answering 408. Defaults to 10000. */
  bodyTimeout?: Duration;
  /** May a user join a room from the client (`presence:join`)? A throw or a rejection refuses. Defaults to none: client joins are refused (`presence.join()` on the server needs no check). */
  canJoin?: CanJoin;
  /** Members listed in a join answer and in `presence:room` diffs; above it they carry the count only. Defaults to 1000. */
  roomMemberLimit?: number;
  /** The shortest time between two `presence:room` messages of one room (ms or a string such as `'50ms'`); changes meanwhile are coalesced. Defaults to 50. */
  roomBatchInterval?: Duration;
  /** Rooms one connection may be in at once; one more join is refused with `TOO_MANY_ROOMS`. Defaults to 100. */
  maxRoomsPerConnection?: number;
  /**
   * A user none of whose connected devices reported activity (`presence:activity`; a login counts) for this long is shown
   * `away` with `idleSince`, and `available` again on the next activity; never over a chosen `dnd` or `invisible`. Per
   * class (a device of a class with 0 never goes idle). Defaults to 0 (off).
   */
  idleTimeout?: PerClass<Duration>;
  /**
   * How much of a user's last seen each viewer is shown (may be async): `'exact'`, `'approximate'` (`lastSeen: null` and a
   * `lastSeenApprox` bucket) or `'hidden'`. One that throws or answers anything else hides it (logged once). Defaults to
   * `'exact'` for everyone.
   */
  lastSeenVisibility?: LastSeenVisibilityRule;
  /** A user's contacts (may be async): each new connection is subscribed to them and gets their snapshot in `presence:session`. Defaults to none. */
  contacts?: Contacts;
  /** Warnings and errors. Defaults to `console`. */
  logger?: Logger;
  /** The time source; pass a `ManualClock` in tests. Defaults to the system clock. */
  clock?: Clock;
}

/** The callback options, fully defaulted, durations in ms. */
export type ResolvedCallback = Readonly<
  Required<Omit<CallbackOptions, 'secret' | 'timeout' | 'backoff'>> & { secret: string | undefined; timeout: number; backoff: number }
>;

/** The fully-defaulted configuration every part of a mount reads; the engine takes the part it needs (EngineConfig). */
export interface ResolvedConfig extends EngineConfig {
  readonly loginPolicy: LoginPolicy;
  readonly maxInstancesPerPlatform: number;
  readonly maxWebInstances: number;
  readonly heartbeatInterval: number;
  readonly heartbeatTimeout: Readonly<Record<PlatformClass, number>>;
  readonly backgroundTimeout: Readonly<Record<PlatformClass, number>>;
  readonly pushOnlineTtl: number;
  readonly reconnectGrace: Readonly<Record<PlatformClass, number>>;
  readonly authenticate: Authenticate | undefined;
  readonly authorize: Authorize | undefined;
  readonly callback: ResolvedCallback | undefined;
  readonly maxSubscriptions: number;
  readonly canSee: CanSee | undefined;
  readonly store: PresenceStore;
  readonly bodyLimit: number;
  readonly handoverGrace: number;
  readonly storeTimeout: number;
  readonly maxConnectionsPerUser: number;
  readonly maxSubscriptionsPerUser: number;
  readonly eventRateLimit: Readonly<EventRateLimit> | false;
  readonly bodyTimeout: number;
  readonly canJoin: CanJoin | undefined;
  readonly roomMemberLimit: number;
  readonly roomBatchInterval: number;
  readonly maxRoomsPerConnection: number;
  readonly idleTimeout: Readonly<Record<PlatformClass, number>>;
  readonly lastSeenVisibility: LastSeenVisibilityRule | undefined;
  readonly contacts: Contacts | undefined;
  readonly logger: Logger;
  readonly clock: Clock;
}

export const LOGIN_POLICIES: readonly LoginPolicy[] = ['single', 'dual', 'triple', 'multi'];

const DEFAULT_HEARTBEAT_TIMEOUT: Record<PlatformClass, number> = { mobile: 400_000, desktop: 400_000, web: 60_000, miniProgram: 60_000 };
const DEFAULT_BACKGROUND_TIMEOUT: Record<PlatformClass, number> = { mobile: 0, desktop: 0, web: 0, miniProgram: 30_000 };
const NO_GRACE: Record<PlatformClass, number> = { mobile: 0, desktop: 0, web: 0, miniProgram: 0 };

/** Durations above this cannot be timers (setTimeout's limit is about 24.8 days; longer ones are re-armed) and are surely a mistake. */
const MAX_DURATION = 10 * 365 * 24 * 3600 * 1000;

const OPTION_NAMES = [
  'loginPolicy',
  'maxInstancesPerPlatform',
  'maxWebInstances',
  'heartbeatInterval',
  'heartbeatTimeout',
  'backgroundTimeout',
  'pushOnlineTtl',
  'reconnectGrace',
  'authenticate',
  'authorize',
  'callback',
  'maxSubscriptions',
  'canSee',
  'store',
  'bodyLimit',
  'handoverGrace',
  'storeTimeout',
  'maxConnectionsPerUser',
  'maxSubscriptionsPerUser',
  'eventRateLimit',
  'bodyTimeout',
  'canJoin',
  'roomMemberLimit',
  'roomBatchInterval',
  'maxRoomsPerConnection',
  'idleTimeout',
  'lastSeenVisibility',
  'contacts',
  'logger',
  'clock',
] as const satisfies readonly (keyof PresenceOptions)[];

const CALLBACK_NAMES = [
  'url',
  'secret',
  'timeout',
  'maxRetries',
  'backoff',
  'maxQueue',
  'concurrency',
  'maxQueuePerUser',
] as const satisfies readonly (keyof CallbackOptions)[];

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function refuse(name: string, accepts: string, value: unknown, hint = ''): never {
  throw new TypeError(`${name} must be ${accepts}; got ${describe(value)}${hint}`);
}

function integer(name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    refuse(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  msec: 1,
  msecs: 1,
  millisecond: 1,
  milliseconds: 1,
  s: 1000,
  sec: 1000,
  secs: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  mins: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
  w: 604_800_000,
  week: 604_800_000,
  weeks: 604_800_000,
};

/** `'30s'` → 30000; undefined when the string is not a number with a known unit (a bare `'30'` is not: its unit would be a guess). */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)\s*$/i.exec(text);
  const factor = match?.[2] ? UNIT_MS[match[2].toLowerCase()] : undefined;
  if (!match?.[1] || factor === undefined) return undefined;
  return Math.round(Number(match[1]) * factor);
}

/** The floor below which a bare number given to a timeout is surely seconds meant as milliseconds. */
const TIMEOUT_FLOOR = 1000;

/**
 * A duration option: milliseconds or a string with a unit. With `timeout`, a bare number below 1 s is refused with a hint
 * (`heartbeatTimeout: 30` meant 30 s, not 30 ms); the same value written `'30ms'` is taken as meant.
 */
function duration(name: string, value: unknown, fallback: number, allowZero: boolean, timeout = false): number {
  if (value === undefined) return fallback;
  const min = allowZero ? 0 : 1;
  const accepts = `milliseconds (an integer from ${min} to ${MAX_DURATION}) or a string such as "500ms", "30s", "5m", "7d"`;
  if (typeof value === 'string') {
    const ms = parseDuration(value);
    if (ms === undefined || ms < min || ms > MAX_DURATION) refuse(name, accepts, value);
    return ms;
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_DURATION) refuse(name, accepts, value);
  if (timeout && value !== 0 && value < TIMEOUT_FLOOR) {
    refuse(
      name,
      `at least ${TIMEOUT_FLOOR} when given as a bare number of milliseconds`,
      value,
      `; did you mean ${value} s = ${value * 1000}? (write "${value}ms" if you meant milliseconds)`,
    );
  }
  return value;
}

function perClass(name: string, value: unknown, defaults: Record<PlatformClass, number>, allowZero: boolean, timeout = false): Record<PlatformClass, number> {
  if (value === undefined) return { ...defaults };
  if (typeof value === 'number' || typeof value === 'string') {
    const ms = duration(name, value, 0, allowZero, timeout);
    return { mobile: ms, desktop: ms, web: ms, miniProgram: ms };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    refuse(name, `a duration (ms or a string such as "30s") or an object with any of ${PLATFORM_CLASSES.join(', ')}`, value);
  }
  refuseUnknownKeys(name, value, PLATFORM_CLASSES);
  const given = value as Partial<Record<PlatformClass, unknown>>;
  const resolved = { ...defaults };
  for (const cls of PLATFORM_CLASSES) resolved[cls] = duration(`${name}.${cls}`, given[cls], defaults[cls], allowZero, timeout);
  return resolved;
}

function optionalFunction<T>(name: string, value: unknown, signature: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') refuse(name, `a function ${signature}`, value);
  return value as T;
}

/** Parses `'1mb'`, `'500kb'`, `'100b'` or a number of bytes. */
export function parseByteSize(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number') return integer(name, value, fallback, 1);
  if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(value);
    if (match?.[1]) {
      const unit = (match[2] ?? 'b').toLowerCase();
      const factor = unit === 'gb' ? 1024 ** 3 : unit === 'mb' ? 1024 ** 2 : unit === 'kb' ? 1024 : 1;
      const bytes = Math.floor(Number(match[1]) * factor);
      if (bytes >= 1) return bytes;
    }
  }
  return refuse(name, 'a positive number of bytes or a size such as "500kb" or "1mb"', value);
}

function resolveCallback(value: unknown): ResolvedConfig['callback'] {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    refuse('callback', 'an object { url, secret?, timeout?, maxRetries?, backoff? }', value);
  refuseUnknownKeys('callback', value, CALLBACK_NAMES);
  const given = value as Record<string, unknown>;
  let url: URL | undefined;
  try {
    url = typeof given.url === 'string' ? new URL(given.url) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) refuse('callback.url', 'an absolute http:// or https:// URL', given.url);
  if (given.secret !== undefined && (typeof given.secret !== 'string' || given.secret === '')) refuse('callback.secret', 'a non-empty string', given.secret);
  return Object.freeze({
    url: url.href,
    secret: given.secret as string | undefined,
    timeout: duration('callback.timeout', given.timeout, 5000, false, true),
    maxRetries: integer('callback.maxRetries', given.maxRetries, 8, 0, 1000),
    backoff: duration('callback.backoff', given.backoff, 250, false),
    maxQueue: integer('callback.maxQueue', given.maxQueue, 100_000, 1),
    concurrency: integer('callback.concurrency', given.concurrency, 16, 1, 1024),
    maxQueuePerUser: integer('callback.maxQueuePerUser', given.maxQueuePerUser, 1000, 1),
  });
}

function resolveStore(value: unknown): PresenceStore {
  if (value === undefined) return new MemoryStore();
  if (typeof value !== 'object' || value === null) refuse('store', 'a store such as new MemoryStore() or new RedisStore({ client })', value);
  const store = value as Record<string, unknown>;
  const lacking = (methods: readonly string[]) => methods.filter((method) => typeof store[method] !== 'function');
  const missing = lacking(STORE_CORE_METHODS);
  if (missing.length > 0) {
    throw new TypeError(
      `store must implement ${STORE_CORE_METHODS.map((m) => `${m}()`).join(', ')}; the given store lacks ${missing.map((m) => `${m}()`).join(', ')}`,
    );
  }
  const multi = lacking(MULTI_PROCESS_METHODS);
  if (multi.length === 1) {
    const [absent] = multi;
    const present = MULTI_PROCESS_METHODS.find((method) => method !== absent);
    throw new TypeError(`store implements ${present}() but not ${absent}(): a store shared by several processes implements both (docs/STORES.md)`);
  }
  for (const optional of ['init', 'close', 'setAvailability', 'sharedRooms'] as const) {
    const member = store[optional];
    if (member !== undefined && member !== null && typeof member !== 'function') refuse(`store.${optional}`, 'a function or absent', member);
  }
  return value as PresenceStore;
}

function resolveEventRateLimit(value: unknown): Readonly<EventRateLimit> | false {
  if (value === undefined) return Object.freeze({ perSecond: 20, burst: 40 });
  if (value === false) return false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) refuse('eventRateLimit', 'an object { perSecond, burst } or false', value);
  refuseUnknownKeys('eventRateLimit', value, ['perSecond', 'burst']);
  const given = value as Record<string, unknown>;
  const perSecond = given.perSecond === undefined ? 20 : given.perSecond;
  if (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0 || perSecond > 1_000_000) {
    refuse('eventRateLimit.perSecond', 'a number of events per second above 0 and at most 1000000', perSecond);
  }
  return Object.freeze({ perSecond, burst: integer('eventRateLimit.burst', given.burst, Math.max(1, Math.ceil(perSecond * 2)), 1, 1_000_000) });
}

/** At most a minute: a longer batch would hold every room's news back for longer than anyone would wait. */
function roomBatchInterval(value: unknown): number {
  const ms = duration('roomBatchInterval', value, 50, true);
  if (ms > 60_000) refuse('roomBatchInterval', 'at most 60000 ms (a minute)', value);
  return ms;
}

function resolveLogger(value: unknown): Logger {
  if (value === undefined) return console;
  if (typeof value !== 'object' || value === null || typeof (value as Logger).warn !== 'function' || typeof (value as Logger).error !== 'function') {
    refuse('logger', 'an object with warn() and error() methods, such as console', value);
  }
  return value as Logger;
}

function resolveClock(value: unknown): Clock {
  if (value === undefined) return systemClock;
  const clock = value as Partial<Clock> | null;
  if (
    typeof clock !== 'object' ||
    clock === null ||
    typeof clock.now !== 'function' ||
    typeof clock.setTimeout !== 'function' ||
    typeof clock.clearTimeout !== 'function'
  ) {
    refuse('clock', 'an object with now(), setTimeout() and clearTimeout(), such as a ManualClock', value);
  }
  return value as Clock;
}

/** Checks every option and fills in the defaults; throws a TypeError naming the first bad option. */
export function resolveOptions(options: PresenceOptions | undefined = {}): ResolvedConfig {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) refuse('options', 'an object', options);
  refuseUnknownKeys('', options, OPTION_NAMES);
  const given = options as Record<string, unknown>;

  // Only a missing option takes the default: null is a mistake to report, like any other wrong value.
  const policy = given.loginPolicy === undefined ? 'single' : given.loginPolicy;
  if (!LOGIN_POLICIES.includes(policy as LoginPolicy)) {
    const near = typeof policy === 'string' ? didYouMean(policy, LOGIN_POLICIES) : undefined;
    refuse('loginPolicy', `one of ${LOGIN_POLICIES.map((p) => `"${p}"`).join(', ')}`, policy, near ? `; did you mean "${near}"?` : '');
  }

  return Object.freeze({
    loginPolicy: policy as LoginPolicy,
    maxInstancesPerPlatform: integer('maxInstancesPerPlatform', given.maxInstancesPerPlatform, 1, 1, 1000),
    maxWebInstances: integer('maxWebInstances', given.maxWebInstances, 1, 1, 1000),
    heartbeatInterval: duration('heartbeatInterval', given.heartbeatInterval, 120_000, false),
    heartbeatTimeout: Object.freeze(perClass('heartbeatTimeout', given.heartbeatTimeout, DEFAULT_HEARTBEAT_TIMEOUT, false, true)),
    backgroundTimeout: Object.freeze(perClass('backgroundTimeout', given.backgroundTimeout, DEFAULT_BACKGROUND_TIMEOUT, true, true)),
    pushOnlineTtl: duration('pushOnlineTtl', given.pushOnlineTtl, 604_800_000, false),
    reconnectGrace: Object.freeze(perClass('reconnectGrace', given.reconnectGrace, NO_GRACE, true)),
    authenticate: optionalFunction<Authenticate>('authenticate', given.authenticate, '(handshake, socket) => ({ userId }) | null'),
    authorize: optionalFunction<Authorize>('authorize', given.authorize, '(req) => boolean'),
    callback: resolveCallback(given.callback),
    maxSubscriptions: integer('maxSubscriptions', given.maxSubscriptions, 1000, 1, 1_000_000),
    canSee: optionalFunction<CanSee>('canSee', given.canSee, '(viewerId, targetId) => boolean'),
    store: resolveStore(given.store),
    bodyLimit: parseByteSize('bodyLimit', given.bodyLimit, 1024 * 1024),
    handoverGrace: duration('handoverGrace', given.handoverGrace, 10_000, true),
    storeTimeout: duration('storeTimeout', given.storeTimeout, 2000, false, true),
    maxConnectionsPerUser: integer('maxConnectionsPerUser', given.maxConnectionsPerUser, 50, 1, 100_000),
    maxSubscriptionsPerUser: integer('maxSubscriptionsPerUser', given.maxSubscriptionsPerUser, 20_000, 1, 10_000_000),
    eventRateLimit: resolveEventRateLimit(given.eventRateLimit),
    bodyTimeout: duration('bodyTimeout', given.bodyTimeout, 10_000, false, true),
    canJoin: optionalFunction<CanJoin>('canJoin', given.canJoin, '(userId, room, meta) => boolean'),
    roomMemberLimit: integer('roomMemberLimit', given.roomMemberLimit, 1000, 1, 1_000_000),
    roomBatchInterval: roomBatchInterval(given.roomBatchInterval),
    maxRoomsPerConnection: integer('maxRoomsPerConnection', given.maxRoomsPerConnection, 100, 1, 100_000),
    idleTimeout: Object.freeze(perClass('idleTimeout', given.idleTimeout, NO_GRACE, true, true)),
    lastSeenVisibility: optionalFunction<LastSeenVisibilityRule>(
      'lastSeenVisibility',
      given.lastSeenVisibility,
      "(viewerId, targetId) => 'exact' | 'approximate' | 'hidden'",
    ),
    contacts: optionalFunction<Contacts>('contacts', given.contacts, '(userId) => string[]'),
    logger: resolveLogger(given.logger),
    clock: resolveClock(given.clock),
  });
}
