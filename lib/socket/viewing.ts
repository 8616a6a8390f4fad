// What one viewer is shown of a user: invisible users as Offline, and last seen cut by the app's lastSeenVisibility rule.

import { LAST_SEEN_VISIBILITIES, viewFor, viewForSelf, type LastSeenVisibility, type UserTruth, type ViewedUser } from '../core/availability.js';
import type { Clock } from '../core/clock.js';
import type { LastSeenVisibilityRule, Logger } from '../options.js';
import { isPromiseLike, type MaybePromise } from '../core/store.js';

/** Applies `lastSeenVisibility` (default exact); a rule that throws, rejects or answers junk hides the last seen, logged once. */
export class Viewing {
  private warned = false;

  constructor(
    private readonly rule: LastSeenVisibilityRule | undefined,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  /** Whether every viewer sees the same (no rule): one message serves them all. */
  get uniform(): boolean {
    return this.rule === undefined;
  }

  /** How much of `targetId`'s last seen `viewerId` is shown; the user themselves sees everything. Synchronous when the rule is. */
  visibility(viewerId: string, targetId: string): MaybePromise<LastSeenVisibility> {
    const rule = this.rule;
    if (!rule || viewerId === targetId) return 'exact';
    let answer: MaybePromise<LastSeenVisibility>;
    try {
      answer = rule(viewerId, targetId);
    } catch (error) {
      return this.failed(error);
    }
    if (isPromiseLike(answer))
      return answer.then(
        (value) => this.checked(value),
        (error: unknown) => this.failed(error),
      );
    return this.checked(answer);
  }

  /** The user as `viewerId` is shown them. */
  view(viewerId: string, truth: UserTruth): MaybePromise<ViewedUser> {
    if (viewerId === truth.userId) return viewForSelf(truth);
    const visibility = this.visibility(viewerId, truth.userId);
    if (isPromiseLike(visibility)) return visibility.then((value) => viewFor(truth, value, this.clock.now()));
    return viewFor(truth, visibility, this.clock.now());
  }

  views(viewerId: string, truths: readonly UserTruth[]): Promise<ViewedUser[]> {
    return Promise.all(truths.map((truth) => this.view(viewerId, truth)));
  }

  /** What a viewer without a rule (or an exact one) is shown. */
  shown(truth: UserTruth, visibility: LastSeenVisibility = 'exact'): ViewedUser {
    return viewFor(truth, visibility, this.clock.now());
  }

  private checked(value: unknown): LastSeenVisibility {
    if ((LAST_SEEN_VISIBILITIES as readonly unknown[]).includes(value)) return value as LastSeenVisibility;
    return this.failed(new TypeError(`lastSeenVisibility must answer 'exact', 'approximate' or 'hidden'; got ${JSON.stringify(value) ?? typeof value}`));
  }

  private failed(error: unknown): 'hidden' {
    if (!this.warned) {
      this.warned = true;
      this.logger.error(
        'express-presence: lastSeenVisibility failed; the last seen is hidden from that viewer (logged once; later failures are hidden the same way)',
        error,
      );
    }
    return 'hidden';
  }
}
