// The Socket.IO wire protocol of a presence namespace: event payloads, answers and error codes (the client imports its types).

import type { Platform } from '../core/platforms.js';
import type { PresenceErrorCode } from '../engine/engine.js';
import type { InstanceRef } from '../core/types.js';
import type { JsonValue, RoomMessage, RoomSnapshot } from '../rooms/types.js';
import type { Availability, ViewedUser } from '../core/availability.js';

/** What the handshake's `auth` carries for presence, next to whatever `authenticate` needs. */
export interface PresenceHandshakeAuth {
  /** One of the platform names (`Android`, `iPhone` or `iOS`, `iPad`, `Windows`, `Mac`, `Linux`, `Web`, `MiniProgram`). */
  platform: string;
  /** The device (installation or browser tab); the server makes one up when missing. At most 128 characters. */
  instanceId?: string;
  /** The client's version string. At most 128 characters. */
  version?: string;
  /** The session to resume, as told by `presence:session`. At most 128 characters. */
  sessionId?: string;
  [key: string]: unknown;
}

/** Why a handshake was refused: `err.data.code` of the client's `connect_error`. */
export type HandshakeErrorCode = PresenceErrorCode | 'SERVER_ERROR' | 'TOO_MANY_CONNECTIONS';

/** `err.data` of a `connect_error` raised by presence. */
export interface HandshakeErrorData {
  code: HandshakeErrorCode;
  message: string;
}

/** `presence:session`: sent right after each connect. */
export interface SessionPayload {
  userId: string;
  instanceId: string;
  sessionId: string;
  platform: Platform;
  /** How often the client should send `presence:heartbeat`, in ms. */
  heartbeatInterval: number;
  /** Devices this login displaced. */
  kicked: InstanceRef[];
  /** True when an existing session was taken up again (a reconnect, or another tab of the device). */
  resumed: boolean;
  /** With the `contacts` option: the user's contacts, already watched, as this viewer is shown them. */
  contacts?: WatchedUser[];
}

/** `presence:kicked`: the server is about to disconnect this device, whose session is now revoked. */
export interface KickedPayload {
  reason: 'LoginElsewhere' | 'AdminKick';
  /** The device that displaced this one; always present for `LoginElsewhere`. */
  by?: InstanceRef;
}

/**
 * One watched user's presence, as answered by `presence:subscribe` and pushed by `presence:changed`, as this viewer is shown
 * it: an invisible user is Offline (`available`, the last seen and custom status of when they went invisible); with
 * `lastSeenVisibility`, `lastSeen` may be null with a `lastSeenApprox` bucket (`approximate`) or without one (`hidden`).
 */
export type WatchedUser = ViewedUser;

/** `presence:changed`: a watched user's status, availability, idleness or custom status changed. */
export type ChangedPayload = WatchedUser;

/** Why a client event was refused. */
export type AnswerErrorCode =
  /** The payload is not what the event takes (the message says what was wrong). */
  | 'BAD_REQUEST'
  /** `presence:subscribe` would watch more users than `maxSubscriptions` (this connection) or `maxSubscriptionsPerUser` (all of the user's). */
  | 'TOO_MANY_SUBSCRIPTIONS'
  /** The connection sent more presence events than `eventRateLimit` allows; the event was not handled. */
  | 'RATE_LIMITED'
  /** The device is no longer logged in on this connection (kicked, logged out, timed out). */
  | 'NOT_LOGGED_IN'
  /** The server failed (its store, say); the event may be retried. */
  | 'SERVER_ERROR'
  /** `presence:join` without the server's `canJoin`, or refused by it. */
  | 'FORBIDDEN'
  /** `presence:join` would put the connection in more rooms than `maxRoomsPerConnection`. */
  | 'TOO_MANY_ROOMS'
  /** The server cannot do this with its store (rooms on a store that does not support them yet). */
  | 'UNSUPPORTED';

export interface FailedAnswer {
  ok: false;
  code: AnswerErrorCode;
  message: string;
}

/** Every client event answers through its acknowledgement with `{ ok: true, ... }` or a `FailedAnswer`. */
export type Answer<T extends object = object> = ({ ok: true } & T) | FailedAnswer;

export interface SubscribeRequest {
  /** The users to watch: at most `maxSubscriptions` in all, per connection. */
  userIds: string[];
}

export interface SubscribeResult {
  /** The current presence of each user now watched, in request order (duplicates once). */
  users: WatchedUser[];
  /** The users `canSee` refused: not watched, and not told about. */
  denied: string[];
}

export interface UnsubscribeResult {
  /** How many users this connection still watches. */
  watching: number;
}

export interface SetStatusRequest {
  /** At most 100 bytes of UTF-8; `null` or `''` clears it. */
  customStatus: string | null;
  /** Cleared after this long: ms (1000 to 365 days) or a string such as `'30m'`. */
  ttl?: number | string;
}

export interface SetAvailabilityRequest {
  availability: Availability;
}

/** Events the server sends. */
export interface ServerToClientEvents {
  'presence:session': (session: SessionPayload) => void;
  'presence:kicked': (notice: KickedPayload) => void;
  'presence:changed': (change: ChangedPayload) => void;
  /** What changed in a joined room since the last message (batched per `roomBatchInterval`). */
  'presence:room': (message: RoomMessage) => void;
}

export interface JoinRequest {
  /** 1 to 128 characters. */
  room: string;
  /** The member's data, at most 1024 bytes of UTF-8 JSON; omitted keeps the member's current meta. */
  meta?: JsonValue;
}

export interface RoomUpdateRequest {
  room: string;
  meta: JsonValue;
}

/** The room events a client sends (acknowledged like the others). */
export interface RoomClientToServerEvents {
  'presence:join': (request: JoinRequest, ack: (answer: Answer<RoomSnapshot>) => void) => void;
  'presence:leave': (request: { room: string }, ack: (answer: Answer) => void) => void;
  'presence:room-update': (request: RoomUpdateRequest, ack: (answer: Answer) => void) => void;
}

/** Events a client sends; each answers through its acknowledgement callback, `{ ok, ... }` (optional for the first three). */
export interface ClientToServerEvents extends RoomClientToServerEvents {
  'presence:heartbeat': (ack?: (answer: Answer<{ serverTime: number }>) => void) => void;
  'presence:background': (ack?: (answer: Answer) => void) => void;
  'presence:foreground': (ack?: (answer: Answer) => void) => void;
  'presence:logout': (ack: (answer: Answer) => void) => void;
  'presence:subscribe': (request: SubscribeRequest, ack: (answer: Answer<SubscribeResult>) => void) => void;
  'presence:unsubscribe': (request: SubscribeRequest, ack: (answer: Answer<UnsubscribeResult>) => void) => void;
  'presence:set-status': (request: SetStatusRequest, ack: (answer: Answer<{ customStatus: string | null }>) => void) => void;
  /** Shared by all the user's devices; a choice is activity. */
  'presence:set-availability': (request: SetAvailabilityRequest, ack: (answer: Answer<{ availability: Availability }>) => void) => void;
  /** User activity (input, the page becoming visible): keeps the user from going away after idleTimeout. */
  'presence:activity': (ack?: (answer: Answer) => void) => void;
}

/** The room of the sockets watching a user, in the namespace presence is attached to. */
export const WATCH_ROOM_PREFIX = 'presence:user:';
