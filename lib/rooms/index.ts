// The rooms of one mount, built over the engine: the registry, fed the engine's status and custom-status changes.

import type { PresenceEngine } from '../engine/engine.js';
import { RoomRegistry, type RoomConnection } from './registry.js';
import { SharedRooms } from './shared.js';

export { RoomRegistry, RoomError, type RoomConnection, type RoomDelivery, type RoomErrorCode } from './registry.js';
export {
  RemoteConnection,
  type SharedRoomsBackend,
  type SharedRoomMessage,
  type SharedRoomState,
  type SharedRoomUser,
  type SharedDevice,
  type SharedOwners,
} from './shared.js';
export * from './types.js';
export * from './validate.js';

/**
 * Whether the store keeps every connection in this process, so that rooms kept here are the whole
 * truth. Stores shared by several processes (RedisStore) do not, and rooms refuse to run on them
 * rather than answer for one process as if it were all of them.
 */
export function roomsSupported(engine: PresenceEngine): boolean {
  const rooms = engine.store.rooms;
  return rooms === 'in-process' || (rooms === 'shared' && typeof engine.store.sharedRooms === 'function');
}

/** The message every refusal of rooms on a store without them carries. */
export function roomsUnsupportedMessage(engine: PresenceEngine): string {
  const name = (engine.config.store as object).constructor?.name ?? 'this store';
  return `rooms are not yet supported by ${name}: they need a store that shares them across processes (the MemoryStore keeps them in this process)`;
}

/** The mount's room options, resolved. */
export interface RoomSettings {
  readonly roomMemberLimit: number;
  readonly roomBatchInterval: number;
  readonly maxRoomsPerConnection: number;
}

/** A registry that follows the engine: each status or custom-status change is an `updated`, each device ended lets its held memberships go. */
export function createRooms<C extends RoomConnection>(engine: PresenceEngine, settings: RoomSettings): RoomRegistry<C> {
  const config = engine.config;
  const rooms = new RoomRegistry<C>({
    clock: config.clock,
    memberLimit: settings.roomMemberLimit,
    batchInterval: settings.roomBatchInterval,
    maxRoomsPerConnection: settings.maxRoomsPerConnection,
    logger: config.logger,
    lookup: async (userId) => {
      const [truth] = await engine.truths([userId]);
      return { status: truth?.status ?? 'Offline', customStatus: truth?.customStatus ?? null, availability: truth?.availability ?? 'available' };
    },
  });
  engine.on('change', (change) => {
    if (change.instanceStatus !== 'Online') rooms.deviceGone(change.userId, change.instanceId);
    for (const kicked of change.kicked) rooms.deviceGone(change.userId, kicked.instanceId);
    rooms.userChanged(change.userId, { status: change.userStatus, customStatus: change.customStatus, availability: change.availability });
  });
  // Custom status and availability (an invisible member is left out of what clients are told).
  engine.on('user-state', (truth) =>
    rooms.userChanged(truth.userId, { status: truth.status, customStatus: truth.customStatus, availability: truth.availability }),
  );
  // A store without state answers (a custom status only) still updates the members.
  engine.on('custom-status', (change) => rooms.userChanged(change.userId, { status: change.userStatus, customStatus: change.customStatus }));
  // Through the engine's store: a store still starting holds the rooms binding back too.
  const store = engine.store;
  if (store.rooms === 'shared' && typeof store.sharedRooms === 'function') rooms.shared = new SharedRooms(engine, rooms, store.sharedRooms());
  return rooms;
}
