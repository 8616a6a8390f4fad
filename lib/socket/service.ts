// What the Socket.IO adapter needs of a presence: the narrow service attach() is given (a Presence is one), not the facade module.

import type { PresenceEngine } from '../engine/engine.js';
import type { ResolvedConfig } from '../options.js';
import type { RoomRegistry } from '../rooms/index.js';
import type { SocketRoomConnection } from './rooms.js';

export interface SocketService {
  readonly config: ResolvedConfig;
  readonly engine: PresenceEngine;
  readonly rooms: RoomRegistry<SocketRoomConnection>;
}
