// Fair use on one presence mount: per-user budgets of connections and subscriptions, and a token bucket per connection.

import type { EventRateLimit, ResolvedConfig } from '../options.js';

/**
 * What one user holds on this mount (in this process): live connections, and watched users summed
 * over them. Kept only while the user has a connection here.
 */
export class UserBudget {
  connections = 0;
  subscriptions = 0;
  constructor(readonly userId: string) {}
}

/** A connection's token bucket: the tokens left and when they were last counted (the mount's clock, ms). */
export interface TokenBucket {
  tokens: number;
  tokensAt: number;
}

/**
 * The per-user limits of one mount. Counted per process: a user's connections to other processes
 * are not seen here, so nothing on the login path waits on the store for them (see README, Fair use).
 */
export class FairUse {
  private readonly users = new Map<string, UserBudget>();
  readonly maxConnectionsPerUser: number;
  readonly maxSubscriptionsPerUser: number;

  constructor(config: Pick<ResolvedConfig, 'maxConnectionsPerUser' | 'maxSubscriptionsPerUser'>) {
    this.maxConnectionsPerUser = config.maxConnectionsPerUser;
    this.maxSubscriptionsPerUser = config.maxSubscriptionsPerUser;
  }

  /** Takes a connection for the user; undefined when they already hold `maxConnectionsPerUser` here. */
  takeConnection(userId: string): UserBudget | undefined {
    let budget = this.users.get(userId);
    if (!budget) {
      budget = new UserBudget(userId);
      this.users.set(userId, budget);
    }
    if (budget.connections >= this.maxConnectionsPerUser) return undefined;
    budget.connections++;
    return budget;
  }

  /** A connection is gone, with the `watched` users it held. */
  releaseConnection(budget: UserBudget, watched: number): void {
    budget.connections--;
    budget.subscriptions = Math.max(0, budget.subscriptions - watched);
    if (budget.connections <= 0 && this.users.get(budget.userId) === budget) this.users.delete(budget.userId);
  }

  /** Reserves `count` more watched users for the user; false (nothing reserved) beyond `maxSubscriptionsPerUser`. */
  takeSubscriptions(budget: UserBudget, count: number): boolean {
    if (budget.subscriptions + count > this.maxSubscriptionsPerUser) return false;
    budget.subscriptions += count;
    return true;
  }

  /** Gives back watched users; a connection that already left gave back all of its own (budget undefined). */
  releaseSubscriptions(budget: UserBudget | undefined, count: number): void {
    if (budget) budget.subscriptions = Math.max(0, budget.subscriptions - count);
  }

  /** Users with a connection here now (for tests and diagnostics). */
  get size(): number {
    return this.users.size;
  }
}

/**
 * Takes one token from the bucket, refilled at `perSecond` up to `burst` since it was last counted;
 * false when none is left. A clock that went back only restarts the count.
 */
export function takeToken(bucket: TokenBucket, limit: Readonly<EventRateLimit>, now: number): boolean {
  const elapsed = now - bucket.tokensAt;
  if (elapsed !== 0) {
    if (elapsed > 0) bucket.tokens = Math.min(limit.burst, bucket.tokens + (elapsed * limit.perSecond) / 1000);
    bucket.tokensAt = now;
  }
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}
