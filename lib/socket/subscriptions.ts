// Watching users over Socket.IO: subscribe with a cap and a visibility rule, and one room emit per change.

import { EventEmitter } from 'node:events';
import type { Namespace } from 'socket.io';
import { checkUserId, type PresenceEngine } from '../engine/engine.js';
import type { CustomStatusChange, PresenceChange, UserPresence } from '../core/types.js';
import type { CanSee } from '../options.js';
import type { Logger } from '../core/types.js';
import {
  WATCH_ROOM_PREFIX,
  type Answer,
  type FailedAnswer,
  type ServerToClientEvents,
  type SubscribeResult,
  type UnsubscribeResult,
  type WatchedUser,
} from './protocol.js';
import type { FairUse } from './fair-use.js';
import type { LooseClientEvents, PresenceSocket, SocketPresence } from './session.js';

export type PresenceNamespace = Namespace<LooseClientEvents, ServerToClientEvents>;

/** The room of the sockets watching `userId`. */
export function watchRoom(userId: string): string {
  return WATCH_ROOM_PREFIX + userId;
}

function watched(user: UserPresence): WatchedUser {
  return { userId: user.userId, status: user.status, customStatus: user.customStatus, lastSeen: user.lastSeen };
}

/** Reads `{ userIds }`; answers the ids, or a refusal saying what is wrong. */
export function readUserIds(event: string, payload: unknown, max: number): string[] | FailedAnswer {
  const userIds = typeof payload === 'object' && payload !== null ? (payload as { userIds?: unknown }).userIds : undefined;
  if (!Array.isArray(userIds)) return { ok: false, code: 'BAD_REQUEST', message: `${event} takes { userIds: [userId, ...] }` };
  if (userIds.length > max) {
    return { ok: false, code: 'TOO_MANY_SUBSCRIPTIONS', message: `${event} takes at most ${max} user ids (maxSubscriptions); got ${userIds.length}` };
  }
  try {
    for (let i = 0; i < userIds.length; i++) checkUserId(userIds[i], `userIds[${i}]`);
  } catch (error) {
    return { ok: false, code: 'BAD_REQUEST', message: (error as Error).message };
  }
  return userIds as string[];
}

export class Subscriptions {
  constructor(
    private readonly engine: PresenceEngine,
    private readonly maxSubscriptions: number,
    private readonly canSee: CanSee | undefined,
    private readonly logger: Logger,
    private readonly fairUse: FairUse,
  ) {}

  /**
   * Watches the users the viewer may see. The cap is checked and the new ids reserved before any
   * await, so concurrent subscribes cannot overshoot it; the rooms are joined before the query, so
   * no change falls between the answer and the first `presence:changed`.
   */
  async subscribe(socket: PresenceSocket, state: SocketPresence, userIds: readonly string[]): Promise<Answer<SubscribeResult>> {
    const requested = [...new Set(userIds)];
    const watching = (state.watching ??= new Set());
    const fresh = requested.filter((userId) => !watching.has(userId));
    if (watching.size + fresh.length > this.maxSubscriptions) {
      return {
        ok: false,
        code: 'TOO_MANY_SUBSCRIPTIONS',
        message: `a connection may watch at most ${this.maxSubscriptions} users (maxSubscriptions); it watches ${watching.size} and asked for ${fresh.length} more`,
      };
    }
    // The user's budget over all their connections here; contacts subscribed on connect count too.
    if (fresh.length > 0 && state.budget && !this.fairUse.takeSubscriptions(state.budget, fresh.length)) {
      const max = this.fairUse.maxSubscriptionsPerUser;
      return {
        ok: false,
        code: 'TOO_MANY_SUBSCRIPTIONS',
        message: `a user may watch at most ${max} users over all their connections (maxSubscriptionsPerUser); this user watches ${state.budget.subscriptions} and asked for ${fresh.length} more`,
      };
    }
    for (const userId of fresh) watching.add(userId);

    const denied: string[] = [];
    if (this.canSee && fresh.length > 0) {
      const viewerId = state.connection.userId;
      const verdicts = await Promise.all(fresh.map((targetId) => this.visible(viewerId, targetId)));
      for (let i = 0; i < fresh.length; i++) {
        if (verdicts[i]) continue;
        const userId = fresh[i] as string;
        denied.push(userId);
        if (watching.delete(userId)) this.fairUse.releaseSubscriptions(state.budget, 1);
      }
    }
    // An unsubscribe may have come meanwhile; what is still reserved is what this call watches.
    const refused = new Set(denied);
    const allowed = requested.filter((userId) => watching.has(userId) && !refused.has(userId));
    if (!socket.connected) return { ok: false, code: 'NOT_LOGGED_IN', message: 'the connection closed' };
    try {
      if (allowed.length > 0) await socket.join(allowed.map(watchRoom));
      const users = allowed.length > 0 ? await this.engine.query(allowed, { detail: false }) : [];
      return { ok: true, users: users.map(watched), denied };
    } catch (error) {
      // Refused as a whole: what this call added is taken back, so the client's retry starts clean.
      for (const userId of fresh) {
        if (refused.has(userId) || !watching.delete(userId)) continue;
        this.fairUse.releaseSubscriptions(state.budget, 1);
        void socket.leave(watchRoom(userId));
      }
      throw error;
    }
  }

  unsubscribe(socket: PresenceSocket, state: SocketPresence, userIds: readonly string[]): Answer<UnsubscribeResult> {
    const watching = state.watching;
    if (watching) {
      for (const userId of userIds) {
        if (!watching.delete(userId)) continue;
        this.fairUse.releaseSubscriptions(state.budget, 1);
        void socket.leave(watchRoom(userId));
      }
    }
    return { ok: true, watching: watching?.size ?? 0 };
  }

  /** A visibility rule that throws or rejects hides the user (and is logged): failing closed leaks nothing. */
  private async visible(viewerId: string, targetId: string): Promise<boolean> {
    try {
      return (await (this.canSee as CanSee)(viewerId, targetId)) === true;
    } catch (error) {
      this.logger.error('express-presence: canSee threw; the user is treated as not visible', error);
      return false;
    }
  }
}

/**
 * True when nobody can be watching the room: the namespace has Socket.IO's own in-memory adapter
 * (which knows every member) and the room is empty. Most users have no watchers, and an emit
 * encodes its packet before finding that out. A cluster adapter (Redis) may have members on
 * other processes, so with one every change is emitted.
 */
function unwatched(nsp: PresenceNamespace, room: string): boolean {
  const adapter = nsp.adapter;
  return Object.getPrototypeOf(adapter.constructor) === EventEmitter && !adapter.rooms.has(room);
}

/** Emits `presence:changed` to the room of each user whose status or custom status changed: one emit per change. */
export function relayChanges(engine: PresenceEngine, nsp: PresenceNamespace): void {
  engine.on('change', (change: PresenceChange) => {
    if (change.userStatus === change.previousUserStatus) return;
    const room = watchRoom(change.userId);
    if (unwatched(nsp, room)) return;
    nsp.to(room).emit('presence:changed', {
      userId: change.userId,
      status: change.userStatus,
      customStatus: change.customStatus,
      lastSeen: change.lastSeen,
    });
  });
  engine.on('custom-status', (change: CustomStatusChange) => {
    const room = watchRoom(change.userId);
    if (unwatched(nsp, room)) return;
    if (change.userStatus === 'Online') {
      // Online users were seen now; no need to ask the store.
      nsp.to(room).emit('presence:changed', {
        userId: change.userId,
        status: change.userStatus,
        customStatus: change.customStatus,
        lastSeen: new Date(change.at).toISOString(),
      });
      return;
    }
    engine.query([change.userId], { detail: false }).then(
      ([user]) => {
        if (user) nsp.to(room).emit('presence:changed', watched(user));
      },
      (error: unknown) => engine.config.logger.error('express-presence: could not read a user to relay a custom status change', error),
    );
  });
}
