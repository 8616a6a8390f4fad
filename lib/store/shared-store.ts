// The multi-process protocol of a shared store, written once: the outage queue, the lease, sweeps, reconciliation after an
// outage (replay, ends applied again, re-assertion, waiting kicks) and the memory of recent ends. A backend (RedisStore)
// extends it with its binding: the atomic steps, the lease write, the sweep and the subscription to ends.

import type { Clock, TimerHandle } from '../core/clock.js';
import { isStoreUnavailable, StoreUnavailableError } from '../core/errors.js';
import type { PresenceStats, EndNotice } from '../core/types.js';
import type {
  LiveInstance,
  MultiProcessStore,
  PresenceStore,
  StoreAvailabilityRequest,
  StoreAvailabilityResult,
  StoreChange,
  StoreContext,
  StoreCustomStatusRequest,
  StoredUser,
  StoreKickRequest,
  StoreLoginRequest,
  StoreLoginResult,
  StorePushOnlineRequest,
  StoreRemoveRequest,
  StoreUserState,
} from '../core/store.js';

/** Replays of one waiting operation before it is given up (the backend answers, but refuses it). */
const MAX_REPLAYS = 3;
/** Live devices re-asserted at once after an outage. */
const REASSERT_BATCH = 100;
/** Recent ends and admin kicks remembered at most (the oldest are forgotten first). */
const MAX_RECENT_ENDS = 10_000;
const MAX_RECENT_KICKS = 1000;
/** How long (in leases) an end is remembered after it was last applied, and an admin kick's mark kept by the backend. */
const END_MEMORY_LEASES = 3;

/** A session this process ended (a login's kick, an admin kick), applied again after each reconnection while remembered. */
export interface RememberedEnd {
  readonly sessionId: string;
  readonly userId: string;
  readonly instanceId: string;
  /** The notice as JSON, {reason, by?}. */
  readonly notice: string;
}

/** An admin kick this process made (platform and instanceId '' for any): its mark is written again after each reconnection. */
export interface RememberedKick {
  readonly userId: string;
  readonly platform: string;
  readonly instanceId: string;
  /** When it was asked (ms): devices taken up after it are not its targets. */
  readonly at: number;
}

/** A login as the binding runs it: `reassert` for a live device logged in again after an outage; `quiet` when nothing changed. */
export type SharedLoginResult = StoreLoginResult & { readonly quiet?: true };

/** Something that waited for the backend: replayed in order once it is back. */
interface Waiting {
  run(): Promise<unknown>;
  fail(error: unknown): void;
  attempts: number;
  /** A login waiting for the backend: refused when the store closes (a transport end just stays unrecorded). */
  login?: boolean;
  /** A transport end given up at close: it settles unrecorded (other processes reap the device once the lease is gone). */
  drop?: () => void;
}

export interface SharedStoreOptions {
  /** The backend's name in messages ('Redis'). */
  readonly backend: string;
  /** How long a lease lasts without renewal (ms); renewed every third of it. */
  readonly leaseTtl: number;
  /** How often due expiries and dead processes are looked for (ms). */
  readonly sweepInterval: number;
}

/**
 * A store shared by several processes: the protocol every such store needs, whatever holds the data. The subclass binds it to a
 * backend: it implements the protected abstract steps (each one atomic in the backend) and tells the base what its connection
 * does (`backendReady`, `backendClosed`, `report`, `subscribed`, `endHeard`). Everything else is here:
 *
 * - **Outage queue.** While the backend is away, transport ends are queued and replayed in order once it is back (they must
 *   not be lost); logins and admin kicks wait for it up to `storeTimeout` (at most `leaseTtl`), then are refused.
 *   Queries are refused at once rather than answered from a stale copy.
 * - **Lease.** Renewed every third of `leaseTtl`; a renewal that finds it was lost (this process stalled) re-asserts.
 * - **Sweeps.** Every `sweepInterval`, the binding's `sweepOnce` ends due PushOnline devices and dead processes' devices.
 * - **Reconciliation** after an outage or a lost lease: the lease, the queue, the ends this process made lately applied again
 *   (the backend may have restarted empty), every live device re-asserted, then the kicks that waited.
 * - **End memory.** The sessions this process ended and the kicks it made, kept `endMemory` ms after last applied.
 */
export abstract class SharedStore implements PresenceStore, MultiProcessStore {
  protected context: StoreContext | undefined;
  protected readonly leaseTtl: number;
  protected readonly sweepInterval: number;
  /** How long an end is remembered after it was last applied, and how long the backend keeps an admin kick's mark. */
  readonly endMemory: number;
  /** True once close() began. */
  protected closed = false;
  /** True while the backend is known to be away (between the first failure of an episode and the next success). */
  protected down = false;
  private readonly backend: string;
  private readonly timers = new Set<TimerHandle>();
  /** The periodic tasks (lease, sweep) running now: close waits for them, so the changes a sweep reports come before it resolves. */
  private readonly running = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;
  /** Set by handOver: close leaves this process's devices to the others until then instead of at once. */
  private handoverUntil: number | undefined;
  /** Transport ends and logins that could not reach the backend, replayed in order once it is back. */
  private pending: Waiting[] = [];
  /** Admin kicks made while the backend was away or this process was reconciling: run once its live devices are re-asserted. */
  private waitingKicks: Waiting[] = [];
  /** By session id, oldest first (see reapply). */
  private readonly recentEnds = new Map<string, RememberedEnd & { until: number }>();
  private readonly recentKicks: (RememberedKick & { until: number })[] = [];
  /** True once the first subscription to ends is in place. */
  private subscribedOnce = false;
  /** True once this process's lease was written: a later renewal that finds it gone means other processes reaped us. */
  private leaseHeld = false;
  /** The reconciliation running now, and whether another was asked for meanwhile. */
  private reconciling: Promise<void> | undefined;
  private reconcileAgain = false;
  /**
   * No other process's devices are reaped before this time: after an outage of this process's own, or a lease renewal or sweep
   * the backend was slow to answer, the others get one lease to renew theirs, which may have run out only because they could not
   * reach the backend either (on a Redis Cluster a renewal waits for every master: one master away stalls the renewals in the
   * others' buckets too, and ioredis may retry the commands until it is back rather than fail them).
   */
  private reapNotBefore = 0;
  /** When the lease renewal under way was sent (undefined when none is). */
  private renewingSince: number | undefined;
  /** The policy of the last login, for devices re-asserted after an outage. */
  private limits: StoreLoginRequest['limits'] = { loginPolicy: 'single', maxInstancesPerPlatform: 1, maxWebInstances: 1 };

  protected constructor(options: SharedStoreOptions) {
    this.backend = options.backend;
    this.leaseTtl = options.leaseTtl;
    this.sweepInterval = options.sweepInterval;
    this.endMemory = END_MEMORY_LEASES * options.leaseTtl;
  }

  // The binding: what a backend implements. Each step is atomic in the backend and throws StoreUnavailableError (or an error
  // `report` counts as an outage) when the backend cannot be reached.

  /** Whether commands can be sent now (the connection is up). */
  protected abstract connected(): boolean;
  /** Whether the subscription to ends aimed at this process is in place now. */
  protected abstract subscriptionUp(): boolean;
  /** Starts the connection's listeners and the subscription to ends (called by init). */
  protected abstract open(context: StoreContext): void;
  /** Stops them (called by close, before the lease is given up). */
  protected abstract shut(): void;
  protected abstract loginStep(request: StoreLoginRequest, reassert: boolean, takenUpAt: number | undefined): Promise<SharedLoginResult>;
  protected abstract pushOnlineStep(request: StorePushOnlineRequest): Promise<StoreChange | null>;
  protected abstract removeStep(request: StoreRemoveRequest): Promise<StoreChange | null>;
  /** Ends the matching devices and leaves a mark for `endMemory` ms that devices re-asserted later yield to. */
  protected abstract kickStep(request: StoreKickRequest, now: number): Promise<StoreChange[]>;
  protected abstract setCustomStatusStep(request: StoreCustomStatusRequest): Promise<StoreUserState | null>;
  protected abstract setAvailabilityStep(request: StoreAvailabilityRequest): Promise<StoreAvailabilityResult | null>;
  protected abstract getStep(userIds: readonly string[]): Promise<(StoredUser | undefined)[]>;
  protected abstract statsStep(): Promise<PresenceStats>;
  /** Writes this process's lease until `until`; answers true when it found it gone or not listed (others may have reaped us). */
  protected abstract writeLease(until: number): Promise<boolean>;
  /** Gives up the lease: marked handed over until `handoverUntil` when given, so the devices wait that long to be resumed. */
  protected abstract leave(handoverUntil: number | undefined): Promise<void>;
  /** Applies again ends and kicks this process made: revoke again, remove a re-asserted device quietly, publish, mark again. */
  protected abstract reapply(ends: readonly RememberedEnd[], kicks: readonly RememberedKick[]): Promise<void>;
  /**
   * Ends due PushOnline devices (`context.expired`) and dead processes' devices past their grace (`context.changed`), in short
   * steps; reaps only while `mayReap(now)`, and tells `slowAnswer(sent)` how long its probe took.
   */
  protected abstract sweepOnce(context: StoreContext): Promise<void>;

  // Hooks the binding may override.

  /** Whether a failure is an outage (the backend away) rather than a refusal that needs no reconciliation. */
  protected isOutage(_error: unknown): boolean {
    return true;
  }
  /** A failure that is not an outage, reported by `report` (say it once if it matters). */
  protected refused(_error: unknown): void {}
  /** A failure as the engine must see it: an outage as a StoreUnavailableError, so routes answer 503. */
  protected asStoreError(error: unknown): unknown {
    if (isStoreUnavailable(error) || !this.isOutage(error)) return error;
    const detail = error instanceof Error ? error.message : String(error);
    return new StoreUnavailableError(`${this.backend} cannot be reached (${detail.slice(0, 200)}); try again shortly`, { cause: error });
  }

  // What the binding tells the base.

  /** The connection is up again: the episode (if any) is over, and everything is reconciled. */
  protected backendReady(): void {
    if (this.closed) return;
    if (this.down) {
      this.down = false;
      this.reapNotBefore = (this.context?.clock.now() ?? Date.now()) + this.leaseTtl;
      this.context?.logger.warn(`express-presence: ${this.backend} is back; reconciling`);
    }
    this.reconcile();
  }

  /** The connection dropped: whatever happened to the lease meanwhile, the reconnection re-asserts everything. */
  protected backendClosed(): void {
    this.leaseHeld = false;
  }

  /** Logs the first failure of an outage; the rest of the episode is quiet. */
  protected report(error: unknown): void {
    if (!this.isOutage(error)) return this.refused(error);
    if (this.down || this.closed) return;
    this.down = true;
    this.context?.logger.error(`express-presence: ${this.backend} is unreachable; presence keeps local connections and will reconcile when it is back`, error);
  }

  /** The subscription to ends is in place: the first time, ends are heard from now on; again, some may have been missed. */
  protected subscribed(first: boolean): void {
    if (first) this.subscribedOnce = true;
    else this.reconcile();
  }

  /** A session this process may hold was ended elsewhere. */
  protected endHeard(sessionId: string, notice: EndNotice): void {
    this.context?.ended(sessionId, notice);
  }

  /** A backend call sent at `started` took longer than a renewal period: others' renewals may have stalled as well (see reapNotBefore). */
  protected slowAnswer(started: number): void {
    const now = this.context?.clock.now() ?? Date.now();
    if (now - started > this.leaseTtl / 3) this.reapNotBefore = Math.max(this.reapNotBefore, now + this.leaseTtl);
  }

  /**
   * Whether this process may reap other processes' devices now: not while it is (or was a moment ago) cut off from the backend
   * or slowed by it, nor while its own renewal has been under way for more than a renewal period (see reapNotBefore).
   */
  protected mayReap(now: number): boolean {
    if (this.down || now < this.reapNotBefore) return false;
    return this.renewingSince === undefined || now - this.renewingSince <= this.leaseTtl / 3;
  }

  protected get owner(): string {
    if (!this.context) throw new Error(`${this.constructor.name} used before createPresence() initialised it`);
    return this.context.owner;
  }

  // The store.

  init(context: StoreContext): void {
    if (this.context) throw new Error(`this ${this.constructor.name} is already used by another createPresence(); give each its own store`);
    this.context = context;
    this.open(context);
    void this.keepLease();
    this.every(Math.max(100, Math.floor(this.leaseTtl / 3)), () => this.keepLease());
    this.every(this.sweepInterval, () => this.sweep());
  }

  /**
   * While the backend is away, a login waits for it (in order with the transport ends before it) for up to `storeTimeout` (at
   * most `leaseTtl`): a short outage, such as a restart, delays logins instead of refusing them.
   */
  login(request: StoreLoginRequest): Promise<StoreLoginResult> {
    this.limits = request.limits;
    const run = () => this.loginNow(request, false, undefined);
    if (!this.down && this.pending.length === 0) return run();
    return this.wait(this.pending, run, 'login', true);
  }

  /**
   * While this process may have missed ends made elsewhere (its subscription not in place yet, or a reconcile after a
   * reconnection still looking for what it missed), a new connection of a session live here is checked with the store (found
   * by the chaos run: a kicked phone's session resumed as a second tab on a process whose subscriber was reconnecting). While
   * the backend is away nothing can be checked: it joins locally, and the reconcile ends it if it was revoked.
   */
  mayMissEnds(): boolean {
    if (this.closed || this.down || !this.connected()) return false;
    return !this.subscribedOnce || !this.subscriptionUp() || this.reconciling !== undefined;
  }

  markPushOnline(request: StorePushOnlineRequest): Promise<StoreChange | null> {
    return this.durable(() => this.pushOnlineStep(request));
  }

  remove(request: StoreRemoveRequest): Promise<StoreChange | null> {
    return this.durable(() => this.removeStep(request));
  }

  /**
   * While the backend is away (or this process is reconciling), an admin kick waits, like a login, and runs once this process
   * has re-asserted its live devices: it finds them, and leaves a mark that devices other processes re-assert later yield to.
   */
  kick(request: StoreKickRequest): Promise<StoreChange[]> {
    const run = () => this.kickNow(request);
    if (!this.down && this.connected() && !this.reconciling && this.pending.length === 0 && this.waitingKicks.length === 0) return run();
    return this.wait(this.waitingKicks, run, 'kick', false);
  }

  async setCustomStatus(request: StoreCustomStatusRequest): Promise<StoreUserState | null> {
    if (this.down) throw this.away();
    return this.setCustomStatusStep(request);
  }

  async setAvailability(request: StoreAvailabilityRequest): Promise<StoreAvailabilityResult | null> {
    if (this.down) throw this.away();
    return this.setAvailabilityStep(request);
  }

  async get(userIds: readonly string[]): Promise<(StoredUser | undefined)[]> {
    if (!Array.isArray(userIds)) throw new TypeError(`${this.backend} store get(userIds): userIds must be an array of user ids; got ${typeof userIds}`);
    // Refused rather than guessed: a copy from before the outage would call users connected meanwhile Offline.
    if (this.down) throw this.away();
    if (userIds.length === 0) return [];
    try {
      return await this.getStep(userIds);
    } catch (error) {
      this.report(error);
      throw this.asStoreError(error);
    }
  }

  async stats(): Promise<PresenceStats> {
    if (this.down) throw this.away();
    try {
      return await this.statsStep();
    } catch (error) {
      this.report(error);
      throw this.asStoreError(error);
    }
  }

  /**
   * Closes the store leaving this process's live devices to the others: the lease is given up marked handed over until
   * `until`, so a device resumed elsewhere by then moves there with no transition, and the others are closed by whichever
   * process sweeps once their grace is over (`until`, or their class's reconnect grace from now if later).
   */
  handOver(until: number): Promise<void> {
    this.handoverUntil ??= until;
    return this.close();
  }

  /** Stops timers and gives up the lease, so other processes close this one's remaining devices once each one's grace is over. */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) this.context?.clock.clearTimeout(timer);
    this.timers.clear();
    this.shut();
    for (const waiting of this.pending.splice(0)) {
      if (waiting.login) waiting.fail(new Error('express-presence: the presence was closed'));
      else waiting.drop?.();
    }
    for (const waiting of this.waitingKicks.splice(0)) waiting.fail(new Error('express-presence: the presence was closed; the kick was not made'));
    // What a sweep or a reconciliation under way reports is emitted before close resolves (bounded: the backend may be going away).
    const busy = [...this.running, ...(this.reconciling ? [this.reconciling] : [])];
    if (busy.length > 0) await within(Promise.allSettled(busy), this.leaseTtl);
    if (!this.connected()) return;
    await this.leave(this.handoverUntil).catch(() => undefined);
  }

  // The protocol.

  /** Refused at once while the backend is known to be away: nothing is answered from a stale copy. */
  private away(): StoreUnavailableError {
    return new StoreUnavailableError(`${this.backend} cannot be reached; presence refuses to answer from a stale copy; try again shortly`);
  }

  /** How long a login or admin kick waits for the backend: no longer than the engine waits for it (storeTimeout). */
  private get waitLimit(): number {
    return Math.min(this.leaseTtl, this.context?.storeTimeout ?? this.leaseTtl);
  }

  /** Queues `run` until the backend is back (reconcile drains the queue), refused after waitLimit if it has not run by then. */
  private wait<T>(queue: Waiting[], run: () => Promise<T>, what: 'login' | 'kick', login: boolean): Promise<T> {
    const limit = this.waitLimit;
    const named = `${limit} ms (${limit === this.leaseTtl ? 'leaseTtl' : 'storeTimeout'})`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = queue.indexOf(waiting);
        if (index < 0) return;
        // Taken out of the queue: a login or kick nobody waits for any more is never made.
        queue.splice(index, 1);
        reject(new StoreUnavailableError(`${this.backend} has not been reachable for ${named}; the ${what} was not made, try again shortly`));
      }, limit);
      timer.unref?.();
      const waiting: Waiting = {
        run: () => {
          clearTimeout(timer);
          return run().then(resolve);
        },
        fail: reject,
        attempts: 0,
        ...(login ? { login: true } : {}),
      };
      queue.push(waiting);
    });
  }

  /** A transport end must not be lost: when the backend cannot take it now, it is replayed once the backend is back. */
  private durable(operation: () => Promise<StoreChange | null>): Promise<StoreChange | null> {
    const later = () =>
      new Promise<StoreChange | null>((resolve, reject) => {
        if (this.closed) resolve(null);
        else this.pending.push({ run: () => operation().then(resolve), fail: reject, attempts: 0, drop: () => resolve(null) });
      });
    if (this.down || this.pending.length > 0) return later();
    return operation().catch((error: unknown) => {
      this.report(error);
      return later();
    });
  }

  /** Runs the queue in order while the backend answers; answers false when a failure stopped it (tried again at the next recovery). */
  private async drain(queue: Waiting[]): Promise<boolean> {
    while (queue.length > 0 && this.connected() && !this.closed) {
      const waiting = queue[0] as Waiting;
      try {
        await waiting.run();
        queue.shift();
      } catch (error) {
        // An operation the backend keeps refusing is given up after a few tries.
        if (++waiting.attempts >= MAX_REPLAYS) {
          queue.shift();
          waiting.fail(error);
        }
        this.report(error);
        return false;
      }
    }
    return true;
  }

  private async loginNow(request: StoreLoginRequest, reassert: boolean, takenUpAt: number | undefined): Promise<SharedLoginResult> {
    const result = await this.loginStep(request, reassert, takenUpAt);
    if (result.outcome === 'created' && result.change.kicked.length > 0) {
      const notice = JSON.stringify({ reason: 'LoginElsewhere', by: { platform: request.platform, instanceId: request.instanceId } });
      for (const kicked of result.change.kicked)
        this.rememberEnd({ sessionId: kicked.sessionId, userId: request.userId, instanceId: kicked.instanceId, notice });
    }
    return result;
  }

  private async kickNow(request: StoreKickRequest): Promise<StoreChange[]> {
    const now = this.context ? this.context.clock.now() : request.at;
    const changes = await this.kickStep(request, now);
    this.rememberKick({
      userId: request.userId,
      platform: request.platform ?? '',
      instanceId: request.instanceId ?? '',
      at: request.at,
      until: now + this.endMemory,
    });
    for (const change of changes) this.rememberEnd({ sessionId: change.sessionId, userId: request.userId, instanceId: change.instanceId, notice: ADMIN_KICK });
    return changes;
  }

  /** Runs one reconciliation at a time; one asked for meanwhile runs after it. */
  private reconcile(): void {
    if (this.closed) return;
    if (this.reconciling) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = (async () => {
      do {
        this.reconcileAgain = false;
        await this.reconcileOnce();
      } while (this.reconcileAgain && !this.closed && !this.down);
    })().finally(() => {
      this.reconciling = undefined;
      // An admin kick that came after the last pass ran its waiting kicks: one more pass runs it.
      if (this.waitingKicks.length > 0 && !this.down && !this.closed && this.connected()) this.reconcile();
    });
  }

  /**
   * After an outage or a lost lease: renew the lease, replay what waited in order, apply again the ends this process made
   * lately, re-assert every live device (the backend may have restarted empty, or other processes may have closed this one's
   * devices while it could not renew its lease), then run the admin kicks that waited.
   */
  private async reconcileOnce(): Promise<void> {
    const context = this.context;
    if (!context || !this.connected()) return;
    try {
      await this.renewLease();
    } catch (error) {
      this.report(error);
      return;
    }
    if (!(await this.drain(this.pending))) return;
    // Before the re-assertions (here and, mostly, on the other processes): a device ended lately is then refused, not re-created.
    try {
      await this.reapplyEnds(context);
    } catch (error) {
      this.report(error);
      return;
    }
    const live = [...context.liveInstances()];
    for (let start = 0; start < live.length; start += REASSERT_BATCH) {
      try {
        await Promise.all(live.slice(start, start + REASSERT_BATCH).map((instance) => this.reassert(context, instance)));
      } catch (error) {
        this.report(error);
        return;
      }
    }
    await this.drain(this.waitingKicks);
  }

  private rememberEnd(end: RememberedEnd): void {
    const now = this.context?.clock.now() ?? Date.now();
    this.forgetOldEnds(now);
    this.recentEnds.delete(end.sessionId);
    this.recentEnds.set(end.sessionId, { ...end, until: now + this.endMemory });
    if (this.recentEnds.size > MAX_RECENT_ENDS) this.recentEnds.delete(this.recentEnds.keys().next().value as string);
  }

  private rememberKick(kick: RememberedKick & { until: number }): void {
    this.forgetOldEnds(kick.until - this.endMemory);
    this.recentKicks.push(kick);
    if (this.recentKicks.length > MAX_RECENT_KICKS) this.recentKicks.shift();
  }

  /** Both lists are in the order of their `until` (each application sets every entry's to the same time). */
  private forgetOldEnds(now: number): void {
    for (const [sessionId, end] of this.recentEnds) {
      if (end.until > now) break;
      this.recentEnds.delete(sessionId);
    }
    while (this.recentKicks.length > 0 && (this.recentKicks[0] as { until: number }).until <= now) this.recentKicks.shift();
  }

  /**
   * Applies again the ends this process made lately, each then remembered for `endMemory` more: a backend that restarts empty
   * again soon, before a holder heard of the end, gets it once more. A removal this makes is not reported: the end was (the
   * kick's own change), and the re-assertion it undoes was quiet (found by the chaos run: a second Logout/Kicked callback for a
   * device kicked just before an empty restart).
   */
  private async reapplyEnds(context: StoreContext): Promise<void> {
    this.forgetOldEnds(context.clock.now());
    if (this.recentEnds.size === 0 && this.recentKicks.length === 0) return;
    await this.reapply([...this.recentEnds.values()], this.recentKicks.slice());
    const until = context.clock.now() + this.endMemory;
    for (const end of this.recentEnds.values()) end.until = until;
    for (const kick of this.recentKicks) kick.until = until;
  }

  /**
   * Logs a live device in again; one ended meanwhile (kicked, displaced by a newer login) is ended instead, and told why (the
   * notice its revocation was stored with). One the backend had lost (an empty restart) comes back quietly: it was Online all
   * along, so there is no change event nor callback; one whose end was reported (reaped, PushOnline) is a login again.
   */
  private async reassert(context: StoreContext, live: LiveInstance): Promise<void> {
    const result = await this.loginNow(
      {
        userId: live.userId,
        platform: live.platform,
        instanceId: live.instanceId,
        resumeSessionId: live.sessionId,
        newSessionId: live.sessionId,
        version: live.version,
        at: context.clock.now(),
        limits: this.limits,
        owner: context.owner,
      },
      true,
      live.takenUpAt,
    );
    if (result.outcome === 'revoked') context.ended(live.sessionId, result.notice ?? { reason: 'AdminKick' });
    else if (result.change && !result.quiet) context.changed(result.change, 'Login', 'Register');
  }

  /** Writes the lease; answers true when others found it gone since it was last written. */
  private async renewLease(): Promise<boolean> {
    const started = (this.context as StoreContext).clock.now();
    this.renewingSince = started;
    let found: boolean;
    try {
      found = await this.writeLease(started + this.leaseTtl);
    } finally {
      this.renewingSince = undefined;
      this.slowAnswer(started);
    }
    const lost = found && this.leaseHeld;
    this.leaseHeld = true;
    return lost;
  }

  /**
   * The periodic renewal. It also ends an episode that no reconnection ends (a command failed while the connection stayed up),
   * and notices a lease that ran out while this process was stalled (a long pause, a frozen event loop): the others closed its
   * devices, so it re-asserts the live ones.
   */
  private async keepLease(): Promise<void> {
    if (this.closed || !this.connected()) return;
    let lost: boolean;
    try {
      lost = await this.renewLease();
    } catch (error) {
      this.report(error);
      return;
    }
    if (this.down) {
      this.backendReady();
    } else if (lost) {
      this.context?.logger.warn(
        `express-presence: this process's lease ran out (was it stalled for more than leaseTtl, ${this.leaseTtl} ms?); other processes closed its devices, which are re-asserted now`,
      );
      this.reconcile();
    }
  }

  private async sweep(): Promise<void> {
    const context = this.context;
    if (!context || this.closed || !this.connected()) return;
    try {
      await this.sweepOnce(context);
    } catch (error) {
      this.report(error);
    }
  }

  private every(ms: number, task: () => Promise<void>): void {
    const clock = this.context?.clock as Clock;
    let handle: TimerHandle;
    const tick = () => {
      this.timers.delete(handle);
      if (this.closed) return;
      const running = task();
      this.running.add(running);
      void running.finally(() => {
        this.running.delete(running);
        if (this.closed) return;
        handle = clock.setTimeout(tick, ms);
        this.timers.add(handle);
      });
    };
    handle = clock.setTimeout(tick, ms);
    this.timers.add(handle);
  }
}

const ADMIN_KICK = JSON.stringify({ reason: 'AdminKick' });

/** Resolves when `work` settles or after `ms`, whichever is first. */
async function within(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
