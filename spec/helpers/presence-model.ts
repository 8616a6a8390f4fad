// A small reference model of SPEC.md's presence rules, written apart from lib/engine, for the model-based test.

import type { EndNotice, InstanceRef, InstanceStatus, LoginPolicy, Platform, PlatformClass, UserStatus, ChangeAction, ChangeReason } from '../../lib/index.js';

/** SPEC.md's platform table. */
export const MODEL_CLASS_OF: Readonly<Record<Platform, PlatformClass>> = {
  Android: 'mobile',
  iPhone: 'mobile',
  iPad: 'mobile',
  Windows: 'desktop',
  Mac: 'desktop',
  Linux: 'desktop',
  Web: 'web',
  MiniProgram: 'miniProgram',
};

/** Names clients may use besides the canonical ones. */
export const MODEL_ALIASES: Readonly<Record<string, Platform>> = { iOS: 'iPhone' };

export function canonicalPlatform(name: string): Platform {
  const platform = MODEL_ALIASES[name] ?? (name as Platform);
  if (!(platform in MODEL_CLASS_OF)) throw new Error(`model: unknown platform ${name}`);
  return platform;
}

/** "For every policy, Web and MiniProgram count as one platform." */
export function isWebFamily(platform: Platform): boolean {
  return platform === 'Web' || platform === 'MiniProgram';
}

function sameLimitPlatform(a: Platform, b: Platform): boolean {
  return a === b || (isWebFamily(a) && isWebFamily(b));
}

/**
 * May a device already logged in on `existing` stay beside a new login on `incoming`, as far as the
 * policy's wording goes? (Two devices on one platform are the limits' business, not the policy's.)
 */
export function policyLetsStay(policy: LoginPolicy, existing: Platform, incoming: Platform): boolean {
  if (sameLimitPlatform(existing, incoming)) return true;
  const oneIsWeb = isWebFamily(existing) || isWebFamily(incoming);
  switch (policy) {
    case 'single': // "logged in on one platform only"
      return false;
    case 'dual': // "one native platform plus Web"
      return oneIsWeb;
    case 'triple': // "one mobile platform, one desktop platform and Web"
      return oneIsWeb || MODEL_CLASS_OF[existing] !== MODEL_CLASS_OF[incoming];
    case 'multi': // "every platform at the same time"
      return true;
    default: {
      const never: never = policy;
      throw new Error(`model: unknown policy ${String(never)}`);
    }
  }
}

export interface ModelConfig {
  loginPolicy: LoginPolicy;
  maxInstancesPerPlatform: number;
  maxWebInstances: number;
  heartbeatTimeout: Record<PlatformClass, number>;
  backgroundTimeout: Record<PlatformClass, number>;
  pushOnlineTtl: number;
  reconnectGrace: Record<PlatformClass, number>;
  /** No user activity this long (per class; 0 never) shows the user away (SPEC "Automatic away"). Absent: off. */
  idleTimeout?: Record<PlatformClass, number>;
}

export type ModelAvailability = 'available' | 'away' | 'dnd' | 'invisible';

/** The fields of an availability event the model predicts. */
export interface ModelAvailabilityEvent {
  userId: string;
  availability: ModelAvailability;
  previousAvailability: ModelAvailability;
  idleSince: string | null;
  reason: 'set' | 'idle' | 'active';
  at: number;
}

/** The fields of a change event the model predicts. */
export interface ModelEvent {
  userId: string;
  instanceId: string;
  platform: Platform;
  action: ChangeAction;
  reason: ChangeReason;
  instanceStatus: UserStatus;
  userStatus: UserStatus;
  previousUserStatus: UserStatus;
  kicked: InstanceRef[];
  seq: number;
  at: number;
  lastSeen: string | null;
}

export interface ModelInstanceView {
  instanceId: string;
  platform: Platform;
  status: InstanceStatus;
  since: string;
}

export interface ModelUserView {
  userId: string;
  status: UserStatus;
  lastSeen: string | null;
  availability: ModelAvailability;
  idleSince: string | null;
  instances: ModelInstanceView[];
}

interface Device {
  readonly userId: string;
  readonly instanceId: string;
  readonly platform: Platform;
  readonly sessionId: string;
  status: InstanceStatus;
  since: number;
  /** Rank among the user's logins: a fresh login or a return from PushOnline makes it the newest. */
  rank: number;
  lastHeard: number;
  inBackground: boolean;
  backgroundFrom: number;
  /** When its last connection closed, while a reconnect grace holds the transition back. */
  closedAt: number | null;
  readonly connections: Set<number>;
  gone: boolean;
  /** Its last user activity: its connects and `presence:activity` (heartbeats are not activity). */
  lastUserActivity: number;
}

interface Account {
  /** The chosen availability, and while automatic away holds over a chosen `available`, its idleSince. */
  chosen: ModelAvailability;
  idleSince: number | null;
  /** The user's last activity on any device (idleSince once away). */
  lastActivity: number;
  devices: Device[];
  seq: number;
  lastOnline: number | null;
  ranks: number;
}

interface ModelConnection {
  device: Device;
  open: boolean;
  readonly notices: EndNotice[];
}

export type ModelConnectOutcome =
  | { refused: 'SESSION_REVOKED' }
  | { refused?: undefined; connectionId: number; sessionId: string; resumed: boolean; kicked: InstanceRef[]; instanceId: string };

export interface ModelConnectRequest {
  userId: string;
  platform: string;
  instanceId: string;
  sessionId?: string | undefined;
}

function userStatusOf(devices: readonly Device[]): UserStatus {
  if (devices.some((device) => device.status === 'Online')) return 'Online';
  return devices.length > 0 ? 'PushOnline' : 'Offline';
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The whole presence state of one mount, advanced by the same calls a transport makes. It decides
 * everything from SPEC.md (and the choices recorded in the model spec's header), never by asking
 * the engine; where timers fall due at the same instant it lets the engine's event order pick which
 * of them goes first, because SPEC.md leaves that order open.
 */
export class PresenceModel {
  now: number;
  readonly connections: ModelConnection[] = [];
  private readonly accounts = new Map<string, Account>();
  /** Revoked session → when it was revoked; remembered for the PushOnline TTL. */
  private readonly revoked = new Map<string, number>();
  private pending: ModelEvent[] = [];
  private pendingAvailability: ModelAvailabilityEvent[] = [];

  constructor(
    readonly config: ModelConfig,
    start: number,
  ) {
    this.now = start;
  }

  /** Events produced since the last call. */
  takeEvents(): ModelEvent[] {
    const events = this.pending;
    this.pending = [];
    return events;
  }

  /** Availability events produced since the last call. */
  takeAvailabilityEvents(): ModelAvailabilityEvent[] {
    const events = this.pendingAvailability;
    this.pendingAvailability = [];
    return events;
  }

  /** `presence:activity` on a connection: the device is active, and an idle user is available again. */
  activity(connectionId: number): void {
    const connection = this.liveConnection(connectionId);
    if (!connection) return;
    connection.device.lastHeard = this.now;
    this.active(connection.device);
  }

  /**
   * The user (from a device, `connectionId`, or the server) chose an availability: a choice is activity (of that device; of
   * every device for the server's), and ends idleness. Unknown users are created (the store keeps their choice).
   */
  setAvailability(userId: string, value: ModelAvailability, connectionId?: number): void {
    let account = this.accounts.get(userId);
    if (!account) {
      account = this.newAccount();
      this.accounts.set(userId, account);
    }
    if (connectionId !== undefined) {
      const connection = this.liveConnection(connectionId);
      if (connection) account.lastActivity = this.now;
      // Any client event is a heartbeat too.
      if (connection) connection.device.lastUserActivity = connection.device.lastHeard = this.now;
    } else {
      for (const device of account.devices) if (device.status === 'Online') device.lastUserActivity = this.now;
    }
    if (account.devices.some((device) => device.status === 'Online')) account.lastActivity = this.now;
    this.changeAvailability(userId, account, value, null, 'set');
  }

  private active(device: Device): void {
    device.lastUserActivity = this.now;
    const account = this.accounts.get(device.userId) as Account;
    account.lastActivity = this.now;
    if (account.idleSince !== null) this.changeAvailability(device.userId, account, account.chosen, null, 'active');
  }

  private changeAvailability(
    userId: string,
    account: Account,
    chosen: ModelAvailability,
    idleSince: number | null,
    reason: ModelAvailabilityEvent['reason'],
  ): void {
    const shown = (a: Account): ModelAvailability => (a.chosen === 'available' && a.idleSince !== null ? 'away' : a.chosen);
    const previousAvailability = shown(account);
    const previousIdle = account.idleSince;
    account.chosen = chosen;
    account.idleSince = idleSince;
    if (previousAvailability === shown(account) && previousIdle === idleSince) return;
    this.pendingAvailability.push({ userId, availability: shown(account), previousAvailability, idleSince: isoOrNull(idleSince), reason, at: this.now });
  }

  /** When the user goes away by idleness: every Online device idle for its class's timeout; never with a device of a class without one. */
  private idleDueOf(account: Account): number {
    const timeouts = this.config.idleTimeout;
    if (!timeouts || account.chosen !== 'available' || account.idleSince !== null) return Infinity;
    let due = -Infinity;
    for (const device of account.devices) {
      if (device.status !== 'Online') continue;
      const timeout = timeouts[MODEL_CLASS_OF[device.platform]];
      if (timeout === 0) return Infinity;
      due = Math.max(due, device.lastUserActivity + timeout);
    }
    return due === -Infinity ? Infinity : due;
  }

  private goIdle(userId: string, account: Account): void {
    this.changeAvailability(userId, account, account.chosen, account.lastActivity, 'idle');
  }

  private newAccount(): Account {
    return { chosen: 'available', idleSince: null, lastActivity: -Infinity, devices: [], seq: 0, lastOnline: null, ranks: 0 };
  }

  isRevoked(sessionId: string): boolean {
    const at = this.revoked.get(sessionId);
    return at !== undefined && this.now - at <= this.config.pushOnlineTtl;
  }

  /**
   * A connection arrives. `issuedSessionId` is the id the engine gave a fresh login (the model
   * cannot guess random ids); it is ignored when the model expects a resume.
   */
  connect(request: ModelConnectRequest, issuedSessionId: string): ModelConnectOutcome {
    const platform = canonicalPlatform(request.platform);
    const account = this.accountOf(request.userId);
    const same = account?.devices.find((device) => device.instanceId === request.instanceId);
    if (request.sessionId !== undefined && same && same.sessionId === request.sessionId && same.platform === platform) {
      return this.resume(account as Account, same);
    }
    if (request.sessionId !== undefined && this.isRevoked(request.sessionId)) return { refused: 'SESSION_REVOKED' };
    return this.freshLogin(request.userId, platform, request.instanceId, issuedSessionId);
  }

  private resume(account: Account, device: Device): ModelConnectOutcome {
    device.lastHeard = this.now;
    device.closedAt = null;
    // Any new connection is the app in the foreground.
    device.inBackground = false;
    if (device.status === 'PushOnline') {
      const previous = userStatusOf(account.devices);
      device.status = 'Online';
      device.since = this.now;
      device.rank = ++account.ranks;
      account.lastOnline = this.now;
      this.record(account, device, 'Login', 'Register', previous, []);
    }
    // Online already: a second tab, or back within the reconnect grace: nothing to tell anyone.
    const connectionId = this.open(device);
    // A login is activity.
    this.active(device);
    return { connectionId, sessionId: device.sessionId, resumed: true, kicked: [], instanceId: device.instanceId };
  }

  private freshLogin(userId: string, platform: Platform, instanceId: string, sessionId: string): ModelConnectOutcome {
    let account = this.accounts.get(userId);
    if (!account) {
      account = this.newAccount();
      this.accounts.set(userId, account);
    }
    const previous = userStatusOf(account.devices);
    const sameInstance = account.devices.find((device) => device.instanceId === instanceId);
    const others = account.devices.filter((device) => device !== sameInstance);
    // The policy first: devices on platforms it does not allow beside the new one go.
    const displaced = others.filter((device) => !policyLetsStay(this.config.loginPolicy, device.platform, platform));
    // Then the limit of the new device's platform (Web and MiniProgram together): the oldest go.
    const limit = isWebFamily(platform) ? this.config.maxWebInstances : this.config.maxInstancesPerPlatform;
    const samePlatform = others.filter((device) => sameLimitPlatform(device.platform, platform)).sort((a, b) => a.rank - b.rank);
    displaced.push(...samePlatform.slice(0, Math.max(0, samePlatform.length + 1 - limit)));
    // The device's own earlier session (logging in afresh without it) is displaced too.
    if (sameInstance) displaced.push(sameInstance);
    displaced.sort((a, b) => a.rank - b.rank);

    const by: InstanceRef = { platform, instanceId };
    for (const device of displaced) {
      this.drop(account, device, true);
      this.notify(device, { reason: 'LoginElsewhere', by });
    }
    const device: Device = {
      userId,
      instanceId,
      platform,
      sessionId,
      status: 'Online',
      since: this.now,
      rank: ++account.ranks,
      lastHeard: this.now,
      inBackground: false,
      backgroundFrom: 0,
      closedAt: null,
      connections: new Set(),
      gone: false,
      lastUserActivity: this.now,
    };
    account.devices.push(device);
    account.lastOnline = this.now;
    const kicked = displaced.map((gone) => ({ platform: gone.platform, instanceId: gone.instanceId }));
    this.record(account, device, 'Login', 'Register', previous, kicked);
    const connectionId = this.open(device);
    this.active(device);
    return { connectionId, sessionId, resumed: false, kicked, instanceId };
  }

  heartbeat(connectionId: number): void {
    const connection = this.liveConnection(connectionId);
    if (connection) connection.device.lastHeard = this.now;
  }

  background(connectionId: number): void {
    const connection = this.liveConnection(connectionId);
    if (!connection || connection.device.inBackground) return;
    connection.device.inBackground = true;
    connection.device.backgroundFrom = connection.device.lastHeard = this.now;
  }

  foreground(connectionId: number): void {
    const connection = this.liveConnection(connectionId);
    if (!connection) return;
    connection.device.inBackground = false;
    connection.device.lastHeard = this.now;
  }

  /** The transport lost one connection: closed (FIN/RST) or its own ping timed out. */
  disconnect(connectionId: number, cause: 'closed' | 'timeout'): void {
    const connection = this.liveConnection(connectionId);
    if (!connection) return;
    const device = connection.device;
    connection.open = false;
    device.connections.delete(connectionId);
    if (device.connections.size > 0) return; // another tab keeps the device Online
    if (cause === 'timeout') this.linkLost(device, 'TimeOut', device.lastHeard);
    else if (this.config.reconnectGrace[MODEL_CLASS_OF[device.platform]] > 0) device.closedAt = this.now;
    else this.linkLost(device, 'LinkClose', this.now);
  }

  logout(connectionId: number): void {
    const connection = this.liveConnection(connectionId);
    if (!connection) return;
    connection.open = false;
    const device = connection.device;
    device.connections.delete(connectionId);
    const account = this.accounts.get(device.userId) as Account;
    const previous = userStatusOf(account.devices);
    this.noteOnline(account, device, this.now);
    this.drop(account, device, true);
    this.notify(device, { reason: 'Logout' });
    this.record(account, device, 'Logout', 'Unregister', previous, []);
  }

  /** Admin kick: every device of the user, or those on one platform or with one instance id. */
  kick(userId: string, filter: { platform?: string; instanceId?: string }): InstanceRef[] {
    const account = this.accounts.get(userId);
    if (!account) return [];
    const platform = filter.platform === undefined ? undefined : canonicalPlatform(filter.platform);
    const targets = account.devices.filter(
      (device) => (platform === undefined || device.platform === platform) && (filter.instanceId === undefined || device.instanceId === filter.instanceId),
    );
    for (const device of targets) {
      const previous = userStatusOf(account.devices);
      this.noteOnline(account, device, this.now);
      this.drop(account, device, true);
      this.notify(device, { reason: 'AdminKick' });
      this.record(account, device, 'Logout', 'Kicked', previous, []);
    }
    return targets.map((device) => ({ platform: device.platform, instanceId: device.instanceId }));
  }

  /**
   * Moves time on by `ms`, firing every timed transition at its due time. Transitions due at the
   * same instant happen in the order `observed` (the engine's events) shows, when it names one of them.
   */
  advance(ms: number, observed: readonly { userId: string; instanceId: string }[]): void {
    const target = this.now + ms;
    let cursor = this.pending.length;
    for (;;) {
      let due = Infinity;
      for (const device of this.allDevices()) due = Math.min(due, this.dueOf(device));
      let idleDue = Infinity;
      for (const account of this.accounts.values()) idleDue = Math.min(idleDue, this.idleDueOf(account));
      if (Math.min(due, idleDue) > target) break;
      // A deadline already past (a background timeout that ran out during a reconnect grace) fires at once.
      this.now = Math.max(this.now, Math.min(due, idleDue));
      if (due > this.now) {
        // Idleness falls due only when no device transition is due at the same instant (those go first).
        for (const [userId, account] of this.accounts) if (this.idleDueOf(account) <= this.now) this.goIdle(userId, account);
        continue;
      }
      let ready = [...this.allDevices()].filter((device) => this.dueOf(device) <= this.now);
      while (ready.length > 0) {
        const hint = observed[cursor];
        const next = ready.find((device) => hint && device.userId === hint.userId && device.instanceId === hint.instanceId) ?? (ready[0] as Device);
        ready = ready.filter((device) => device !== next);
        this.fire(next);
        cursor = this.pending.length;
      }
    }
    this.now = target;
  }

  query(userIds: readonly string[]): ModelUserView[] {
    return userIds.map((userId) => {
      const account = this.accounts.get(userId);
      if (!account) return { userId, status: 'Offline', lastSeen: null, availability: 'available', idleSince: null, instances: [] };
      const status = userStatusOf(account.devices);
      return {
        userId,
        status,
        lastSeen: isoOrNull(status === 'Online' ? this.now : account.lastOnline),
        availability: account.chosen === 'available' && account.idleSince !== null ? 'away' : account.chosen,
        idleSince: isoOrNull(account.idleSince),
        instances: account.devices.map((device) => ({
          instanceId: device.instanceId,
          platform: device.platform,
          status: device.status,
          since: new Date(device.since).toISOString(),
        })),
      };
    });
  }

  stats(): {
    users: Record<UserStatus, number>;
    instances: Record<InstanceStatus, number>;
    platforms: Partial<Record<Platform, Record<InstanceStatus, number>>>;
  } {
    const users: Record<UserStatus, number> = { Online: 0, PushOnline: 0, Offline: 0 };
    const instances: Record<InstanceStatus, number> = { Online: 0, PushOnline: 0 };
    const platforms: Partial<Record<Platform, Record<InstanceStatus, number>>> = {};
    for (const account of this.accounts.values()) {
      users[userStatusOf(account.devices)]++;
      for (const device of account.devices) {
        instances[device.status]++;
        const counts = (platforms[device.platform] ??= { Online: 0, PushOnline: 0 });
        counts[device.status]++;
      }
    }
    return { users, instances, platforms };
  }

  /** Devices Online here (connected, or closed and waiting out a reconnect grace). */
  get onlineDevices(): number {
    let count = 0;
    for (const device of this.allDevices()) if (device.status === 'Online') count++;
    return count;
  }

  openConnections(): number[] {
    const ids: number[] = [];
    this.connections.forEach((connection, id) => {
      if (connection.open) ids.push(id);
    });
    return ids;
  }

  private *allDevices(): Generator<Device> {
    for (const account of this.accounts.values()) yield* account.devices;
  }

  private dueOf(device: Device): number {
    const cls = MODEL_CLASS_OF[device.platform];
    if (device.status === 'PushOnline') return device.since + this.config.pushOnlineTtl;
    if (device.closedAt !== null) return device.closedAt + this.config.reconnectGrace[cls];
    let due = device.lastHeard + this.config.heartbeatTimeout[cls];
    const background = this.config.backgroundTimeout[cls];
    if (device.inBackground && background > 0) due = Math.min(due, device.backgroundFrom + background);
    return due;
  }

  private fire(device: Device): void {
    const account = this.accounts.get(device.userId) as Account;
    if (device.status === 'PushOnline') {
      const previous = userStatusOf(account.devices);
      this.drop(account, device, false);
      this.record(account, device, 'Logout', 'Expired', previous, []);
    } else if (device.closedAt !== null) {
      this.linkLost(device, 'LinkClose', device.closedAt);
    } else {
      // Heartbeat or background timeout: the device was last heard when it last spoke (or went to background).
      this.notify(device, { reason: 'TimeOut' });
      this.linkLost(device, 'TimeOut', device.inBackground ? Math.min(device.lastHeard, device.backgroundFrom) : device.lastHeard);
    }
  }

  /** The device's link is gone: mobile devices stay reachable by push, the others are gone. */
  private linkLost(device: Device, reason: 'LinkClose' | 'TimeOut', lastHeard: number): void {
    const account = this.accounts.get(device.userId) as Account;
    const previous = userStatusOf(account.devices);
    this.noteOnline(account, device, lastHeard);
    device.closedAt = null;
    if (MODEL_CLASS_OF[device.platform] === 'mobile') {
      device.status = 'PushOnline';
      device.since = this.now;
      device.inBackground = false;
    } else {
      this.drop(account, device, false);
    }
    this.record(account, device, 'Disconnect', reason, previous, [], device.gone ? 'Offline' : 'PushOnline');
  }

  private noteOnline(account: Account, device: Device, at: number): void {
    if (device.status === 'Online' && (account.lastOnline === null || at > account.lastOnline)) account.lastOnline = at;
  }

  private drop(account: Account, device: Device, revoke: boolean): void {
    account.devices = account.devices.filter((other) => other !== device);
    device.gone = true;
    if (revoke) this.revoked.set(device.sessionId, this.now);
  }

  /** Tells the device's open connections why it ended, and closes them. */
  private notify(device: Device, notice: EndNotice): void {
    for (const id of device.connections) {
      const connection = this.connections[id] as ModelConnection;
      connection.open = false;
      connection.notices.push(notice);
    }
    device.connections.clear();
  }

  private record(
    account: Account,
    device: Device,
    action: ChangeAction,
    reason: ChangeReason,
    previousUserStatus: UserStatus,
    kicked: InstanceRef[],
    instanceStatus: UserStatus = device.gone ? 'Offline' : device.status,
  ): void {
    const userStatus = userStatusOf(account.devices);
    this.pending.push({
      userId: device.userId,
      instanceId: device.instanceId,
      platform: device.platform,
      action,
      reason,
      instanceStatus,
      userStatus,
      previousUserStatus,
      kicked,
      // README "Sequence numbers": a user's first change is numbered from the clock (ms × 1000), each later one adds one.
      seq: account.seq === 0 ? (account.seq = this.now * 1000) : ++account.seq,
      at: this.now,
      lastSeen: isoOrNull(userStatus === 'Online' ? this.now : account.lastOnline),
    });
  }

  private open(device: Device): number {
    const id = this.connections.length;
    this.connections.push({ device, open: true, notices: [] });
    device.connections.add(id);
    return id;
  }

  private liveConnection(connectionId: number): ModelConnection | undefined {
    const connection = this.connections[connectionId];
    return connection?.open && !connection.device.gone ? connection : undefined;
  }

  private accountOf(userId: string): Account | undefined {
    return this.accounts.get(userId);
  }
}
