// Soak: thousands of devices heartbeating with churn against one presence server for minutes; reports the memory slope and handle, timer and listener counts before and after.

import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { createPresence, MemoryStore, PLATFORMS, type KickedPayload, type Platform, type SessionPayload } from '../lib/index.js';

const SELF = fileURLToPath(import.meta.url);

/** Short timings, so heartbeat and background timeouts, reconnect graces and PushOnline expiry all happen during the run. */
const TIMING = {
  heartbeatInterval: 5_000,
  heartbeatTimeout: 15_000,
  backgroundTimeout: { miniProgram: 5_000 },
  pushOnlineTtl: 30_000,
  reconnectGrace: { web: 1_000 },
} as const;
/** The transport's own ping comes less often than the heartbeat timeout, so a silent device is caught by presence. */
const SOCKET_OPTIONS = { transports: ['websocket' as const], pingInterval: 60_000, pingTimeout: 20_000 };
/** Churn, as the share of the devices each action takes every CHURN_PERIOD. */
const CHURN = {
  /** Close the connection (FIN) and come back with the session. */
  reconnect: 0.02,
  /** Log out, then log in afresh. */
  logout: 0.005,
  /** The same user logs in on another platform, which kicks this device. */
  kickedByNewLogin: 0.005,
  /** Stop sending anything: the heartbeat timeout ends it, then it comes back. */
  silent: 0.005,
  /** Background (a MiniProgram times out there), foreground a few seconds later. */
  background: 0.01,
  subscribe: 0.01,
  setStatus: 0.005,
};
const CHURN_PERIOD = 10_000;
/** Handshakes in flight per client process while connecting. */
const CONNECT_CONCURRENCY = 50;

// ---------------------------------------------------------------- messages between the processes

interface Snapshot {
  label: string;
  at: number;
  heapUsed: number;
  rss: number;
  counts: Record<string, number>;
  resources: Record<string, number>;
}

interface Sample {
  /** Minutes since the steady phase began. */
  minute: number;
  heapUsed: number;
  rss: number;
  liveInstances: number;
  timeouts: number;
}

interface ClientReport {
  counts: Record<string, number>;
}

type ToServer =
  { type: 'snapshot'; label: string } | { type: 'sample'; every: number } | { type: 'stop-sampling' } | { type: 'await-empty' } | { type: 'report' };
type FromServer =
  | { type: 'listening'; port: number }
  | { type: 'snapshot'; snapshot: Snapshot }
  | { type: 'sample'; sample: Sample }
  | { type: 'empty' }
  | { type: 'transitions'; transitions: Record<string, number>; errors: number; warnings: number; firstError: string | undefined };
type ToClients = { type: 'start'; url: string; from: number; count: number } | { type: 'churn'; on: boolean } | { type: 'settle' } | { type: 'stop' };
type FromClients = { type: 'ready'; failures: number } | { type: 'settled'; pending: number } | { type: 'stopped'; report: ClientReport };

function send(target: ChildProcess | NodeJS.Process, message: ToServer | FromServer | ToClients | FromClients): void {
  target.send?.(message);
}

function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type'], timeout = 600_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within ${timeout} ms`)), timeout);
    const onMessage = (message: T): void => {
      if (message.type !== type) return;
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`a soak process exited (${code}) while waiting for ${type}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function authenticate(handshake: { auth: Record<string, unknown> }): { userId: string } | null {
  const token = handshake.auth.token;
  return typeof token === 'string' && token.startsWith('tok:') ? { userId: token.slice(4) } : null;
}

// ---------------------------------------------------------------- the server process

function countBy(kinds: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of kinds) counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('the soak server needs --expose-gc');
  gc();
  gc();
}

async function runServer(maxRevokedSessions: number | undefined): Promise<void> {
  const http = createServer();
  const io = new Server(http, SOCKET_OPTIONS);
  let errors = 0;
  let warnings = 0;
  let firstError: string | undefined;
  const presence = createPresence({
    authenticate,
    ...TIMING,
    store: new MemoryStore(maxRevokedSessions === undefined ? {} : { maxRevokedSessions }),
    logger: {
      warn: () => {
        warnings++;
      },
      error: (message: string, ...details: unknown[]) => {
        errors++;
        firstError ??= `${message} ${details.map((detail) => (detail instanceof Error ? (detail.stack ?? detail.message) : String(detail))).join(' ')}`;
      },
    },
  }).attach(io);
  const transitions: Record<string, number> = {};
  presence.on('change', (change) => {
    const key = `${change.action}/${change.reason}`;
    transitions[key] = (transitions[key] ?? 0) + 1;
  });
  const nsp = io.of('/');
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));

  // Private members read for the report only: bracket access keeps the type checker's eye on their types.
  const engine = presence.engine;
  const memoryStore = presence.config.store as MemoryStore;

  const counts = async (): Promise<Record<string, number>> => {
    let socketListeners = 0;
    let connListeners = 0;
    for (const socket of nsp.sockets.values()) {
      for (const name of socket.eventNames()) socketListeners += socket.listenerCount(name);
      connListeners += socket.conn.listenerCount('packet') + socket.conn.listenerCount('close');
    }
    const stats = await presence.stats();
    return {
      'engine live instances': engine.liveInstances,
      'engine scheduler size': engine['scheduler'].size,
      'engine logins in flight': engine['loginsInFlight'].size,
      "engine listeners 'change'": engine.listenerCount('change'),
      "engine listeners 'custom-status'": engine.listenerCount('custom-status'),
      'store users with devices': memoryStore['users'].size,
      'store PushOnline expiry scheduler size': memoryStore['expiry']?.size ?? 0,
      'store offline users (LRU, capped)': memoryStore['offline'].size,
      'store revoked sessions (LRU, capped)': memoryStore['revoked'].size,
      'users Online': stats.users.Online,
      'users PushOnline': stats.users.PushOnline,
      'namespace sockets': nsp.sockets.size,
      'engine.io clients': io.engine.clientsCount,
      'namespace rooms': nsp.adapter.rooms.size,
      "namespace listeners 'connection'": nsp.listenerCount('connection'),
      'listeners on all sockets': socketListeners,
      "listeners on all sockets' transports ('packet', 'close')": connListeners,
      "io.engine listeners 'connection'": io.engine.listenerCount('connection'),
    };
  };

  const snapshot = async (label: string): Promise<Snapshot> => {
    const listed = await counts();
    collectGarbage();
    const memory = process.memoryUsage();
    return { label, at: Date.now(), heapUsed: memory.heapUsed, rss: memory.rss, counts: listed, resources: countBy(process.getActiveResourcesInfo()) };
  };

  let sampler: NodeJS.Timeout | undefined;
  let sampleStart = 0;
  process.on('message', (message: ToServer) => {
    switch (message.type) {
      case 'snapshot':
        void snapshot(message.label).then((taken) => send(process, { type: 'snapshot', snapshot: taken }));
        return;
      case 'sample':
        sampleStart = performance.now();
        sampler = setInterval(() => {
          collectGarbage();
          const memory = process.memoryUsage();
          const resources = countBy(process.getActiveResourcesInfo());
          send(process, {
            type: 'sample',
            sample: {
              minute: (performance.now() - sampleStart) / 60_000,
              heapUsed: memory.heapUsed,
              rss: memory.rss,
              liveInstances: engine.liveInstances,
              timeouts: resources.Timeout ?? 0,
            },
          });
        }, message.every);
        return;
      case 'stop-sampling':
        clearInterval(sampler);
        return;
      case 'report':
        send(process, { type: 'transitions', transitions, errors, warnings, firstError });
        return;
      case 'await-empty': {
        const check = setInterval(() => {
          if (engine.liveInstances === 0 && nsp.sockets.size === 0) {
            clearInterval(check);
            send(process, { type: 'empty' });
          }
        }, 100);
        return;
      }
      default: {
        const unknown: never = message;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  });
  process.once('disconnect', () => {
    void presence.close().then(() => io.close(() => process.exit(0)));
  });
  send(process, { type: 'listening', port: (http.address() as AddressInfo).port });
}

// ---------------------------------------------------------------- a client process: many devices

interface Device {
  index: number;
  userId: string;
  platform: Platform;
  instanceId: string;
  socket: ClientSocket | undefined;
  session: SessionPayload | undefined;
  state: 'connecting' | 'online' | 'silent' | 'logging-out' | 'waiting';
  background: boolean;
  nextBeat: number;
  generation: number;
}

async function runClients(): Promise<void> {
  const counts: Record<string, number> = {};
  const count = (key: string, by = 1): void => {
    counts[key] = (counts[key] ?? 0) + by;
  };
  let url = '';
  let devices: Device[] = [];
  let churning = false;
  /** Set by `stop`: no device comes back after that. */
  let stopping = false;
  const random = (n: number): number => Math.floor(Math.random() * n);
  const pickOnline = (share: number): Device[] => {
    const online = devices.filter((device) => device.state === 'online');
    const picked: Device[] = [];
    for (let i = Math.round(devices.length * share); i > 0 && online.length > 0; i--) picked.push(online.splice(random(online.length), 1)[0] as Device);
    return picked;
  };

  /** Opens a connection for the device: a resume of its session, or a fresh login. Resolves once it is answered. */
  const connect = (device: Device, resume: boolean): Promise<boolean> => {
    const auth: Record<string, unknown> = { token: `tok:${device.userId}`, platform: device.platform, instanceId: device.instanceId };
    if (resume && device.session) auth.sessionId = device.session.sessionId;
    count(resume && device.session ? 'resume attempts' : 'fresh logins');
    const socket = ioc(url, { forceNew: true, transports: ['websocket'], reconnection: false, auth });
    device.socket = socket;
    device.state = 'connecting';
    device.background = false;
    let kicked = false;
    return new Promise<boolean>((resolve) => {
      socket.on('presence:session', (session: SessionPayload) => {
        if (device.socket !== socket) return;
        if (session.resumed) count('sessions resumed');
        device.session = session;
        device.state = 'online';
        device.nextBeat = Date.now() + random(TIMING.heartbeatInterval);
        resolve(true);
      });
      socket.on('presence:kicked', (notice: KickedPayload) => {
        kicked = true;
        count(`kicked notices: ${notice.reason}`);
      });
      socket.on('connect_error', (error: Error & { data?: { code?: string } }) => {
        count(`refused: ${error.data?.code ?? error.message}`);
        socket.close();
        if (device.socket !== socket) return resolve(false);
        // A revoked session logs in afresh; anything else is retried the same way.
        const revoked = error.data?.code === 'SESSION_REVOKED';
        if (revoked) device.session = undefined;
        comeBack(device, !revoked, 500);
        resolve(false);
      });
      socket.on('disconnect', (reason: string) => {
        count(`disconnects: ${reason}`);
        if (device.socket !== socket || stopping) return;
        if (device.state === 'logging-out') {
          device.session = undefined;
          comeBack(device, false, 200 + random(1000));
        } else if (kicked) {
          // Kicked by someone else: this device logs in afresh.
          device.session = undefined;
          comeBack(device, false, 200 + random(1000));
        } else {
          comeBack(device, true, 200 + random(1500));
        }
      });
    });
  };

  const comeBack = (device: Device, resume: boolean, after: number): void => {
    if (stopping) return;
    device.state = 'waiting';
    device.generation++;
    const generation = device.generation;
    setTimeout(() => {
      if (device.generation === generation && device.state === 'waiting') void connect(device, resume);
    }, after);
  };

  const churn = (): void => {
    for (const device of pickOnline(CHURN.reconnect)) {
      count('churn: reconnect');
      device.socket?.disconnect();
    }
    for (const device of pickOnline(CHURN.logout)) {
      count('churn: logout');
      device.state = 'logging-out';
      device.socket?.emit('presence:logout', () => {});
    }
    for (const device of pickOnline(CHURN.kickedByNewLogin)) {
      count('churn: kicked by a new login');
      // The same user logs in elsewhere (the single policy kicks this device); the new login takes the device's place.
      const others = PLATFORMS.filter((platform) => platform !== device.platform);
      device.platform = others[random(others.length)] as Platform;
      device.instanceId = `d${device.index}-${device.generation + 1}`;
      device.session = undefined;
      void connect(device, false);
    }
    for (const device of pickOnline(CHURN.silent)) {
      count('churn: silent');
      device.state = 'silent';
    }
    for (const device of pickOnline(CHURN.background)) {
      count('churn: background');
      device.background = true;
      device.socket?.emit('presence:background');
      const socket = device.socket;
      setTimeout(
        () => {
          if (device.socket === socket && device.state === 'online' && device.background) {
            device.background = false;
            socket?.emit('presence:foreground');
          }
        },
        2_000 + random(8_000),
      );
    }
    for (const device of pickOnline(CHURN.subscribe)) {
      count('churn: subscribe');
      const userIds = Array.from({ length: 3 }, () => `u${random(devices.length * 2)}`);
      device.socket?.emit('presence:subscribe', { userIds }, () => {});
    }
    for (const device of pickOnline(CHURN.setStatus)) {
      count('churn: set-status');
      device.socket?.emit('presence:set-status', { customStatus: Math.random() < 0.5 ? null : `status ${random(100)}` }, () => {});
    }
  };

  // One timer sends every device's heartbeats when due; a silent or backgrounded MiniProgram sends nothing.
  const beats = setInterval(() => {
    const now = Date.now();
    for (const device of devices) {
      if (device.state !== 'online' || device.nextBeat > now) continue;
      device.nextBeat = now + TIMING.heartbeatInterval;
      if (device.background && device.platform === 'MiniProgram') continue;
      device.socket?.emit('presence:heartbeat');
      count('heartbeats sent');
    }
  }, 250);
  let churner: NodeJS.Timeout | undefined;

  process.on('message', (message: ToClients) => {
    switch (message.type) {
      case 'start': {
        url = message.url;
        devices = Array.from({ length: message.count }, (_, i) => {
          const index = message.from + i;
          return {
            index,
            userId: `u${index}`,
            platform: PLATFORMS[index % PLATFORMS.length] as Platform,
            instanceId: `d${index}`,
            socket: undefined,
            session: undefined,
            state: 'waiting' as const,
            background: false,
            nextBeat: 0,
            generation: 0,
          };
        });
        let next = 0;
        let failures = 0;
        const work = async (): Promise<void> => {
          while (next < devices.length) {
            const device = devices[next++] as Device;
            if (!(await connect(device, false))) failures++;
          }
        };
        void Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, work)).then(() => send(process, { type: 'ready', failures }));
        return;
      }
      case 'churn':
        churning = message.on;
        clearInterval(churner);
        if (churning) churner = setInterval(churn, CHURN_PERIOD);
        return;
      case 'settle': {
        // Silent devices are woken up once the server has ended them; wait until every device is online again.
        const deadline = Date.now() + 60_000;
        const check = setInterval(() => {
          const pending = devices.filter((device) => device.state !== 'online' || device.background).length;
          if (pending === 0 || Date.now() > deadline) {
            clearInterval(check);
            send(process, { type: 'settled', pending });
          }
        }, 200);
        return;
      }
      case 'stop':
        stopping = true;
        clearInterval(beats);
        clearInterval(churner);
        for (const device of devices) {
          device.generation++;
          device.state = 'waiting';
          device.socket?.disconnect();
        }
        send(process, { type: 'stopped', report: { counts } });
        return;
      default: {
        const unknown: never = message;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  });
  process.once('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------- the orchestrator

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const meanX = points.reduce((sum, p) => sum + p.x, 0) / n;
  const meanY = points.reduce((sum, p) => sum + p.y, 0) / n;
  let numerator = 0;
  let denominator = 0;
  for (const p of points) {
    numerator += (p.x - meanX) * (p.y - meanY);
    denominator += (p.x - meanX) ** 2;
  }
  return numerator / denominator;
}

function spawn(role: string, ...args: string[]): ChildProcess {
  return fork(SELF, [role, ...args], {
    execArgv: ['--expose-gc', '--import', 'tsx', '--max-old-space-size=4096'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function kbPerMinute(bytesPerMinute: number): string {
  return `${bytesPerMinute >= 0 ? '+' : ''}${(bytesPerMinute / 1024).toFixed(1)} KB/min`;
}

function table(snapshots: readonly Snapshot[], pick: (snapshot: Snapshot) => Record<string, number>): string {
  const keys = [...new Set(snapshots.flatMap((snapshot) => Object.keys(pick(snapshot))))].sort();
  const header = `| | ${snapshots.map((snapshot) => snapshot.label).join(' | ')} |\n| --- |${snapshots.map(() => ' ---: |').join('')}`;
  const rows = keys.map((key) => `| ${key} | ${snapshots.map((snapshot) => (pick(snapshot)[key] ?? 0).toLocaleString('en-US')).join(' | ')} |`);
  return [header, ...rows].join('\n');
}

async function orchestrate(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '5' },
      devices: { type: 'string', default: '5000' },
      clients: { type: 'string', default: '2' },
      'sample-seconds': { type: 'string', default: '10' },
      'max-revoked-sessions': { type: 'string' },
      out: { type: 'string' },
    },
  });
  const minutes = Number(values.minutes);
  const deviceCount = Number(values.devices);
  const clientCount = Number(values.clients);
  const sampleSeconds = Number(values['sample-seconds']);
  for (const [name, value] of [
    ['--minutes', minutes],
    ['--devices', deviceCount],
    ['--clients', clientCount],
    ['--sample-seconds', sampleSeconds],
  ] as const) {
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  }
  const started = new Date();
  const log = (text: string): void => console.log(`[soak ${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)} s] ${text}`);

  const maxRevoked = values['max-revoked-sessions'];
  if (maxRevoked !== undefined && !(Number.isInteger(Number(maxRevoked)) && Number(maxRevoked) > 0))
    throw new Error('--max-revoked-sessions must be a positive integer');
  const server = spawn('server', ...(maxRevoked === undefined ? [] : [maxRevoked]));
  const { port } = await nextMessage<{ type: 'listening'; port: number }>(server, 'listening');
  const snapshot = async (label: string): Promise<Snapshot> => {
    send(server, { type: 'snapshot', label });
    return (await nextMessage<{ type: 'snapshot'; snapshot: Snapshot }>(server, 'snapshot')).snapshot;
  };
  const snapshots: Snapshot[] = [await snapshot('idle, before')];
  log(`server listening on ${port}; connecting ${deviceCount} devices from ${clientCount} processes`);

  const clients = Array.from({ length: clientCount }, () => spawn('clients'));
  const share = Math.ceil(deviceCount / clientCount);
  const connectStart = performance.now();
  const ready = clients.map((client, i) => {
    send(client, { type: 'start', url: `http://127.0.0.1:${port}`, from: i * share, count: Math.min(share, deviceCount - i * share) });
    return nextMessage<{ type: 'ready'; failures: number }>(client, 'ready');
  });
  const failures = (await Promise.all(ready)).reduce((sum, reply) => sum + reply.failures, 0);
  log(`${deviceCount} devices connected in ${((performance.now() - connectStart) / 1000).toFixed(1)} s (${failures} refused)`);
  await delay(2_000);
  snapshots.push(await snapshot('connected, before churn'));

  const samples: Sample[] = [];
  server.on('message', (message: FromServer) => {
    if (message.type !== 'sample') return;
    samples.push(message.sample);
    log(
      `minute ${message.sample.minute.toFixed(2)}: heap ${mb(message.sample.heapUsed)}, rss ${mb(message.sample.rss)}, live ${message.sample.liveInstances}, timers ${message.sample.timeouts}`,
    );
  });
  send(server, { type: 'sample', every: sampleSeconds * 1000 });
  for (const client of clients) send(client, { type: 'churn', on: true });
  await delay(minutes * 60_000);
  for (const client of clients) send(client, { type: 'churn', on: false });
  send(server, { type: 'stop-sampling' });

  log('churn stopped; waiting for every device to be online again');
  const settled = await Promise.all(
    clients.map((client) => {
      send(client, { type: 'settle' });
      return nextMessage<{ type: 'settled'; pending: number }>(client, 'settled', 120_000);
    }),
  );
  const pending = settled.reduce((sum, reply) => sum + reply.pending, 0);
  await delay(2_000);
  snapshots.push(await snapshot(`after ${minutes} min of churn`));

  const emptied = nextMessage(server, 'empty', 120_000);
  send(server, { type: 'await-empty' });
  const reports = await Promise.all(
    clients.map((client) => {
      send(client, { type: 'stop' });
      return nextMessage<{ type: 'stopped'; report: ClientReport }>(client, 'stopped').then((message) => message.report);
    }),
  );
  await emptied;
  log(`every device disconnected; waiting out the PushOnline TTL (${TIMING.pushOnlineTtl / 1000} s)`);
  await delay(TIMING.pushOnlineTtl + 5_000);
  snapshots.push(await snapshot('all gone, after'));
  send(server, { type: 'report' });
  const outcome = await nextMessage<{
    type: 'transitions';
    transitions: Record<string, number>;
    errors: number;
    warnings: number;
    firstError: string | undefined;
  }>(server, 'transitions');
  for (const child of [server, ...clients]) child.disconnect();

  // The slope over the second half of the run, where start-up effects are over.
  const secondHalf = samples.filter((sample) => sample.minute >= minutes / 2);
  const heapSlope = slope(secondHalf.map((sample) => ({ x: sample.minute, y: sample.heapUsed })));
  const rssSlope = slope(secondHalf.map((sample) => ({ x: sample.minute, y: sample.rss })));
  const heapSlopeAll = slope(samples.map((sample) => ({ x: sample.minute, y: sample.heapUsed })));
  const clientCounts: Record<string, number> = {};
  for (const report of reports) for (const [key, value] of Object.entries(report.counts)) clientCounts[key] = (clientCounts[key] ?? 0) + value;

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const lines = [
    `## Soak, ${started.toISOString().slice(0, 10)}`,
    '',
    `Machine: ${availableParallelism()} cores (${cpu}), Node ${process.version}. ${deviceCount} devices over ${clientCount} client processes (socket.io-client, websocket, loopback), one server process; ${minutes} min of churn, a sample after GC every ${sampleSeconds} s.`,
    `Store: MemoryStore, maxRevokedSessions ${maxRevoked ?? '100000 (default)'}. Timings: heartbeat interval ${TIMING.heartbeatInterval} ms, heartbeat timeout ${TIMING.heartbeatTimeout} ms, MiniProgram background timeout ${TIMING.backgroundTimeout.miniProgram} ms, PushOnline TTL ${TIMING.pushOnlineTtl} ms, Web reconnect grace ${TIMING.reconnectGrace.web} ms; Socket.IO pingInterval ${SOCKET_OPTIONS.pingInterval} ms.`,
    `Churn every ${CHURN_PERIOD / 1000} s, as a share of the devices: ${Object.entries(CHURN)
      .map(([name, share]) => `${name} ${(share * 100).toFixed(1)}%`)
      .join(', ')}.`,
    '',
    `Memory after GC over the churn: heap ${mb(samples[0]?.heapUsed ?? 0)} → ${mb(samples.at(-1)?.heapUsed ?? 0)}, RSS ${mb(samples[0]?.rss ?? 0)} → ${mb(samples.at(-1)?.rss ?? 0)} (${samples.length} samples).`,
    `Slope by least squares over the second half (${secondHalf.length} samples): heap ${kbPerMinute(heapSlope)} (${Math.round(heapSlope).toLocaleString('en-US')} bytes/min), RSS ${kbPerMinute(rssSlope)}; heap over the whole churn ${kbPerMinute(heapSlopeAll)}.`,
    `Devices not back online 60 s after the churn stopped: ${pending}. Logged by the server: ${outcome.errors} errors, ${outcome.warnings} warnings.`,
    '',
    '### Heap, RSS and counts',
    '',
    table(snapshots, (snapshot) => ({
      'heap used after GC (KB)': Math.round(snapshot.heapUsed / 1024),
      'RSS (KB)': Math.round(snapshot.rss / 1024),
      ...snapshot.counts,
    })),
    '',
    '### Active resources (`process.getActiveResourcesInfo()`)',
    '',
    table(snapshots, (snapshot) => snapshot.resources),
    '',
    '### What happened',
    '',
    `Server transitions, over the whole run: ${Object.entries(outcome.transitions)
      .sort()
      .map(([key, value]) => `${key} ${value.toLocaleString('en-US')}`)
      .join(', ')}.`,
    `Clients: ${Object.entries(clientCounts)
      .sort()
      .map(([key, value]) => `${key} ${value.toLocaleString('en-US')}`)
      .join(', ')}.`,
  ];
  if (outcome.firstError) lines.push('', `First error logged: ${outcome.firstError}`);
  const report = lines.join('\n');
  console.log(`\n${report}\n`);
  if (values.out) writeFileSync(values.out, JSON.stringify({ report, snapshots, samples, transitions: outcome.transitions, clients: clientCounts }, null, 2));
  if (outcome.errors > 0) process.exitCode = 1;
}

const role = process.argv[2];
if (role === 'server') void runServer(process.argv[3] === undefined ? undefined : Number(process.argv[3]));
else if (role === 'clients') void runClients();
else
  orchestrate().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
