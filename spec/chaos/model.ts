// The chaos run's model of what really happened: each device's presence as SPEC.md says it must be, from what the clients did and saw.

export type Policy = 'single' | 'dual' | 'triple' | 'multi';
export type PlatformClass = 'mobile' | 'desktop' | 'web' | 'miniProgram';
/** What the store must hold for a device once every bound has passed; 'gone' = no instance there. */
export type DeviceState = 'Online' | 'PushOnline' | 'gone';

export const MOBILE = ['Android', 'iPhone', 'iPad'] as const;
export const DESKTOP = ['Windows', 'Mac', 'Linux'] as const;

/** SPEC.md "Platforms and classes". */
export function classOf(platform: string): PlatformClass {
  if ((MOBILE as readonly string[]).includes(platform)) return 'mobile';
  if ((DESKTOP as readonly string[]).includes(platform)) return 'desktop';
  return platform === 'Web' ? 'web' : 'miniProgram';
}

/** SPEC.md: "Web and MiniProgram count as one platform" for the limits. */
function limitGroup(platform: string): string {
  return platform === 'Web' || platform === 'MiniProgram' ? 'Web' : platform;
}

/** The platform groups among which the policy allows only one (SPEC.md "Logging in on several devices"). */
function category(policy: Policy, platform: string): string {
  switch (policy) {
    case 'single':
      return 'any';
    case 'dual':
      return limitGroup(platform) === 'Web' ? 'web' : 'native';
    case 'triple':
      return limitGroup(platform) === 'Web' ? 'web' : classOf(platform);
    case 'multi':
      return limitGroup(platform);
    default: {
      const unknown: never = policy;
      throw new Error(`unknown policy ${String(unknown)}`);
    }
  }
}

/**
 * Can two devices of a user stay logged in together? With maxInstancesPerPlatform and maxWebInstances
 * at 1 (the chaos run's setting), two devices of one limit group never can, nor two groups of one
 * policy category. With one instance per group, "the oldest first" never has to choose.
 */
export function conflicts(policy: Policy, a: string, b: string): boolean {
  return limitGroup(a) === limitGroup(b) || category(policy, a) === category(policy, b);
}

/** One device of the population: a fixed user, instance id and platform. */
export interface Slot {
  readonly userId: string;
  readonly instanceId: string;
  readonly platform: string;
  readonly cls: PlatformClass;
  /** What the store must hold once settled. */
  state: DeviceState;
  /** The session of the store's record while the device is logged in, or may still be (pending). */
  sessionId: string | undefined;
  /**
   * Set while an end the server has not necessarily seen yet is due (a close, a freeze, a dead
   * process): until then the store may still hold the device Online under `sessionId`. 0 once settled.
   */
  pendingUntil: number;
  /** The session the client would resume with (the last `presence:session` it got). */
  clientSession: string | undefined;
}

export type LoggedIn = 'yes' | 'no' | 'maybe';

/** A set of devices an action must (certain) or may (maybe, an end not yet seen) reach. */
export interface Targets {
  certain: Slot[];
  maybe: Slot[];
}

/** What a resume (a login with the last session) must answer. */
export type ResumeExpectation = 'revoked' | 'resumed' | 'fresh' | 'resumed-or-fresh' | 'revoked-or-fresh';

export class PresenceModel {
  readonly slots: Slot[] = [];
  private readonly byUser = new Map<string, Slot[]>();
  /** Sessions the store revoked (kick, logout) and still remembers. */
  private readonly revoked = new Set<string>();
  /** Of those, the sessions a kick revoked (the kicking process applies them again after an empty restart, for a while). */
  private readonly kickRevoked = new Set<string>();
  /**
   * Sessions kicked before an empty Redis restart: the kicking process applies its recent ends again once Redis is back
   * (README "Redis outages"), for three leases after it last did; the run cannot tell when that ran out, so either answer goes.
   */
  private readonly maybeRevoked = new Set<string>();
  /** What happened to each user, for a divergence's report. */
  private readonly history = new Map<string, string[]>();
  /** The user of every session the run saw, so that a partial wipe (one master of a cluster) forgets only its users' revocations. */
  private readonly sessionUsers = new Map<string, string>();

  constructor(
    readonly policy: Policy,
    population: { userId: string; platforms: string[] }[],
  ) {
    for (const { userId, platforms } of population) {
      const slots = platforms.map((platform, i) => ({
        userId,
        instanceId: `${userId}-${i}-${platform}`,
        platform,
        cls: classOf(platform),
        state: 'gone' as DeviceState,
        sessionId: undefined,
        pendingUntil: 0,
        clientSession: undefined,
      }));
      this.byUser.set(userId, slots);
      this.slots.push(...slots);
      this.history.set(userId, []);
    }
  }

  get userIds(): string[] {
    return [...this.byUser.keys()];
  }

  slotsOf(userId: string): Slot[] {
    return this.byUser.get(userId) ?? [];
  }

  note(userId: string, what: string): void {
    const lines = this.history.get(userId);
    if (!lines) return;
    lines.push(`${new Date().toISOString().slice(11, 23)} ${what}`);
    if (lines.length > 40) lines.shift();
  }

  historyOf(userId: string): string[] {
    return this.history.get(userId) ?? [];
  }

  isRevoked(sessionId: string): boolean {
    return this.revoked.has(sessionId);
  }

  /** Revoked, or kicked before an empty restart and perhaps still remembered by the process that kicked it. */
  mayBeRevoked(sessionId: string): boolean {
    return this.revoked.has(sessionId) || this.maybeRevoked.has(sessionId);
  }

  private kickedSession(sessionId: string | undefined): void {
    if (sessionId === undefined) return;
    this.revoked.add(sessionId);
    this.kickRevoked.add(sessionId);
  }

  /** Online and PushOnline instances count as logged in (SPEC.md: "PushOnline instances count as logged in and are kicked the same way"). */
  loggedIn(slot: Slot, now: number): LoggedIn {
    if (slot.state !== 'gone') return 'yes';
    // A non-mobile device whose close, timeout or dead process the store may not have seen yet.
    return slot.pendingUntil > now && slot.sessionId !== undefined ? 'maybe' : 'no';
  }

  /**
   * Who a fresh login of `slot` kicks: its own earlier session (SPEC.md: a new login that breaks a
   * limit kicks the logins in its way; the script lists "the device's own earlier session" too), and
   * every logged-in device of the user it cannot stay with under the policy.
   */
  displacedBy(slot: Slot, now: number): Targets {
    return this.targets(
      this.slotsOf(slot.userId).filter((other) => other === slot || conflicts(this.policy, other.platform, slot.platform)),
      now,
    );
  }

  /** Who an admin kick reaches: every logged-in device of the user that the filter names (SPEC.md "An admin can kick a user (all devices) or one device"). */
  kickTargets(userId: string, filter: { platform?: string; instanceId?: string }, now: number): Targets {
    return this.targets(
      this.slotsOf(userId).filter(
        (slot) =>
          (filter.platform === undefined || slot.platform === filter.platform) && (filter.instanceId === undefined || slot.instanceId === filter.instanceId),
      ),
      now,
    );
  }

  private targets(candidates: Slot[], now: number): Targets {
    const result: Targets = { certain: [], maybe: [] };
    for (const slot of candidates) {
      const state = this.loggedIn(slot, now);
      if (state === 'yes') result.certain.push(slot);
      else if (state === 'maybe') result.maybe.push(slot);
    }
    return result;
  }

  /**
   * Applies the devices a login or an admin kick reported as kicked: each is gone and its session
   * revoked (SPEC.md: "kicked ... gone, and its session revoked"). A possible target the answer did
   * not list had already ended unseen. Answers what contradicts the model, if anything.
   */
  applyKicked(userId: string, targets: Targets, kicked: { platform: string; instanceId: string }[], what: string): string | undefined {
    const listed = new Set(kicked.map((device) => `${device.platform}/${device.instanceId}`));
    const key = (slot: Slot) => `${slot.platform}/${slot.instanceId}`;
    const allowed = new Set([...targets.certain, ...targets.maybe].map(key));
    const problems: string[] = [];
    for (const slot of targets.certain) if (!listed.has(key(slot))) problems.push(`${key(slot)} not kicked`);
    for (const entry of listed) if (!allowed.has(entry)) problems.push(`${entry} kicked unexpectedly`);
    for (const slot of [...targets.certain, ...targets.maybe]) {
      if (listed.has(key(slot))) {
        this.kickedSession(slot.sessionId);
        this.note(userId, `${what}: ${key(slot)} kicked`);
      } else {
        this.note(userId, `${what}: ${key(slot)} had already ended`);
      }
      slot.state = 'gone';
      slot.sessionId = undefined;
      slot.pendingUntil = 0;
    }
    return problems.length > 0 ? `${what} on ${userId}: ${problems.join(', ')} (listed: [${[...listed].join(', ')}])` : undefined;
  }

  /** SPEC.md "login (connect with valid auth)": Online, every class. */
  loggedInNow(slot: Slot, sessionId: string, what: string): void {
    this.sessionUsers.set(sessionId, slot.userId);
    slot.state = 'Online';
    slot.sessionId = sessionId;
    slot.pendingUntil = 0;
    slot.clientSession = sessionId;
    this.note(slot.userId, `${what}: ${slot.platform}/${slot.instanceId} Online (${sessionId})`);
  }

  /**
   * What a login with the client's last session must answer (SPEC.md: a kicked or logged-out session
   * is refused; "A reconnect of an instance that is still logged in (same instanceId and its session)
   * resumes it and kicks nobody"; "A sessionId the server does not know (and has not revoked) is a
   * fresh login" (CONTRACT.md)).
   */
  expectResume(slot: Slot, sessionId: string, now: number): ResumeExpectation {
    if (this.revoked.has(sessionId)) return 'revoked';
    if (this.maybeRevoked.has(sessionId)) return 'revoked-or-fresh';
    if (slot.sessionId !== sessionId) return 'fresh';
    const state = this.loggedIn(slot, now);
    return state === 'yes' ? 'resumed' : state === 'maybe' ? 'resumed-or-fresh' : 'fresh';
  }

  /**
   * The connection ended without a logout: SPEC.md "connection closed": mobile PushOnline, the others
   * gone, at once; "no heartbeat within the heartbeat timeout": the same, once it is due; a process
   * killed: the same, once its lease runs out ("the instances of a process that died are cleared
   * within a bounded time"). `until` bounds when the store must show it.
   */
  linkLost(slot: Slot, until: number, what: string): void {
    if (slot.state === 'Online') slot.state = slot.cls === 'mobile' ? 'PushOnline' : 'gone';
    // Already ending (a frozen device whose process is killed): whichever comes first ends it; the later bound is safe.
    else if (slot.pendingUntil === 0) return;
    slot.pendingUntil = Math.max(slot.pendingUntil, until);
    this.note(slot.userId, `${what}: ${slot.platform}/${slot.instanceId} -> ${slot.state} by ${new Date(until).toISOString().slice(11, 23)}`);
  }

  /** SPEC.md "logout ... gone, at once" and "the session is revoked" (CONTRACT.md presence:logout). */
  loggedOut(slot: Slot, what: string): void {
    if (slot.sessionId !== undefined) this.revoked.add(slot.sessionId);
    slot.state = 'gone';
    slot.sessionId = undefined;
    slot.pendingUntil = 0;
    this.note(slot.userId, `${what}: ${slot.platform}/${slot.instanceId} logged out`);
  }

  /**
   * The device ended while Redis was away (a close or a logout): the node replays that end once Redis
   * is back, and the replay finds no record in the empty Redis, so the device is simply gone, its
   * session neither held nor revoked (spec/cluster.spec.ts, "Redis restarted (empty) mid-traffic").
   */
  forgotten(slot: Slot, what: string): void {
    slot.state = 'gone';
    slot.sessionId = undefined;
    slot.pendingUntil = 0;
    this.note(slot.userId, `${what}: ${slot.platform}/${slot.instanceId} gone`);
  }

  /**
   * A login made while Redis was away and run once it was back, on the empty Redis: before or after
   * the processes re-asserted their live devices. Every live device it cannot stay with ends either
   * way, with its session revoked: kicked by it (and listed), or, re-asserted after it, yielding to it
   * (the login script revokes a re-asserted device that a newer login displaced). Answers the devices
   * ended and what contradicts the model.
   */
  loginAfterWipe(slot: Slot, sessionId: string, kicked: { platform: string; instanceId: string }[], what: string): { ended: Targets; problem?: string } {
    const ended = this.displacedBy(slot, Date.now());
    const allowed = new Set(ended.certain.map((other) => `${other.platform}/${other.instanceId}`));
    const unexpected = kicked.map((device) => `${device.platform}/${device.instanceId}`).filter((entry) => !allowed.has(entry));
    for (const other of ended.certain) {
      this.kickedSession(other.sessionId);
      other.state = 'gone';
      other.sessionId = undefined;
      other.pendingUntil = 0;
      this.note(slot.userId, `${what}: ${other.platform}/${other.instanceId} ended (kicked or yielding)`);
    }
    this.loggedInNow(slot, sessionId, what);
    return unexpected.length > 0 ? { ended, problem: `${what} on ${slot.userId} kicked ${unexpected.join(', ')}, which were not live` } : { ended };
  }

  /**
   * A logout made while Redis was away: the node replays it once Redis is back, and the replay finds no record in the empty Redis,
   * so the device is gone; its session is revoked all the same (a logout revokes its session found or not, so that a process that
   * re-asserts it later is refused), once the replay has run: until the run knows, either answer goes.
   */
  loggedOutWhileAway(slot: Slot, what: string): void {
    if (slot.sessionId !== undefined) this.maybeRevoked.add(slot.sessionId);
    this.forgotten(slot, what);
  }

  /** Every node showed the device in its settled state: its end was seen, nothing about it is uncertain any more. */
  settle(slot: Slot): void {
    if (slot.pendingUntil === 0) return;
    slot.pendingUntil = 0;
    if (slot.state === 'gone') slot.sessionId = undefined;
  }

  /**
   * Redis restarted empty. The store forgets everything, revocations included, but for kicks the
   * kicking process still remembers (maybe revoked); each process then re-asserts the devices live on
   * it (README "Redis outages": "each process replays the closes it missed and re-asserts its live
   * devices"), so exactly those are Online again, with their sessions; a device kicked lately is not
   * among them (the kicking process's ends applied again, spec/redis-ends.spec.ts).
   * A PushOnline device has no process to re-assert it: it is gone (as spec/cluster.spec.ts expects:
   * "Its PushOnline state, like everything else, goes with the empty Redis"), and so is a device
   * whose close or logout came during the outage (its replay finds nothing to change).
   * On a Redis Cluster one master restarted empty loses only the buckets it serves: `users` names the users in them, the others
   * (devices, revocations) are untouched.
   */
  redisWiped(live: Set<Slot>, what: string, users?: ReadonlySet<string>): void {
    // One master of a cluster restarted empty: only the users whose bucket it serves lost anything (`users`).
    const wiped = (sessionId: string) => users === undefined || users.has(this.sessionUsers.get(sessionId) ?? '');
    for (const sessionId of [...this.kickRevoked].filter(wiped)) {
      this.maybeRevoked.add(sessionId);
      this.kickRevoked.delete(sessionId);
    }
    for (const sessionId of [...this.revoked].filter(wiped)) this.revoked.delete(sessionId);
    for (const slot of this.slots) {
      if (users !== undefined && !users.has(slot.userId)) continue;
      if (live.has(slot) && slot.state === 'Online') continue;
      if (slot.state !== 'gone') this.note(slot.userId, `${what}: ${slot.platform}/${slot.instanceId} forgotten`);
      slot.state = 'gone';
      slot.sessionId = undefined;
      slot.pendingUntil = 0;
    }
  }

  /**
   * An admin kick made while Redis was away waits for it and runs once Redis is back and its process
   * re-asserted its own devices, on the empty Redis (README "Redis outages"). Every live device it
   * targets ends, with its session revoked: listed (found in Redis), or, re-asserted by its process
   * after the kick ran, yielding to the kick's mark. What it listed must have been live. Answers the
   * devices ended, those of them not listed, and what contradicts the model.
   */
  kickAfterWipe(
    userId: string,
    filter: { platform?: string; instanceId?: string },
    kicked: { platform: string; instanceId: string }[],
    what: string,
  ): { ended: Targets; unlisted: Slot[]; problem?: string } {
    const targets = this.kickTargets(userId, filter, Date.now());
    const listed = new Set(kicked.map((device) => `${device.platform}/${device.instanceId}`));
    const key = (slot: Slot) => `${slot.platform}/${slot.instanceId}`;
    const allowed = new Set(targets.certain.map(key));
    const unexpected = [...listed].filter((entry) => !allowed.has(entry));
    const unlisted: Slot[] = [];
    for (const slot of targets.certain) {
      if (!listed.has(key(slot))) unlisted.push(slot);
      this.kickedSession(slot.sessionId);
      slot.state = 'gone';
      slot.sessionId = undefined;
      slot.pendingUntil = 0;
      this.note(userId, `${what}: ${key(slot)} ${listed.has(key(slot)) ? 'kicked' : 'ended (yields to the kick when re-asserted)'}`);
    }
    const ended: Targets = { certain: targets.certain, maybe: [] };
    return unexpected.length > 0
      ? { ended, unlisted, problem: `${what} on ${userId} kicked ${unexpected.join(', ')}, which were not live` }
      : { ended, unlisted };
  }

  /** Saves every device, the revocations and the histories; the function answered puts them back (to try another order of racing logins). */
  snapshot(): () => void {
    const slots = this.slots.map((slot) => ({ ...slot }));
    const revoked = [...this.revoked];
    const kickRevoked = [...this.kickRevoked];
    const history = [...this.history].map(([userId, lines]): [string, string[]] => [userId, [...lines]]);
    return () => {
      for (const [i, saved] of slots.entries()) Object.assign(this.slots[i] as Slot, saved);
      this.revoked.clear();
      for (const sessionId of revoked) this.revoked.add(sessionId);
      this.kickRevoked.clear();
      for (const sessionId of kickRevoked) this.kickRevoked.add(sessionId);
      for (const [userId, lines] of history) this.history.set(userId, lines);
    };
  }

  /** The latest time at which an end may still be unseen. */
  pendingUntil(): number {
    return Math.max(0, ...this.slots.map((slot) => slot.pendingUntil));
  }

  /** What every node must answer for a user: the status (SPEC.md "User status = ...") and each device. */
  expected(userId: string): { status: string; devices: string[] } {
    const devices = this.slotsOf(userId)
      .filter((slot) => slot.state !== 'gone')
      .map((slot) => `${slot.platform}/${slot.instanceId}/${slot.state}`)
      .sort();
    const states = this.slotsOf(userId).map((slot) => slot.state);
    const status = states.includes('Online') ? 'Online' : states.includes('PushOnline') ? 'PushOnline' : 'Offline';
    return { status, devices };
  }
}

/** A small deterministic generator (mulberry32), so a run can be replayed from its seed. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One status-change callback as the run's receiver got it. */
export interface SeenCallback {
  userId: string;
  instanceId: string;
  action: string;
  seq: number;
  /** The change's time (EventTime): when its operation was asked, so no later than the store ran it. */
  eventTime: number;
  /** When the runner received it, by the same machine clock. */
  receivedAt: number;
}

/**
 * The sequence numbers the callbacks carry (README "Sequence numbers"; SPEC.md "Round two": "the per-user callback sequence
 * number ... strictly increases"). The run sees callbacks, not the store's order of changes, but it knows one order for
 * sure: a callback received before another change was even asked for came from an earlier change, so its Seq must be lower.
 * And a device that a process re-asserts after an empty Redis restart was Online all along: no change, so no callback
 * (SPEC.md "Deploys": "devices re-asserted after such a restart are not new logins (no change event, no callback)").
 */
export class SeqModel {
  private readonly byUser = new Map<string, SeenCallback[]>();
  /** Users whose devices are only re-asserted from `from` to `to` (to: Infinity while the window is open). */
  private readonly quiet: { users: Set<string>; from: number; to: number; what: string }[] = [];
  /** Pairs of callbacks whose order the run knew, and checked. */
  orderedPairs = 0;
  callbacks = 0;

  /** Checks one callback against those received before it; answers what contradicts the rule, if anything. */
  received(seen: SeenCallback): string | undefined {
    this.callbacks++;
    const list = this.byUser.get(seen.userId) ?? [];
    this.byUser.set(seen.userId, list);
    const show = (c: SeenCallback) => `${c.instanceId} ${c.action} Seq ${c.seq} (EventTime ${c.eventTime}, received ${c.receivedAt})`;
    let problem: string | undefined;
    for (const earlier of list) {
      // The same change delivered twice (a retry whose answer was lost) is no second number.
      const retry = earlier.instanceId === seen.instanceId && earlier.action === seen.action && earlier.eventTime === seen.eventTime;
      if (earlier.seq === seen.seq && !retry && !problem) problem = `two callbacks of ${seen.userId} carry Seq ${seen.seq}: ${show(earlier)} and ${show(seen)}`;
      if (earlier.receivedAt < seen.eventTime) {
        this.orderedPairs++;
        if (earlier.seq >= seen.seq && !problem) problem = `${seen.userId}'s Seq went back: ${show(earlier)} came before ${show(seen)} was asked for`;
      }
    }
    list.push(seen);
    for (const window of this.quiet) {
      if (!problem && window.users.has(seen.userId) && seen.eventTime >= window.from && seen.eventTime < window.to) {
        problem = `a callback for ${seen.userId} while its devices were only re-asserted (${window.what}, until ${window.to === Infinity ? 'now' : window.to}): ${show(seen)}`;
      }
    }
    return problem;
  }

  /** From `from` on, the users' devices are only re-asserted: no callback may have an EventTime in the window. */
  openQuiet(users: string[], from: number, what: string): void {
    this.quiet.push({ users: new Set(users), from, to: Infinity, what });
  }

  /**
   * The open window ends at `to`, when the quiet check after the restart agreed, just before the next steps: a step asked in
   * that same millisecond is not in it (EventTime counts milliseconds).
   */
  closeQuiet(to: number): void {
    const open = this.quiet.find((window) => window.to === Infinity);
    if (open) open.to = to;
  }

  get quietWindows(): number {
    return this.quiet.length;
  }
}
