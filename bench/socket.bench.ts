// Socket.IO benchmark: connection memory and rate, and presence:changed fan-out, against a bare Socket.IO server with the same settings.

import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { getHeapSpaceStatistics } from 'node:v8';
import { Server, type Socket as ServerSocket } from 'socket.io';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { createPresence, type Connection } from '../lib/index.js';
import { report, type Figure } from './report.js';
import { availabilityFigures } from './availability-fanout.js';

/** Connections of the memory / rate phase, spread over CLIENT_PROCESSES processes. */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 5000);
const CLIENT_PROCESSES = Number(process.env.BENCH_CLIENT_PROCESSES ?? 2);
/** Handshakes in flight per client process. */
const CONCURRENCY = 50;
/** Runs of each side, alternating; medians are reported. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Fan-out: users watched, watchers per user, and the steady change rate. */
const WATCHED_USERS = 1000;
const WATCHERS_PER_USER = 20;
const WATCHER_SOCKETS = 1000;
const CHANGE_RATE = Number(process.env.BENCH_CHANGE_RATE ?? 500);
const FANOUT_SECONDS = Number(process.env.BENCH_FANOUT_SECONDS ?? 4);
/** The saturation run: changes made back to back in batches, for this long. */
const SATURATION_SECONDS = 3;
const SATURATION_BATCH = 20;

/** `connections`, `fanout`, `availability` (lastSeenVisibility fan-out, activity vs heartbeat), or several (default all). */
const PHASES = process.env.BENCH_PHASES ?? 'connections,fanout,availability';

const SERVER_OPTIONS = { transports: ['websocket' as const], pingInterval: 25_000, pingTimeout: 20_000 };
const SELF = fileURLToPath(import.meta.url);

type Side = 'ours' | 'bare';

/** The shared timeline of every process on this machine (CLOCK_MONOTONIC), in ms. */
function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** CPU time this process used, user and system, in ms: steadier than wall time on a shared machine. */
function cpuNow(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with --expose-gc (npm run bench:socket does)');
  for (let i = 0; i < 3; i++) collect();
}

function authenticate(handshake: { auth: Record<string, unknown> }): { userId: string } | null {
  const token = handshake.auth.token;
  return typeof token === 'string' && token.startsWith('tok:') ? { userId: token.slice(4) } : null;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// ---------------------------------------------------------------- messages between the processes

type ToServer =
  | { type: 'measure-idle' }
  | { type: 'await-connections'; count: number }
  | { type: 'measure-connected' }
  | { type: 'await-empty' }
  | { type: 'changes'; rate: number; seconds: number }
  | { type: 'saturate'; seconds: number };
type FromServer =
  | { type: 'listening'; port: number }
  | { type: 'memory'; heap: number; rss: number; rawRss: number }
  | { type: 'connections'; at: number; cpu: number }
  | { type: 'empty'; at: number; cpu: number }
  | { type: 'changes-done'; changeTimes: number[][]; made: number; cpu: number };
type ToClients =
  { type: 'connect'; from: number; count: number } | { type: 'disconnect' } | { type: 'watch'; from: number; count: number } | { type: 'report' };
type FromClients =
  | { type: 'connected'; at: number; failures: number }
  | { type: 'disconnected' }
  | { type: 'watching' }
  | { type: 'receipts'; users: Uint32Array | number[]; counts: number[]; times: number[] };

function send(child: ChildProcess | NodeJS.Process, message: unknown): void {
  child.send!(message as never);
}

function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type']): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T): void => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(message);
    };
    const onExit = (code: number | null): void => reject(new Error(`a bench process exited (${code}) while waiting for ${type}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

// ---------------------------------------------------------------- the server process

async function runServer(side: Side): Promise<void> {
  const http = createServer();
  const io = new Server(http, SERVER_OPTIONS);
  const watchRoom = (userId: string): string => `presence:user:${userId}`;
  let flip: (user: number) => void;

  if (side === 'ours') {
    const presence = createPresence({ authenticate, logger: { warn: () => {}, error: console.error } }).attach(io);
    // The watched users' status flips: an in-process device logs in (Online) and closes (Offline).
    const devices: (Connection | undefined)[] = new Array(WATCHED_USERS);
    flip = (user) => {
      const connection = devices[user];
      if (connection) {
        devices[user] = undefined;
        presence.engine.disconnect(connection, 'closed');
      } else {
        void presence.engine
          .connect({ userId: `user-${user}`, platform: 'Web', instanceId: `device-${user}` }, () => {})
          .then((result) => {
            devices[user] = result.connection;
          });
      }
    };
  } else {
    // Bare: the same settings and authentication; a subscribe that joins rooms; changes as one room emit each.
    io.use((socket, next) => {
      const identity = authenticate(socket.handshake);
      if (!identity) return next(new Error('unauthenticated'));
      socket.data.userId = identity.userId;
      next();
    });
    io.on('connection', (socket: ServerSocket) => {
      socket.on('presence:subscribe', (request: { userIds: string[] }, ack: (answer: unknown) => void) => {
        void socket.join(request.userIds.map(watchRoom));
        ack({ ok: true, users: request.userIds.map((userId) => ({ userId, status: 'Offline', customStatus: null, lastSeen: null })), denied: [] });
      });
    });
    const online = new Array<boolean>(WATCHED_USERS).fill(false);
    flip = (user) => {
      online[user] = !online[user];
      const userId = `user-${user}`;
      io.to(watchRoom(userId)).emit('presence:changed', {
        userId,
        status: online[user] ? 'Online' : 'Offline',
        customStatus: null,
        lastSeen: new Date().toISOString(),
      });
    };
  }

  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  send(process, { type: 'listening', port: (http.address() as AddressInfo).port } satisfies FromServer);

  const memory = (): void => {
    gc();
    const usage = process.memoryUsage();
    // The young generation is empty after the collection, but V8 keeps as much of it committed as the
    // recent allocation rate asked for: 13 to 16 MiB after the warm-up, 25 to 29 MiB after the burst
    // of logins, whichever side. That growth is not kept per connection (it is capped, whatever the
    // count), yet it added some 2.5 KiB to each side's RSS per connection, drawing the ratio towards 1,
    // and it was most of the run-to-run noise. RSS is read without it, the same way on both sides.
    let young = 0;
    for (const space of getHeapSpaceStatistics()) {
      if (space.space_name === 'new_space' || space.space_name === 'new_large_object_space') young += space.physical_space_size;
    }
    send(process, { type: 'memory', heap: usage.heapUsed, rss: usage.rss - young, rawRss: usage.rss } satisfies FromServer);
  };

  process.on('message', (message: ToServer) => {
    switch (message.type) {
      case 'measure-idle':
      case 'measure-connected':
        memory();
        break;
      case 'await-connections': {
        const cpuStart = cpuNow();
        const check = (): void => {
          if (io.of('/').sockets.size >= message.count) send(process, { type: 'connections', at: now(), cpu: cpuNow() - cpuStart } satisfies FromServer);
          else setTimeout(check, 1);
        };
        check();
        break;
      }
      case 'await-empty': {
        const cpuStart = cpuNow();
        const check = (): void => {
          if (io.engine.clientsCount === 0) send(process, { type: 'empty', at: now(), cpu: cpuNow() - cpuStart } satisfies FromServer);
          else setTimeout(check, 1);
        };
        check();
        break;
      }
      case 'changes': {
        // A steady rate: every millisecond-ish, make the changes due by now.
        const changeTimes: number[][] = Array.from({ length: WATCHED_USERS }, () => []);
        const total = Math.round(message.rate * message.seconds);
        const start = now();
        const cpuStart = cpuNow();
        let made = 0;
        const tick = (): void => {
          const due = Math.min(total, Math.floor(((now() - start) / 1000) * message.rate));
          while (made < due) {
            const user = made % WATCHED_USERS;
            changeTimes[user]!.push(now());
            flip(user);
            made++;
          }
          if (made < total) setTimeout(tick, 1);
          else send(process, { type: 'changes-done', changeTimes, made, cpu: cpuNow() - cpuStart } satisfies FromServer);
        };
        tick();
        break;
      }
      case 'saturate': {
        const changeTimes: number[][] = Array.from({ length: WATCHED_USERS }, () => []);
        const end = now() + message.seconds * 1000;
        const cpuStart = cpuNow();
        let made = 0;
        const batch = (): void => {
          for (let i = 0; i < SATURATION_BATCH; i++) {
            const user = made % WATCHED_USERS;
            changeTimes[user]!.push(now());
            flip(user);
            made++;
          }
          // setImmediate lets the socket writes (and, for ours, the login microtasks) go out between batches.
          if (now() < end) setImmediate(batch);
          // The writes of the last batch are counted too: they went out before this immediate.
          else setImmediate(() => send(process, { type: 'changes-done', changeTimes, made, cpu: cpuNow() - cpuStart } satisfies FromServer));
        };
        batch();
        break;
      }
      default: {
        const unknownMessage: never = message;
        throw new Error(`unknown message ${JSON.stringify(unknownMessage)}`);
      }
    }
  });
}

// ---------------------------------------------------------------- a client process

async function runClients(side: Side, port: number): Promise<void> {
  const url = `http://127.0.0.1:${port}`;
  let sockets: ClientSocket[] = [];
  // Receipts of presence:changed: which user, which watcher's k-th event of that user, when.
  let receiptUsers: number[] = [];
  let receiptCounts: number[] = [];
  let receiptTimes: number[] = [];

  const open = (userId: string, onReady: (socket: ClientSocket, ok: boolean) => void): void => {
    const socket = ioc(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth: { token: `tok:${userId}`, platform: 'Web' } });
    sockets.push(socket);
    // Ours is logged in at presence:session; bare at connect.
    if (side === 'ours') socket.once('presence:session', () => onReady(socket, true));
    else socket.once('connect', () => onReady(socket, true));
    socket.once('connect_error', () => onReady(socket, false));
  };

  const openMany = (from: number, count: number, prefix: string): Promise<number> =>
    new Promise((resolve) => {
      let started = 0;
      let done = 0;
      let failures = 0;
      const startOne = (): void => {
        const index = from + started++;
        open(`${prefix}${index}`, (_socket, ok) => {
          if (!ok) failures++;
          done++;
          if (started < count) startOne();
          else if (done === count) resolve(failures);
        });
      };
      for (let i = 0; i < Math.min(CONCURRENCY, count); i++) startOne();
    });

  process.on('message', (message: ToClients) => {
    void (async () => {
      switch (message.type) {
        case 'connect': {
          const failures = await openMany(message.from, message.count, 'user-');
          send(process, { type: 'connected', at: now(), failures } satisfies FromClients);
          break;
        }
        case 'disconnect': {
          for (const socket of sockets) socket.disconnect();
          sockets = [];
          send(process, { type: 'disconnected' } satisfies FromClients);
          break;
        }
        case 'watch': {
          await openMany(message.from, message.count, 'watcher-');
          await Promise.all(
            sockets.map((socket, i) => {
              const watcher = message.from + i;
              const counts = new Map<number, number>();
              socket.on('presence:changed', (change: { userId: string }) => {
                const user = Number(change.userId.slice(5));
                const k = counts.get(user) ?? 0;
                counts.set(user, k + 1);
                receiptUsers.push(user);
                receiptCounts.push(k);
                receiptTimes.push(now());
              });
              // Watcher w watches 20 consecutive users from (w * 20) mod 1000: each user gets exactly 20 watchers.
              const userIds = Array.from({ length: WATCHERS_PER_USER }, (_, k) => `user-${(watcher * WATCHERS_PER_USER + k) % WATCHED_USERS}`);
              return socket.timeout(30_000).emitWithAck('presence:subscribe', { userIds });
            }),
          );
          send(process, { type: 'watching' } satisfies FromClients);
          break;
        }
        case 'report': {
          send(process, { type: 'receipts', users: receiptUsers, counts: receiptCounts, times: receiptTimes } satisfies FromClients);
          receiptUsers = [];
          receiptCounts = [];
          receiptTimes = [];
          break;
        }
      }
    })();
  });
}

// ---------------------------------------------------------------- the orchestrator

function spawn(role: string, ...args: string[]): ChildProcess {
  const profile = role === 'server' && process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  return fork(SELF, [role, ...args], { execArgv: ['--expose-gc', '--import', 'tsx', '--max-old-space-size=4096', ...profile], stdio: 'inherit' });
}

interface ConnectionRun {
  heapPerConnection: number;
  /** RSS less the young generation's committed pages (see the server's memory()). */
  rssPerConnection: number;
  /** Plain RSS, young generation included: printed per round, for comparison. */
  rawRssPerConnection: number;
  connectRate: number;
  disconnectRate: number;
  /** Server CPU per connection, in µs. */
  connectCpu: number;
  disconnectCpu: number;
}

async function connectionRun(side: Side): Promise<ConnectionRun> {
  const server = spawn('server', side);
  const { port } = await nextMessage<{ type: 'listening'; port: number }>(server, 'listening');
  const clients = Array.from({ length: CLIENT_PROCESSES }, () => spawn('clients', side, String(port)));
  try {
    // Warm up both processes (JIT, first allocations) with a few hundred connections first.
    await connectBatch(server, clients, 0, 300);
    await disconnectAll(server, clients);
    send(server, { type: 'measure-idle' } satisfies ToServer);
    const idle = await nextMessage<{ type: 'memory'; heap: number; rss: number; rawRss: number }>(server, 'memory');

    const { elapsed, cpu } = await connectBatch(server, clients, 1000, CONNECTIONS);
    send(server, { type: 'measure-connected' } satisfies ToServer);
    const connected = await nextMessage<{ type: 'memory'; heap: number; rss: number; rawRss: number }>(server, 'memory');
    const disconnectStart = now();
    const empty = await disconnectAll(server, clients);
    return {
      heapPerConnection: (connected.heap - idle.heap) / CONNECTIONS,
      rssPerConnection: (connected.rss - idle.rss) / CONNECTIONS,
      rawRssPerConnection: (connected.rawRss - idle.rawRss) / CONNECTIONS,
      connectRate: CONNECTIONS / (elapsed / 1000),
      disconnectRate: CONNECTIONS / ((empty.at - disconnectStart) / 1000),
      connectCpu: (cpu / CONNECTIONS) * 1000,
      disconnectCpu: (empty.cpu / CONNECTIONS) * 1000,
    };
  } finally {
    await stopAll([server, ...clients]);
  }
}

/** Ends the processes through their IPC channel (so a --cpu-prof profile gets written), killing stragglers. */
async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.disconnect();
        }),
    ),
  );
}

async function connectBatch(server: ChildProcess, clients: ChildProcess[], from: number, count: number): Promise<{ elapsed: number; cpu: number }> {
  const share = Math.ceil(count / clients.length);
  send(server, { type: 'await-connections', count } satisfies ToServer);
  const allConnected = nextMessage<{ type: 'connections'; at: number; cpu: number }>(server, 'connections');
  const start = now();
  const replies = clients.map((client, i) => {
    send(client, { type: 'connect', from: from + i * share, count: Math.min(share, count - i * share) } satisfies ToClients);
    return nextMessage<{ type: 'connected'; at: number; failures: number }>(client, 'connected');
  });
  const results = await Promise.all(replies);
  const failures = results.reduce((sum, r) => sum + r.failures, 0);
  if (failures > 0) throw new Error(`${failures} handshakes failed`);
  const { at, cpu } = await allConnected;
  return { elapsed: Math.max(at, ...results.map((r) => r.at)) - start, cpu };
}

async function disconnectAll(server: ChildProcess, clients: ChildProcess[]): Promise<{ at: number; cpu: number }> {
  send(server, { type: 'await-empty' } satisfies ToServer);
  const empty = nextMessage<{ type: 'empty'; at: number; cpu: number }>(server, 'empty');
  for (const client of clients) send(client, { type: 'disconnect' } satisfies ToClients);
  await Promise.all(clients.map((client) => nextMessage(client, 'disconnected')));
  return await empty;
}

interface FanoutRun {
  p50: number;
  p99: number;
  delivered: number;
  deliveredPerSecond: number;
  expected: number;
  saturatedPerSecond: number;
  /** Server CPU per change (each delivered to 20 sockets), in µs, at the steady rate and saturated. */
  steadyCpu: number;
  saturatedCpu: number;
}

async function collectReceipts(clients: ChildProcess[], changeTimes: number[][]): Promise<{ latencies: Float64Array; first: number; last: number }> {
  const reports = await Promise.all(
    clients.map((client) => {
      send(client, { type: 'report' } satisfies ToClients);
      return nextMessage<{ type: 'receipts'; users: number[]; counts: number[]; times: number[] }>(client, 'receipts');
    }),
  );
  const total = reports.reduce((sum, r) => sum + r.times.length, 0);
  const latencies = new Float64Array(total);
  let i = 0;
  let last = 0;
  for (const { users, counts, times } of reports) {
    for (let j = 0; j < times.length; j++) {
      const changedAt = changeTimes[users[j]!]![counts[j]!]!;
      latencies[i++] = times[j]! - changedAt;
      last = Math.max(last, times[j]!);
    }
  }
  latencies.sort();
  const first = Math.min(...changeTimes.map((times) => times[0] ?? Infinity));
  return { latencies, first, last };
}

async function fanoutRun(side: Side): Promise<FanoutRun> {
  const server = spawn('server', side);
  const { port } = await nextMessage<{ type: 'listening'; port: number }>(server, 'listening');
  const clients = Array.from({ length: CLIENT_PROCESSES }, () => spawn('clients', side, String(port)));
  try {
    const share = Math.ceil(WATCHER_SOCKETS / clients.length);
    await Promise.all(
      clients.map((client, i) => {
        send(client, { type: 'watch', from: i * share, count: Math.min(share, WATCHER_SOCKETS - i * share) } satisfies ToClients);
        return nextMessage(client, 'watching');
      }),
    );
    // Steady rate.
    send(server, { type: 'changes', rate: CHANGE_RATE, seconds: FANOUT_SECONDS } satisfies ToServer);
    const steady = await nextMessage<{ type: 'changes-done'; changeTimes: number[][]; made: number; cpu: number }>(server, 'changes-done');
    await new Promise((resolve) => setTimeout(resolve, 1000)); // let the last events arrive
    const expected = steady.made * WATCHERS_PER_USER;
    const { latencies, first, last } = await collectReceipts(clients, steady.changeTimes);

    // Saturation: as many changes as the server can make and deliver; events delivered per second.
    send(server, { type: 'saturate', seconds: SATURATION_SECONDS } satisfies ToServer);
    const saturated = await nextMessage<{ type: 'changes-done'; changeTimes: number[][]; made: number; cpu: number }>(server, 'changes-done');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const burst = await collectReceipts(clients, saturated.changeTimes);
    return {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      delivered: latencies.length,
      deliveredPerSecond: latencies.length / ((last - first) / 1000),
      expected,
      saturatedPerSecond: burst.latencies.length / ((burst.last - burst.first) / 1000),
      steadyCpu: (steady.cpu / steady.made) * 1000,
      saturatedCpu: (saturated.cpu / saturated.made) * 1000,
    };
  } finally {
    await stopAll([server, ...clients]);
  }
}

async function orchestrate(): Promise<void> {
  const runs: Record<Side, ConnectionRun[]> = { ours: [], bare: [] };
  const fanouts: Record<Side, FanoutRun[]> = { ours: [], bare: [] };
  for (let round = 0; PHASES.includes('connections') && round < ROUNDS; round++) {
    for (const side of round % 2 ? (['ours', 'bare'] as const) : (['bare', 'ours'] as const)) {
      const run = await connectionRun(side);
      runs[side].push(run);
      console.log(
        `  round ${round + 1} ${side}: ${CONNECTIONS} connections, heap ${(run.heapPerConnection / 1024).toFixed(2)} KiB/conn, rss ${(run.rssPerConnection / 1024).toFixed(2)} KiB/conn (with the young generation ${(run.rawRssPerConnection / 1024).toFixed(2)}), ${run.connectRate.toFixed(0)} conn/s (server CPU ${run.connectCpu.toFixed(0)} µs/conn), ${run.disconnectRate.toFixed(0)} disconnects/s (${run.disconnectCpu.toFixed(0)} µs/conn)`,
      );
    }
  }
  for (let round = 0; PHASES.includes('fanout') && round < ROUNDS; round++) {
    for (const side of round % 2 ? (['ours', 'bare'] as const) : (['bare', 'ours'] as const)) {
      const run = await fanoutRun(side);
      fanouts[side].push(run);
      console.log(
        `  round ${round + 1} ${side} fan-out: ${run.delivered}/${run.expected} delivered, p50 ${run.p50.toFixed(2)} ms, p99 ${run.p99.toFixed(2)} ms, ${run.deliveredPerSecond.toFixed(0)} events/s at ${CHANGE_RATE} changes/s (server CPU ${run.steadyCpu.toFixed(0)} µs/change); saturated ${run.saturatedPerSecond.toFixed(0)} events/s (${run.saturatedCpu.toFixed(0)} µs/change)`,
      );
    }
  }
  const m = (side: Side, pick: (run: ConnectionRun) => number): number => median(runs[side].map(pick));
  const f = (side: Side, pick: (run: FanoutRun) => number): number => median(fanouts[side].map(pick));
  const figures: Figure[] = [
    {
      name: 'heap per connection',
      value: m('ours', (r) => r.heapPerConnection) / 1024,
      baseline: m('bare', (r) => r.heapPerConnection) / 1024,
      unit: 'KiB',
      higherIsBetter: false,
      target: '≤ 1.15x',
    },
    {
      name: 'RSS per connection',
      value: m('ours', (r) => r.rssPerConnection) / 1024,
      baseline: m('bare', (r) => r.rssPerConnection) / 1024,
      unit: 'KiB',
      higherIsBetter: false,
      target: '≤ 1.15x',
      note: 'young generation excluded, both sides',
    },
    {
      name: 'connections per second (handshake + login)',
      value: m('ours', (r) => r.connectRate),
      baseline: m('bare', (r) => r.connectRate),
      unit: 'conn/s',
      higherIsBetter: true,
      target: '≥ 0.85x',
    },
    {
      name: 'server CPU per connection (handshake + login)',
      value: m('ours', (r) => r.connectCpu),
      baseline: m('bare', (r) => r.connectCpu),
      unit: 'µs',
      higherIsBetter: false,
    },
    {
      name: 'disconnects per second',
      value: m('ours', (r) => r.disconnectRate),
      baseline: m('bare', (r) => r.disconnectRate),
      unit: '/s',
      higherIsBetter: true,
    },
    {
      name: 'server CPU per disconnect',
      value: m('ours', (r) => r.disconnectCpu),
      baseline: m('bare', (r) => r.disconnectCpu),
      unit: 'µs',
      higherIsBetter: false,
    },
    {
      name: `change-to-event p50 at ${CHANGE_RATE} changes/s`,
      value: f('ours', (r) => r.p50),
      baseline: f('bare', (r) => r.p50),
      unit: 'ms',
      higherIsBetter: false,
    },
    {
      name: `change-to-event p99 at ${CHANGE_RATE} changes/s`,
      value: f('ours', (r) => r.p99),
      baseline: f('bare', (r) => r.p99),
      unit: 'ms',
      higherIsBetter: false,
    },
    {
      name: `events delivered per second at ${CHANGE_RATE} changes/s`,
      value: f('ours', (r) => r.deliveredPerSecond),
      baseline: f('bare', (r) => r.deliveredPerSecond),
      unit: '/s',
      higherIsBetter: true,
      target: '≥ 0.8x',
    },
    {
      name: 'events delivered per second, saturated',
      value: f('ours', (r) => r.saturatedPerSecond),
      baseline: f('bare', (r) => r.saturatedPerSecond),
      unit: '/s',
      higherIsBetter: true,
      target: '≥ 0.8x',
    },
    {
      name: `server CPU per change (${WATCHERS_PER_USER} deliveries), saturated`,
      value: f('ours', (r) => r.saturatedCpu),
      baseline: f('bare', (r) => r.saturatedCpu),
      unit: 'µs',
      higherIsBetter: false,
      note: 'server capacity ratio = bare / ours',
    },
  ];
  // Phases not run leave NaN figures out.
  const measured = figures.filter((figure) => Number.isFinite(figure.value));
  if (PHASES.includes('availability')) measured.push(...(await availabilityFigures()));
  report(
    `socket: ${CONNECTIONS} websocket connections over ${CLIENT_PROCESSES} client processes; fan-out ${WATCHED_USERS} users x ${WATCHERS_PER_USER} watchers; medians of ${ROUNDS} runs`,
    measured,
  );
}

const [role, side, port] = process.argv.slice(2);
if (role === 'server' || role === 'clients') process.on('disconnect', () => process.exit(0));
if (role === 'server') void runServer(side as Side);
else if (role === 'clients') void runClients(side as Side, Number(port));
else
  orchestrate().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
