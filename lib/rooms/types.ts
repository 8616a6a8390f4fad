// The public shapes of rooms: a member, a join answer, a diff, a page, and the backend's room events.

import type { Platform } from '../core/platforms.js';
import type { UserStatus } from '../core/types.js';

import type { Availability } from '../core/availability.js';

export type { Availability } from '../core/availability.js';

/** A JSON value, as `meta` carries it. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** One device of a member that has a connection in the room. */
export interface RoomDevice {
  readonly platform: Platform;
  readonly instanceId: string;
}

/** A room member: a user (all their tabs and devices in the room together). */
export interface RoomMember {
  readonly userId: string;
  readonly status: UserStatus;
  readonly availability: Availability;
  readonly customStatus: string | null;
  /** The latest join's or `presence:room-update`'s meta; null when none was given. */
  readonly meta: JsonValue;
  readonly devices: readonly RoomDevice[];
}

/** The room as a join finds it. `members` is null when the room has more than `roomMemberLimit` members. */
export interface RoomSnapshot {
  room: string;
  count: number;
  members: RoomMember[] | null;
}

/**
 * `presence:room`: what changed in a room since the connection's last message (or its join answer).
 * When `members` is present it replaces the connection's list (null: the room grew beyond
 * `roomMemberLimit` and only `count` is kept; a list: it shrank back, here are its members).
 */
export interface RoomMessage {
  room: string;
  count: number;
  joined: RoomMember[];
  /** User ids. */
  left: string[];
  updated: RoomMember[];
  members?: RoomMember[] | null;
}

/** `presence.room(name).members()` and `GET /rooms/:room`: one page. */
export interface RoomPage {
  members: RoomMember[];
  count: number;
  /** Pass it back for the next page; null on the last one. */
  nextCursor: string | null;
}

/** `room-change`: one batch of a room's changes, as the backend sees them (whatever the room's size). */
export interface RoomChange {
  room: string;
  joined: RoomMember[];
  /** User ids. */
  left: string[];
  updated: RoomMember[];
  count: number;
}

/** `room-occupied` (first member in) and `room-vacated` (last member out). */
export interface RoomEvent {
  room: string;
}

/** `presence.room(name)`: the backend's view of one room. */
export interface RoomView {
  /** The number of members; costs the same for 10 members and 100,000. */
  count(): Promise<number>;
  /** One page of members (`limit` 1 to 1000, default 100); while the room does not change, each member appears exactly once over all pages. */
  members(options?: { limit?: number; cursor?: string | null }): Promise<RoomPage>;
}

export interface RoomEvents {
  'room-occupied': [RoomEvent];
  'room-vacated': [RoomEvent];
  'room-change': [RoomChange];
}
