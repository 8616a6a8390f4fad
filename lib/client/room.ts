// A joined room as the client helper keeps it: members and count kept live from presence:room, with events per change.

import type { JsonValue, RoomMember, RoomMessage, RoomSnapshot } from '../rooms/types.js';
import { TypedEmitter } from './emitter.js';

/** What changed, as one event: the message's lists (after a resync, the differences the client computed). */
export interface RoomChangeEvent {
  room: string;
  count: number;
  joined: RoomMember[];
  left: string[];
  updated: RoomMember[];
}

export interface PresenceRoomEvents {
  /** Anything changed (fires after the per-member events of the same message). */
  change: [RoomChangeEvent];
  join: [RoomMember];
  /** The user id of a member who left. */
  leave: [string];
  update: [RoomMember];
}

/** How the room reaches its client: the room only keeps state, the client speaks to the server. */
export interface RoomOwner {
  leaveRoom(room: PresenceRoom): Promise<void>;
  updateRoom(room: PresenceRoom, meta: JsonValue): Promise<void>;
}

/**
 * One room this client joined. `members` is null while the room has more members than the
 * server's `roomMemberLimit` (then only `count` is kept). Rejoined by the client after a reconnect.
 */
export class PresenceRoom extends TypedEmitter<PresenceRoomEvents> {
  private list: Map<string, RoomMember> | null = new Map();
  private total = 0;
  /** True once left: the client no longer rejoins it. */
  left = false;

  constructor(
    readonly name: string,
    /** The meta this client joined with (or last set), sent again when it rejoins. */
    public meta: JsonValue | undefined,
    private readonly owner: RoomOwner,
  ) {
    super();
  }

  /** The members, in join order; null above the server's roomMemberLimit. */
  get members(): RoomMember[] | null {
    return this.list ? [...this.list.values()] : null;
  }

  get count(): number {
    return this.total;
  }

  /** Leaves the room (the client stops rejoining it). */
  leave(): Promise<void> {
    return this.owner.leaveRoom(this);
  }

  /** Sets this member's meta (an update for the others, never a leave and a join). */
  update(meta: JsonValue): Promise<void> {
    return this.owner.updateRoom(this, meta);
  }

  /** A join answer (the first, or a rejoin's after a reconnect): what differs from before is told as a change. */
  reset(snapshot: RoomSnapshot, quiet: boolean): void {
    this.replace(snapshot.members, snapshot.count, quiet);
  }

  /** A `presence:room` of this room. */
  apply(message: RoomMessage): void {
    if (message.members !== undefined) {
      this.replace(message.members, message.count, false);
      return;
    }
    this.total = message.count;
    if (this.list) {
      for (const member of message.joined) this.list.set(member.userId, member);
      for (const member of message.updated) this.list.set(member.userId, member);
      for (const userId of message.left) this.list.delete(userId);
    }
    this.tell({ room: this.name, count: message.count, joined: message.joined, left: message.left, updated: message.updated });
  }

  private replace(members: RoomMember[] | null, count: number, quiet: boolean): void {
    const before = this.list;
    this.list = members ? new Map(members.map((member) => [member.userId, member])) : null;
    this.total = count;
    if (quiet) return;
    const change: RoomChangeEvent = { room: this.name, count, joined: [], left: [], updated: [] };
    if (before && this.list) {
      for (const [userId, member] of this.list) {
        const was = before.get(userId);
        if (!was) change.joined.push(member);
        else if (JSON.stringify(was) !== JSON.stringify(member)) change.updated.push(member);
      }
      for (const userId of before.keys()) if (!this.list.has(userId)) change.left.push(userId);
    }
    this.tell(change);
  }

  private tell(change: RoomChangeEvent): void {
    for (const member of change.joined) this.emit('join', member);
    for (const userId of change.left) this.emit('leave', userId);
    for (const member of change.updated) this.emit('update', member);
    this.emit('change', change);
  }
}
