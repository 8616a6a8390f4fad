// Revoked sessions kept per user: bounded per user and in all, so that one user's churn never makes another's kicked device welcome.

import type { Clock } from '../core/clock.js';
import { Scheduler, type Scheduled } from '../core/scheduler.js';
import type { Logger } from '../core/types.js';

/** One user's revoked sessions, oldest first: session id → until when it is refused (ms, inclusive). */
class UserRevocations implements Scheduled {
  readonly sessions = new Map<string, number>();
  dueAt = Infinity;
  heapIndex = -1;
  constructor(readonly userId: string) {}
}

export interface RevocationLimits {
  /** Revoked sessions kept for one user; beyond it that user's oldest is forgotten. */
  readonly perUser: number;
  /** Revoked sessions kept in all; beyond it the user with the most gives up their oldest. */
  readonly total: number;
}

/**
 * Each revoked session is refused until its expiry (the PushOnline TTL after it was revoked).
 * What is forgotten early to stay within bounds is always the oldest revocation of the user who
 * has the most: a user kicking themselves a thousand times a second only ever shortens their
 * own memory, never that of a user kicked once.
 */
export class Revocations {
  private readonly users = new Map<string, UserRevocations>();
  /** Whose each session is: a revoked session is refused whoever presents it, as RedisStore does. */
  private readonly owners = new Map<string, UserRevocations>();
  private count = 0;
  /** The user with the most revocations as last seen, and their count then (looked for again once it halved). */
  private heaviest: UserRevocations | undefined;
  private heaviestSize = 0;
  private readonly expiry: Scheduler<UserRevocations>;

  constructor(
    private readonly clock: Clock,
    private readonly limits: RevocationLimits,
    logger: Logger,
  ) {
    this.expiry = new Scheduler(
      clock,
      (user, now) => this.expire(user, now),
      (error) => logger.error('express-presence: forgetting expired revoked sessions failed', error),
    );
  }

  /** Revoked sessions kept now (expired ones are dropped by a timer). */
  get size(): number {
    return this.count;
  }

  /** Is this session refused at `now`? */
  has(sessionId: string, now: number): boolean {
    const until = this.owners.get(sessionId)?.sessions.get(sessionId);
    return until !== undefined && now <= until;
  }

  /** Refuses the session until `until` (ms); `perUserBound` false only for sessions whose user is unknown (kept together). */
  add(userId: string, sessionId: string, until: number, perUserBound = true): void {
    let user = this.users.get(userId);
    if (!user) {
      user = new UserRevocations(userId);
      this.users.set(userId, user);
    }
    const sessions = user.sessions;
    const owner = this.owners.get(sessionId);
    // Session ids are the server's random ones: one revoked for two users can only be a client's replay. The last one keeps it.
    if (owner && owner !== user) this.forget(owner, sessionId);
    // Deleted first, so the map stays in revocation order (the oldest first).
    if (!sessions.delete(sessionId)) this.count++;
    sessions.set(sessionId, until);
    this.owners.set(sessionId, user);
    if (perUserBound && sessions.size > this.limits.perUser) this.forgetOldest(user);
    if (sessions.size >= this.heaviestSize || !this.heaviest) {
      this.heaviest = user;
      this.heaviestSize = sessions.size;
    }
    while (this.count > this.limits.total) this.forgetOldest(this.findHeaviest());
    this.reschedule(user);
  }

  /** Every revocation still in force, for persistence. */
  *entries(): Iterable<{ userId: string; sessionId: string; until: number }> {
    for (const user of this.users.values()) for (const [sessionId, until] of user.sessions) yield { userId: user.userId, sessionId, until };
  }

  close(): void {
    this.expiry.close();
  }

  private findHeaviest(): UserRevocations {
    let heaviest = this.heaviest;
    if (!heaviest || heaviest.sessions.size * 2 < this.heaviestSize || this.users.get(heaviest.userId) !== heaviest) {
      heaviest = undefined;
      for (const user of this.users.values()) if (!heaviest || user.sessions.size > heaviest.sessions.size) heaviest = user;
      this.heaviest = heaviest;
    }
    this.heaviestSize = heaviest?.sessions.size ?? 0;
    return heaviest as UserRevocations;
  }

  private forgetOldest(user: UserRevocations): void {
    const oldest = user.sessions.keys().next();
    if (!oldest.done) this.forget(user, oldest.value);
  }

  private forget(user: UserRevocations, sessionId: string): void {
    if (!user.sessions.delete(sessionId)) return;
    this.count--;
    if (this.owners.get(sessionId) === user) this.owners.delete(sessionId);
    if (user.sessions.size === 0) this.drop(user);
  }

  private drop(user: UserRevocations): void {
    this.expiry.cancel(user);
    if (this.users.get(user.userId) === user) this.users.delete(user.userId);
    if (this.heaviest === user) this.heaviest = undefined;
  }

  /** One timer entry per user, due when their oldest revocation may be forgotten. */
  private reschedule(user: UserRevocations): void {
    const first = user.sessions.values().next();
    if (first.done) this.drop(user);
    else if (this.users.get(user.userId) === user) this.expiry.schedule(user, first.value + 1);
  }

  private expire(user: UserRevocations, now: number): void {
    for (const [sessionId, until] of user.sessions) {
      if (until >= now) break;
      user.sessions.delete(sessionId);
      this.count--;
      if (this.owners.get(sessionId) === user) this.owners.delete(sessionId);
    }
    this.reschedule(user);
  }
}
