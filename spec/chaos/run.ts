// The chaos run: three nodes on a private redis-server, seeded device traffic and faults, and after each quiet period every node checked against the model.

import { fork } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { QueryStateResponse, SourceKickResponse, StateChangeCallbackBody, UserKickResponse, UsersQueryResponse } from '../../lib/index.js';
import { ClusterNode, connectDevice, delay, PrivateRedis, PrivateRedisCluster, type ClusterDevice } from '../fixtures/cluster-harness.js';
import { childDevice, type ChildDevice } from '../fixtures/socket-harness.js';
import type { ClusterNodeConfig } from '../fixtures/cluster-protocol.js';
import { bucketOf, BUCKET_TAGS, slotOf } from '../../lib/redis/layout.js';
import { DESKTOP, MOBILE, PresenceModel, random, SeqModel, type Policy, type Slot, type Targets } from './model.js';

const NODE_SCRIPT = fileURLToPath(new URL('../fixtures/cluster-node.ts', import.meta.url));

/** The run's timings: short, so that a few minutes see many leases and timeouts run out. */
export const TIMINGS = {
  leaseTtl: 1500,
  sweepInterval: 200,
  // Short, but each tolerates a runner stalled for well over a second (a loaded two-core CI machine) between pongs.
  heartbeatTimeout: { mobile: 2500, desktop: 3000, web: 2000, miniProgram: 2000 },
  // Pongs every 300 ms keep a healthy device alive; a frozen one is caught by the heartbeat timeout well before the transport's 5.3 s.
  pingInterval: 300,
  pingTimeout: 5000,
} as const;

/** SPEC.md: "Timed transitions happen within 100 ms of their due time". */
const TIMER_TOLERANCE = 100;
/** One store write after a transition is due, on a loaded machine. */
const STORE_WRITE = 100;
/** A close is seen "at once" (SPEC.md); the model accepts either state for this long after it (it only widens an ambiguity window). */
const CLOSE_BOUND = 2000;
/** SPEC.md: a dead process's instances are cleared within a bound: its lease, then the next sweep (README "Dead processes"). */
const KILL_BOUND = TIMINGS.leaseTtl + TIMINGS.sweepInterval;
/** No document bounds the re-assertion after an empty Redis restart; a login waits for Redis up to leaseTtl, so that is the yardstick here. */
const REDIS_BOUND = TIMINGS.leaseTtl;
/** Handshakes wait for Redis during an outage; the client must learn the outcome, never give up first. */
const CONNECT_TIMEOUT = 20_000;
/** The nodes' handoverGrace (README "Deploying"): a gracefully stopped process's devices wait this long to be resumed elsewhere. */
const HANDOVER = 3000;
/** A device not back by then is ended by the next sweep after the grace (README "Deploying"), then written. */
const GRACEFUL_BOUND = HANDOVER + TIMINGS.sweepInterval + TIMER_TOLERANCE + STORE_WRITE;
/** The longest a returning device waits before it reconnects (socket.io-client's first retry is 0.5 to 1.5 s), well inside the grace. */
const RECONNECT_DELAY_MAX = 1500;
/** A device that chose the restarted process goes to another one if the restarted process is not listening by then (from the SIGTERM). */
const RESTARTED_BY = 2000;

export type FaultKind = 'process SIGKILL' | 'process restart' | 'Redis restart' | 'freeze (SIGSTOP)' | 'graceful restart (SIGTERM)';
/** What a reconvergence is measured after: a fault kind, one way of freezing a device, or plain steps. */
type Measured =
  | Exclude<FaultKind, 'freeze (SIGSTOP)'>
  | 'freeze past the heartbeat timeout'
  | 'freeze, then its session reconnects (half-open connection)'
  | 'freeze shorter than the timeout, then SIGCONT'
  | 'steps only';

/** The bound a reconvergence is held to, from the end of its fault; a miss within the slack is counted, past it is a divergence. */
const BOUNDS: Partial<Record<Measured, number>> = {
  'process SIGKILL': KILL_BOUND,
  'Redis restart': REDIS_BOUND,
  // Measured from the SIGSTOP: due at the last traffic (at most then) plus the timeout of the device's class.
  'freeze past the heartbeat timeout': Math.max(...Object.values(TIMINGS.heartbeatTimeout)) + TIMER_TOLERANCE + STORE_WRITE,
  // Measured from the (last) SIGTERM: the devices not back are ended by the first sweep after the handover grace.
  'graceful restart (SIGTERM)': GRACEFUL_BOUND,
};
export const FAULT_KINDS: FaultKind[] = ['process SIGKILL', 'process restart', 'Redis restart', 'freeze (SIGSTOP)', 'graceful restart (SIGTERM)'];
type StepKind = 'login' | 'login (child process)' | 'racing logins' | 'resume' | 'logout' | 'heartbeat' | 'close' | 'admin kick';

export interface ChaosOptions {
  seed: number;
  minutes: number;
  policy?: Policy;
  users: number;
  /** Extra time past each bound before a disagreement is a divergence (a loaded CI machine). */
  slack: number;
  /**
   * Least time from Redis answering again to the next empty restart (0: none). Spacing them was the
   * workaround for a kick lost across two close restarts (RELIABILITY.md, "Found by the chaos run"),
   * fixed since: the kicking process applies its recent ends again after each reconnection.
   */
  redisSpacing: number;
  /**
   * 'single' (the default): one private redis-server, restarted empty by the 'Redis restart' fault. 'cluster': a private Redis
   * Cluster of three masters (no replicas), the nodes on an ioredis Cluster and the sharded Socket.IO adapter; the 'Redis restart'
   * fault restarts one master empty (it rejoins with its slots), which loses the buckets it serves, and only those.
   */
  redis?: 'single' | 'cluster';
  log: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  /** One redis-server, or a Redis Cluster of three masters. */
  redis: 'single' | 'cluster';
  policy: Policy;
  users: number;
  devices: number;
  platforms: Record<string, number>;
  steps: Record<string, number>;
  stepsTotal: number;
  faults: Record<string, number>;
  faultsTotal: number;
  /** How the faults were made: which kind of freeze, whether steps came before a dead process was reaped. */
  faultVariants: Record<string, number>;
  /**
   * Admin kicks made while Redis was away: how many ran (and were refused after storeTimeout), the devices they listed, and the
   * live devices they did not list because their process re-asserted them after the kick ran (ended by the kick's mark).
   */
  outageKicks: { total: number; refused: number; listedDevices: number; endedOnReassertion: number };
  quietChecks: number;
  /**
   * The status-change callbacks the nodes sent the run: how many, the pairs whose order the run knew (each checked: Seq
   * strictly increasing), and the empty restarts after which the re-asserted users had to stay without any.
   */
  callbacks: { received: number; orderedPairs: number; quietWindows: number };
  /** The run stops at the first divergence: 0 or 1. */
  divergences: number;
  /** What diverged: the seed, the users and their histories. */
  divergence?: string | undefined;
  /** Per fault kind (and 'steps only'): the longest time from the end of the fault to every node agreeing with the model, in ms. */
  longestReconvergence: Record<string, number>;
  /** The bound each kind is held to, in ms (the deadline adds the slack). */
  bounds: Record<string, number>;
  /** Reconvergences that took longer than their bound (but less than bound + slack). */
  beyondBound: Record<string, number>;
  /** Per cause: the longest time from a freeze or a SIGKILL to every node showing one of its devices settled, in ms. */
  longestDeviceEnd: Record<string, number>;
  nodeErrors: Record<string, number>;
  /** Graceful restarts (README "Deploying"): see GracefulFigures. */
  graceful: GracefulFigures;
  runtimeSeconds: number;
}

/**
 * The graceful restarts: SIGTERM to a node (its handler as README "Deploying" writes it), its devices resuming on another
 * process or the restarted one within the handover grace, or not coming back.
 */
export interface GracefulFigures {
  /** The nodes' handoverGrace, in ms. */
  handoverGrace: number;
  /** Processes stopped by SIGTERM (a rolling restart counts each), and how many of the faults were rolling restarts of all three. */
  restarts: number;
  rolling: number;
  /** Devices live on a process when it got SIGTERM (a device handed over twice in one rolling restart counts twice). */
  handedOver: number;
  /** Of those, resumed within the grace (on the restarted process, and on another), and not back (ended once, as a closed connection). */
  resumed: number;
  resumedOnRestarted: number;
  notBack: number;
  /** Handed-over devices that a step during the grace (a kick, a login of their user) changed, checked by that step instead. */
  touchedByStep: number;
  /** Devices not back whose one Disconnect/LinkClose callback came, after the grace. */
  endedOnce: number;
  /** presence:changed events (any node's watcher) saying a user with a resumed device was not Online: must be 0. */
  flaps: number;
  /** presence:changed events for users whose handed-over devices all came back and who had no step during the grace (none expected). */
  changedEvents: number;
  /** The first few of those, described (user, status, watcher, time from the first SIGTERM). */
  changedEventsSeen: string[];
  /** presence:changed events the watchers got for users with a device not back (shows the watchers do hear the real changes). */
  changesForEnded: number;
  /** Status-change callbacks for resumed devices from the SIGTERM to the check after the grace: must be 0. */
  callbacksForResumed: number;
  /** The longest time from a SIGTERM to the restarted process listening, in ms. */
  longestRestart: number;
}

/** Something the nodes or the clients showed that the model says cannot be: the run stops on the first. */
export class Divergence extends Error {}

type Client = { kind: 'socket'; node: ClusterNode; device: ClusterDevice } | { kind: 'child'; node: ClusterNode; device: ChildDevice; frozen: boolean };

/** One callback as the receiver got it, for the graceful checks. */
interface CallbackSeen {
  userId: string;
  instanceId: string;
  action: string;
  status: string;
  eventTime: number;
}

/** A subscriber on each node, watching every user of the model: what presence:changed told it. */
interface Watcher {
  device: ClusterDevice;
  node: ClusterNode;
  changes: { userId: string; status: string; at: number }[];
}

/** What one graceful restart fault did to each device it handed over: its last outcome. */
interface Handover {
  slot: Slot;
  /** When the SIGTERM of its first process in the fault was sent (a rolling restart may hand a device over twice). */
  since: number;
  /** When the SIGTERM of its last process was sent. */
  at: number;
  back: boolean;
  /** A step on its user during the grace (a kick, a login) changed it: neither check applies, the step's own checks did. */
  touched: boolean;
}

interface NodeAnswer {
  status: string;
  devices: string[];
}

function childAlive(device: ChildDevice): boolean {
  return device.child.exitCode === null && device.child.signalCode === null;
}

function pick<T>(rng: () => number, items: readonly T[]): T {
  const item = items[Math.floor(rng() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function weighted<T extends string>(rng: () => number, choices: [T, number][]): T | undefined {
  const total = choices.reduce((sum, [, weight]) => sum + weight, 0);
  if (total === 0) return undefined;
  let at = rng() * total;
  for (const [choice, weight] of choices) {
    at -= weight;
    if (at < 0) return choice;
  }
  return choices[choices.length - 1]?.[0];
}

export class ChaosRun {
  private readonly rng: () => number;
  readonly policy: Policy;
  readonly model: PresenceModel;
  private redis: PrivateRedis | undefined;
  private cluster: PrivateRedisCluster | undefined;
  /** On a cluster: the port of the master serving each user's bucket (no replicas, so it never changes). */
  private readonly masterOf = new Map<string, number>();
  private masters: number[] = [];
  private readonly prefix = 'chaos:';
  private readonly names = ['A', 'B', 'C'];
  /** By index; undefined while a node is dead. */
  private readonly nodes: (ClusterNode | undefined)[] = [];
  private readonly retired: ClusterNode[] = [];
  private readonly clients = new Map<Slot, Client>();
  /** Every client the run opened, for the cleanup whatever happened. */
  private readonly opened: Client[] = [];
  /** Clients the server ended (kick, logout): each must be disconnected by it. */
  private readonly ending: { slot: Slot; client: Client; what: string }[] = [];
  /** Why a device's end is pending, for the per-cause figures. */
  private readonly pendingCause = new Map<Slot, { cause: FaultKind; at: number }>();
  private readonly steps: Record<string, number> = {};
  private readonly faults: Record<string, number> = {};
  private readonly longest: Record<string, number> = {};
  private readonly beyond: Record<string, number> = {};
  private readonly deviceEnd: Record<string, number> = {};
  private readonly variants: Record<string, number> = {};
  /** Connections left hanging by a device that reconnected elsewhere (its process frozen): killed at the next quiet check. */
  private readonly hung: Client[] = [];
  /** A quiet check accepts no agreement before this time: a hung connection's timeout must have come, and changed nothing. */
  private notBefore = 0;
  /** When Redis last answered again after a restart. */
  private redisBackAt = 0;
  private readonly outageKicks = { total: 0, refused: 0, listedDevices: 0, endedOnReassertion: 0 };
  private quietChecks = 0;
  private epoch = 0;
  /** The sequence numbers of the callbacks (model.ts SeqModel), their receiver, and the first problem found (a divergence at the next check). */
  private readonly seqModel = new SeqModel();
  private callbackServer: Server | undefined;
  private callbackUrl = '';
  private seqProblem: string | undefined;
  /** The last epochs' phases with their times, for a divergence's report. */
  private readonly phases: string[] = [];
  /** Every callback received, for the graceful checks (which callbacks came for a handed-over device). */
  private readonly callbackLog: CallbackSeen[] = [];
  /** Users a step ran on during the current graceful restart's grace. */
  private readonly steppedUsers = new Set<string>();
  /** The subscriber on each node, by index (undefined while it is dead). */
  private readonly watchers: (Watcher | undefined)[] = [];
  private readonly graceful: GracefulFigures = {
    handoverGrace: HANDOVER,
    restarts: 0,
    rolling: 0,
    handedOver: 0,
    resumed: 0,
    resumedOnRestarted: 0,
    notBack: 0,
    touchedByStep: 0,
    endedOnce: 0,
    flaps: 0,
    changedEvents: 0,
    changedEventsSeen: [],
    changesForEnded: 0,
    callbacksForResumed: 0,
    longestRestart: 0,
  };

  constructor(private readonly options: ChaosOptions) {
    this.rng = random(options.seed);
    this.policy = options.policy ?? pick(this.rng, ['single', 'dual', 'triple', 'multi'] as const);
    // Every user has a phone, a computer and a browser tab; some a mini program and a second phone too (same platform or not).
    const population = Array.from({ length: options.users }, (_, i) => {
      const platforms = [pick(this.rng, MOBILE), pick(this.rng, DESKTOP), 'Web'];
      if (this.rng() < 0.6) platforms.push('MiniProgram');
      if (this.rng() < 0.5) platforms.push(pick(this.rng, MOBILE));
      return { userId: `u${i}`, platforms };
    });
    this.model = new PresenceModel(this.policy, population);
  }

  private get liveNodes(): ClusterNode[] {
    return this.nodes.filter((node): node is ClusterNode => node !== undefined);
  }

  private count(table: Record<string, number>, key: string, by = 1): void {
    table[key] = (table[key] ?? 0) + by;
  }

  private async startNode(index: number): Promise<ClusterNode> {
    const config: ClusterNodeConfig = {
      name: `${this.names[index]}${this.retired.filter((node) => node.config.name.startsWith(this.names[index] ?? '?')).length || ''}`,
      redisUrl: this.redis?.url ?? '',
      ...(this.cluster ? { redisCluster: this.cluster.nodes } : {}),
      prefix: this.prefix,
      loginPolicy: this.policy,
      maxInstancesPerPlatform: 1,
      leaseTtl: TIMINGS.leaseTtl,
      sweepInterval: TIMINGS.sweepInterval,
      // Longer than any run: a PushOnline device never expires under the model's feet.
      pushOnlineTtl: 24 * 3600 * 1000,
      heartbeatTimeout: { ...TIMINGS.heartbeatTimeout },
      pingInterval: TIMINGS.pingInterval,
      pingTimeout: TIMINGS.pingTimeout,
      callbackUrl: this.callbackUrl,
      handoverGrace: HANDOVER,
    };
    const child = fork(NODE_SCRIPT, [JSON.stringify(config)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, DEBUG: process.env.CHAOS_DEBUG ?? '' },
    });
    const node = new ClusterNode(config, child);
    await node.ready();
    this.nodes[index] = node;
    await this.startWatcher(index, node);
    return node;
  }

  /**
   * A subscriber on the node watching every user of the model (a user of its own, outside the model, on a Windows device), so
   * that a flap shown to any node's subscribers is seen. It counts among the node's live devices.
   */
  private async startWatcher(index: number, node: ClusterNode): Promise<void> {
    const userId = `watch${index}`;
    const device = await connectDevice(node.url, userId, 'Windows', { instanceId: `${userId}-w` }, {}, CONNECT_TIMEOUT);
    const watcher: Watcher = { device, node, changes: [] };
    device.socket.on('presence:changed', (change) => watcher.changes.push({ userId: change.userId, status: change.status, at: Date.now() }));
    const answer = await device.socket.timeout(CONNECT_TIMEOUT).emitWithAck('presence:subscribe', { userIds: this.model.userIds });
    if (!answer.ok) throw new Error(`the watcher on ${node.name} could not subscribe: ${JSON.stringify(answer)}`);
    this.watchers[index] = watcher;
  }

  async start(): Promise<void> {
    this.callbackServer = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const receivedAt = Date.now();
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as StateChangeCallbackBody;
        const problem = this.seqModel.received({
          userId: body.Info.To_Account,
          instanceId: body.InstId,
          action: `${body.Info.Action}/${body.Info.Reason}`,
          seq: body.Seq,
          eventTime: body.EventTime,
          receivedAt,
        });
        if (problem && this.seqProblem === undefined) this.seqProblem = problem;
        this.callbackLog.push({
          userId: body.Info.To_Account,
          instanceId: body.InstId,
          action: `${body.Info.Action}/${body.Info.Reason}`,
          status: body.Status,
          eventTime: body.EventTime,
        });
        res.setHeader('content-type', 'application/json');
        res.end('{"ActionStatus":"OK","ErrorCode":0}');
      });
    });
    const server = this.callbackServer;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.callbackUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
    if (this.options.redis === 'cluster') {
      this.cluster = await PrivateRedisCluster.start({ masters: 3 });
      const owners = await this.cluster.slotOwners();
      // The masters in the order of their slots (their ports are free ones, other each run), so that a seed picks the same one.
      this.masters = [...new Set(owners)].filter((port): port is number => port !== undefined);
      for (const userId of this.model.userIds) this.masterOf.set(userId, owners[slotOf(BUCKET_TAGS[bucketOf(userId)] as string)] as number);
    } else {
      this.redis = await PrivateRedis.start();
    }
    await Promise.all(this.names.map((_, i) => this.startNode(i)));
  }

  async stop(): Promise<void> {
    for (const client of this.opened) this.dropClient(client);
    for (const watcher of this.watchers) watcher?.device.socket.disconnect();
    await Promise.all(this.liveNodes.map((node) => node.close()));
    await this.redis?.kill();
    await this.cluster?.stop();
    const server = this.callbackServer;
    if (server) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  /** A device of the slot logs in over a real socket (resuming `sessionId` if given); rejects with the refusal's code. */
  private async connectSocket(slot: Slot, node: ClusterNode, sessionId?: string): Promise<Client & { kind: 'socket' }> {
    const extra = sessionId === undefined ? { instanceId: slot.instanceId } : { instanceId: slot.instanceId, sessionId };
    const device = await connectDevice(node.url, slot.userId, slot.platform, extra, {}, CONNECT_TIMEOUT);
    return this.track({ kind: 'socket', node, device });
  }

  private track<T extends Client>(client: T): T {
    this.opened.push(client);
    return client;
  }

  private dropClient(client: Client): void {
    if (client.kind === 'socket') client.device.socket.disconnect();
    else if (childAlive(client.device)) client.device.child.kill('SIGKILL');
  }

  /** Runs epochs until the time is up, then a last check after a long quiet; answers the figures. */
  async run(): Promise<ChaosReport> {
    const started = Date.now();
    const endAt = started + this.options.minutes * 60_000;
    let lastProgress = started;
    let divergence: string | undefined;
    try {
      await this.quietCheck('start', Date.now(), 'steps only');
      while (Date.now() < endAt) {
        this.epoch++;
        const rounds = 1 + Math.floor(this.rng() * 4);
        this.phase(`${rounds} rounds of steps`);
        for (let round = 0; round < rounds; round++) await this.round();
        const stepsEnd = Date.now();
        const fault = await this.fault();
        this.phase(`fault ${fault?.measured ?? 'none'} ended; quiet check`);
        await this.quietCheck(`epoch ${this.epoch}`, fault?.end ?? stepsEnd, fault?.measured ?? 'steps only');
        this.phase('quiet check agreed');
        if (fault?.handovers) {
          await this.checkGraceful(`epoch ${this.epoch}`, fault.handovers);
          this.phase('graceful restart checked: no flap, no callback for the resumed devices');
        }
        if (Date.now() - lastProgress > 30_000) {
          lastProgress = Date.now();
          this.options.log(
            `epoch ${this.epoch}: ${this.total(this.steps)} steps, ${this.total(this.faults)} faults, ${this.quietChecks} quiet checks agreed (${Math.round((Date.now() - started) / 1000)} s)`,
          );
        }
      }
      // Nothing comes back later: no late reaping, no ghost re-asserted, after two more leases.
      await delay(2 * TIMINGS.leaseTtl);
      await this.quietCheck('final, after two more leases', Date.now(), 'steps only');
    } catch (error) {
      // The first divergence ends the run: past it the model no longer describes the cluster.
      if (!(error instanceof Divergence)) throw error;
      divergence = error.message;
    }
    const platforms: Record<string, number> = {};
    for (const slot of this.model.slots) this.count(platforms, slot.platform);
    return {
      seed: this.options.seed,
      redis: this.cluster ? 'cluster' : 'single',
      policy: this.policy,
      users: this.options.users,
      devices: this.model.slots.length,
      platforms,
      steps: { ...this.steps },
      stepsTotal: this.total(this.steps),
      faults: { ...this.faults },
      faultsTotal: this.total(this.faults),
      faultVariants: { ...this.variants },
      outageKicks: { ...this.outageKicks },
      callbacks: { received: this.seqModel.callbacks, orderedPairs: this.seqModel.orderedPairs, quietWindows: this.seqModel.quietWindows },
      quietChecks: this.quietChecks,
      divergences: divergence === undefined ? 0 : 1,
      divergence,
      longestReconvergence: { ...this.longest },
      bounds: { ...BOUNDS } as Record<string, number>,
      beyondBound: { ...this.beyond },
      longestDeviceEnd: { ...this.deviceEnd },
      nodeErrors: this.nodeErrors(),
      graceful: { ...this.graceful },
      runtimeSeconds: Math.round((Date.now() - started) / 100) / 10,
    };
  }

  /** What the nodes logged as errors, by message (each outage is logged once per process). */
  private nodeErrors(): Record<string, number> {
    const errors: Record<string, number> = {};
    for (const node of [...this.liveNodes, ...this.retired]) for (const entry of node.errors()) this.count(errors, entry.message.replace(/;.*/, ''));
    return errors;
  }

  private total(table: Record<string, number>): number {
    return Object.values(table).reduce((sum, n) => sum + n, 0);
  }

  // ---- steps -------------------------------------------------------------------------------

  /** One round: one step for each of one to three users, all at once (users never share a step, so the policy's order is theirs alone). */
  private async round(): Promise<void> {
    const users = [...this.model.userIds];
    const chosen: string[] = [];
    const count = 1 + Math.floor(this.rng() * 3);
    for (let i = 0; i < count && users.length > 0; i++) chosen.push(users.splice(Math.floor(this.rng() * users.length), 1)[0] as string);
    const planned = chosen.map((userId) => this.planStep(userId)).filter((step): step is () => Promise<void> => step !== undefined);
    await Promise.all(planned.map((step) => step()));
  }

  private disconnected(userId: string): Slot[] {
    return this.model.slotsOf(userId).filter((slot) => !this.clients.has(slot));
  }

  private connected(userId: string, kind?: 'socket'): Slot[] {
    return this.model.slotsOf(userId).filter((slot) => {
      const client = this.clients.get(slot);
      return client !== undefined && !(client.kind === 'child' && client.frozen) && (kind === undefined || client.kind === kind);
    });
  }

  /** Chooses a step for a user now (all random draws here, so a seed replays the same choices), to run later. */
  private planStep(userId: string, only?: StepKind[]): (() => Promise<void>) | undefined {
    const disconnected = this.disconnected(userId);
    const resumable = disconnected.filter((slot) => slot.clientSession !== undefined);
    const sockets = this.connected(userId, 'socket');
    const live = this.connected(userId);
    const allow = (kind: StepKind, weight: number): [StepKind, number] => [kind, only && !only.includes(kind) ? 0 : weight];
    const kind = weighted(this.rng, [
      allow('login', disconnected.length > 0 ? 3 : 0),
      allow('login (child process)', disconnected.length > 0 ? 1 : 0),
      allow('racing logins', disconnected.length > 1 ? 1 : 0),
      allow('resume', resumable.length > 0 ? 3 : 0),
      allow('logout', sockets.length > 0 ? 1.5 : 0),
      allow('heartbeat', sockets.length > 0 ? 2 : 0),
      allow('close', live.length > 0 ? 2.5 : 0),
      allow('admin kick', 1),
    ]);
    const node = pick(this.rng, this.liveNodes);
    switch (kind) {
      case undefined:
        return undefined;
      case 'login':
      case 'login (child process)': {
        const slot = pick(this.rng, disconnected);
        return () => this.login(slot, node, kind === 'login (child process)');
      }
      case 'racing logins': {
        const first = pick(this.rng, disconnected);
        const second = pick(
          this.rng,
          disconnected.filter((slot) => slot !== first),
        );
        const others = this.liveNodes.filter((other) => other !== node);
        return () => this.race(first, node, second, others.length > 0 ? pick(this.rng, others) : node);
      }
      case 'resume': {
        const slot = pick(this.rng, resumable);
        return () => this.resume(slot, node);
      }
      case 'logout': {
        const slot = pick(this.rng, sockets);
        return () => this.logout(slot);
      }
      case 'heartbeat': {
        const slot = pick(this.rng, sockets);
        return () => this.heartbeat(slot);
      }
      case 'close': {
        const slot = pick(this.rng, live);
        return () => this.close(slot);
      }
      case 'admin kick': {
        const slots = this.model.slotsOf(userId);
        const filter = weighted(this.rng, [
          ['all', 2],
          ['platform', 1],
          ['instance', 1],
          ['source route', 1],
        ]);
        const slot = pick(this.rng, slots);
        return () =>
          this.kick(
            userId,
            node,
            filter === 'platform' ? { platform: slot.platform } : filter === 'instance' ? { instanceId: slot.instanceId } : {},
            filter === 'source route',
          );
      }
      default: {
        const unknown: never = kind;
        throw new Error(`unknown step ${String(unknown)}`);
      }
    }
  }

  private diverge(message: string): never {
    throw new Divergence(`${message}\n${this.context(this.model.userIds.filter((userId) => message.includes(`${userId}`)))}`);
  }

  private phase(what: string): void {
    this.phases.push(`${new Date().toISOString().slice(11, 23)} epoch ${this.epoch}: ${what}`);
    if (this.phases.length > 12) this.phases.shift();
  }

  private context(userIds: string[]): string {
    const lines = [`seed ${this.options.seed}, policy ${this.policy}, epoch ${this.epoch}; replay with CHAOS_SEED=${this.options.seed}`];
    lines.push('phases:', ...this.phases.map((line) => `  ${line}`));
    for (const userId of userIds) lines.push(`history of ${userId}:`, ...this.model.historyOf(userId).map((line) => `  ${line}`));
    for (const node of [...this.liveNodes, ...this.retired]) {
      const errors = node.logs.map((entry) => `${entry.level}: ${entry.message} ${entry.detail}`);
      if (errors.length > 0) lines.push(`${node.name} logged:`, ...errors.slice(-10).map((line) => `  ${line}`));
      // With CHAOS_DEBUG (the nodes' DEBUG), what they printed last.
      if (process.env.CHAOS_DEBUG) lines.push(`${node.name} printed (last 4000 characters):`, node.output.slice(-4000));
    }
    return lines.join('\n');
  }

  /** The devices the model just ended (kicked or seen ended) lose their clients; a live socket must now be disconnected by the server. */
  private endClients(targets: Targets, what: string): void {
    for (const slot of [...targets.certain, ...targets.maybe]) {
      const client = this.clients.get(slot);
      if (!client || slot.state !== 'gone') continue;
      // A frozen device cannot take its disconnect; it is killed once its timeout is checked.
      if (client.kind === 'child' && client.frozen) continue;
      this.clients.delete(slot);
      this.ending.push({ slot, client, what });
    }
  }

  private async login(slot: Slot, node: ClusterNode, inChild: boolean): Promise<void> {
    this.count(this.steps, inChild ? 'login (child process)' : 'login');
    const targets = this.model.displacedBy(slot, Date.now());
    let client: Client;
    if (inChild) {
      const device = await childDevice(node.url, { token: `tok:${slot.userId}`, platform: slot.platform, instanceId: slot.instanceId });
      client = this.track({ kind: 'child', node, device, frozen: false });
    } else {
      client = await this.connectSocket(slot, node);
    }
    const session = client.device.session;
    const what = `login on ${node.name}${inChild ? ' (child process)' : ''}`;
    const problem = this.model.applyKicked(slot.userId, targets, session.kicked, what);
    this.endClients(targets, what);
    this.model.loggedInNow(slot, session.sessionId, what);
    this.clients.set(slot, client);
    if (session.resumed) this.diverge(`${what} of ${slot.userId}/${slot.instanceId} without a session answered resumed`);
    if (problem) this.diverge(problem);
  }

  /**
   * Two devices of one user log in at once on two processes. SPEC.md: "The decision of who is kicked
   * must be atomic: two logins racing on two processes must never leave more instances than the policy
   * allows." Redis runs one script after the other; the kicked lists say which ran first, and they must
   * fit one of the two orders exactly.
   */
  private async race(first: Slot, firstNode: ClusterNode, second: Slot, secondNode: ClusterNode): Promise<void> {
    this.count(this.steps, 'racing logins');
    const started = Date.now();
    const [a, b] = await Promise.all([this.connectSocket(first, firstNode), this.connectSocket(second, secondNode)]);
    const logins = [
      { slot: first, client: a },
      { slot: second, client: b },
    ];
    const problems: string[] = [];
    for (const order of [logins, [...logins].reverse()]) {
      const restore = this.model.snapshot();
      const ended: Targets[] = [];
      let problem: string | undefined;
      for (const { slot, client } of order) {
        const targets = this.model.displacedBy(slot, started);
        ended.push(targets);
        const what = `racing login on ${client.node.name}`;
        problem ??= this.model.applyKicked(slot.userId, targets, client.device.session.kicked, what);
        this.model.loggedInNow(slot, client.device.session.sessionId, what);
      }
      if (problem) {
        problems.push(problem);
        restore();
        continue;
      }
      for (const { slot, client } of logins) this.clients.set(slot, client);
      for (const targets of ended) this.endClients(targets, 'racing login');
      return;
    }
    this.diverge(`racing logins of ${first.userId} fit neither order: ${problems.join('; ')}`);
  }

  private async resume(slot: Slot, node: ClusterNode): Promise<void> {
    this.count(this.steps, 'resume');
    const sessionId = slot.clientSession as string;
    const now = Date.now();
    const expectation = this.model.expectResume(slot, sessionId, now);
    const targets = this.model.displacedBy(slot, now);
    const what = `resume on ${node.name} (expected ${expectation})`;
    let client: Client & { kind: 'socket' };
    try {
      client = await this.connectSocket(slot, node, sessionId);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== 'SESSION_REVOKED' || (expectation !== 'revoked' && expectation !== 'revoked-or-fresh'))
        this.diverge(`${what} of ${slot.userId}/${slot.instanceId} refused: ${(error as Error).message}`);
      this.model.note(slot.userId, `${what}: ${slot.instanceId} refused SESSION_REVOKED`);
      // The client forgets the session and logs in afresh next time, as an app does.
      slot.clientSession = undefined;
      return;
    }
    const session = client.device.session;
    const resumed = session.resumed && session.sessionId === sessionId;
    if (expectation === 'revoked') this.diverge(`${what} of ${slot.userId}/${slot.instanceId} with a revoked session was let in`);
    if (resumed) {
      if (expectation === 'fresh' || expectation === 'revoked-or-fresh')
        this.diverge(`${what} of ${slot.userId}/${slot.instanceId} resumed a session the store should not hold`);
      // SPEC.md: a reconnect of an instance still logged in "resumes it and kicks nobody".
      if (session.kicked.length > 0) this.diverge(`${what} of ${slot.userId}/${slot.instanceId} kicked ${JSON.stringify(session.kicked)}`);
      this.model.loggedInNow(slot, sessionId, `${what}: resumed`);
      this.clients.set(slot, client);
      return;
    }
    if (expectation === 'resumed') this.diverge(`${what} of ${slot.userId}/${slot.instanceId} was a fresh login (${session.sessionId})`);
    const problem = this.model.applyKicked(slot.userId, targets, session.kicked, `${what}: fresh`);
    // The targets include the device's own earlier record: its clients end before the new one is kept.
    this.endClients(targets, what);
    this.model.loggedInNow(slot, session.sessionId, `${what}: fresh`);
    this.clients.set(slot, client);
    if (problem) this.diverge(problem);
  }

  private async logout(slot: Slot): Promise<void> {
    this.count(this.steps, 'logout');
    const client = this.clients.get(slot);
    if (client?.kind !== 'socket') throw new Error('logout of a device without a socket');
    const answer = await client.device.socket.timeout(CONNECT_TIMEOUT).emitWithAck('presence:logout');
    if (!answer.ok) this.diverge(`logout of ${slot.userId}/${slot.instanceId} answered ${JSON.stringify(answer)}`);
    this.model.loggedOut(slot, `logout on ${client.node.name}`);
    this.clients.delete(slot);
    this.ending.push({ slot, client, what: 'logout' });
  }

  private async heartbeat(slot: Slot): Promise<void> {
    this.count(this.steps, 'heartbeat');
    const client = this.clients.get(slot);
    if (client?.kind !== 'socket') throw new Error('heartbeat of a device without a socket');
    const answer = await client.device.socket.timeout(CONNECT_TIMEOUT).emitWithAck('presence:heartbeat');
    if (!answer.ok) this.diverge(`heartbeat of ${slot.userId}/${slot.instanceId} answered ${JSON.stringify(answer)}`);
  }

  /** The app is killed or the page closed: a FIN (socket) or an RST (the child process killed). */
  private async close(slot: Slot): Promise<void> {
    const client = this.closeClient(slot);
    this.model.linkLost(slot, Date.now() + CLOSE_BOUND, `close${client.kind === 'child' ? ' (child process killed)' : ''} on ${client.node.name}`);
  }

  private closeClient(slot: Slot): Client {
    this.count(this.steps, 'close');
    const client = this.clients.get(slot);
    if (!client) throw new Error('close of a device without a client');
    this.dropClient(client);
    this.clients.delete(slot);
    return client;
  }

  private async kick(userId: string, node: ClusterNode, filter: { platform?: string; instanceId?: string }, sourceRoute: boolean): Promise<void> {
    this.count(this.steps, 'admin kick');
    const targets = this.model.kickTargets(userId, filter, Date.now());
    let kicked: { platform: string; instanceId: string }[];
    if (sourceRoute) {
      const answer = await node.http<SourceKickResponse>('/v4/im_open_login_svc/kick', { UserID: userId });
      if (answer.status !== 200) this.diverge(`source kick of ${userId} on ${node.name}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
      kicked = answer.body.KickedDevice.map((device) => ({ platform: device.Platform, instanceId: device.InstId }));
    } else {
      const answer = await node.http<UserKickResponse>(`/users/${userId}/kick`, filter);
      if (answer.status !== 200) this.diverge(`kick of ${userId} on ${node.name}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
      kicked = answer.body.kicked;
    }
    const what = `admin kick ${sourceRoute ? '(source route) ' : ''}${JSON.stringify(filter)} on ${node.name}`;
    const problem = this.model.applyKicked(userId, targets, kicked, what);
    this.endClients(targets, what);
    if (problem) this.diverge(problem);
  }

  // ---- faults ------------------------------------------------------------------------------

  /** At most one fault per epoch, at its end; each kind is made to happen early at least once. */
  private async fault(): Promise<{ measured: Measured; end: number; handovers?: Handover[] } | undefined> {
    const deadIndex = this.nodes.findIndex((node) => node === undefined);
    const missing = FAULT_KINDS.filter((kind) => !this.faults[kind]);
    let kind: FaultKind | undefined;
    if (deadIndex >= 0) {
      kind = weighted(this.rng, [
        ['process restart', 3],
        ['Redis restart', 1],
        ['freeze (SIGSTOP)', 1],
        ['none' as FaultKind, 1],
      ]);
    } else if (this.epoch >= 2 && missing.length > 0 && missing[0] !== 'process restart') {
      kind = missing[0];
    } else {
      kind = weighted(this.rng, [
        ['process SIGKILL', 1],
        ['Redis restart', 1],
        ['freeze (SIGSTOP)', 1.2],
        ['graceful restart (SIGTERM)', 1.2],
        ['none' as FaultKind, 1.5],
      ]);
    }
    switch (kind) {
      case 'process SIGKILL':
        return { measured: kind, end: await this.killNode(Math.floor(this.rng() * this.nodes.length)) };
      case 'process restart':
        if (deadIndex < 0) return undefined;
        this.count(this.faults, kind);
        await this.startNode(deadIndex);
        return { measured: kind, end: Date.now() };
      case 'Redis restart':
        return { measured: kind, end: await this.restartRedis() };
      case 'freeze (SIGSTOP)':
        return this.freeze();
      case 'graceful restart (SIGTERM)':
        return this.deploy();
      default:
        return undefined;
    }
  }

  /**
   * A deploy (README "Deploying"): one process, or each of the three in turn (a rolling restart), stopped by SIGTERM and
   * started again. Only while every process runs (a deploy is not made during a crash).
   */
  private async deploy(): Promise<{ measured: Measured; end: number; handovers: Handover[] }> {
    this.count(this.faults, 'graceful restart (SIGTERM)');
    const rolling = this.rng() < 0.35;
    this.count(this.variants, rolling ? 'graceful: rolling restart, each process in turn' : 'graceful: one process');
    if (rolling) this.graceful.rolling++;
    const order = rolling ? [0, 1, 2] : [Math.floor(this.rng() * this.nodes.length)];
    const outcome = new Map<Slot, Handover>();
    // The changes of the steps just made may still be on their way to the watchers (a user's logout just before): they arrive
    // first, so that the deploy's check sees only what came after its SIGTERM.
    await this.watchersQuiet();
    for (const watcher of this.watchers) if (watcher) watcher.changes.length = 0;
    this.steppedUsers.clear();
    let end = Date.now();
    for (const index of order) {
      end = await this.gracefulRestart(index, outcome);
    }
    // The quiet check looks past the grace, when a wrong end of a resumed device would have been made.
    this.notBefore = Math.max(this.notBefore, end + HANDOVER + TIMINGS.sweepInterval);
    return { measured: 'graceful restart (SIGTERM)', end, handovers: [...outcome.values()] };
  }

  /** Until no watcher has seen a change for 150 ms (at most a second). */
  private async watchersQuiet(): Promise<void> {
    const until = Date.now() + 1000;
    const latest = () => Math.max(0, ...this.watchers.flatMap((watcher) => watcher?.changes.map((change) => change.at) ?? []));
    while (Date.now() - latest() < 150 && Date.now() < until) await delay(20);
  }

  /**
   * SIGTERM to node `index`: its handler (cluster-node.ts, as README "Deploying" writes it) closes io, then the presence, which
   * hands its devices over for HANDOVER ms. Each device sees its connection close, then (as decided here, from the seed)
   * resumes its session after a reconnect delay, on another process or on the restarted one, or never comes back. The
   * model: no transition at all for those back in time; a closed connection (mobile PushOnline, the others gone) by
   * GRACEFUL_BOUND for the others. Answers when the SIGTERM was sent, once the node runs again and every device is back.
   */
  private async gracefulRestart(index: number, outcome: Map<Slot, Handover>): Promise<number> {
    const node = this.nodes[index] as ClusterNode;
    const others = this.liveNodes.filter((other) => other !== node);
    // Every draw first, so that a seed replays the same choices whatever the timings.
    const plans = [...this.clients]
      .filter(([, client]) => client.node === node)
      .map(([slot, client]) => ({
        slot,
        client,
        back: !(client.kind === 'child' && client.frozen) && this.rng() < 0.8,
        wait: Math.floor(this.rng() * RECONNECT_DELAY_MAX),
        restarted: this.rng() < 0.4,
        other: others.length > 0 ? pick(this.rng, others) : undefined,
      }));
    this.graceful.restarts++;
    this.graceful.handedOver += plans.length;
    const at = Date.now();
    const exit = node.terminate();
    this.nodes[index] = undefined;
    this.retired.push(node);
    // An end already due (a close just before) may now wait for the handover instead (README "Deploying": "either order works").
    for (const slot of this.model.slots) if (slot.pendingUntil > at) slot.pendingUntil = Math.max(slot.pendingUntil, at + GRACEFUL_BOUND);
    for (const { slot, back } of plans) {
      this.clients.delete(slot);
      // Handed over again in a rolling restart: checked from its first SIGTERM, unless a step changed it since (its own
      // callbacks, a kick's or a login's, came before this SIGTERM): then from this one.
      const earlier = outcome.get(slot);
      outcome.set(slot, { slot, since: earlier && !earlier.touched ? earlier.since : at, at, back, touched: false });
      if (back) continue;
      this.graceful.notBack++;
      this.model.linkLost(slot, at + GRACEFUL_BOUND, `${node.name} stopped by SIGTERM, not back within the handover`);
      if (slot.pendingUntil > 0) this.pendingCause.set(slot, { cause: 'graceful restart (SIGTERM)', at });
    }
    for (const entry of this.ending) if (entry.client.node === node) this.dropClient(entry.client);
    const restarted = (async () => {
      const code = await exit;
      if (code !== 0)
        this.diverge(`${node.name} exited with ${code} after SIGTERM (README "Deploying": the handler exits 0):
${node.output.slice(-2000)}`);
      const fresh = await this.startNode(index);
      this.graceful.longestRestart = Math.max(this.graceful.longestRestart, Date.now() - at);
      return fresh;
    })();
    // A failed restart is reported below, by whoever awaits it first.
    restarted.catch(() => undefined);
    // Sometimes a step on a user with devices handed over, during the grace and while the process is still closing: an
    // admin kick must list (and end) a handed-over device, it being logged in all along; a login must kick the ones it
    // cannot stay with, its own earlier session included. Those devices' returns then go as the model says.
    const users = [...new Set(plans.map(({ slot }) => slot.userId))];
    if (users.length > 0 && this.rng() < 0.3) {
      const userId = pick(this.rng, users);
      const before = new Map(this.model.slotsOf(userId).map((slot) => [slot, `${slot.state} ${slot.sessionId} ${slot.pendingUntil}`]));
      const step = this.planStep(userId, ['admin kick', 'login']);
      if (step) {
        this.count(this.variants, 'graceful: a step on its users during the grace');
        this.steppedUsers.add(userId);
        await step();
        for (const [slot, was] of before) {
          const handover = outcome.get(slot);
          if (handover && !handover.touched && was !== `${slot.state} ${slot.sessionId} ${slot.pendingUntil}`) {
            handover.touched = true;
            this.graceful.touchedByStep++;
          }
        }
      }
    }
    await Promise.all(
      plans.map(async ({ slot, client, back, wait, restarted: toRestarted, other }) => {
        // The device learns its connection closed (the server's io.close()), and a child device's process exits with it.
        const closedBy = Date.now() + 5000 + this.options.slack;
        const closed = () => (client.kind === 'socket' ? !client.device.socket.connected : client.frozen || !childAlive(client.device));
        while (!closed() && Date.now() < closedBy) await delay(10);
        if (!closed()) this.diverge(`${slot.userId}/${slot.instanceId}'s connection to ${node.name} stayed open after SIGTERM`);
        this.dropClient(client);
        const touched = outcome.get(slot)?.touched === true;
        // Logged in again by the step (a fresh login of this very device): nothing to come back.
        if (!back || this.clients.has(slot)) return;
        await delay(wait);
        let target = other;
        if (toRestarted || target === undefined) {
          const ready = await Promise.race([restarted, delay(Math.max(0, at + RESTARTED_BY - Date.now())).then(() => undefined)]);
          if (ready) {
            target = ready;
            if (!touched) this.graceful.resumedOnRestarted++;
          }
        }
        if (target === undefined) target = await restarted;
        // Kicked meanwhile: its resume is refused (or, kicked while unseen, a fresh login), as any resume after a kick.
        if (touched) await this.resume(slot, target);
        else await this.handoverResume(slot, target, node, at);
      }),
    );
    await restarted;
    return at;
  }

  /** A device back within the handover grace resumes its session: no kick, the same session, Online all along. */
  private async handoverResume(slot: Slot, node: ClusterNode, from: ClusterNode, at: number): Promise<void> {
    const sessionId = slot.clientSession as string;
    const what = `handed over by ${from.name}, resumed on ${node.name} ${Date.now() - at} ms after the SIGTERM`;
    let client: Client & { kind: 'socket' };
    try {
      client = await this.connectSocket(slot, node, sessionId);
    } catch (error) {
      this.diverge(`${what}: ${slot.userId}/${slot.instanceId} refused: ${(error as Error).message}`);
    }
    const session = client.device.session;
    if (!session.resumed || session.sessionId !== sessionId)
      this.diverge(`${what}: ${slot.userId}/${slot.instanceId} got a fresh login (${session.sessionId})`);
    if (session.kicked.length > 0) this.diverge(`${what}: ${slot.userId}/${slot.instanceId} kicked ${JSON.stringify(session.kicked)}`);
    this.graceful.resumed++;
    this.model.loggedInNow(slot, sessionId, what);
    this.clients.set(slot, client);
  }

  /**
   * After a graceful restart's quiet check, past the grace: no watcher on any node saw a user with a resumed device as not
   * Online, no callback came for a resumed device, and each device not back got exactly one callback, a closed connection,
   * made after the grace (README "Deploying": "What receivers see during a rolling deploy").
   */
  private async checkGraceful(label: string, handovers: Handover[]): Promise<void> {
    const first = Math.min(...handovers.map((handover) => handover.at), Date.now());
    const last = Math.max(...handovers.map((handover) => handover.at), 0);
    // Late enough for a wrong end of a resumed device (due at the grace, made by the next sweep) to be called back.
    const lateBy = last + GRACEFUL_BOUND + 500;
    if (Date.now() < lateBy) await delay(lateBy - Date.now());
    const resumed = handovers.filter((handover) => handover.back && !handover.touched);
    const ended = handovers.filter((handover) => !handover.back && !handover.touched);
    // Each end called back (the receiver answers at once; a callback is sent when its change is made).
    const calledBack = (handover: Handover) =>
      this.callbackLog.some((seen) => seen.instanceId === handover.slot.instanceId && seen.eventTime >= handover.since);
    const waitUntil = Date.now() + 3000 + this.options.slack;
    while (!ended.every(calledBack) && Date.now() < waitUntil) await delay(20);
    const problems: string[] = [];
    for (const { slot, since } of resumed) {
      const wrong = this.callbackLog.filter((seen) => seen.instanceId === slot.instanceId && seen.eventTime >= since);
      this.graceful.callbacksForResumed += wrong.length;
      for (const seen of wrong)
        problems.push(`a callback for ${slot.userId}/${slot.instanceId}, resumed within the grace: ${seen.action} ${seen.status} at ${seen.eventTime}`);
    }
    for (const { slot, since, at } of ended) {
      const seen = this.callbackLog.filter((body) => body.instanceId === slot.instanceId && body.eventTime >= since);
      const shown = seen.map((body) => `${body.action} ${body.status} at +${body.eventTime - at} ms`).join(', ') || 'none';
      // A closed connection: a phone PushOnline, the others gone (its instance Offline), once, after the grace.
      const ok =
        seen.length === 1 &&
        seen[0]?.action === 'Disconnect/LinkClose' &&
        seen[0]?.status === (slot.cls === 'mobile' ? 'PushOnline' : 'Offline') &&
        (seen[0]?.eventTime ?? 0) >= at + HANDOVER - TIMER_TOLERANCE;
      if (ok) this.graceful.endedOnce++;
      else problems.push(`${slot.userId}/${slot.instanceId} not back: expected one Disconnect/LinkClose callback after the ${HANDOVER} ms grace, got ${shown}`);
    }
    const resumedUsers = new Set(resumed.map(({ slot }) => slot.userId));
    const endedUsers = new Set(ended.map(({ slot }) => slot.userId));
    for (const watcher of this.watchers) {
      for (const change of watcher?.changes ?? []) {
        if (change.at < first) continue;
        if (endedUsers.has(change.userId)) this.graceful.changesForEnded++;
        if (!resumedUsers.has(change.userId)) continue;
        if (!endedUsers.has(change.userId) && !this.steppedUsers.has(change.userId)) {
          this.graceful.changedEvents++;
          if (this.graceful.changedEventsSeen.length < 10)
            this.graceful.changedEventsSeen.push(`${change.userId} ${change.status} on ${watcher?.node.name}'s watcher at +${change.at - first} ms`);
        }
        // A user with a resumed device was Online all along.
        if (change.status !== 'Online') {
          this.graceful.flaps++;
          problems.push(
            `the watcher on ${watcher?.node.name} saw ${change.userId} ${change.status} at +${change.at - first} ms, with a device resumed within the grace`,
          );
        }
      }
    }
    for (const watcher of this.watchers) if (watcher) watcher.changes.length = 0;
    if (problems.length > 0) this.diverge(`${label}: graceful restart:\n  ${problems.join('\n  ')}`);
  }

  /** SIGKILL a node; then, before its lease runs out, a few steps on users that had devices there (a kick, a login elsewhere, a resume elsewhere). */
  private async killNode(index: number): Promise<number> {
    const node = this.nodes[index] as ClusterNode;
    this.count(this.faults, 'process SIGKILL');
    await node.kill('SIGKILL');
    const killedAt = Date.now();
    this.nodes[index] = undefined;
    this.retired.push(node);
    const affected = new Set<string>();
    for (const [slot, client] of [...this.clients]) {
      if (client.node !== node) continue;
      affected.add(slot.userId);
      this.dropClient(client);
      this.clients.delete(slot);
      // SPEC.md: "the instances of a process that died are cleared within a bounded time"; mobile PushOnline, the others gone (README "Dead processes").
      this.model.linkLost(slot, killedAt + KILL_BOUND, `${node.name} SIGKILLed`);
      if (slot.pendingUntil > 0) this.pendingCause.set(slot, { cause: 'process SIGKILL', at: killedAt });
    }
    for (const entry of this.ending) if (entry.client.node === node) this.dropClient(entry.client);
    const users = [...affected].filter(() => this.rng() < 0.5).slice(0, 2);
    if (users.length > 0) this.count(this.variants, 'SIGKILL, then steps on its users before the lease runs out');
    const planned = users.map((userId) => this.planStep(userId, ['admin kick', 'login', 'resume'])).filter((step) => step !== undefined);
    await Promise.all(planned.map((step) => step()));
    return killedAt;
  }

  /**
   * Kill the private redis-server (its data is gone), act while it is away (closes, logouts, logins,
   * heartbeats on distinct users), start it again empty. Answers when it answers PING again.
   */
  private async restartRedis(): Promise<number> {
    const wait = this.redisBackAt + this.options.redisSpacing - Date.now();
    if (wait > 0) await delay(wait);
    this.count(this.faults, 'Redis restart');
    const live = new Set([...this.clients].filter(([slot]) => slot.state === 'Online').map(([slot]) => slot));
    const killedAt = Date.now();
    // Users with an end still due (a close just before the kill reaches the store around it), before the wipe clears it.
    const pending = new Set(this.model.slots.filter((slot) => slot.pendingUntil > killedAt).map((slot) => slot.userId));
    // On a cluster, one master (and the users whose bucket it serves) of the three; every user on one Redis.
    const masters = this.masters;
    const master = this.cluster ? pick(this.rng, masters) : undefined;
    const wiped = this.model.userIds.filter((userId) => master === undefined || this.masterOf.get(userId) === master);
    if (this.cluster) {
      this.count(this.variants, `Redis restart: one master of ${masters.length} restarted empty`);
      this.count(this.variants, `Redis restart: users in the restarted master's buckets`, wiped.length);
      await this.cluster.killServer(master as number);
      this.model.redisWiped(live, `master :${master} restarted empty`, new Set(wiped));
      for (const slot of this.pendingCause.keys()) if (wiped.includes(slot.userId)) this.pendingCause.delete(slot);
    } else {
      await (this.redis as PrivateRedis).kill();
      this.model.redisWiped(live, 'Redis restarted empty');
      this.pendingCause.clear();
    }
    // Steps during the outage only on users that lost their keys: on a cluster the others' steps are ordinary ones.
    const users = wiped.filter(() => this.rng() < 0.35).slice(0, 3);
    // The others only have their live devices re-asserted, until the quiet check after the restart agrees: no callback.
    this.seqModel.openQuiet(
      this.model.userIds.filter((userId) => !users.includes(userId) && !pending.has(userId)),
      killedAt,
      `empty Redis restart at ${new Date(killedAt).toISOString().slice(11, 23)}`,
    );
    const during: Promise<() => string | undefined>[] = [];
    for (const userId of users) {
      const step = this.planOutageStep(userId);
      if (step) during.push(step());
    }
    // Long enough for every node to see its closes before Redis is back.
    await delay(150 + Math.floor(this.rng() * 400));
    if (this.cluster) {
      // Back once it serves its slots again: a restarted master refuses writes for Redis's rejoin delay (2 s) after it starts.
      await this.cluster.startServer(master as number);
      await this.cluster.waitHealthy(30_000);
    } else {
      await (this.redis as PrivateRedis).start();
    }
    const backAt = Date.now();
    this.redisBackAt = backAt;
    for (const apply of await Promise.all(during)) {
      const problem = apply();
      if (problem) this.diverge(problem);
    }
    return backAt;
  }

  /** A step while Redis is away; its promise answers how to apply the outcome once Redis is back. */
  private planOutageStep(userId: string): (() => Promise<() => string | undefined>) | undefined {
    const disconnected = this.disconnected(userId);
    const sockets = this.connected(userId, 'socket');
    const live = this.connected(userId);
    const kind = weighted(this.rng, [
      ['close', live.length > 0 ? 2 : 0],
      ['logout', sockets.length > 0 ? 1 : 0],
      ['login', disconnected.length > 0 ? 2 : 0],
      ['heartbeat', sockets.length > 0 ? 1 : 0],
      ['admin kick', 2],
    ]);
    const node = pick(this.rng, this.liveNodes);
    switch (kind) {
      case 'close': {
        const slot = pick(this.rng, live);
        return async () => {
          const client = this.closeClient(slot);
          // Gone, even a phone: its replay finds nothing in the empty Redis.
          this.model.forgotten(slot, `close on ${client.node.name} while Redis was away`);
          return () => undefined;
        };
      }
      case 'logout': {
        const slot = pick(this.rng, sockets);
        const client = this.clients.get(slot) as Client & { kind: 'socket' };
        return async () => {
          this.count(this.steps, 'logout');
          const answer = await client.device.socket.timeout(CONNECT_TIMEOUT).emitWithAck('presence:logout');
          this.clients.delete(slot);
          this.ending.push({ slot, client, what: 'logout while Redis was away' });
          // The replayed removal finds no record in the empty Redis; it revokes the session all the same.
          this.model.loggedOutWhileAway(slot, `logout on ${client.node.name} while Redis was away`);
          // Refused with SERVER_ERROR once storeTimeout passes (README "Store outages"); the removal is replayed all the same.
          return () =>
            answer.ok || answer.code === 'SERVER_ERROR' ? undefined : `logout of ${userId} while Redis was away answered ${JSON.stringify(answer)}`;
        };
      }
      case 'heartbeat': {
        const slot = pick(this.rng, sockets);
        return async () => {
          await this.heartbeat(slot);
          return () => undefined;
        };
      }
      case 'admin kick': {
        const target = pick(this.rng, this.model.slotsOf(userId));
        const filter = this.rng() < 0.5 ? {} : { instanceId: target.instanceId };
        return async () => {
          this.count(this.steps, 'admin kick');
          const answer = await node.http<UserKickResponse>(`/users/${userId}/kick`, filter);
          return () => {
            const what = `admin kick ${JSON.stringify(filter)} on ${node.name} while Redis was away`;
            this.outageKicks.total++;
            if (answer.status === 503) {
              // It waits for Redis up to storeTimeout, then is refused and not made (README "Redis outages"): nothing happened.
              this.outageKicks.refused++;
              this.model.note(userId, `${what}: refused (HTTP 503)`);
              return undefined;
            }
            if (answer.status !== 200) return `${what}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`;
            const { ended, unlisted, problem } = this.model.kickAfterWipe(userId, filter, answer.body.kicked, what);
            this.endClients(ended, what);
            this.outageKicks.listedDevices += ended.certain.length - unlisted.length;
            this.outageKicks.endedOnReassertion += unlisted.length;
            return problem;
          };
        };
      }
      case 'login': {
        const slot = pick(this.rng, disconnected);
        const sessionId = this.rng() < 0.5 ? slot.clientSession : undefined;
        return async () => {
          this.count(this.steps, sessionId ? 'resume' : 'login');
          const what = `${sessionId ? 'resume' : 'login'} on ${node.name} while Redis was away`;
          let client: Client & { kind: 'socket' };
          try {
            client = await this.connectSocket(slot, node, sessionId);
          } catch (error) {
            // Logins wait for Redis up to leaseTtl, then are refused (README "Redis outages"): nothing happened.
            return () => {
              this.model.note(userId, `${what}: refused (${(error as Error).message})`);
              const code = (error as { code?: string }).code;
              // A session kicked before the restart may still be revoked: its kicker applies its recent ends again.
              if (code === 'SESSION_REVOKED' && sessionId !== undefined && this.model.mayBeRevoked(sessionId)) {
                slot.clientSession = undefined;
                return undefined;
              }
              return code === 'SERVER_ERROR' ? undefined : `${what} of ${userId}: ${(error as Error).message}`;
            };
          }
          return () => {
            const session = client.device.session;
            // Run on the empty Redis, before or after the others re-asserted their devices: every live device
            // it cannot stay with ends, either kicked by it or yielding to it when re-asserted.
            const { ended, problem } = this.model.loginAfterWipe(slot, session.sessionId, session.kicked, what);
            this.endClients(ended, what);
            this.clients.set(slot, client);
            if (session.resumed) return `${what} of ${userId}/${slot.instanceId} resumed a session the empty Redis cannot hold`;
            return problem;
          };
        };
      }
      default:
        return undefined;
    }
  }

  /**
   * SIGSTOP a device in its own process (no FIN, no pong, nothing): SPEC.md "no heartbeat within the
   * heartbeat timeout (network lost, no FIN)": mobile PushOnline, the others gone. Then maybe one step
   * on its user before the timeout (a kick, a login).
   */
  private async freeze(): Promise<{ measured: Measured; end: number } | undefined> {
    this.count(this.faults, 'freeze (SIGSTOP)');
    let candidates = [...this.clients].filter(([, client]) => client.kind === 'child' && !client.frozen);
    if (candidates.length === 0) {
      const users = this.model.userIds.filter((userId) => this.disconnected(userId).length > 0);
      if (users.length === 0) return undefined;
      const userId = pick(this.rng, users);
      await this.login(pick(this.rng, this.disconnected(userId)), pick(this.rng, this.liveNodes), true);
      candidates = [...this.clients].filter(([, client]) => client.kind === 'child' && !client.frozen);
    }
    const [slot, client] = pick(this.rng, candidates) as [Slot, Client & { kind: 'child' }];
    const variant = weighted<Measured>(this.rng, [
      ['freeze past the heartbeat timeout', 2],
      ['freeze, then its session reconnects (half-open connection)', 1.5],
      ['freeze shorter than the timeout, then SIGCONT', 1],
    ]) as Measured;
    this.count(this.variants, variant);
    const timeout = TIMINGS.heartbeatTimeout[slot.cls];
    client.device.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    if (variant === 'freeze shorter than the timeout, then SIGCONT') {
      // A hiccup: even counting the last pong up to a ping interval before, far inside the timeout, so nothing may change.
      await delay(200 + Math.floor(this.rng() * (timeout / 4)));
      client.device.child.kill('SIGCONT');
      this.model.note(slot.userId, `${slot.platform}/${slot.instanceId} frozen ${Date.now() - frozenAt} ms on ${client.node.name}, then woken: still Online`);
      return { measured: variant, end: Date.now() };
    }
    client.frozen = true;
    const timedOutBy = frozenAt + timeout + TIMER_TOLERANCE + STORE_WRITE;
    this.model.linkLost(slot, timedOutBy, `frozen (SIGSTOP) on ${client.node.name}`);
    this.pendingCause.set(slot, { cause: 'freeze (SIGSTOP)', at: frozenAt });
    if (variant === 'freeze, then its session reconnects (half-open connection)') {
      // The network switched without a FIN: the old connection hangs on its process while the device resumes its session,
      // on any process, before or after the old one times out. That late timeout must not undo the resumed device.
      this.clients.delete(slot);
      this.hung.push(client);
      this.notBefore = Math.max(this.notBefore, timedOutBy);
      await delay(Math.floor(this.rng() * timeout * 1.3));
      await this.resume(slot, pick(this.rng, this.liveNodes));
    } else if (this.rng() < 0.5) {
      const step = this.planStep(slot.userId, ['admin kick', 'login']);
      if (step) await step();
    }
    return { measured: variant, end: frozenAt };
  }

  // ---- checks ------------------------------------------------------------------------------

  /** Undefined while the node refuses with 503 (its store unavailable: README "Store outages"), never an answer from a stale copy. */
  private async answers(node: ClusterNode): Promise<Map<string, NodeAnswer> | undefined> {
    const userIds = this.model.userIds;
    const reply = await node.http<QueryStateResponse>('/v4/openim/querystate', { To_Account: userIds, IsNeedDetail: 1, IsReturnInstid: 1 });
    if (reply.status === 503 && (reply.body as { ErrorCode?: number }).ErrorCode === 90994) return undefined;
    if (reply.status !== 200) throw new Divergence(`${node.name} answered querystate with HTTP ${reply.status}: ${JSON.stringify(reply.body)}`);
    return new Map(
      reply.body.QueryResult.map((result) => [
        result.To_Account,
        { status: result.Status, devices: (result.Detail ?? []).map((detail) => `${detail.Platform}/${detail.InstId}/${detail.Status}`).sort() },
      ]),
    );
  }

  /** The plain route must say the same as querystate. */
  private async plainAnswers(node: ClusterNode): Promise<Map<string, NodeAnswer>> {
    const reply = await node.http<UsersQueryResponse>('/users/query', { userIds: this.model.userIds });
    if (reply.status !== 200) throw new Divergence(`${node.name} answered /users/query with HTTP ${reply.status}: ${JSON.stringify(reply.body)}`);
    return new Map(
      reply.body.users.map((user) => [
        user.userId,
        { status: user.status, devices: (user.instances ?? []).map((instance) => `${instance.platform}/${instance.instanceId}/${instance.status}`).sort() },
      ]),
    );
  }

  private differences(answers: { node: ClusterNode; users: Map<string, NodeAnswer> }[]): string[] {
    const diffs: string[] = [];
    for (const userId of this.model.userIds) {
      const want = JSON.stringify(this.model.expected(userId));
      for (const { node, users } of answers) {
        const got = JSON.stringify(users.get(userId) ?? null);
        if (got !== want) diffs.push(`${userId} on ${node.name}: expected ${want}, got ${got}`);
      }
    }
    return diffs;
  }

  /** A device whose end was pending and that every node now shows settled: its end was seen. */
  private settleSeen(answers: { users: Map<string, NodeAnswer> }[], at: number): void {
    for (const slot of this.model.slots) {
      if (slot.pendingUntil === 0) continue;
      const entry = `${slot.platform}/${slot.instanceId}/`;
      const settled = answers.every(({ users }) => {
        const shown = users.get(slot.userId)?.devices.find((device) => device.startsWith(entry));
        return slot.state === 'gone' ? shown === undefined : shown === `${entry}${slot.state}`;
      });
      if (!settled) continue;
      this.model.settle(slot);
      const cause = this.pendingCause.get(slot);
      if (cause) {
        this.deviceEnd[cause.cause] = Math.max(this.deviceEnd[cause.cause] ?? 0, at - cause.at);
        this.pendingCause.delete(slot);
      }
    }
  }

  /**
   * Polls every live node until all agree with the model (or the bound plus the slack runs out: a
   * divergence); then checks the plain route, each node's count of live devices and the clients.
   */
  private async quietCheck(label: string, faultEnd: number, kind: Measured): Promise<void> {
    this.quietChecks++;
    const bound = kind === 'Redis restart' ? faultEnd + REDIS_BOUND : faultEnd;
    const deadline = Math.max(Date.now(), this.model.pendingUntil(), bound, this.notBefore) + this.options.slack;

    for (;;) {
      const replies = await Promise.all(this.liveNodes.map(async (node) => ({ node, users: await this.answers(node) })));
      const at = Date.now();
      const refusing = replies.filter((reply) => reply.users === undefined).map((reply) => reply.node.name);
      if (refusing.length > 0) {
        if (at > deadline) throw new Divergence(`${label}: ${refusing.join(', ')} still refuse querystate (503) ${at - faultEnd} ms after the ${kind}`);
        await delay(20);
        continue;
      }
      const answers = replies as { node: ClusterNode; users: Map<string, NodeAnswer> }[];
      this.settleSeen(answers, at);
      const diffs = this.differences(answers);
      if (diffs.length === 0 && at >= this.notBefore) {
        const took = at - faultEnd;
        this.longest[kind] = Math.max(this.longest[kind] ?? 0, took);
        const kindBound = BOUNDS[kind];
        if (kindBound !== undefined && took > kindBound) this.count(this.beyond, kind);
        // Every end is settled now; a cause left here belonged to a device that a login or a kick settled first.
        this.pendingCause.clear();
        break;
      }
      if (at > deadline) {
        const users = [...new Set(diffs.map((diff) => diff.split(' ')[0] as string))];
        throw new Divergence(
          `${label}: the nodes still disagree with the model ${at - faultEnd} ms after the ${kind}:\n  ${diffs.join('\n  ')}\n${this.context(users)}`,
        );
      }
      await delay(20);
    }
    const plain = await Promise.all(this.liveNodes.map(async (node) => ({ node, users: await this.plainAnswers(node) })));
    const plainDiffs = this.differences(plain);
    if (plainDiffs.length > 0) this.diverge(`${label}: GET /users/query disagrees with querystate and the model:\n  ${plainDiffs.join('\n  ')}`);
    await this.checkClients(label);
    if (kind === 'Redis restart') this.seqModel.closeQuiet(Date.now());
    if (this.seqProblem !== undefined) this.diverge(`${label}: sequence numbers: ${this.seqProblem}`);
  }

  /** No ghosts on either side: each node holds exactly the devices connected to it, and every device the server ended was disconnected. */
  private async checkClients(label: string): Promise<void> {
    const ended = (client: Client) => (client.kind === 'socket' ? !client.device.socket.connected : !childAlive(client.device));
    const deadline = Date.now() + 3000 + this.options.slack;
    while (this.ending.some(({ client }) => !ended(client)) && Date.now() < deadline) await delay(20);
    const stuck = this.ending.filter(({ client }) => !ended(client));
    if (stuck.length > 0) {
      this.diverge(`${label}: the server never disconnected ${stuck.map(({ slot, what }) => `${slot.userId}/${slot.instanceId} (${what})`).join(', ')}`);
    }
    this.ending.splice(0);
    // Frozen devices were checked timed out above: they go now (their transport is already closed).
    for (const client of this.hung.splice(0)) this.dropClient(client);
    for (const [slot, client] of [...this.clients]) {
      if (client.kind === 'child' && client.frozen) {
        this.dropClient(client);
        this.clients.delete(slot);
      }
    }
    const dropped = [...this.clients].filter(([, client]) => ended(client));
    if (dropped.length > 0) {
      this.diverge(
        `${label}: devices the model holds live were disconnected: ${dropped.map(([slot, client]) => `${slot.userId}/${slot.instanceId} on ${client.node.name}`).join(', ')}`,
      );
    }
    for (const [index, node] of this.nodes.entries()) {
      if (node === undefined) continue;
      // The node's watcher is one of its live devices too.
      const watcher = this.watchers[index];
      const watching = watcher?.node === node && watcher.device.socket.connected ? 1 : 0;
      const want = [...this.clients.values()].filter((client) => client.node === node).length + watching;
      const live = await node.call<number>('live');
      if (live !== want) this.diverge(`${label}: ${node.name} holds ${live} live devices, ${want} are connected to it`);
    }
  }
}
