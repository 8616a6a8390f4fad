// Part of `npm run bench:socket`: fan-out with lastSeenVisibility against without it, and presence:activity against a heartbeat.

import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Server } from 'socket.io';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { createPresence, type Connection, type Presence } from '../lib/index.js';
import type { Figure } from './report.js';

const SELF = fileURLToPath(import.meta.url);
/** Watchers of one user, spread over the client processes. */
const WATCHERS = Number(process.env.BENCH_AVAIL_WATCHERS ?? 10_000);
const CLIENT_PROCESSES = 2;
/** Status flips of the watched user per run; each reaches every watcher. */
const CHANGES = Number(process.env.BENCH_AVAIL_CHANGES ?? 60);
/** Messages per client in the activity / heartbeat comparison. */
const EVENT_CLIENTS = 50;
const EVENTS_PER_CLIENT = Number(process.env.BENCH_AVAIL_EVENTS ?? 2000);
const OPTIONS = { transports: ['websocket' as const], pingInterval: 25_000, pingTimeout: 20_000 };

type ToClients =
  { type: 'connect'; url: string; from: number; count: number } | { type: 'count' } | { type: 'send'; event: string; perClient: number } | { type: 'close' };
type FromClients = { type: 'connected' } | { type: 'count'; received: number } | { type: 'sent' };

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

function next<T extends FromClients>(child: ChildProcess, type: T['type']): Promise<T> {
  return new Promise((resolve) => {
    const on = (message: FromClients): void => {
      if (message.type !== type) return;
      child.off('message', on);
      resolve(message as T);
    };
    child.on('message', on);
  });
}

/** A client process: opens its share of watchers (each its own connection and user), counts what they receive, sends events. */
function runClients(): void {
  const sockets: ClientSocket[] = [];
  let received = 0;
  process.on('message', async (message: ToClients) => {
    switch (message.type) {
      case 'connect': {
        const pending: Promise<void>[] = [];
        for (let i = 0; i < message.count; i++) {
          const socket = ioc(message.url, { ...OPTIONS, forceNew: true, reconnection: false, auth: { token: `viewer-${message.from + i}`, platform: 'Web' } });
          sockets.push(socket);
          socket.on('presence:changed', () => received++);
          pending.push(
            new Promise((resolve) =>
              socket.once('presence:session', () => {
                socket.emit('presence:subscribe', { userIds: ['star'] }, () => resolve());
              }),
            ),
          );
          // Bounded handshakes in flight.
          if (pending.length % 100 === 0) await Promise.all(pending.slice(-100));
        }
        await Promise.all(pending);
        process.send?.({ type: 'connected' } satisfies FromClients);
        break;
      }
      case 'count':
        process.send?.({ type: 'count', received } satisfies FromClients);
        break;
      case 'send': {
        // The first EVENT_CLIENTS sockets send, fire and forget, in bursts that let the socket drain.
        const senders = sockets.slice(0, EVENT_CLIENTS);
        for (let n = 0; n < message.perClient; n += 50) {
          for (const socket of senders) for (let i = 0; i < 50; i++) socket.emit(message.event as 'presence:activity');
          await new Promise((resolve) => setImmediate(resolve));
        }
        process.send?.({ type: 'sent' } satisfies FromClients);
        break;
      }
      case 'close':
        for (const socket of sockets.splice(0)) socket.disconnect();
        received = 0;
        break;
    }
  });
}

interface FanoutResult {
  /** Deliveries per second, all watchers counted. */
  perSecond: number;
  /** Server CPU per change (µs). */
  cpuPerChange: number;
}

async function waitReceived(clients: ChildProcess[], total: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`the watchers did not receive all ${total} changes within 120 s`);
    let received = 0;
    for (const child of clients) {
      child.send({ type: 'count' } satisfies ToClients);
      received += (await next<{ type: 'count'; received: number }>(child, 'count')).received;
    }
    if (received >= total) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One mount, WATCHERS watchers of `star`, CHANGES flips of star's status; timed until every watcher got every change. */
async function fanout(presence: Presence, clients: ChildProcess[]): Promise<FanoutResult> {
  const http = createServer();
  const io = new Server(http, OPTIONS);
  presence.attach(io);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const share = Math.ceil(WATCHERS / clients.length);
  await Promise.all(
    clients.map((child, i) => {
      child.send({ type: 'connect', url, from: i * share, count: Math.min(share, WATCHERS - i * share) } satisfies ToClients);
      return next(child, 'connected');
    }),
  );
  let device: Connection | undefined;
  const started = performance.now();
  const cpu = cpuMicros();
  for (let i = 0; i < CHANGES; i++) {
    if (device) {
      presence.engine.disconnect(device, 'closed');
      device = undefined;
    } else {
      device = (await presence.engine.connect({ userId: 'star', platform: 'Web', instanceId: 'star' }, () => {})).connection;
    }
    // Let the writes go out between changes.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await waitReceived(clients, CHANGES * WATCHERS);
  // Until every watcher got every change: the writes are most of the cost.
  const cpuSpent = cpuMicros() - cpu;
  const elapsed = (performance.now() - started) / 1000;
  for (const child of clients) child.send({ type: 'close' } satisfies ToClients);
  await presence.close();
  await new Promise<void>((resolve) => io.close(() => resolve()));
  return { perSecond: (CHANGES * WATCHERS) / elapsed, cpuPerChange: cpuSpent / CHANGES };
}

/** Server CPU per message of `event`, sent by EVENT_CLIENTS connections (µs). */
async function eventCost(clients: ChildProcess[], event: string): Promise<number> {
  const presence = createPresence({ authenticate, eventRateLimit: false, idleTimeout: '5m', logger: { warn: () => {}, error: console.error } });
  const http = createServer();
  const io = new Server(http, OPTIONS);
  presence.attach(io);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const child = clients[0] as ChildProcess;
  child.send({ type: 'connect', url, from: 0, count: EVENT_CLIENTS } satisfies ToClients);
  await next(child, 'connected');
  const total = EVENT_CLIENTS * EVENTS_PER_CLIENT;
  let handled = 0;
  const nsp = io.of('/');
  for (const socket of nsp.sockets.values()) socket.conn.on('packet', () => handled++);
  const cpu = cpuMicros();
  child.send({ type: 'send', event, perClient: EVENTS_PER_CLIENT } satisfies ToClients);
  while (handled < total) await new Promise((resolve) => setTimeout(resolve, 5));
  const spent = cpuMicros() - cpu;
  child.send({ type: 'close' } satisfies ToClients);
  await presence.close();
  await new Promise<void>((resolve) => io.close(() => resolve()));
  return spent / total;
}

function authenticate(handshake: { auth: Record<string, unknown> }): { userId: string } | null {
  return typeof handshake.auth.token === 'string' ? { userId: handshake.auth.token } : null;
}

/** Half the viewers (by the parity of their number) are shown an approximate last seen. */
function halfApproximate(viewerId: string): 'exact' | 'approximate' {
  return Number(viewerId.slice(viewerId.lastIndexOf('-') + 1)) % 2 === 0 ? 'approximate' : 'exact';
}

/** Runs both comparisons, each side in turn in the same run; answers the figures. */
export async function availabilityFigures(): Promise<Figure[]> {
  const clients = Array.from({ length: CLIENT_PROCESSES }, () =>
    fork(SELF, ['avail-clients'], { execArgv: ['--import', 'tsx', '--max-old-space-size=4096'], stdio: 'inherit' }),
  );
  try {
    const quiet = { warn: () => {}, error: console.error };
    const plain = await fanout(createPresence({ authenticate, logger: quiet }), clients);
    console.log(
      `  fan-out to ${WATCHERS} watchers, no lastSeenVisibility: ${plain.perSecond.toFixed(0)} deliveries/s, ${plain.cpuPerChange.toFixed(0)} µs server CPU/change`,
    );
    const ruled = await fanout(createPresence({ authenticate, logger: quiet, lastSeenVisibility: halfApproximate }), clients);
    console.log(
      `  fan-out to ${WATCHERS} watchers, half approximate: ${ruled.perSecond.toFixed(0)} deliveries/s, ${ruled.cpuPerChange.toFixed(0)} µs server CPU/change`,
    );
    // Each twice, alternating: the first pair warms the code up and is not counted.
    await eventCost(clients, 'presence:heartbeat');
    await eventCost(clients, 'presence:activity');
    const heartbeat = await eventCost(clients, 'presence:heartbeat');
    const activity = await eventCost(clients, 'presence:activity');
    console.log(`  server CPU per message: heartbeat ${heartbeat.toFixed(2)} µs, activity ${activity.toFixed(2)} µs`);
    return [
      {
        name: `presence:changed deliveries/s to ${WATCHERS} watchers with lastSeenVisibility (half approximate)`,
        value: ruled.perSecond,
        baseline: plain.perSecond,
        baselineName: 'no lastSeenVisibility',
        unit: '/s',
        higherIsBetter: true,
        target: '≥ 0.8x',
      },
      {
        name: `server CPU per change to ${WATCHERS} watchers with lastSeenVisibility (half approximate)`,
        value: ruled.cpuPerChange,
        baseline: plain.cpuPerChange,
        baselineName: 'no lastSeenVisibility',
        unit: 'µs',
        higherIsBetter: false,
      },
      {
        name: 'server CPU per presence:activity message (idleTimeout on)',
        value: activity,
        baseline: heartbeat,
        baselineName: 'presence:heartbeat',
        unit: 'µs',
        higherIsBetter: false,
        target: '≤ 1.2x',
      },
    ];
  } finally {
    for (const child of clients) child.kill();
  }
}

if (process.argv[2] === 'avail-clients') {
  process.on('disconnect', () => process.exit(0));
  runClients();
}
