// The room routes: one room paged, the counts of many rooms, and the source service's online member count of a group.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpService } from './service.js';
import type { RoomMember } from '../rooms/types.js';
import { checkPageLimit, checkRoomName, MAX_PAGE_LIMIT } from '../rooms/validate.js';
import { roomsSupported, roomsUnsupportedMessage } from '../rooms/index.js';
import { InputError, isPlainObject, MAX_QUERY_IDS, refuseUnknownFields } from './input.js';
import { describeValue, sendJson, sendProblem, SourceErrorCode } from '../util/respond.js';

/** The answer of `GET /rooms/:room`. */
export interface RoomPageResponse {
  room: string;
  count: number;
  members: RoomMember[];
  nextCursor: string | null;
}

/** The answer of `POST /rooms/query`. */
export interface RoomsQueryResponse {
  rooms: { room: string; count: number }[];
}

/** The answer of `POST /v4/group_open_http_svc/get_online_member_num`. */
export interface OnlineMemberNumResponse {
  ActionStatus: 'OK';
  ErrorCode: 0;
  ErrorInfo: '';
  OnlineMemberNum: number;
}

export const ROOMS_PREFIX = '/rooms/';
const QUERY_FIELDS = ['rooms'] as const;
const PAGE_PARAMS = ['limit', 'cursor'] as const;

/** A room name from a path or a body; bad ones are the route's 400. */
function roomName(value: unknown, name: string, code: SourceErrorCode = SourceErrorCode.BadRequest): string {
  try {
    return checkRoomName(value, name);
  } catch (error) {
    throw new InputError(code, (error as Error).message);
  }
}

/** Rooms on a store that does not support them are refused, never answered for this process alone. */
function requireRooms(presence: HttpService, res: ServerResponse): boolean {
  if (roomsSupported(presence.engine)) return true;
  sendProblem(res, 501, roomsUnsupportedMessage(presence.engine));
  return false;
}

/** `GET /rooms/:room?limit=&cursor=`: one page of members (limit 1 to 1000, default 100). */
export async function getRoom(presence: HttpService, res: ServerResponse, req: IncomingMessage): Promise<void> {
  const url = req.url ?? '';
  const queryAt = url.indexOf('?');
  let path = queryAt < 0 ? url : url.slice(0, queryAt);
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  // The router matched `/rooms/<one segment>`: the room is the last segment (a `/` in a name is sent as %2F).
  let decoded: string;
  try {
    decoded = decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
  } catch {
    throw new InputError(SourceErrorCode.BadRequest, 'the room in the path is not valid percent-encoding');
  }
  const room = roomName(decoded, 'the room in the path');
  const params = new URLSearchParams(queryAt < 0 ? '' : url.slice(queryAt + 1));
  for (const key of params.keys()) {
    if (!(PAGE_PARAMS as readonly string[]).includes(key)) {
      throw new InputError(SourceErrorCode.BadRequest, `unknown query parameter ${JSON.stringify(key)} (accepted: ${PAGE_PARAMS.join(', ')})`);
    }
  }
  const limitText = params.get('limit');
  let limit: number;
  try {
    limit = checkPageLimit(limitText === null ? undefined : /^\d+$/.test(limitText) ? Number(limitText) : limitText);
  } catch {
    throw new InputError(SourceErrorCode.BadRequest, `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}; got ${describeValue(limitText)}`);
  }
  if (!requireRooms(presence, res)) return;
  let page;
  try {
    page = await presence.room(room).members({ limit, cursor: params.get('cursor') });
  } catch (error) {
    if (error instanceof TypeError) throw new InputError(SourceErrorCode.BadRequest, error.message);
    throw error;
  }
  const answer: RoomPageResponse = { room, count: page.count, members: page.members, nextCursor: page.nextCursor };
  sendJson(res, 200, answer);
}

/** `POST /rooms/query` `{ rooms: [...] }` (at most 500): each distinct room's count, in the order given. */
export async function queryRooms(presence: HttpService, res: ServerResponse, body: unknown): Promise<void> {
  if (body === undefined) throw new InputError(SourceErrorCode.BadRequest, 'the body is empty; send JSON { "rooms": [...] }');
  if (!isPlainObject(body)) throw new InputError(SourceErrorCode.BadRequest, `the body must be a JSON object { "rooms": [...] }; got ${describeValue(body)}`);
  refuseUnknownFields(body, QUERY_FIELDS, 'the body');
  const list = body.rooms;
  if (!Array.isArray(list)) throw new InputError(SourceErrorCode.BadRequest, `rooms must be a list of room names; got ${describeValue(list)}`);
  if (list.length > MAX_QUERY_IDS) throw new InputError(SourceErrorCode.BadRequest, `rooms has ${list.length} entries; at most ${MAX_QUERY_IDS} per call`);
  const names = new Set<string>();
  for (let i = 0; i < list.length; i++) names.add(roomName(list[i], `rooms[${i}]`));
  if (!requireRooms(presence, res)) return;
  const answer: RoomsQueryResponse = { rooms: await Promise.all([...names].map(async (room) => ({ room, count: await presence.room(room).count() }))) };
  sendJson(res, 200, answer);
}

/** `POST /v4/group_open_http_svc/get_online_member_num` `{ "GroupId": "g1" }`: the members online in the room named by GroupId. */
export async function onlineMemberNum(presence: HttpService, res: ServerResponse, body: unknown): Promise<void> {
  if (body === undefined) throw new InputError(SourceErrorCode.BadRequest, 'the body is empty; send JSON { "GroupId": "..." }');
  if (!isPlainObject(body)) throw new InputError(SourceErrorCode.BadRequest, `the body must be a JSON object { "GroupId": "..." }; got ${describeValue(body)}`);
  if (body.GroupId === undefined || body.GroupId === null) {
    const near = Object.keys(body).find((key) => key.toLowerCase() === 'groupid');
    throw new InputError(SourceErrorCode.BadRequest, `GroupId is missing${near ? ` (got ${JSON.stringify(near)}; the name is case-sensitive)` : ''}`);
  }
  const room = roomName(body.GroupId, 'GroupId');
  if (!roomsSupported(presence.engine)) throw new InputError(SourceErrorCode.Internal, roomsUnsupportedMessage(presence.engine), 501);
  const answer: OnlineMemberNumResponse = { ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '', OnlineMemberNum: await presence.room(room).count() };
  sendJson(res, 200, answer);
}
