// express-presence/client: the browser and Node helper for a presence namespace, over socket.io-client.

import { io } from 'socket.io-client';
import { PresenceClient, type PresenceClientOptions } from './core.js';

export {
  PresenceClient,
  PresenceClientError,
  type ChangeListener,
  type IoFactory,
  type PresenceClientAuth,
  type PresenceClientErrorCode,
  type PresenceClientEvents,
  type PresenceClientOptions,
  type PresenceClientPlatform,
  type PresenceStorage,
} from './core.js';
export { PresenceRoom, type PresenceRoomEvents, type RoomChangeEvent } from './room.js';
export type { RoomMember, RoomMessage, RoomSnapshot, RoomDevice, JsonValue, Availability } from '../rooms/types.js';
export type { LastSeenApprox } from '../core/availability.js';
export type {
  Answer,
  AnswerErrorCode,
  ChangedPayload,
  ClientToServerEvents,
  FailedAnswer,
  HandshakeErrorCode,
  HandshakeErrorData,
  KickedPayload,
  PresenceHandshakeAuth,
  ServerToClientEvents,
  SessionPayload,
  SubscribeResult,
  WatchedUser,
} from '../socket/protocol.js';

/**
 * Connects a device to a presence namespace. In a page without a bundler, pass the global `io`
 * of `/socket.io/socket.io.js` as `options.io`, or map `socket.io-client` to
 * `/socket.io/socket.io.esm.min.js` in an import map.
 */
export function createPresenceClient(options: PresenceClientOptions): PresenceClient {
  return new PresenceClient({ ...options, io: options.io ?? io });
}
