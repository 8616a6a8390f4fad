// Fuzz of every HTTP route, one target at a time: hostile requests over a keep-alive agent, each answer checked against a model of the route's checks.

import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import { createPresence, PLATFORMS, type Connection, type Presence } from '../../lib/index.js';
import {
  aroundLength,
  anyString,
  describeLogged,
  fuzzParameters,
  idLike,
  idListAround,
  jsonJunk,
  jsonObjectText,
  platformName,
  ProcessFaults,
  protoKey,
  prototypeFingerprint,
  recordingLogger,
  RUNS,
  must,
  tally,
  timeoutFor,
  type RecordingLogger,
  type Tally,
} from './common.js';
import type { RoomRegistry } from '../../lib/rooms/index.js';

const MOUNT = '/api/presence';
const ADMIN = 'Bearer admin';
/** The router's default body limit (1 MB). */
const BODY_LIMIT = 1024 * 1024;
const MAX_IDS = 500;
const MAX_ID_LENGTH = 128;
/** The documented ErrorCodes of a refusal on the source routes. */
const DOCUMENTED_CODES = [90001, 90003, 90009, 90011];
/** Users the seeded devices belong to, and whom the kicks and queries name. */
const SEEDED_USERS = ['u1', 'u2', 'u3', 'u4', 'query', '__proto__', 'constructor'];
/** Re-seed the devices this often, so the kick routes keep finding something to kick. */
const RESEED_EVERY = 25;
/** Requests in flight at once, over as many keep-alive connections: each property run sends one batch. */
const BATCH = 8;

type Kind = 'querystate' | 'sourceKick' | 'getUser' | 'usersQuery' | 'kickUser' | 'stats' | 'metrics' | 'getRoom' | 'roomsQuery' | 'memberNum';

/** Longest room name, in characters. */
const MAX_ROOM_LENGTH = 128;
/** The rooms seeded once before the run, their members in join order (pages run by it). */
const SEEDED_ROOMS: Readonly<Record<string, readonly string[]>> = Object.fromEntries([
  ['lobby', SEEDED_USERS],
  ['query', ['u1', 'u2']],
  // A room named like a prototype key (fromEntries defines it as an own key).
  ['__proto__', ['constructor']],
  ['a/b', ['u3', 'u4', 'query']],
]);
const ROOM_NAMES = [...Object.keys(SEEDED_ROOMS), 'empty', 'constructor', 'toString'];
const seededMembers = (room: string): readonly string[] => (Object.prototype.hasOwnProperty.call(SEEDED_ROOMS, room) ? SEEDED_ROOMS[room]! : []);

interface Target {
  name: string;
  family: 'source' | 'plain';
  kind: Kind;
  method: 'GET' | 'POST';
  /** The path under the mount, with `:userId` (or `:room`) where the case puts its segment. */
  path: string;
}

const TARGETS: readonly Target[] = [
  { name: 'POST /v4/openim/querystate', family: 'source', kind: 'querystate', method: 'POST', path: '/v4/openim/querystate' },
  { name: 'POST /v4/openim/query_online_status', family: 'source', kind: 'querystate', method: 'POST', path: '/v4/openim/query_online_status' },
  { name: 'POST /v4/im_open_login_svc/kick', family: 'source', kind: 'sourceKick', method: 'POST', path: '/v4/im_open_login_svc/kick' },
  { name: 'GET /users/:userId', family: 'plain', kind: 'getUser', method: 'GET', path: '/users/:userId' },
  { name: 'POST /users/query', family: 'plain', kind: 'usersQuery', method: 'POST', path: '/users/query' },
  { name: 'POST /users/:userId/kick', family: 'plain', kind: 'kickUser', method: 'POST', path: '/users/:userId/kick' },
  { name: 'GET /stats', family: 'plain', kind: 'stats', method: 'GET', path: '/stats' },
  { name: 'GET /metrics', family: 'plain', kind: 'metrics', method: 'GET', path: '/metrics' },
  { name: 'GET /rooms/:room', family: 'plain', kind: 'getRoom', method: 'GET', path: '/rooms/:room' },
  { name: 'POST /rooms/query', family: 'plain', kind: 'roomsQuery', method: 'POST', path: '/rooms/query' },
  {
    name: 'POST /v4/group_open_http_svc/get_online_member_num',
    family: 'source',
    kind: 'memberNum',
    method: 'POST',
    path: '/v4/group_open_http_svc/get_online_member_num',
  },
];
/** FUZZ_TARGETS=rooms (or any substring of target names, comma separated) runs only those targets. */
const CHOSEN = (process.env.FUZZ_TARGETS ?? '')
  .split(',')
  .map((part) => part.trim())
  .filter(Boolean);
const chosen = (name: string): boolean => CHOSEN.length === 0 || CHOSEN.some((part) => name.includes(part));

/** One generated request. */
interface HttpCase {
  method: string;
  /** The encoded user segment of `/users/:userId` routes. */
  userSegment: string;
  trailingSlash: boolean;
  query: string;
  auth: 'admin' | 'none' | 'wrong' | 'cookie';
  contentType: string | undefined;
  contentEncoding: string | undefined;
  /** Sent with Transfer-Encoding: chunked instead of a Content-Length. */
  chunked: boolean;
  body: Buffer | undefined;
}

// ---------------------------------------------------------------- generators

const text = (value: string): Buffer => Buffer.from(value, 'utf8');

/** Bodies every route gets: blanks, broken JSON, raw bytes, any JSON, deep nesting, huge numbers. */
const commonBody: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom('', ' ', '\n\t \r', '\ufeff', '\ufeff  ', '\ufeff\ufeff{}').map(text) },
  {
    weight: 4,
    arbitrary: fc
      .oneof(fc.constantFrom('{', '{"To_Account":', 'undefined', "{'a':1}", 'NaN', '[1,]', '{"a":1}x', 'nul', '"unterminated', '{"a" 1}'), anyString)
      .map(text),
  },
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 256 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 8, arbitrary: jsonJunk.map((value) => text(JSON.stringify(value) ?? 'null')) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 1000, max: 50_000 }), fc.boolean())
      .map(([depth, asObject]) => text(asObject ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth))),
  },
  { weight: 1, arbitrary: fc.constantFrom('1e999', '-1e999', '123456789012345678901234567890', '0.0000000000000000000000001e-400', '-0').map(text) },
);

/** A list of user ids that is mostly almost right: valid ids, a bad one among them, or a length around the limit. */
const idList: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...SEEDED_USERS) }, { weight: 2, arbitrary: idLike }), { maxLength: 8 }) },
  { weight: 2, arbitrary: fc.array(fc.oneof(idLike, jsonJunk), { maxLength: 6 }) },
  { weight: 1, arbitrary: idListAround(MAX_IDS) },
  { weight: 2, arbitrary: jsonJunk },
);

/** Room names: the seeded ones, id-like strings, names around the length limit. */
const roomLike: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...ROOM_NAMES) },
  { weight: 3, arbitrary: idLike },
  { weight: 1, arbitrary: aroundLength(MAX_ROOM_LENGTH) },
);

/** A list of rooms for POST /rooms/query: mostly right, a bad name among them, or a length around 500. */
const roomList: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.array(roomLike, { maxLength: 8 }) },
  { weight: 2, arbitrary: fc.array(fc.oneof(roomLike, jsonJunk), { maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: MAX_IDS - 2, max: MAX_IDS + 2 }).map((length) => Array.from({ length }, (_, i) => ROOM_NAMES[i % ROOM_NAMES.length])),
  },
  { weight: 2, arbitrary: jsonJunk },
);

const flagValue = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0, 1, true, false, null) }, { weight: 1, arbitrary: jsonJunk });

/** Extra fields: prototype keys, near misses of real names, anything. */
const extraEntries = fc.array(
  fc.tuple(fc.oneof(protoKey, fc.constantFrom('userid', 'UserId', 'user_id', 'platfrom', 'instanceID', 'details', 'to_account'), anyString), jsonJunk),
  { maxLength: 2 },
);

type Entries = [string, unknown][];

/** Near-valid entries for each route's body, so the deeper checks are reached. */
function nearValidEntries(kind: Kind): fc.Arbitrary<Entries> {
  const withExtras = (known: fc.Arbitrary<Entries>, extraWeight: number): fc.Arbitrary<Entries> =>
    fc.tuple(known, fc.nat(9), extraEntries).map(([entries, roll, extras]) => (roll < extraWeight ? [...entries, ...extras] : entries));
  const entries = (record: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Entries> =>
    fc.record(record, { requiredKeys: [] }).map((value) => Object.entries(value));
  switch (kind) {
    case 'querystate':
      return withExtras(entries({ To_Account: idList, IsNeedDetail: flagValue, IsReturnInstid: flagValue }), 3);
    case 'sourceKick':
      return withExtras(
        entries({ UserID: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...SEEDED_USERS) }, { weight: 3, arbitrary: idLike }, jsonJunk) }),
        3,
      );
    case 'usersQuery':
      return withExtras(entries({ userIds: idList, detail: fc.oneof({ weight: 3, arbitrary: fc.boolean() }, jsonJunk) }), 1);
    case 'kickUser':
      return withExtras(
        entries({
          platform: fc.oneof({ weight: 3, arbitrary: platformName }, jsonJunk),
          instanceId: fc.oneof({ weight: 3, arbitrary: fc.constantFrom('a-u1', 'w-u1', 'd-u1', 'a-u2') }, idLike, jsonJunk),
        }),
        1,
      );
    case 'roomsQuery':
      return withExtras(entries({ rooms: roomList }), 1);
    case 'memberNum':
      return withExtras(
        entries({ GroupId: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...ROOM_NAMES) }, { weight: 2, arbitrary: roomLike }, jsonJunk) }),
        3,
      );
    default:
      return fc.constant([]);
  }
}

/** A body of exactly `size` bytes: a near-valid JSON object padded with trailing whitespace (or cut, past the object's own length). */
function paddedBody(object: string, size: number): Buffer {
  const body = Buffer.alloc(size, 0x20);
  Buffer.from(object, 'utf8').copy(body, 0, 0, Math.min(size, Buffer.byteLength(object)));
  return body;
}

function bodyFor(kind: Kind): fc.Arbitrary<Buffer | undefined> {
  const nearValid = nearValidEntries(kind).map((entries) => text(jsonObjectText(entries)));
  const nearLimit = fc
    .tuple(nearValidEntries(kind), fc.integer({ min: BODY_LIMIT - 16, max: BODY_LIMIT + 16 }))
    .map(([entries, size]) => paddedBody(jsonObjectText(entries), size));
  return fc.oneof(
    { weight: 60, arbitrary: nearValid },
    { weight: 30, arbitrary: commonBody },
    { weight: 1, arbitrary: nearLimit },
    { weight: kind === 'kickUser' ? 15 : 5, arbitrary: fc.constant(undefined) },
  );
}

/** Percent-encodes a path segment; a lone surrogate (which encodeURIComponent refuses) becomes its WTF-8 bytes, which no server can decode. */
function encodeSegment(id: string): string {
  let encoded = '';
  for (const char of id) {
    const code = char.charCodeAt(0);
    const loneSurrogate = char.length === 1 && code >= 0xd800 && code <= 0xdfff;
    encoded += loneSurrogate
      ? [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join('')
      : encodeURIComponent(char);
  }
  return encoded;
}

/** The user segment of a path: encoded ids of every kind, and broken percent-encoding. */
const anySegment = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...SEEDED_USERS).map(encodeSegment) },
  { weight: 4, arbitrary: idLike.filter((id) => id.length > 0).map(encodeSegment) },
  {
    weight: 1,
    arbitrary: aroundLength(MAX_ID_LENGTH)
      .filter((id) => id.length > 0)
      .map(encodeSegment),
  },
  { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%C0%AF', '%ED%A0%80', '%FF', 'a%2Fb', '%00', '%25', 'query', '..', '.') },
);
/** Cut to 8 KB: past Node's 16 KB header limit, Node itself answers 431 before any middleware runs. */
const userSegment = anySegment.map((segment) => segment.slice(0, 8192));

/** The room segment of `GET /rooms/:room`: encoded names (a `/` as %2F), broken percent-encoding. */
const roomSegment = fc
  .oneof(
    { weight: 6, arbitrary: roomLike.filter((room) => room.length > 0).map(encodeSegment) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%FF', 'a%2Fb', '%00', '%25', 'query', '..', '.') },
  )
  .map((segment) => segment.slice(0, 8192));

/** The query of `GET /rooms/:room`: limits and cursors around their bounds, unknown parameters, junk. */
const roomQuery = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 8,
    arbitrary: fc
      .record(
        {
          limit: fc.constantFrom('1', '2', '3', '100', '1000', '1001', '0', '-1', '1.5', 'abc', '', '0003', '99999999999999999999', '%31'),
          cursor: fc.constantFrom('', '0', '1', '2', '5', '999999999999999', '1234567890123456', 'x', '-1', '1e3'),
        },
        { requiredKeys: [] },
      )
      .map(
        (params) =>
          '?' +
          Object.entries(params)
            .map(([key, value]) => `${key}=${value}`)
            .join('&'),
      ),
  },
  { weight: 1, arbitrary: fc.constantFrom('?', '?x=1', '?a=%zz&b', '?limit=2&limit=x', '?__proto__[x]=1', '?Limit=2') },
);

function caseFor(target: Target): fc.Arbitrary<HttpCase> {
  const otherMethods = target.method === 'GET' ? ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] : ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
  return fc.record({
    method: fc.oneof(
      { weight: 18, arbitrary: fc.constant(target.method) },
      { weight: target.method === 'GET' ? 1 : 0, arbitrary: fc.constant('HEAD') },
      { weight: 1, arbitrary: fc.constantFrom(...otherMethods) },
    ),
    userSegment: target.path.includes(':userId') ? userSegment : target.path.includes(':room') ? roomSegment : fc.constant(''),
    trailingSlash: fc.boolean(),
    query:
      target.kind === 'getRoom'
        ? roomQuery
        : fc.oneof(
            { weight: 9, arbitrary: fc.constant('') },
            { weight: 1, arbitrary: fc.constantFrom('?', '?x=1', '?a=%zz&b', '?To_Account=u1', '?__proto__[x]=1') },
          ),
    auth: fc.oneof(
      { weight: 17, arbitrary: fc.constant('admin' as const) },
      { weight: 1, arbitrary: fc.constantFrom('none' as const, 'wrong' as const, 'cookie' as const) },
    ),
    // Mostly JSON, so most bodies reach the routes' own checks; the rest are refused with 415.
    contentType: fc.oneof(
      { weight: 7, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/merge-patch+json') },
      { weight: 3, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', undefined) },
    ),
    contentEncoding: fc.oneof(
      { weight: 19, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'IDENTITY', 'x') },
    ),
    chunked: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    body: target.method === 'POST' ? bodyFor(target.kind) : fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: commonBody }),
  });
}

// ---------------------------------------------------------------- the model of each route's checks

interface Expected {
  status: number;
  /** The ErrorCode of a source-route refusal. */
  code?: number;
  /** Checks an accepted answer's JSON. */
  check?: (answer: Record<string, unknown>) => void;
}

const STATUSES = ['Online', 'PushOnline', 'Offline'];

function own(value: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(value, key) ? value[key] : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function validId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

function canonicalPlatform(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (value === 'iOS') return 'iPhone';
  return (PLATFORMS as readonly string[]).includes(value) ? value : undefined;
}

type Parsed = { kind: 'empty' } | { kind: 'malformed' } | { kind: 'json'; value: unknown };

/** What the body says, read the way the contract describes: UTF-8 JSON, a byte-order mark tolerated, blank is empty. */
function parseBody(body: Buffer | undefined): Parsed {
  if (body === undefined) return { kind: 'empty' };
  let source = body.toString('utf8');
  if (source.charCodeAt(0) === 0xfeff) source = source.slice(1);
  if (/^[ \t\r\n]*$/.test(source)) return { kind: 'empty' };
  try {
    return { kind: 'json', value: JSON.parse(source) as unknown };
  } catch {
    return { kind: 'malformed' };
  }
}

function distinct(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}

function bad(code: number): Expected {
  return { status: 400, code };
}

function modelQueryState(parsed: Parsed): Expected {
  if (parsed.kind !== 'json' || !isObject(parsed.value)) return bad(90001);
  const body = parsed.value;
  const accounts = own(body, 'To_Account');
  if (accounts === undefined || accounts === null) return bad(90001);
  if (!Array.isArray(accounts)) return bad(90003);
  if (accounts.length === 0) return bad(90001);
  if (accounts.length > MAX_IDS) return bad(90011);
  if (!accounts.every(validId)) return bad(90003);
  const flag = (name: string): boolean | undefined => {
    const value = own(body, name);
    if (value === undefined || value === null || value === 0 || value === false) return false;
    if (value === 1 || value === true) return true;
    return undefined;
  };
  const needDetail = flag('IsNeedDetail');
  const returnInstId = flag('IsReturnInstid');
  if (needDetail === undefined || returnInstId === undefined) return bad(90001);
  const expectedAccounts = distinct(accounts as string[]);
  return {
    status: 200,
    check(answer) {
      const results = answer.QueryResult as Record<string, unknown>[];
      expect(results.map((result) => result.To_Account)).to.deep.equal(expectedAccounts);
      for (const result of results) {
        expect(STATUSES).to.include(result.Status);
        expect('Detail' in result).to.equal(needDetail);
        for (const detail of (result.Detail ?? []) as Record<string, unknown>[]) expect('InstId' in detail).to.equal(returnInstId);
      }
    },
  };
}

function modelSourceKick(parsed: Parsed): Expected {
  if (parsed.kind !== 'json' || !isObject(parsed.value)) return bad(90001);
  const userId = own(parsed.value, 'UserID');
  if (userId === undefined || userId === null) return bad(90001);
  if (!validId(userId)) return bad(90003);
  return {
    status: 200,
    check(answer) {
      expect(answer.KickedDevice).to.be.an('array');
    },
  };
}

function modelUsersQuery(parsed: Parsed): Expected {
  if (parsed.kind !== 'json' || !isObject(parsed.value)) return { status: 400 };
  const body = parsed.value;
  if (Object.keys(body).some((key) => key !== 'userIds' && key !== 'detail')) return { status: 400 };
  const userIds = own(body, 'userIds');
  if (!Array.isArray(userIds) || userIds.length > MAX_IDS || !userIds.every(validId)) return { status: 400 };
  const detail = own(body, 'detail');
  if (detail !== undefined && typeof detail !== 'boolean') return { status: 400 };
  const expected = distinct(userIds as string[]);
  return {
    status: 200,
    check(answer) {
      const users = answer.users as Record<string, unknown>[];
      expect(users.map((user) => user.userId)).to.deep.equal(expected);
      for (const user of users) {
        expect(STATUSES).to.include(user.status);
        expect('instances' in user).to.equal(detail !== false);
      }
    },
  };
}

function modelUserKick(parsed: Parsed): Expected {
  let platform: string | undefined;
  let instanceId: string | undefined;
  if (parsed.kind === 'malformed') return { status: 400 };
  if (parsed.kind === 'json') {
    const body = parsed.value;
    if (!isObject(body) || Object.keys(body).some((key) => key !== 'platform' && key !== 'instanceId')) return { status: 400 };
    const givenPlatform = own(body, 'platform');
    if (givenPlatform !== undefined) {
      platform = canonicalPlatform(givenPlatform);
      if (!platform) return { status: 400 };
    }
    const givenInstance = own(body, 'instanceId');
    if (givenInstance !== undefined) {
      if (!validId(givenInstance)) return { status: 400 };
      instanceId = givenInstance;
    }
  }
  return {
    status: 200,
    check(answer) {
      for (const device of answer.kicked as Record<string, unknown>[]) {
        if (platform) expect(device.platform).to.equal(platform);
        if (instanceId) expect(device.instanceId).to.equal(instanceId);
      }
    },
  };
}

function modelGetUser(userId: string): Expected {
  return {
    status: 200,
    check(answer) {
      expect(answer.userId).to.equal(userId);
      expect(STATUSES).to.include(answer.status);
      expect(answer.instances).to.be.an('array');
    },
  };
}

function validRoom(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ROOM_LENGTH;
}

/** GET /rooms/:room: parameters limit and cursor only; the page from the seeded join order. */
function modelGetRoom(room: string, query: string): Expected {
  const params = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query);
  if ([...params.keys()].some((key) => key !== 'limit' && key !== 'cursor')) return { status: 400 };
  const limitText = params.get('limit');
  const limit = limitText === null ? 100 : /^\d+$/.test(limitText) ? Number(limitText) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return { status: 400 };
  const cursorText = params.get('cursor');
  if (cursorText !== null && cursorText !== '' && !/^\d{1,15}$/.test(cursorText)) return { status: 400 };
  const after = cursorText === null || cursorText === '' ? -1 : Number(cursorText);
  const members = seededMembers(room);
  // Seeded members have join positions 0, 1, 2, ...: a page is those after the cursor.
  const page = members.slice(after + 1, after + 1 + limit);
  const more = after + 1 + limit < members.length;
  return {
    status: 200,
    check(answer) {
      expect(answer.room).to.equal(room);
      expect(answer.count).to.equal(members.length);
      expect((answer.members as Record<string, unknown>[]).map((member) => member.userId)).to.deep.equal(page);
      for (const member of answer.members as Record<string, unknown>[]) {
        expect(STATUSES).to.include(member.status);
        expect(member.devices).to.be.an('array').with.lengthOf(1);
      }
      expect(answer.nextCursor).to.equal(more ? String(after + page.length) : null);
    },
  };
}

/** POST /rooms/query: `{ rooms }` only, at most 500 valid names; each distinct room's count in order. */
function modelRoomsQuery(parsed: Parsed): Expected {
  if (parsed.kind !== 'json' || !isObject(parsed.value)) return { status: 400 };
  const body = parsed.value;
  if (Object.keys(body).some((key) => key !== 'rooms')) return { status: 400 };
  const rooms = own(body, 'rooms');
  if (!Array.isArray(rooms) || rooms.length > MAX_IDS || !rooms.every(validRoom)) return { status: 400 };
  const expected = distinct(rooms as string[]).map((room) => ({ room, count: seededMembers(room).length }));
  return { status: 200, check: (answer) => expect(answer.rooms).to.deep.equal(expected) };
}

/** get_online_member_num: `GroupId` names the room (other fields ignored); refusals are 90001. */
function modelMemberNum(parsed: Parsed): Expected {
  if (parsed.kind !== 'json' || !isObject(parsed.value)) return bad(90001);
  const group = own(parsed.value, 'GroupId');
  if (!validRoom(group)) return bad(90001);
  return { status: 200, check: (answer) => expect(answer.OnlineMemberNum).to.equal(seededMembers(group).length) };
}

/** The routes at the request's path: `/users/query` is both the batch query (POST) and the user named "query" (GET). */
function routesAt(target: Target, request: HttpCase): { GET?: Kind; POST?: Kind } {
  if (target.kind === 'usersQuery' || (target.kind === 'getUser' && request.userSegment === 'query')) return { GET: 'getUser', POST: 'usersQuery' };
  if (target.kind === 'roomsQuery' || (target.kind === 'getRoom' && request.userSegment === 'query')) return { GET: 'getRoom', POST: 'roomsQuery' };
  return { [target.method]: target.kind };
}

/** The answer the router owes this request: the envelope (method, authorisation, path, size, encoding) first, then the route's own checks. */
function model(target: Target, request: HttpCase): Expected {
  const routes = routesAt(target, request);
  const method = request.method === 'HEAD' ? 'GET' : request.method;
  const kind = method === 'GET' ? routes.GET : method === 'POST' ? routes.POST : undefined;
  if (!kind) return { status: 405, code: 90001 };
  if (request.auth !== 'admin') {
    const carriesCredentials = request.auth !== 'none' || request.query.includes('?');
    return { status: carriesCredentials ? 403 : 401, code: 90009 };
  }
  let userId = '';
  if (kind === 'getUser' || kind === 'kickUser') {
    if (target.kind === 'usersQuery') userId = 'query';
    else {
      try {
        userId = decodeURIComponent(request.userSegment);
      } catch {
        return { status: 400, code: 90001 };
      }
      if (!validId(userId)) return { status: 400, code: 90001 };
    }
  }
  let room = '';
  if (kind === 'getRoom') {
    if (target.kind === 'roomsQuery') room = 'query';
    else {
      try {
        room = decodeURIComponent(request.userSegment);
      } catch {
        return { status: 400 };
      }
      if (!validRoom(room)) return { status: 400 };
    }
  }
  const readsBody =
    kind === 'querystate' || kind === 'sourceKick' || kind === 'usersQuery' || kind === 'kickUser' || kind === 'roomsQuery' || kind === 'memberNum';
  let parsed: Parsed = { kind: 'empty' };
  if (readsBody) {
    const size = request.body?.length ?? 0;
    // JSON only (a documented refusal, 415): any other Content-Type, or none on a request that carries a body.
    const carriesBody = request.body !== undefined && (request.chunked || size > 0);
    const json = request.contentType !== undefined && /^application\/(json|[^;/]*\+json)\s*(;|$)/i.test(request.contentType);
    if (request.contentType === undefined ? carriesBody : !json) return { status: 415, code: 90001 };
    // A declared length over the limit is refused before anything else; a chunked body only once read past it.
    const declared = request.body !== undefined && !request.chunked;
    if (declared && size > BODY_LIMIT) return { status: 413, code: 90001 };
    const encoding = request.contentEncoding;
    if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return { status: 415, code: 90001 };
    if (size > BODY_LIMIT) return { status: 413, code: 90001 };
    parsed = parseBody(request.body);
  }
  switch (kind) {
    case 'querystate':
      return modelQueryState(parsed);
    case 'sourceKick':
      return modelSourceKick(parsed);
    case 'usersQuery':
      return modelUsersQuery(parsed);
    case 'kickUser':
      return modelUserKick(parsed);
    case 'getUser':
      return modelGetUser(userId);
    case 'stats':
      return {
        status: 200,
        check: (answer) => expect(answer).to.have.keys('users', 'instances', 'platforms'),
      };
    case 'metrics':
      return { status: 200 };
    case 'getRoom':
      return modelGetRoom(room, request.query);
    case 'roomsQuery':
      return modelRoomsQuery(parsed);
    case 'memberNum':
      return modelMemberNum(parsed);
    default: {
      const unknownKind: never = kind;
      throw new Error(`no model for ${String(unknownKind)}`);
    }
  }
}

// ---------------------------------------------------------------- sending

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function urlOf(target: Target, request: HttpCase): string {
  const path = target.path.replace(':userId', request.userSegment).replace(':room', request.userSegment);
  return MOUNT + path + (request.trailingSlash ? '/' : '') + request.query;
}

function send(agent: http.Agent, port: number, target: Target, request: HttpCase): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (request.auth === 'admin') headers.authorization = ADMIN;
  else if (request.auth === 'wrong') headers.authorization = 'Bearer nope';
  else if (request.auth === 'cookie') headers.cookie = 'sid=1';
  if (request.contentType) headers['content-type'] = request.contentType;
  if (request.contentEncoding) headers['content-encoding'] = request.contentEncoding;
  const body = request.body;
  if (request.chunked && body !== undefined) headers['transfer-encoding'] = 'chunked';
  else if (body !== undefined) headers['content-length'] = String(body.length);
  else if (request.method !== 'GET' && request.method !== 'HEAD') headers['content-length'] = '0';
  return new Promise<Answer>((resolve, reject) => {
    const req = http.request({ agent, host: '127.0.0.1', port, method: request.method, path: urlOf(target, request), headers, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', reject);
    if (body !== undefined && request.chunked) {
      // Two chunks, so a body is never one read.
      const half = body.length >> 1;
      req.write(body.subarray(0, half));
      req.end(body.subarray(half));
    } else req.end(body);
  });
}

function parseAnswer(answer: Answer): Record<string, unknown> {
  return JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
}

/** Checks an answer against the model, and names its outcome for the tally. */
function verify(target: Target, request: HttpCase, expected: Expected, answer: Answer): string {
  const context = (): string =>
    `${request.method} ${urlOf(target, request).slice(0, 200)} body ${request.body?.subarray(0, 200).toString('utf8') ?? '(none)'} → ${answer.status} ${answer.body.subarray(0, 300).toString('utf8')}`;
  must(answer.status < 500, 'a 5xx answer', context);
  must(answer.status === expected.status, `status ${answer.status} where the model says ${expected.status}`, context);
  const contentType = answer.headers['content-type'] ?? '';
  const head = request.method === 'HEAD';
  if (answer.status === 200) {
    if (target.kind === 'metrics') {
      must(contentType.startsWith('text/plain'), 'metrics not text/plain', context);
      must(head || answer.body.includes('# HELP presence_'), 'metrics without presence series', context);
      return '200 accepted';
    }
    must(contentType.startsWith('application/json'), 'an answer not application/json', context);
    if (head) return '200 accepted (HEAD)';
    const json = parseAnswer(answer);
    if (target.family === 'source') must(json.ActionStatus === 'OK' && json.ErrorCode === 0 && json.ErrorInfo === '', 'OK without its envelope', context);
    try {
      expected.check?.(json);
    } catch (error) {
      throw new Error(`${(error as Error).message}: ${context()}`, { cause: error });
    }
    return '200 accepted';
  }
  must(answer.status >= 400 && answer.status <= 499, 'neither 200 nor 4xx', context);
  if (answer.status === 405) must(typeof answer.headers.allow === 'string' && answer.headers.allow !== '', '405 without Allow', context);
  if (target.family === 'source') {
    must(contentType.startsWith('application/json'), 'a refusal not application/json', context);
    if (head) return `${answer.status} (HEAD)`;
    const json = parseAnswer(answer);
    must(hasExactly(json, ['ActionStatus', 'ErrorCode', 'ErrorInfo']), 'a refusal with other fields than ActionStatus, ErrorCode, ErrorInfo', context);
    must(json.ActionStatus === 'FAIL', 'a refusal without ActionStatus FAIL', context);
    must(DOCUMENTED_CODES.includes(json.ErrorCode as number), 'an undocumented ErrorCode', context);
    must(json.ErrorCode === expected.code, `ErrorCode where the model says ${expected.code}`, context);
    must(typeof json.ErrorInfo === 'string' && json.ErrorInfo !== '', 'an empty ErrorInfo', context);
    return `${answer.status} ${String(json.ErrorCode)}`;
  }
  must(contentType.startsWith('application/problem+json'), 'a refusal not application/problem+json', context);
  if (head) return `${answer.status} (HEAD)`;
  const problem = parseAnswer(answer);
  must(hasExactly(problem, ['type', 'title', 'status', 'detail']), 'a problem with other fields than type, title, status, detail', context);
  must(problem.status === answer.status, 'a problem whose status is not the HTTP status', context);
  for (const field of ['type', 'title', 'detail'])
    must(typeof problem[field] === 'string' && problem[field] !== '', `a problem with an empty ${field}`, context);
  return `${answer.status} problem`;
}

function hasExactly(value: Record<string, unknown>, keys: readonly string[]): boolean {
  const own = Object.keys(value);
  return own.length === keys.length && keys.every((key) => own.includes(key));
}

// ---------------------------------------------------------------- the run

async function login(presence: Presence, userId: string, platform: string, instanceId: string): Promise<Connection> {
  return (await presence.engine.connect({ userId, platform, instanceId }, () => {})).connection;
}

/** Each seeded user: an Android device PushOnline, a Web and a Windows device Online. */
async function seed(presence: Presence): Promise<void> {
  for (const userId of SEEDED_USERS) {
    presence.engine.disconnect(await login(presence, userId, 'Android', `a-${userId}`), 'closed');
    await login(presence, userId, 'Web', `w-${userId}`);
    await login(presence, userId, 'Windows', `d-${userId}`);
  }
}

describe(`fuzz: HTTP routes (${RUNS} inputs per route)`, () => {
  let presence: Presence;
  let logger: RecordingLogger;
  let server: http.Server;
  let agent: http.Agent;
  let port: number;
  const faults = new ProcessFaults();
  let fingerprint: string;

  before(async () => {
    logger = recordingLogger();
    presence = createPresence({ loginPolicy: 'multi', logger, authorize: (req) => req.headers.authorization === ADMIN });
    await seed(presence);
    // Rooms straight in the core (no sockets here): one plain connection object per member, never changed during the run.
    for (const [room, members] of Object.entries(SEEDED_ROOMS)) {
      const core = presence.rooms as unknown as RoomRegistry;
      for (const userId of members) await core.join({ userId, sessionId: `rs-${userId}`, instanceId: `r-${userId}`, platform: 'Web' }, room, { seat: userId });
    }
    const app = express();
    app.use(MOUNT, presence.router());
    app.use((_req, res) => {
      res.status(404).json({ host: 'fallback' });
    });
    server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    agent = new http.Agent({ keepAlive: true, maxSockets: BATCH });
    fingerprint = prototypeFingerprint();
    faults.start();
  });

  after(async () => {
    faults.stop();
    agent.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await presence.close();
  });

  for (const target of TARGETS.filter((candidate) => chosen(candidate.name))) {
    it(`${target.name}: no 5xx, no crash, every answer as modelled and every refusal in the documented shape`, async function () {
      this.timeout(timeoutFor(RUNS, 25));
      const counts: Tally = tally('HTTP', target.name);
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(caseFor(target), { minLength: BATCH, maxLength: BATCH }), async (batch) => {
          if (++runs % RESEED_EVERY === 0) await seed(presence);
          logger.errors.length = 0;
          logger.warnings.length = 0;
          const answers = await Promise.all(batch.map((request) => send(agent, port, target, request)));
          for (let i = 0; i < batch.length; i++) {
            const request = batch[i]!;
            counts.add(verify(target, request, model(target, request), answers[i]!));
          }
          const batchContext = (): string => batch.map((request) => `${request.method} ${urlOf(target, request).slice(0, 100)}`).join('; ');
          must(logger.errors.length === 0, `logged as a failure: ${describeLogged(logger.errors)}`, batchContext);
          must(logger.warnings.length === 0, `logged as a warning: ${describeLogged(logger.warnings)}`, batchContext);
        }),
        fuzzParameters(BATCH),
      );
      counts.finish();
      expect(counts.inputs).to.equal(Math.ceil(RUNS / BATCH) * BATCH);

      // The sentinel: the server still answers a plain valid query, with the seeded state.
      await seed(presence);
      const sentinel = await send(agent, port, TARGETS[0]!, {
        method: 'POST',
        userSegment: '',
        trailingSlash: false,
        query: '',
        auth: 'admin',
        contentType: 'application/json',
        contentEncoding: undefined,
        chunked: false,
        body: text(JSON.stringify({ To_Account: ['u1', 'nobody'], IsNeedDetail: 1 })),
      });
      expect(sentinel.status).to.equal(200);
      const results = parseAnswer(sentinel).QueryResult as { To_Account: string; Status: string; Detail: unknown[] }[];
      expect(results.map((result) => [result.To_Account, result.Status, result.Detail.length])).to.deep.equal([
        ['u1', 'Online', 3],
        ['nobody', 'Offline', 0],
      ]);
      expect(faults.faults, 'uncaught exceptions or unhandled rejections').to.deep.equal([]);
      expect(prototypeFingerprint(), 'Object.prototype and Array.prototype untouched').to.equal(fingerprint);
    });
  }
});
