// The store contract's room part: what a store that shares rooms between processes provides (RedisStore's binding is lib/redis/rooms.ts).

import type { Platform } from './platforms.js';

/** One device as the shared store keeps it: `[platform, instanceId]`. */
export type SharedDevice = readonly [Platform, string];

/** A member's parts by process: owner → that process's devices of the user in the room. */
export type SharedOwners = Readonly<Record<string, readonly SharedDevice[]>>;

/** One change of a shared room, as every process hears it, in `version` order per room. */
export interface SharedRoomMessage {
  readonly room: string;
  /** Grows by one with each change of the room. */
  readonly version: number;
  readonly userId: string;
  readonly kind: 'joined' | 'left' | 'updated';
  /** The member's parts after the change; null once the member left. */
  readonly owners: SharedOwners | null;
  /** The member's meta as JSON ('null' when none). */
  readonly meta: string;
  /** Members after the change. */
  readonly count: number;
  /** The process whose write (or reap) made the change: it alone announces the backend events. */
  readonly by: string;
}

export interface SharedRoomUser {
  readonly userId: string;
  /** Its place in the room's join order (pages run by it). */
  readonly seq: number;
  readonly owners: SharedOwners;
  readonly meta: string;
}

/** A room as the store holds it now, and the version of its last change. */
export interface SharedRoomState {
  readonly version: number;
  readonly users: readonly SharedRoomUser[];
}

export interface SharedRoomsListener {
  /** A change of a room (every change of every room, this process's own included). */
  message(message: SharedRoomMessage): void;
  /** A user's status or custom status changed somewhere: look it up again. */
  status(userId: string, by: string): void;
  /** Messages may have been missed (the subscription was re-made): reload every mirrored room. */
  resync(): void;
}

/**
 * What a store shares rooms with: a binding (RedisStore's is lib/redis/rooms.ts) keeping each
 * process's part of each room, publishing every change to every process, and removing the parts
 * of a process whose lease ran out.
 */
export interface SharedRoomsBackend {
  start(owner: string, listener: SharedRoomsListener): void;
  /** Sets this process's devices of the user in the room (none: its part is removed); `meta` undefined keeps the member's. */
  set(room: string, userId: string, devices: readonly SharedDevice[], meta: string | undefined): Promise<void>;
  state(room: string): Promise<SharedRoomState>;
  count(room: string): Promise<number>;
  /** Members after join position `after`, in join order, at most `limit`, and whether more follow. */
  page(room: string, limit: number, after: number): Promise<{ users: SharedRoomUser[]; count: number; more: boolean }>;
  /** Tells the others a user's status or custom status changed. */
  status(userId: string): void;
  /** This process has no part in the room any more (and none being written): it leaves the list its reaper reads. */
  unlist(room: string): void;
  /** Stops; this process's parts stay for `holdMs` (a graceful handover), then the others remove them. */
  close(holdMs: number): Promise<void>;
}
