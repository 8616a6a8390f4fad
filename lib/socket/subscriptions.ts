// Watching users over Socket.IO: subscribe with a cap and a visibility rule, and one room emit per change.

import { EventEmitter } from 'node:events';
import type { Namespace } from 'socket.io';
import { checkUserId, type PresenceEngine } from '../engine/engine.js';
import type { PresenceChange } from '../core/types.js';
import { viewForSelf, type Availability, type LastSeenVisibility, type UserTruth } from '../core/availability.js';
import type { CanSee, Logger } from '../options.js';
import { isPromiseLike, type MaybePromise } from '../core/store.js';
import type { Viewing } from './viewing.js';
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

/** The room of `userId`'s own sockets that watch themselves: they are told the truth (an invisible user sees themselves). */
export function selfRoom(userId: string): string {
  return SELF_ROOM_PREFIX + userId;
}

const SELF_ROOM_PREFIX = 'presence:self:';

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
    private readonly viewing: Viewing,
  ) {}

  /**
   * Subscribes a new connection to the user's contacts, as many as fit in maxSubscriptions and maxSubscriptionsPerUser (the
   * rest are left out, logged); answers their snapshot as this viewer is shown them.
   */
  async subscribeContacts(socket: PresenceSocket, state: SocketPresence, contacts: readonly unknown[]): Promise<SubscribeResult['users']> {
    const viewerId = state.connection.userId;
    const ids: string[] = [];
    const seen = new Set<string>();
    for (const id of contacts) {
      try {
        checkUserId(id, 'a contact id');
      } catch (error) {
        this.logger.warn(`express-presence: contacts(${JSON.stringify(viewerId)}) answered a bad id, left out: ${(error as Error).message}`);
        continue;
      }
      if (!seen.has(id)) {
        seen.add(id);
        ids.push(id);
      }
    }
    const watching = state.watching?.size ?? 0;
    const budgetLeft = state.budget ? this.fairUse.maxSubscriptionsPerUser - state.budget.subscriptions : Infinity;
    const room = Math.max(0, Math.min(this.maxSubscriptions - watching, budgetLeft));
    if (ids.length > room) {
      this.logger.warn(
        `express-presence: user ${viewerId} has ${ids.length} contacts; ${room} fit in maxSubscriptions (${this.maxSubscriptions}) and maxSubscriptionsPerUser (${this.fairUse.maxSubscriptionsPerUser}), the rest are not subscribed`,
      );
      ids.length = room;
    }
    if (ids.length === 0) return [];
    const answer = await this.subscribe(socket, state, ids);
    return answer.ok ? answer.users : [];
  }

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
      if (allowed.length > 0) {
        const viewerId = state.connection.userId;
        const rooms = allowed.map(watchRoom);
        // Watching oneself: told the truth, apart from the others watching.
        if (allowed.includes(viewerId)) rooms.push(selfRoom(viewerId));
        await socket.join(rooms);
      }
      const truths = allowed.length > 0 ? await this.engine.truths(allowed) : [];
      const users = await this.viewing.views(state.connection.userId, truths);
      return { ok: true, users, denied };
    } catch (error) {
      // Refused as a whole: what this call added is taken back, so the client's retry starts clean.
      for (const userId of fresh) {
        if (refused.has(userId) || !watching.delete(userId)) continue;
        this.fairUse.releaseSubscriptions(state.budget, 1);
        void socket.leave(watchRoom(userId));
        if (userId === state.connection.userId) void socket.leave(selfRoom(userId));
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
        if (userId === state.connection.userId) void socket.leave(selfRoom(userId));
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

/** The truth a device change tells (no store read): an invisible user's devices are never told to others. */
function truthOfChange(change: PresenceChange): UserTruth {
  return {
    userId: change.userId,
    status: change.userStatus,
    availability: change.availability,
    idleSince: change.idleSince === null ? null : Date.parse(change.idleSince),
    customStatus: change.customStatus,
    lastSeen: change.lastSeen === null ? null : Date.parse(change.lastSeen),
    frozenLastSeen: null,
    frozenCustomStatus: null,
  };
}

/**
 * Emits `presence:changed` to the watchers of each user whose status, availability, idleness or custom status changed.
 * Without `lastSeenVisibility` every watcher is shown the same: one emit per change. With it the watchers are grouped by
 * what each is shown (exact, approximate, hidden): one emit per group. The user's own sockets watching themselves are
 * told the truth; an invisible user's changes reach nobody else, except going invisible itself (shown as going Offline).
 */
export function relayChanges(engine: PresenceEngine, nsp: PresenceNamespace, viewing: Viewing): void {
  /** Per-viewer relays of one user wait for the one before (an async rule must not reorder a user's changes). */
  const pending = new Map<string, Promise<void>>();

  const relay = (truth: UserTruth, toOthers: boolean): void => {
    const room = watchRoom(truth.userId);
    if (unwatched(nsp, room)) return;
    const self = selfRoom(truth.userId);
    const selfView = viewForSelf(truth);
    if (viewing.uniform && toOthers) {
      const shown = viewing.shown(truth);
      // Most users are shown to others as they are: one emit serves their own sockets too.
      if (sameView(shown, selfView)) {
        nsp.to(room).emit('presence:changed', shown);
        return;
      }
      if (!unwatched(nsp, self)) nsp.to(self).emit('presence:changed', selfView);
      nsp.to(room).except(self).emit('presence:changed', shown);
      return;
    }
    if (!unwatched(nsp, self)) nsp.to(self).emit('presence:changed', selfView);
    if (!toOthers) return;
    const previous = pending.get(truth.userId);
    const run = (): MaybePromise<void> => relayPerViewer(nsp, viewing, room, truth);
    let done: MaybePromise<void>;
    if (previous) done = previous.then(run);
    else {
      try {
        done = run();
      } catch (error) {
        done = Promise.reject(error);
      }
    }
    if (!isPromiseLike(done)) return;
    const settled = done.then(
      () => undefined,
      (error: unknown) => engine.config.logger.error('express-presence: relaying a change to its watchers failed', error),
    );
    pending.set(truth.userId, settled);
    void settled.then(() => {
      if (pending.get(truth.userId) === settled) pending.delete(truth.userId);
    });
  };

  engine.on('change', (change: PresenceChange) => {
    if (change.userStatus === change.previousUserStatus) return;
    relay(truthOfChange(change), change.availability !== 'invisible');
  });
  engine.on('user-state', (truth: UserTruth, previousAvailability: Availability | null) => {
    // While invisible nothing is told to others; going invisible (or back) is.
    const toOthers = truth.availability !== 'invisible' || (previousAvailability !== null && previousAvailability !== 'invisible');
    relay(truth, toOthers);
  });
}

function sameView(a: WatchedUser, b: WatchedUser): boolean {
  return (
    a.status === b.status &&
    a.availability === b.availability &&
    a.idleSince === b.idleSince &&
    a.customStatus === b.customStatus &&
    a.lastSeen === b.lastSeen &&
    a.lastSeenApprox === b.lastSeenApprox
  );
}

/**
 * Each watcher of `room` with its viewer: this process's sockets read straight from the in-memory adapter (no list
 * built), or a cluster adapter's fetchSockets for all processes.
 */
function relayPerViewer(nsp: PresenceNamespace, viewing: Viewing, room: string, truth: UserTruth): MaybePromise<void> {
  const adapter = nsp.adapter;
  if (Object.getPrototypeOf(adapter.constructor) === EventEmitter) {
    const ids = adapter.rooms.get(room);
    if (!ids) return;
    const sockets = nsp.sockets;
    return groupAndEmit(nsp, viewing, ids, (id) => sockets.get(id)?.data?.presence?.userId, truth);
  }
  return nsp
    .in(room)
    .fetchSockets()
    .then((found) => {
      const viewers = new Map<string, string | undefined>();
      for (const socket of found) viewers.set(socket.id, (socket.data as { presence?: { userId?: string } } | undefined)?.presence?.userId);
      return groupAndEmit(nsp, viewing, viewers.keys(), (id) => viewers.get(id), truth);
    });
}

function groupAndEmit(
  nsp: PresenceNamespace,
  viewing: Viewing,
  ids: Iterable<string>,
  viewerOf: (id: string) => string | undefined,
  truth: UserTruth,
): MaybePromise<void> {
  const targetId = truth.userId;
  const groups: Record<LastSeenVisibility, string[]> = { exact: [], approximate: [], hidden: [] };
  const emit = (): void => {
    for (const visibility of ['exact', 'approximate', 'hidden'] as const) {
      const ids = groups[visibility];
      if (ids.length > 0) nsp.to(ids).emit('presence:changed', viewing.shown(truth, visibility));
    }
  };
  // The hot path: a synchronous rule, asked once per watching socket, straight into its group. The user's own sockets were
  // told the truth through their self room; a socket without a viewer is told nothing.
  let pending: { id: string; verdict: Promise<LastSeenVisibility> }[] | undefined;
  for (const id of ids) {
    const viewerId = viewerOf(id);
    if (viewerId === undefined || viewerId === targetId) continue;
    const verdict = viewing.visibility(viewerId, targetId);
    if (isPromiseLike(verdict)) (pending ??= []).push({ id, verdict });
    else groups[verdict].push(id);
  }
  if (!pending) {
    emit();
    return;
  }
  const waiting = pending;
  return Promise.all(waiting.map((entry) => entry.verdict)).then((verdicts) => {
    for (let i = 0; i < waiting.length; i++) groups[verdicts[i]!].push(waiting[i]!.id);
    emit();
  });
}
