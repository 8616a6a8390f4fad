// Fuzz of every presence client event, one target at a time over one reused connection: each answer checked against a model of the event's checks.

import { expect } from 'chai';
import fc from 'fast-check';
import { PLATFORMS, type Platform, type Presence, type SessionPayload } from '../../lib/index.js';
import { startHarness, type Harness } from '../fixtures/socket-harness.js';
import {
  anyString,
  aroundLength,
  describeLogged,
  fuzzParameters,
  idLike,
  idListAround,
  jsonJunk,
  must,
  objectWithKeys,
  ProcessFaults,
  protoKey,
  prototypeFingerprint,
  RUNS,
  tally,
  timeoutFor,
  type Tally,
} from './common.js';
import { ask, deliver, disconnection, fuzzAuthenticate, Line, serveKeepalive, type Reply } from './socket-line.js';

const MAX_SUBSCRIPTIONS = 1000;
const MAX_ID_LENGTH = 128;
const MAX_STATUS_BYTES = 100;
/** Socket.IO's default maxHttpBufferSize: a bigger message closes the connection before presence sees it. */
const MAX_MESSAGE = 1e6;
const CODES = ['BAD_REQUEST', 'TOO_MANY_SUBSCRIPTIONS', 'NOT_LOGGED_IN', 'SERVER_ERROR', 'FORBIDDEN', 'TOO_MANY_ROOMS'];
/** Rooms one connection may be in here (small, so TOO_MANY_ROOMS is reached). */
const MAX_ROOMS = 6;
const MAX_ROOM_LENGTH = 128;
const MAX_META_BYTES = 1024;
/** Rooms the cases name: a small pool, so join, update and leave meet; canJoin refuses the `deny-` ones. */
const ROOM_POOL = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'deny-1', '__proto__', 'constructor'];
const canJoin = (_userId: string, room: string): boolean => !room.startsWith('deny-');
/** Users the subscriptions name: a small pool, so subscribe and unsubscribe meet. */
const WATCHED = Array.from({ length: 40 }, (_, i) => `w${i}`);
/** One in this many logouts first tries to resume the logged-out session, which must be refused. */
const RESUME_CHECK_EVERY = 10;
const MOBILE: readonly Platform[] = ['Android', 'iPhone', 'iPad'];

type EventName =
  | 'presence:heartbeat'
  | 'presence:background'
  | 'presence:foreground'
  | 'presence:logout'
  | 'presence:subscribe'
  | 'presence:unsubscribe'
  | 'presence:set-status'
  | 'presence:set-availability'
  | 'presence:activity'
  | 'presence:join'
  | 'presence:leave'
  | 'presence:room-update';

interface EventCase {
  /** Arguments after the event name; the payload is the first. */
  args: unknown[];
  /** Emitted without an acknowledgement (then a heartbeat probes the connection). */
  withoutAck: boolean;
}

// ---------------------------------------------------------------- generators

/** Anything a client can put on the wire: any value, binary, hostile JSON, and (rarely) a message over the transport's limit. */
const socketJunk: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 60, arbitrary: fc.anything({ maxDepth: 3 }) },
  { weight: 20, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 60, arbitrary: jsonJunk },
  { weight: 1, arbitrary: fc.integer({ min: 1_100_000, max: 1_300_000 }).map((n) => 'z'.repeat(n)) },
);

/** Extra fields on an otherwise fine object: prototype keys and anything. */
const extras = fc.array(fc.tuple(fc.oneof(protoKey, anyString), jsonJunk), { maxLength: 3 }).map(objectWithKeys);

const noPayload = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom<unknown[]>([], [undefined], [null], [{}]) },
  { weight: 2, arbitrary: extras.map((object) => [object]) },
  { weight: 4, arbitrary: socketJunk.map((junk) => [junk]) },
);

/** A user id list: pool users, ids of every kind, lists around maxSubscriptions, junk in and around it. */
const userIdList: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.constantFrom(...WATCHED), { maxLength: 10 }) },
  { weight: 3, arbitrary: fc.array(fc.oneof(fc.constantFrom(...WATCHED), idLike), { maxLength: 6 }) },
  { weight: 1, arbitrary: idListAround(MAX_SUBSCRIPTIONS) },
  { weight: 2, arbitrary: fc.array(fc.oneof(idLike, socketJunk), { maxLength: 4 }) },
  { weight: 2, arbitrary: socketJunk },
);

const userIdsPayload = fc.oneof(
  { weight: 10, arbitrary: userIdList.map((userIds) => [{ userIds }]) },
  { weight: 1, arbitrary: fc.tuple(userIdList, extras).map(([userIds, more]) => [Object.assign(more, { userIds })]) },
  { weight: 3, arbitrary: noPayload },
);

/** Strings whose UTF-8 size sits around `limit` bytes, in 1- to 4-byte characters. */
const aroundBytes = fc
  .tuple(fc.integer({ min: MAX_STATUS_BYTES - 6, max: MAX_STATUS_BYTES + 6 }), fc.constantFrom('a', 'é', '€', '😀'))
  .map(([bytes, char]) => char.repeat(Math.max(1, Math.round(bytes / Buffer.byteLength(char)))));

const customStatus = fc.oneof(
  { weight: 3, arbitrary: aroundBytes },
  { weight: 2, arbitrary: fc.constantFrom('', 'busy', 'in a meeting', null) },
  { weight: 2, arbitrary: anyString },
  { weight: 1, arbitrary: aroundLength(MAX_STATUS_BYTES) },
  { weight: 2, arbitrary: socketJunk },
);

const statusPayload = fc.oneof(
  { weight: 10, arbitrary: customStatus.map((value) => [{ customStatus: value }]) },
  { weight: 1, arbitrary: fc.tuple(customStatus, extras).map(([value, more]) => [Object.assign(more, { customStatus: value })]) },
  { weight: 3, arbitrary: noPayload },
);

const AVAILABILITIES = ['available', 'away', 'dnd', 'invisible'];
const availability = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...AVAILABILITIES) },
  { weight: 2, arbitrary: fc.constantFrom('Available', 'invisble', 'dnt', '', 'offline', ' away') },
  { weight: 2, arbitrary: socketJunk },
);
const availabilityPayload = fc.oneof(
  { weight: 10, arbitrary: availability.map((value) => [{ availability: value }]) },
  { weight: 1, arbitrary: fc.tuple(availability, extras).map(([value, more]) => [Object.assign(more, { availability: value })]) },
  { weight: 3, arbitrary: noPayload },
);
/** A custom status ttl: in range, out of range, or junk. */
const ttl = fc.oneof(
  fc.integer({ min: 1000, max: 365 * 86_400_000 }),
  fc.constantFrom('30m', '8h', '1s', '2y', '0', 999, 0, -5, 1.5, 366 * 86_400_000),
  socketJunk,
);
const statusWithTtl = fc.tuple(customStatus, ttl).map(([value, given]) => [{ customStatus: value, ttl: given }]);

/** A room name: pool names mostly, any string, names around 128 characters, junk. */
const roomName: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...ROOM_POOL) },
  { weight: 2, arbitrary: anyString },
  { weight: 1, arbitrary: aroundLength(MAX_ROOM_LENGTH) },
  { weight: 2, arbitrary: socketJunk },
);

/** Meta: small JSON, values around 1 KB encoded (in 1- to 4-byte characters), anything. */
const metaValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom({ seat: 1 }, 'writing', 7, true, null, [], { a: [1, { b: 'c' }] }) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.integer({ min: MAX_META_BYTES - 8, max: MAX_META_BYTES + 4 }), fc.constantFrom('a', 'é', '€', '😀', '"'))
      // The string's JSON is its characters plus two quotes (a `"` is escaped to two bytes).
      .map(([bytes, char]) => char.repeat(Math.max(1, Math.round((bytes - 2) / (char === '"' ? 2 : Buffer.byteLength(char)))))),
  },
  { weight: 3, arbitrary: socketJunk },
);

const joinPayload = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({ room: roomName, meta: metaValue }, { requiredKeys: ['room'] }).map((payload) => [payload]),
  },
  { weight: 1, arbitrary: fc.tuple(roomName, metaValue, extras).map(([room, meta, more]) => [Object.assign(more, { room, meta })]) },
  { weight: 3, arbitrary: noPayload },
);

const leavePayload = fc.oneof(
  { weight: 10, arbitrary: roomName.map((room) => [{ room }]) },
  { weight: 1, arbitrary: fc.tuple(roomName, extras).map(([room, more]) => [Object.assign(more, { room })]) },
  { weight: 3, arbitrary: noPayload },
);

const updatePayload = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({ room: roomName, meta: metaValue }, { requiredKeys: ['room'] }).map((payload) => [payload]),
  },
  { weight: 3, arbitrary: noPayload },
);

function caseFor(event: EventName): fc.Arbitrary<EventCase> {
  const payload =
    event === 'presence:subscribe' || event === 'presence:unsubscribe'
      ? userIdsPayload
      : event === 'presence:set-status'
        ? fc.oneof({ weight: 4, arbitrary: statusPayload }, { weight: 1, arbitrary: statusWithTtl })
        : event === 'presence:set-availability'
          ? availabilityPayload
          : event === 'presence:join'
            ? joinPayload
            : event === 'presence:leave'
              ? leavePayload
              : event === 'presence:room-update'
                ? updatePayload
                : noPayload;
  return fc.record({
    // Arguments past the payload, which every event ignores.
    args: fc
      .tuple(payload, fc.oneof({ weight: 9, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(socketJunk, { maxLength: 2 }) }))
      .map(([first, rest]) => (first.length === 0 ? [] : [...first, ...rest])),
    withoutAck: fc.oneof({ weight: 19, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  });
}

// ---------------------------------------------------------------- the model of each event's checks

type Expected =
  | { kind: 'answer'; ok: true; check?: (answer: Record<string, unknown>) => void; then?: 'disconnect' }
  | { kind: 'answer'; ok: false; code: string }
  | { kind: 'closed' };

/** What the model keeps of the connection: the users it watches, and its rooms with the meta (as JSON) its member carries there. */
interface ConnectionModel {
  watching: Set<string>;
  rooms: Map<string, string>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function own(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && Object.prototype.hasOwnProperty.call(value, key) ? (value as Record<string, unknown>)[key] : undefined;
}

/** A ttl: absent or null, whole ms from 1 s to 365 days, or a number with a unit (ms, s, m, h, d) in that range. */
function ttlAccepted(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let ms: number | undefined;
  if (typeof value === 'number') ms = value;
  else if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/i.exec(value);
    if (match) ms = Math.round(Number(match[1]) * (units[match[2]!.toLowerCase()] as number));
  }
  return ms !== undefined && Number.isInteger(ms) && ms >= 1000 && ms <= 365 * 86_400_000;
}

function validId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

const refused = (code: string): Expected => ({ kind: 'answer', ok: false, code });

function validRoom(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ROOM_LENGTH;
}

/** Meta as the contract reads it: absent or null is none; otherwise JSON of at most 1024 bytes. Undefined when refused. */
function metaJson(meta: unknown): string | undefined {
  if (meta === undefined || meta === null) return 'null';
  const json = JSON.stringify(meta) as string | undefined;
  if (json === undefined || Buffer.byteLength(json, 'utf8') > MAX_META_BYTES) return undefined;
  return json;
}

/** Events that take no payload accept none, null or an object (binary included); anything else is BAD_REQUEST. */
function noPayloadAccepted(payload: unknown): boolean {
  return payload === undefined || payload === null || isObject(payload);
}

/** The user ids of a subscribe or unsubscribe, or the refusal. */
function userIdsOf(payload: unknown): string[] | Expected {
  const userIds = own(payload, 'userIds');
  if (!Array.isArray(userIds)) return refused('BAD_REQUEST');
  if (userIds.length > MAX_SUBSCRIPTIONS) return refused('TOO_MANY_SUBSCRIPTIONS');
  if (!userIds.every(validId)) return refused('BAD_REQUEST');
  return userIds as string[];
}

/** The answer the event owes, and what it does to the model. `payload` is as the server receives it. */
function model(event: EventName, hasPayload: boolean, payload: unknown, state: ConnectionModel): Expected {
  const value = hasPayload ? payload : undefined;
  switch (event) {
    case 'presence:heartbeat':
      return noPayloadAccepted(value)
        ? {
            kind: 'answer',
            ok: true,
            check: (answer) => must(typeof answer.serverTime === 'number', 'serverTime is not a number', () => JSON.stringify(answer)),
          }
        : refused('BAD_REQUEST');
    case 'presence:background':
    case 'presence:foreground':
      return noPayloadAccepted(value) ? { kind: 'answer', ok: true } : refused('BAD_REQUEST');
    case 'presence:logout':
      return noPayloadAccepted(value) ? { kind: 'answer', ok: true, then: 'disconnect' } : refused('BAD_REQUEST');
    case 'presence:subscribe': {
      const userIds = userIdsOf(value);
      if (!Array.isArray(userIds)) return userIds;
      const requested = [...new Set(userIds)];
      const fresh = requested.filter((userId) => !state.watching.has(userId));
      if (state.watching.size + fresh.length > MAX_SUBSCRIPTIONS) return refused('TOO_MANY_SUBSCRIPTIONS');
      for (const userId of fresh) state.watching.add(userId);
      return {
        kind: 'answer',
        ok: true,
        check(answer) {
          const users = answer.users as Record<string, unknown>[];
          must(users.length === requested.length && users.every((user, i) => user.userId === requested[i]), 'subscribe answered other users than asked', () =>
            JSON.stringify(answer).slice(0, 300),
          );
          must(Array.isArray(answer.denied) && answer.denied.length === 0, 'subscribe denied users without a canSee', () =>
            JSON.stringify(answer).slice(0, 300),
          );
        },
      };
    }
    case 'presence:unsubscribe': {
      const userIds = userIdsOf(value);
      if (!Array.isArray(userIds)) return userIds;
      for (const userId of userIds) state.watching.delete(userId);
      const watching = state.watching.size;
      return {
        kind: 'answer',
        ok: true,
        check: (answer) => must(answer.watching === watching, `watching ${String(answer.watching)}, the model says ${watching}`, () => ''),
      };
    }
    case 'presence:set-status': {
      if (!isObject(value) || !Object.prototype.hasOwnProperty.call(value, 'customStatus')) return refused('BAD_REQUEST');
      const status = value.customStatus;
      const cleared = status === null || status === '';
      if (!cleared && (typeof status !== 'string' || Buffer.byteLength(status) > MAX_STATUS_BYTES)) return refused('BAD_REQUEST');
      if (!ttlAccepted(own(value, 'ttl'))) return refused('BAD_REQUEST');
      const expected = cleared ? null : status;
      return {
        kind: 'answer',
        ok: true,
        check: (answer) => must(answer.customStatus === expected, 'set-status answered another status', () => JSON.stringify(answer)),
      };
    }
    case 'presence:set-availability': {
      const chosen = own(value, 'availability');
      if (!isObject(value) || !AVAILABILITIES.includes(chosen as string)) return refused('BAD_REQUEST');
      return {
        kind: 'answer',
        ok: true,
        check: (answer) => must(answer.availability === chosen, 'set-availability answered another availability', () => JSON.stringify(answer)),
      };
    }
    case 'presence:activity':
      return noPayloadAccepted(value) ? { kind: 'answer', ok: true } : refused('BAD_REQUEST');
    case 'presence:join': {
      if (!isObject(value)) return refused('BAD_REQUEST');
      const room = own(value, 'room');
      if (!validRoom(room)) return refused('BAD_REQUEST');
      const given = own(value, 'meta');
      const json = metaJson(given);
      if (json === undefined) return refused('BAD_REQUEST');
      const joined = state.rooms.has(room);
      if (!joined && state.rooms.size >= MAX_ROOMS) return refused('TOO_MANY_ROOMS');
      if (!canJoin('', room)) return refused('FORBIDDEN');
      // No meta keeps the member's meta; a new member without it has none.
      const expectedMeta = given === undefined ? (state.rooms.get(room) ?? 'null') : json;
      state.rooms.set(room, expectedMeta);
      return {
        kind: 'answer',
        ok: true,
        check(answer) {
          const members = answer.members as Record<string, unknown>[];
          const context = (): string => JSON.stringify(answer).slice(0, 300);
          must(answer.room === room && answer.count === 1, 'a join answered another room or count', context);
          must(Array.isArray(members) && members.length === 1, 'a join answered other members than this one', context);
          must(JSON.stringify(members[0]!.meta) === expectedMeta, `the member's meta is not ${expectedMeta.slice(0, 60)}`, context);
        },
      };
    }
    case 'presence:leave': {
      if (!isObject(value)) return refused('BAD_REQUEST');
      const room = own(value, 'room');
      if (!validRoom(room)) return refused('BAD_REQUEST');
      state.rooms.delete(room);
      return { kind: 'answer', ok: true };
    }
    case 'presence:room-update': {
      if (!isObject(value) || !Object.prototype.hasOwnProperty.call(value, 'meta')) return refused('BAD_REQUEST');
      const room = own(value, 'room');
      if (!validRoom(room)) return refused('BAD_REQUEST');
      const json = metaJson(value.meta);
      if (json === undefined || !state.rooms.has(room)) return refused('BAD_REQUEST');
      state.rooms.set(room, json);
      return { kind: 'answer', ok: true };
    }
    default: {
      const unknownEvent: never = event;
      throw new Error(`no model for ${String(unknownEvent)}`);
    }
  }
}

// ---------------------------------------------------------------- one device per target

/**
 * The device a target fuzzes through: one line (engine.io connection) reused for the whole
 * target; a case that ends the login (logout) or the connection (an oversized message) is
 * followed by a new login, as a resume when the session is still good.
 */
class FuzzDevice {
  line: Line | undefined;
  session: SessionPayload | undefined;
  readonly state: ConnectionModel = { watching: new Set(), rooms: new Map() };
  logins = 0;
  private logouts = 0;

  constructor(
    readonly url: string,
    readonly userId: string,
    readonly platforms: readonly Platform[],
    /** The server's presence, to see the rooms of a closed connection left. */
    readonly presence?: Presence,
    /** Rooms joined after each login. */
    readonly startRooms: readonly string[] = [],
  ) {}

  get socket(): Line['presence'] {
    if (!this.line) throw new Error('not connected');
    return this.line.presence;
  }

  /** Logged in and connected, over a live line; `resume` takes the last session up again. */
  async ensure(resume: boolean): Promise<void> {
    if (this.line?.alive && this.line.presence.connected) return;
    if (!this.line?.alive) {
      this.line?.close();
      this.line = await Line.open(this.url);
    }
    const platform = this.platforms[this.logins % this.platforms.length] as Platform;
    const previous = this.session;
    const auth: Record<string, unknown> = { token: `tok:${this.userId}`, platform };
    if (resume && previous) Object.assign(auth, { platform: previous.platform, instanceId: previous.instanceId, sessionId: previous.sessionId });
    // The last connection's rooms are left (no reconnect grace here); its leave may still be on its way.
    await this.roomsLeft();
    const login = await this.line.login(auth);
    if (login.kind !== 'session') throw new Error(`login refused: ${login.message} ${JSON.stringify(login.data)}`);
    expect(login.session.userId).to.equal(this.userId);
    // Only a mobile device outlives its connection (PushOnline); the others log in afresh.
    if (resume && previous && MOBILE.includes(previous.platform)) expect(login.session.sessionId, 'the session was resumed').to.equal(previous.sessionId);
    this.session = login.session;
    this.state.watching.clear();
    this.state.rooms.clear();
    this.logins++;
    // Updates and leaves need rooms to act on: each login starts in a few.
    for (const room of this.startRooms) {
      const joined = await ask(this.socket, 'presence:join', [{ room }]);
      expect(joined.kind === 'answer' && joined.answer.ok, `joining ${room} to start with`).to.equal(true);
      this.state.rooms.set(room, 'null');
    }
  }

  /** Waits until the server holds this user in none of the rooms the model had them in. */
  private async roomsLeft(): Promise<void> {
    const presence = this.presence;
    if (!presence || this.state.rooms.size === 0) return;
    const rooms = [...this.state.rooms.keys()];
    const deadline = Date.now() + 5000;
    for (;;) {
      const counts = await Promise.all(rooms.map((room) => presence.room(room).count()));
      if (counts.every((count) => count === 0)) return;
      if (Date.now() > deadline) throw new Error(`the closed connection's rooms were not left: ${rooms.join(', ')} count ${counts.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** After a logout: now and then, check the logged-out session cannot be resumed; then log in afresh. */
  async afterLogout(): Promise<void> {
    const session = this.session;
    if (session && ++this.logouts % RESUME_CHECK_EVERY === 1 && this.line?.alive) {
      const attempt = await this.line.login({
        token: `tok:${this.userId}`,
        platform: session.platform,
        instanceId: session.instanceId,
        sessionId: session.sessionId,
      });
      expect(attempt.kind, 'a logged-out session cannot be resumed').to.equal('refused');
      if (attempt.kind === 'refused') expect(attempt.data?.code).to.equal('SESSION_REVOKED');
    }
    this.session = undefined;
    await this.ensure(false);
  }

  close(): void {
    this.line?.close();
  }
}

const TARGETS: readonly { event: EventName; platforms: readonly Platform[] }[] = [
  { event: 'presence:heartbeat', platforms: PLATFORMS },
  // Mobile only: a MiniProgram left in background would time out (30 s) in the middle of the run.
  { event: 'presence:background', platforms: ['Android', 'iPhone', 'iPad'] },
  { event: 'presence:foreground', platforms: ['Android', 'Windows', 'Web'] },
  { event: 'presence:logout', platforms: PLATFORMS },
  { event: 'presence:subscribe', platforms: ['Web', 'Android'] },
  { event: 'presence:unsubscribe', platforms: ['Web', 'Android'] },
  { event: 'presence:set-status', platforms: ['Windows', 'iPhone'] },
  { event: 'presence:set-availability', platforms: ['Web', 'Mac'] },
  { event: 'presence:activity', platforms: ['Web', 'Android'] },
  { event: 'presence:join', platforms: ['Web', 'Android'] },
  { event: 'presence:leave', platforms: ['Web', 'Mac'] },
  { event: 'presence:room-update', platforms: ['Web', 'iPhone'] },
];
/** FUZZ_TARGETS=presence:join,... (substrings of event names, comma separated) runs only those targets. */
const CHOSEN = (process.env.FUZZ_TARGETS ?? '')
  .split(',')
  .map((part) => part.trim())
  .filter(Boolean);

/** What one case came to: its outcome for the tally, and whether it ended the login or the connection. */
interface CaseResult {
  outcome: string;
  ended?: 'logout' | 'connection';
}

/** Sends one case and checks what came back against the model. */
async function runCase(device: FuzzDevice, event: EventName, request: EventCase): Promise<CaseResult> {
  const socket = device.socket;
  const delivered = deliver([event, ...request.args], MAX_MESSAGE).values;
  const expected: Expected = delivered ? model(event, request.args.length > 0, delivered[1], device.state) : { kind: 'closed' };
  const context = (): string => `${event} ${JSON.stringify(request.args)?.slice(0, 300)}${request.withoutAck ? ' (no ack)' : ''}`;

  let reply: Reply;
  if (request.withoutAck) {
    const loggingOut = expected.kind === 'answer' && expected.ok && expected.then === 'disconnect';
    const closed = expected.kind === 'closed' || loggingOut ? disconnection(socket) : undefined;
    socket.emit(event, ...request.args);
    if (closed) {
      const reason = await closed;
      if (loggingOut) {
        must(reason === 'io server disconnect', `a logout ended with ${reason}`, context);
        return { outcome: 'logged out (no ack)', ended: 'logout' };
      }
      return { outcome: `closed (${reason}, no ack: over maxHttpBufferSize)`, ended: 'connection' };
    }
    // Nothing to read: a heartbeat shows the connection still works.
    reply = await ask(socket, 'presence:heartbeat', []);
    must(reply.kind === 'answer' && reply.answer.ok === true, `the connection is unwell after an unacknowledged ${event}`, context);
    return { outcome: 'sent without ack, connection healthy' };
  }

  reply = await ask(socket, event, request.args);
  if (expected.kind === 'closed') {
    must(reply.kind === 'closed', `a message over maxHttpBufferSize got ${reply.kind}`, context);
    return { outcome: `closed (${reply.kind === 'closed' ? reply.reason : ''}: over maxHttpBufferSize)`, ended: 'connection' };
  }
  must(reply.kind === 'answer', `no answer (${reply.kind === 'closed' ? `closed: ${reply.reason}` : reply.kind})`, context);
  const answer = reply.kind === 'answer' ? reply.answer : {};
  must(
    typeof answer === 'object' && answer !== null && typeof answer.ok === 'boolean',
    'an answer without a boolean ok',
    () => `${context()} → ${JSON.stringify(answer)}`,
  );
  if (answer.ok === false) {
    must(CODES.includes(answer.code as string), 'an unknown code', () => `${context()} → ${JSON.stringify(answer)}`);
    must(typeof answer.message === 'string' && answer.message !== '', 'a refusal without a message', () => `${context()} → ${JSON.stringify(answer)}`);
    must(
      !expected.ok && answer.code === expected.code,
      `refused where the model says ${JSON.stringify(expected)}`,
      () => `${context()} → ${JSON.stringify(answer)}`,
    );
    return { outcome: `refused ${String(answer.code)}` };
  }
  must(expected.ok, `accepted where the model says ${JSON.stringify(expected)}`, () => `${context()} → ${JSON.stringify(answer)}`);
  try {
    expected.check?.(answer);
  } catch (error) {
    throw new Error(`${(error as Error).message}: ${context()}`, { cause: error });
  }
  if (expected.then !== 'disconnect') return { outcome: 'accepted' };
  const reason = await disconnection(socket);
  must(reason === 'io server disconnect' || reason === 'already disconnected', `a logout ended with ${reason}`, context);
  return { outcome: 'accepted (logged out)', ended: 'logout' };
}

describe(`fuzz: client events (${RUNS} inputs per event)`, () => {
  let harness: Harness;
  const faults = new ProcessFaults();
  let fingerprint: string;

  before(async () => {
    // Thousands of events back to back: the rate limit is off here (spec/socket-fair-use.spec.ts covers it).
    harness = await startHarness({
      authenticate: fuzzAuthenticate,
      maxSubscriptions: MAX_SUBSCRIPTIONS,
      eventRateLimit: false,
      canJoin,
      maxRoomsPerConnection: MAX_ROOMS,
    });
    serveKeepalive(harness.io);
    fingerprint = prototypeFingerprint();
    faults.start();
  });

  after(async () => {
    faults.stop();
    await harness.close();
  });

  for (const { event, platforms } of TARGETS.filter((target) => CHOSEN.length === 0 || CHOSEN.some((part) => target.event.includes(part)))) {
    it(`${event}: no crash, every answer as modelled, every refusal { ok: false, code, message } with a known code`, async function () {
      this.timeout(timeoutFor(RUNS, 20));
      const counts: Tally = tally('event', event);
      const startRooms = event === 'presence:leave' || event === 'presence:room-update' ? ['r0', 'r1', 'r2', 'r3', 'r4', '__proto__'] : [];
      const device = new FuzzDevice(harness.url, `fuzz-${event.slice('presence:'.length)}`, platforms, harness.presence, startRooms);
      try {
        await device.ensure(false);
        await fc.assert(
          fc.asyncProperty(caseFor(event), fc.nat(3), async (request, roll) => {
            harness.errors.length = 0;
            // Joins fill the connection up to maxRoomsPerConnection; now and then one is left, so joins keep reaching canJoin.
            const rooms = device.state.rooms;
            if (event === 'presence:join' && roll === 0 && rooms.size > 0) {
              const room = [...rooms.keys()][rooms.size - 1]!;
              const left = await ask(device.socket, 'presence:leave', [{ room }]);
              must(left.kind === 'answer' && left.answer.ok === true, `leaving ${room} failed`, () => JSON.stringify(left));
              rooms.delete(room);
            }
            const result = await runCase(device, event, request);
            counts.add(result.outcome);
            must(harness.errors.length === 0, `logged: ${describeLogged(harness.errors)}`, () => `${event} ${JSON.stringify(request.args)?.slice(0, 300)}`);
            if (result.ended === 'logout') await device.afterLogout();
            else if (result.ended === 'connection') await device.ensure(true);
            must(device.socket.connected, 'the device is not connected for the next case', () => result.outcome);
          }),
          fuzzParameters(),
        );
        counts.finish();
        expect(counts.inputs).to.equal(RUNS);

        // The sentinel: the device still answers, is Online, and a fresh device logs in beside it.
        const heartbeat = await ask(device.socket, 'presence:heartbeat', []);
        expect(heartbeat.kind === 'answer' && heartbeat.answer.ok).to.equal(true);
        expect(await harness.status(device.userId)).to.equal('Online');
        // The rooms the server holds this user in are the model's, with the model's meta.
        for (const room of ROOM_POOL) {
          const page = await harness.presence.room(room).members({ limit: 1000 });
          const mine = page.members.filter((member) => member.userId === device.userId);
          const modelled = device.state.rooms.get(room);
          expect(
            mine.map((member) => JSON.stringify(member.meta)),
            `${device.userId} in ${room}`,
          ).to.deep.equal(modelled === undefined ? [] : [modelled]);
        }
        const fresh = await harness.connect({ token: `tok:sentinel-${event}`, platform: 'Web' });
        expect(fresh.session.userId).to.equal(`sentinel-${event}`);
        fresh.socket.disconnect();
      } finally {
        device.close();
      }
      expect(harness.errors, `logged: ${describeLogged(harness.errors)}`).to.deep.equal([]);
      expect(faults.faults, 'uncaught exceptions or unhandled rejections').to.deep.equal([]);
      expect(prototypeFingerprint(), 'Object.prototype and Array.prototype untouched').to.equal(fingerprint);
    });
  }
});
