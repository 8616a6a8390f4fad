// Checking what rooms take from outside: room names, meta, page limits and cursors; each refusal is a TypeError naming what was wrong.

import type { JsonValue } from './types.js';

/** Longest room name, in characters. */
export const MAX_ROOM_NAME_LENGTH = 128;
/** Largest meta, in bytes of its UTF-8 JSON encoding. */
export const MAX_META_BYTES = 1024;
/** Largest page of members. */
export const MAX_PAGE_LIMIT = 1000;
export const DEFAULT_PAGE_LIMIT = 100;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  return typeof value;
}

/** A room name: a string of 1 to 128 characters. */
export function checkRoomName(room: unknown, name = 'room'): string {
  if (typeof room !== 'string' || room.length === 0 || room.length > MAX_ROOM_NAME_LENGTH) {
    throw new TypeError(`${name} must be a string of 1 to ${MAX_ROOM_NAME_LENGTH} characters; got ${kindOf(room)}`);
  }
  return room;
}

function deepFreeze(value: JsonValue): JsonValue {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child as JsonValue);
    Object.freeze(value);
  }
  return value;
}

/**
 * Meta: any JSON value of at most 1024 bytes encoded. Answers a frozen copy (members share it
 * with every answer and event, so nobody can change it behind the room's back) and its encoding.
 */
export function parseMeta(meta: unknown): { value: JsonValue; json: string } {
  if (meta === undefined || meta === null) return { value: null, json: 'null' };
  let json: string | undefined;
  try {
    json = JSON.stringify(meta);
  } catch (error) {
    throw new TypeError(`meta must be JSON (${(error as Error).message})`, { cause: error });
  }
  if (json === undefined) throw new TypeError(`meta must be JSON; got ${kindOf(meta)}`);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > MAX_META_BYTES) throw new TypeError(`meta must be at most ${MAX_META_BYTES} bytes of UTF-8 JSON; got ${bytes}`);
  return { value: deepFreeze(JSON.parse(json) as JsonValue), json };
}

/** A page limit: an integer from 1 to 1000; missing is 100. */
export function checkPageLimit(limit: unknown): number {
  if (limit === undefined) return DEFAULT_PAGE_LIMIT;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw new TypeError(`limit must be an integer from 1 to ${MAX_PAGE_LIMIT}; got ${kindOf(limit)}`);
  }
  return limit;
}

/** A cursor is what a previous page answered as `nextCursor`: the position after which the next page starts. */
export function parseCursor(cursor: unknown): number {
  if (cursor === undefined || cursor === null || cursor === '') return -1;
  if (typeof cursor !== 'string' || !/^\d{1,15}$/.test(cursor)) {
    throw new TypeError(`cursor must be the nextCursor of a previous page; got ${kindOf(cursor)}`);
  }
  return Number(cursor);
}
