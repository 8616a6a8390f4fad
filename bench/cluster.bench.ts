// Cluster benchmark: querystate of 500 accounts with detail in Redis mode against raw ioredis reads of the same data (the floors), cross-process kick latency, logins while Redis is paused, and a rolling restart of three processes (SIGTERM against SIGKILL).

import { deepStrictEqual } from 'node:assert';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { Redis } from 'ioredis';
import { createPresence, type Presence } from '../lib/index.js';
import { createPresenceClient, type PresenceClient } from '../lib/client/index.js';
import { RedisStore } from '../lib/redis/index.js';
import {
  callbackReceiver,
  connectDevice,
  delay,
  PrivateRedis,
  startNode,
  TcpProxy,
  waitFor,
  type ClusterDevice,
  type ClusterNode,
  type ClusterNodeConfig,
} from '../spec/fixtures/cluster-harness.js';
import { deleteKeys } from '../spec/helpers/redis.js';
import { report, type Figure } from './report.js';
import { devicesOf } from './fixtures.js';
import { storeBenchmark } from './store.part.js';
import { RedisLayout } from '../lib/redis/layout.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Each side is measured for ROUNDS slices of SLICE_MS, alternating, so a shared machine's load falls on both alike. */
const SLICE_MS = Number(process.env.BENCH_SLICE_MS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const USERS = 600;
const ACCOUNTS = 500;
const KICK_SAMPLES = Number(process.env.BENCH_KICKS ?? 300);
const DEPLOY_DEVICES = Number(process.env.BENCH_DEPLOY_DEVICES ?? 5000);
/** socket.io-client's defaults: the first reconnection waits reconnectionDelay (1 s) ± randomizationFactor (0.5). */
const RECONNECT_DELAY_MAX = 1000 * 1.5;
const DEPLOY_LEASE_TTL = 10_000;
const DEPLOY_SWEEP = 1000;
const HANDOVER_GRACE = 10_000;

/** Runs `operation` back to back for `ms`; answers how many completed and in how long. */
async function slice(operation: () => Promise<unknown>, ms: number): Promise<{ ops: number; ms: number }> {
  const start = performance.now();
  let ops = 0;
  while (performance.now() - start < ms) {
    await operation();
    ops++;
  }
  return { ops, ms: performance.now() - start };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function queryBenchmark(prefix: string): Promise<Figure[]> {
  const storeClient = new Redis(REDIS_URL);
  const rawClient = new Redis(REDIS_URL);
  const presence: Presence = createPresence({ loginPolicy: 'multi', store: new RedisStore({ client: storeClient, prefix }) });
  let node: ClusterNode | undefined;
  try {
    for (let i = 0; i < USERS; i++) {
      for (const device of devicesOf(i)) {
        const { connection } = await presence.engine.connect({ userId: `user${i}`, platform: device.platform, instanceId: device.instanceId }, () => {});
        if (device.pushOnline) presence.engine.disconnect(connection, 'closed');
      }
    }
    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `user${i}`);
    const layout = new RedisLayout(prefix);
    const keys = accounts.map((userId) => layout.user(userId));
    // The floors: the least a client can do to fetch the same records (one MGET, strings as ioredis gives them),
    // and to have them as data (each record through JSON.parse).
    const floor = () => rawClient.mget(keys);
    const decodedFloor = async () => (await rawClient.mget(keys)).map((text) => (text === null ? undefined : (JSON.parse(text) as unknown)));
    const ours = () => presence.query(accounts);

    // The floor the issue named, a pipeline of HGETALLs, over the same data laid out as one hash per user
    // (RedisStore's layout before it kept each user as one string): written here from the same records.
    const hashPrefix = `${prefix}hash:`;
    const hashKeys = accounts.map((userId) => `${hashPrefix}u:${userId}`);
    const records = await rawClient.mget(keys);
    const mirror = rawClient.pipeline();
    for (const [i, text] of records.entries()) {
      if (text === null) continue;
      const record = JSON.parse(text) as { s: number; o: number; l?: number; i: (string | number)[][] | Record<string, never> };
      const fields: Record<string, string> = { seq: String(record.s), order: String(record.o) };
      if (record.l !== undefined) fields.ls = String(record.l);
      for (const instance of Array.isArray(record.i) ? record.i : []) fields[`i:${instance[0]}`] = instance.slice(1).join('|');
      mirror.hset(hashKeys[i] as string, fields);
    }
    await mirror.exec();
    const hashFloor = async () => {
      const pipeline = rawClient.pipeline();
      for (const key of hashKeys) pipeline.hgetall(key);
      return pipeline.exec();
    };

    // All read the same data: every stored device of every account is in our answer, with its status.
    const [answer, raw, hashes] = await Promise.all([ours(), floor(), hashFloor()]);
    const fromRaw = raw.map((text) => {
      const list = text === null ? [] : (JSON.parse(text) as { i: string[][] | Record<string, never> }).i;
      return (Array.isArray(list) ? list : []).map((instance) => `${instance[0]}/${instance[2]}`).sort();
    });
    const fromHashes = (hashes ?? []).map(([, hash]) =>
      Object.entries(hash as Record<string, string>)
        .filter(([field]) => field.startsWith('i:'))
        .map(([field, value]) => `${field.slice(2)}/${value.split('|')[1]}`)
        .sort(),
    );
    const fromOurs = answer.map((user) => (user.instances ?? []).map((instance) => `${instance.instanceId}/${instance.status}`).sort());
    deepStrictEqual(fromOurs, fromRaw);
    deepStrictEqual(fromOurs, fromHashes);
    const devices = fromRaw.reduce((sum, list) => sum + list.length, 0);
    console.log(`${ACCOUNTS} accounts, ${devices} devices; all three read the same data. Warming up.`);
    // The HTTP route as a client of a cluster node sees it (the node reads the same keys): for scale, not for the ratio.
    node = await startNode({ name: 'http', redisUrl: REDIS_URL, prefix, loginPolicy: 'multi', leaseTtl: 10_000, sweepInterval: 1000 });
    const route = `${node.url}/presence/v4/openim/querystate`;
    const body = JSON.stringify({ To_Account: accounts, IsNeedDetail: 1 });
    const http = async () => {
      const response = await fetch(route, { method: 'POST', headers: { authorization: 'Bearer admin', 'content-type': 'application/json' }, body });
      if (response.status !== 200) throw new Error(`querystate answered ${response.status}`);
      return response.arrayBuffer();
    };
    const viaHttp = (await (
      await fetch(route, { method: 'POST', headers: { authorization: 'Bearer admin', 'content-type': 'application/json' }, body })
    ).json()) as {
      QueryResult: { Status: string }[];
    };
    deepStrictEqual(
      viaHttp.QueryResult.map((entry) => entry.Status),
      answer.map((user) => user.status),
    );
    const contenders = [
      ['ours', ours],
      ['floor', floor],
      ['decodedFloor', decodedFloor],
      ['hashFloor', hashFloor],
      ['http', http],
    ] as const;
    for (const [, operation] of contenders) await slice(operation, 1500);

    const totals = {
      ours: { ops: 0, ms: 0 },
      floor: { ops: 0, ms: 0 },
      decodedFloor: { ops: 0, ms: 0 },
      hashFloor: { ops: 0, ms: 0 },
      http: { ops: 0, ms: 0 },
    };
    const rate = (name: keyof typeof totals) => (totals[name].ops / totals[name].ms) * 1000;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, operation] of contenders) {
        const result = await slice(operation, SLICE_MS);
        totals[name].ops += result.ops;
        totals[name].ms += result.ms;
      }
      console.log(
        `  round ${round + 1}: presence.query ${rate('ours').toFixed(0)}, MGET ${rate('floor').toFixed(0)}, MGET + JSON.parse ${rate('decodedFloor').toFixed(0)}, HGETALL pipeline ${rate('hashFloor').toFixed(0)}, HTTP route ${rate('http').toFixed(0)} ops/s (running means)`,
      );
    }
    const name = `presence.query(${ACCOUNTS} accounts) with detail, Redis mode`;
    return [
      {
        name,
        value: rate('ours'),
        unit: 'ops/s',
        higherIsBetter: true,
        baseline: rate('floor'),
        baselineName: `raw ioredis MGET of the same ${ACCOUNTS} keys, undecoded`,
        note: 'one query in flight at a time',
      },
      {
        name,
        value: rate('ours'),
        unit: 'ops/s',
        higherIsBetter: true,
        baseline: rate('decodedFloor'),
        baselineName: `raw ioredis MGET of the same ${ACCOUNTS} keys, each record through JSON.parse`,
        target: 'ratio >= 0.8',
      },
      {
        name,
        value: rate('ours'),
        unit: 'ops/s',
        higherIsBetter: true,
        baseline: rate('hashFloor'),
        baselineName: `raw ioredis pipeline of ${ACCOUNTS} HGETALLs, same data as hashes`,
        target: 'ratio >= 0.8',
      },
      {
        name: `POST /v4/openim/querystate (${ACCOUNTS} accounts, IsNeedDetail 1) on a cluster node, Redis mode`,
        value: rate('http'),
        unit: 'req/s',
        higherIsBetter: true,
        note: 'one request in flight at a time, over loopback; for scale (HTTP and JSON included)',
      },
    ];
  } finally {
    await node?.close();
    await presence.close();
    await deleteKeys(rawClient, prefix);
    storeClient.disconnect();
    rawClient.disconnect();
  }
}

async function kickBenchmark(prefix: string): Promise<Figure[]> {
  const nodes: ClusterNode[] = await Promise.all(
    ['A', 'B'].map((name) => startNode({ name, redisUrl: REDIS_URL, prefix, loginPolicy: 'single', leaseTtl: 10_000, sweepInterval: 1000 })),
  );
  const [a, b] = nodes as [ClusterNode, ClusterNode];
  const opened: ClusterDevice[] = [];
  const latencies: number[] = [];
  const handshakes: number[] = [];
  try {
    for (let i = 0; i < KICK_SAMPLES + 20; i++) {
      const userId = `kick${i}`;
      const old = await connectDevice(a.url, userId, 'Android', { instanceId: 'phone' });
      opened.push(old);
      const kicked = new Promise<number>((resolve) => old.socket.once('presence:kicked', () => resolve(performance.now())));
      const start = performance.now();
      const newer = await connectDevice(b.url, userId, 'Windows', { instanceId: 'pc' });
      const loggedIn = performance.now();
      opened.push(newer);
      const at = await kicked;
      if (i < 20) continue; // warm-up
      latencies.push(at - start);
      handshakes.push(loggedIn - start);
      old.socket.disconnect();
      newer.socket.disconnect();
    }
  } finally {
    for (const device of opened) device.socket.disconnect();
    await Promise.all(nodes.map((node) => node.close()));
    const admin = new Redis(REDIS_URL);
    await deleteKeys(admin, prefix);
    admin.disconnect();
  }
  latencies.sort((x, y) => x - y);
  handshakes.sort((x, y) => x - y);
  const note = `${latencies.length} samples; from opening the new socket on B, its handshake (p50 ${percentile(handshakes, 50).toFixed(2)} ms) included`;
  return [
    { name: 'cross-process kick latency p50 (login on B -> presence:kicked on A)', value: percentile(latencies, 50), unit: 'ms', higherIsBetter: false, note },
    { name: 'cross-process kick latency p99', value: percentile(latencies, 99), unit: 'ms', higherIsBetter: false, note },
  ];
}

/** How long Redis is paused (CLIENT PAUSE ALL), and how often a login (and a querystate) is started meanwhile. */
const PAUSE_MS = 5000;
const PAUSE_LOGIN_EVERY_MS = 50;
/** The cluster node's storeTimeout: the presence default. */
const STORE_TIMEOUT = 2000;

/**
 * Logins (and querystate requests) started at a steady rate while a Redis of our own is paused for PAUSE_MS: each waits
 * at most storeTimeout, then is refused (SERVER_ERROR, 503), rather than waiting out the pause. The same before the pause
 * as the reference. A private redis-server: CLIENT PAUSE ALL would stall every other user of a shared one.
 */
async function redisPauseBenchmark(prefix: string): Promise<Figure[]> {
  const redis = await PrivateRedis.start();
  const node = await startNode({ name: 'paused', redisUrl: redis.url, prefix, loginPolicy: 'multi', leaseTtl: 10_000, sweepInterval: 1000 });
  const pauser = new Redis(redis.url);
  const opened: ClusterDevice[] = [];
  const route = `${node.url}/presence/v4/openim/querystate`;
  /** Starts a login and a querystate every PAUSE_LOGIN_EVERY_MS for `ms`; answers each one's time to its outcome. */
  const window = async (label: string, ms: number) => {
    const logins: Promise<{ ms: number; ok: boolean }>[] = [];
    const queries: Promise<{ ms: number; status: number }>[] = [];
    const end = performance.now() + ms;
    for (let i = 0; performance.now() < end; i++) {
      const start = performance.now();
      logins.push(
        connectDevice(node.url, `${label}${i}`, 'Web', {}, {}, PAUSE_MS + 10_000).then(
          (device) => {
            opened.push(device);
            return { ms: performance.now() - start, ok: true };
          },
          () => ({ ms: performance.now() - start, ok: false }),
        ),
      );
      queries.push(
        fetch(route, {
          method: 'POST',
          headers: { authorization: 'Bearer admin', 'content-type': 'application/json' },
          body: JSON.stringify({ To_Account: ['x'] }),
        }).then(async (response) => {
          await response.arrayBuffer();
          return { ms: performance.now() - start, status: response.status };
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, PAUSE_LOGIN_EVERY_MS));
    }
    const [loginResults, queryResults] = await Promise.all([Promise.all(logins), Promise.all(queries)]);
    return {
      logins: loginResults.map((result) => result.ms).sort((x, y) => x - y),
      refused: loginResults.filter((result) => !result.ok).length,
      queries: queryResults.map((result) => result.ms).sort((x, y) => x - y),
      unavailable: queryResults.filter((result) => result.status === 503).length,
    };
  };
  try {
    const before = await window('calm', 2000);
    if (before.refused > 0) throw new Error(`${before.refused} logins refused before the pause`);
    await pauser.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL');
    const paused = await window('paused', PAUSE_MS - 500);
    console.log(
      `  Redis paused ${PAUSE_MS} ms: ${paused.logins.length} logins (${paused.refused} refused SERVER_ERROR), ${paused.queries.length} querystate (${paused.unavailable} answered 503)`,
    );
    const note = `${paused.logins.length} logins started every ${PAUSE_LOGIN_EVERY_MS} ms during a ${PAUSE_MS} ms CLIENT PAUSE ALL, ${paused.refused} refused with SERVER_ERROR; storeTimeout ${STORE_TIMEOUT} ms (default)`;
    return [
      {
        name: `login p99 while Redis is paused for ${PAUSE_MS / 1000} s (refusal or session)`,
        value: percentile(paused.logins, 99),
        unit: 'ms',
        higherIsBetter: false,
        baseline: percentile(before.logins, 99),
        baselineName: 'login p99 before the pause',
        target: `bounded by storeTimeout (${STORE_TIMEOUT} ms), not the ${PAUSE_MS} ms pause`,
        note,
      },
      {
        name: `querystate p99 while Redis is paused for ${PAUSE_MS / 1000} s`,
        value: percentile(paused.queries, 99),
        unit: 'ms',
        higherIsBetter: false,
        baseline: percentile(before.queries, 99),
        baselineName: 'querystate p99 before the pause',
        target: `bounded by storeTimeout (${STORE_TIMEOUT} ms), not the ${PAUSE_MS} ms pause`,
        note: `${paused.unavailable} of ${paused.queries.length} answered 503 (ErrorCode 90994)`,
      },
    ];
  } finally {
    for (const device of opened) device.socket.disconnect();
    pauser.disconnect();
    await node.close();
    await redis.kill();
  }
}

interface RestartOutcome {
  /** Users a watcher saw leave Online (Offline or PushOnline) at any time during the restarts. */
  flaps: number;
  /** Status-change callbacks after the devices' logins. */
  callbacks: number;
  /** For each restart, ms from the signal until every device the process had was logged in (resumed) on another. */
  backs: number[];
  /** Devices not Online in the store at the end, past every handover and lease. */
  notOnline: number;
}

/**
 * Three nodes behind a TCP proxy (least connections; BENCH_BALANCE=round-robin for the other), DEPLOY_DEVICES devices with the client helper (default reconnection delays) and watchers
 * subscribed to all of them; each node in turn is replaced: its replacement started, then it is taken out of the proxy and stopped
 * with `signal` (SIGTERM: the README's handler), its devices reconnecting to the others.
 */
async function rollingRestart(prefix: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<RestartOutcome> {
  const receiver = await callbackReceiver();
  // As a load balancer set to least connections would: a restarted process takes the next process's devices.
  const proxy = await TcpProxy.start(process.env.BENCH_BALANCE === 'round-robin' ? 'round-robin' : 'least-connections');
  const config = (name: string): ClusterNodeConfig => ({
    name,
    redisUrl: REDIS_URL,
    prefix,
    loginPolicy: 'single',
    leaseTtl: DEPLOY_LEASE_TTL,
    sweepInterval: DEPLOY_SWEEP,
    callbackUrl: receiver.url,
    handoverGrace: HANDOVER_GRACE,
  });
  const nodes = await Promise.all(['A', 'B', 'C'].map((name) => startNode(config(name))));
  for (const node of nodes) proxy.add(node.port);
  const clients = new Map<string, PresenceClient>();
  const disconnects = new Map<string, number>();
  /** When each device last lost its connection, and last logged in (performance.now()). */
  const lost = new Map<string, number>();
  const sessions = new Map<string, number>();
  const open = (userId: string, platform: 'Android' | 'Windows' | 'Web') => {
    const device = createPresenceClient({
      url: proxy.url,
      platform,
      instanceId: `${userId}-device`,
      auth: { token: `tok:${userId}` },
      trackVisibility: false,
      socketOptions: { transports: ['websocket'], forceNew: true },
    });
    device.on('disconnect', () => {
      disconnects.set(userId, (disconnects.get(userId) ?? 0) + 1);
      lost.set(userId, performance.now());
    });
    device.on('session', () => sessions.set(userId, performance.now()));
    clients.set(userId, device);
    return device;
  };
  const connected = (device: PresenceClient) => device.socket.connected && device.session !== undefined;
  try {
    const platforms = ['Android', 'Windows', 'Web'] as const;
    const userIds = Array.from({ length: DEPLOY_DEVICES }, (_, i) => `d${i}`);
    for (let start = 0; start < userIds.length; start += 250) {
      const batch = userIds.slice(start, start + 250).map((userId, i) => open(userId, platforms[(start + i) % 3] as 'Web'));
      await waitFor(() => batch.every(connected), `devices ${start}.. logged in`, 60_000);
    }
    const flapped = new Set<string>();
    const watchers: PresenceClient[] = [];
    for (let start = 0; start < userIds.length; start += 1000) {
      const watcher = open(`watcher${start}`, 'Web');
      watchers.push(watcher);
      await waitFor(() => connected(watcher), 'a watcher logged in', 10_000);
      const answer = await watcher.subscribe(userIds.slice(start, start + 1000), (change) => {
        if (change.status !== 'Online') flapped.add(change.userId);
      });
      for (const user of answer.users) if (user.status !== 'Online') flapped.add(user.userId);
    }
    await waitFor(() => receiver.bodies.length === clients.size, 'every login called back', 120_000);
    const baseline = receiver.bodies.length;
    console.log(`${signal}: ${userIds.length} devices and ${watchers.length} watchers logged in over 3 processes; restarting each in turn`);
    const backs: number[] = [];
    for (let index = 0; index < nodes.length; index++) {
      const old = nodes[index] as ClusterNode;
      // A rolling update's surge: the replacement is up (and in the proxy) before the old process is stopped.
      const fresh = await startNode(config(`${old.name}'`));
      nodes[index] = fresh;
      proxy.add(fresh.port);
      const users = await old.sockets();
      const before = new Map(users.map((userId) => [userId, disconnects.get(userId) ?? 0]));
      proxy.remove(old.port);
      const started = performance.now();
      if (signal === 'SIGTERM') await old.terminate();
      else await old.kill('SIGKILL');
      await waitFor(
        () => users.every((userId) => (disconnects.get(userId) ?? 0) > (before.get(userId) ?? 0) && connected(clients.get(userId) as PresenceClient)),
        `${old.name}'s devices back on the others`,
        60_000,
      );
      backs.push(performance.now() - started);
      const told = users.map((userId) => (lost.get(userId) as number) - started).sort((x, y) => x - y);
      const down = users.map((userId) => (sessions.get(userId) as number) - (lost.get(userId) as number)).sort((x, y) => x - y);
      console.log(
        `  ${old.name} (${users.length} devices): every device back in ${(backs.at(-1) as number).toFixed(0)} ms; connection lost after ${percentile(told, 50).toFixed(0)} ms (p50), ${percentile(told, 100).toFixed(0)} ms (max); then back in ${percentile(down, 50).toFixed(0)} ms (p50), ${percentile(down, 99).toFixed(0)} ms (p99)`,
      );
    }
    // Past every handover and lease: whatever would be closed late has been.
    await delay(Math.max(HANDOVER_GRACE, DEPLOY_LEASE_TTL) + 3 * DEPLOY_SWEEP);
    let notOnline = 0;
    for (let start = 0; start < userIds.length; start += 500) {
      const answer = await (nodes[0] as ClusterNode).query(userIds.slice(start, start + 500));
      notOnline += answer.filter((user) => user.status !== 'Online').length;
    }
    for (const body of receiver.bodies.slice(baseline)) if (body.UserStatus !== 'Online') flapped.add(body.Info.To_Account);
    return { flaps: flapped.size, callbacks: receiver.bodies.length - baseline, backs, notOnline };
  } finally {
    for (const device of clients.values()) device.close();
    await Promise.all(nodes.map((node) => node.close()));
    await proxy.close();
    await receiver.close();
    const admin = new Redis(REDIS_URL);
    await deleteKeys(admin, prefix);
    admin.disconnect();
  }
}

/** One process of the baseline: Socket.IO and its Redis adapter with no presence (bench/bare-node.ts). */
class BareNode {
  port = 0;
  private constructor(private readonly child: ChildProcess) {}

  static async start(prefix: string): Promise<BareNode> {
    const child = fork(fileURLToPath(new URL('./bare-node.ts', import.meta.url)), [JSON.stringify({ redisUrl: REDIS_URL, prefix })], {
      execArgv: ['--import', 'tsx'],
    });
    const node = new BareNode(child);
    node.port = await new Promise<number>((resolve, reject) => {
      child.once('message', (message: { port: number }) => resolve(message.port));
      child.once('exit', (code) => reject(new Error(`the baseline process exited with ${code} while starting`)));
    });
    return node;
  }

  /** The user ids of the sockets connected to this process now. */
  sockets(): Promise<string[]> {
    return new Promise((resolve) => {
      const onMessage = (message: { type: string; ids: string[] }) => {
        if (message.type !== 'sockets') return;
        this.child.off('message', onMessage);
        resolve(message.ids);
      };
      this.child.on('message', onMessage);
      this.child.send({ type: 'sockets' });
    });
  }

  stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill(signal);
    return exited;
  }
}

/**
 * The same rolling restart (proxy, surge, DEPLOY_DEVICES plain socket.io-client sockets with the same reconnection
 * defaults) on processes that run Socket.IO with no presence: the time the machine itself needs to take a process's
 * connections back, against which the presence restart's "back" is read. Answers, per restart, ms from the signal until
 * every socket of the stopped process was connected again.
 */
async function bareRollingRestart(prefix: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<number[]> {
  const proxy = await TcpProxy.start(process.env.BENCH_BALANCE === 'round-robin' ? 'round-robin' : 'least-connections');
  const nodes = await Promise.all(['A', 'B', 'C'].map(() => BareNode.start(prefix)));
  for (const node of nodes) proxy.add(node.port);
  const sockets = new Map<string, ClientSocket>();
  const connects = new Map<string, number>();
  try {
    const userIds = Array.from({ length: DEPLOY_DEVICES }, (_, i) => `d${i}`);
    for (let start = 0; start < userIds.length; start += 250) {
      const batch = userIds.slice(start, start + 250);
      for (const userId of batch) {
        const socket = ioc(proxy.url, { transports: ['websocket'], forceNew: true, auth: { token: `tok:${userId}` } });
        socket.on('connect', () => connects.set(userId, (connects.get(userId) ?? 0) + 1));
        sockets.set(userId, socket);
      }
      await waitFor(() => batch.every((userId) => sockets.get(userId)?.connected), `baseline sockets ${start}.. connected`, 60_000);
    }
    const backs: number[] = [];
    for (let index = 0; index < nodes.length; index++) {
      const old = nodes[index] as BareNode;
      const fresh = await BareNode.start(prefix);
      nodes[index] = fresh;
      proxy.add(fresh.port);
      const users = await old.sockets();
      const before = new Map(users.map((userId) => [userId, connects.get(userId) ?? 0]));
      proxy.remove(old.port);
      const started = performance.now();
      await old.stop(signal);
      await waitFor(
        () => users.every((userId) => (connects.get(userId) ?? 0) > (before.get(userId) ?? 0) && sockets.get(userId)?.connected),
        'the baseline sockets back on the others',
        60_000,
      );
      backs.push(performance.now() - started);
      console.log(`  baseline (no presence) ${signal} (${users.length} sockets): every socket back in ${(backs.at(-1) as number).toFixed(0)} ms`);
    }
    return backs;
  } finally {
    for (const socket of sockets.values()) socket.close();
    await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    await proxy.close();
  }
}

async function deployBenchmark(prefix: string): Promise<Figure[]> {
  const figures: Figure[] = [];
  const baselines = {
    SIGTERM: await bareRollingRestart(`${prefix}bare-term:`, 'SIGTERM'),
    SIGKILL: await bareRollingRestart(`${prefix}bare-kill:`, 'SIGKILL'),
  };
  const outcomes = { SIGTERM: await rollingRestart(`${prefix}term:`, 'SIGTERM'), SIGKILL: await rollingRestart(`${prefix}kill:`, 'SIGKILL') };
  for (const [signal, outcome] of Object.entries(outcomes)) {
    const name = `rolling restart of 3 processes by ${signal}, ${DEPLOY_DEVICES.toLocaleString('en-US')} devices`;
    const note = `${outcome.notOnline} devices not Online at the end; back per restart: ${outcome.backs.map((ms) => ms.toFixed(0)).join(', ')} ms`;
    figures.push(
      { name: `${name}: users seen flapping (Offline or PushOnline)`, value: outcome.flaps, unit: 'users', higherIsBetter: false, target: '0' },
      { name: `${name}: status-change callbacks`, value: outcome.callbacks, unit: 'callbacks', higherIsBetter: false, target: '0' },
      {
        name: `${name}: every device back (worst restart)`,
        value: Math.max(...outcome.backs),
        unit: 'ms',
        higherIsBetter: false,
        baseline: Math.max(...baselines[signal as 'SIGTERM']),
        baselineName: 'Socket.IO with no presence, same restart',
        target: `<= ${RECONNECT_DELAY_MAX + 1000} ms (the client's reconnect delay + 1 s)`,
        note: `${note}; baseline: the same restart of Socket.IO processes with no presence (${baselines[signal as 'SIGTERM'].map((ms) => ms.toFixed(0)).join(', ')} ms)`,
      },
    );
  }
  return figures;
}

const run = `bench:cluster:${process.pid}:${Date.now().toString(36)}:`;
/** BENCH_CLUSTER_PARTS=query,kick,pause,deploy,store (the default: all) picks the parts to run. */
const parts = new Set((process.env.BENCH_CLUSTER_PARTS ?? 'query,kick,pause,deploy,store').split(','));
const figures = [
  ...(parts.has('query') ? await queryBenchmark(`${run}query:`) : []),
  ...(parts.has('kick') ? await kickBenchmark(`${run}kick:`) : []),
  ...(parts.has('pause') ? await redisPauseBenchmark(`${run}pause:`) : []),
  ...(parts.has('deploy') ? await deployBenchmark(`${run}deploy:`) : []),
  ...(parts.has('store') ? await storeBenchmark(REDIS_URL, `${run}store:`) : []),
];
report('cluster (Redis mode)', figures);
