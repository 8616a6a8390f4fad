// `npm run bench:rooms`: a join and a leave delivered to a big room against a bare io.to(room).emit of the same size, count() at 100,000 members, heap per membership, a burst of 1,000 joins in one second.

import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { Redis } from 'ioredis';
import { createPresence, ManualClock, MemoryStore } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { RoomRegistry, type RoomConnection, type RoomDelivery } from '../lib/rooms/index.js';
import { ROOM_PREFIX, SocketRoomConnection } from '../lib/socket/rooms.js';
import { PRESENCE, type PresenceSocket } from '../lib/socket/session.js';
import { report, type Figure } from './report.js';

/**
 * Members of the delivery room (the 10,000 by default; ROOMS_BENCH_MEMBERS sets it). Their
 * client sockets run in a child process (bench/room-clients.ts): in one process with the server
 * they would take two file descriptors each, beyond a limit of 20,000.
 */
const MEMBERS = Number(process.env.ROOMS_BENCH_MEMBERS ?? 10_000);
const COUNT_MEMBERS = 100_000;
const ROUNDS = Number(process.env.ROOMS_BENCH_ROUNDS ?? 20);
const BATCH = 50;
/** The join burst: members joining one room, spread evenly over BURST_MS. */
const BURST_MEMBERS = Number(process.env.ROOMS_BENCH_BURST ?? 1000);
const BURST_MS = 1000;

function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with --expose-gc (npm run bench:rooms does)');
  for (let i = 0; i < 3; i++) collect();
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** count() and heap per membership on the core alone: 100,000 users, one connection each, in one room. */
async function coreFigures(): Promise<Figure[]> {
  const clock = new ManualClock();
  const registry = new RoomRegistry<RoomConnection>({
    clock,
    memberLimit: 1000,
    batchInterval: BATCH,
    maxRoomsPerConnection: 100,
    logger: console,
    lookup: () => ({ status: 'Online', customStatus: null }),
  });
  registry.deliverWith({ enter() {}, exit() {}, broadcast() {}, send() {} });
  const connections: RoomConnection[] = [];
  for (let i = 0; i < COUNT_MEMBERS; i++)
    connections.push({ userId: `user-${i}`, sessionId: `s${i}`, instanceId: `i${i}`, platform: 'Web', roomState: undefined });
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < connections.length; i++) {
    await registry.join(connections[i]!, 'big', undefined);
    // Flush as we go, so the batch's log is not counted as membership.
    if (i % 1000 === 999) clock.advance(BATCH);
  }
  clock.advance(BATCH);
  gc();
  const perMembership = (process.memoryUsage().heapUsed - before) / COUNT_MEMBERS;
  if (registry.count('big') !== COUNT_MEMBERS) throw new Error(`expected ${COUNT_MEMBERS} members, counted ${registry.count('big')}`);

  const calls = 5_000_000;
  let sum = 0;
  const start = now();
  for (let i = 0; i < calls; i++) sum += registry.count('big');
  const seconds = (now() - start) / 1000;
  if (sum !== calls * COUNT_MEMBERS) throw new Error('count() answered wrong');
  registry.close();
  return [
    {
      name: `count() at ${COUNT_MEMBERS.toLocaleString('en-US')} members (memory)`,
      value: calls / seconds,
      unit: 'calls/s',
      higherIsBetter: true,
      target: '≥ 1,000,000/s',
    },
    {
      name: 'heap per membership, beyond the connection',
      value: perMembership,
      unit: 'bytes',
      higherIsBetter: false,
      target: '≤ 150 bytes',
      note: 'one user, one connection, one room; all the core keeps for it but the connection object (which holds an 8-byte roomState field)',
    },
  ];
}

/** Server-side time to deliver a join and a leave to MEMBERS sockets, against a bare emit of the same message. */
async function deliveryFigures(): Promise<Figure[]> {
  const clock = new ManualClock();
  const http = createServer();
  // No engine.io pings: with 10,000 sockets a busy set-up outlasts pingTimeout, and timed-out members would miss the messages counted.
  const io = new Server(http, { transports: ['websocket'], pingInterval: 3_600_000, pingTimeout: 3_600_000 });
  const presence = createPresence({
    clock,
    store: new MemoryStore({ maxOfflineUsers: 1000, maxRevokedSessions: 1000 }),
    loginPolicy: 'multi',
    roomMemberLimit: MEMBERS + 10,
    roomBatchInterval: BATCH,
    heartbeatTimeout: '1h',
    authenticate: (handshake) => ({ userId: String(handshake.auth.token) }),
  });
  presence.attach(io);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

  // The members' sockets, in a child process; the newcomer's here.
  const child = fork(new URL('./room-clients.ts', import.meta.url), [url, String(MEMBERS)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  const ask = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const onMessage = (message: { type: string } & T): void => {
        if (message.type !== type) return;
        child.off('message', onMessage);
        resolve(message);
      };
      child.on('message', onMessage);
      if (type !== 'ready') child.send({ type });
    });
  await ask('ready');
  let ownReceived = 0;
  const open = (userId: string): Promise<ClientSocket> =>
    new Promise((resolve, reject) => {
      const socket = ioc(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 60_000, auth: { token: userId, platform: 'Web' } });
      socket.on('presence:room', () => ownReceived++);
      socket.once('presence:session', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  const serverSockets = [...io.of('/').sockets.values()];
  if (serverSockets.length !== MEMBERS) throw new Error(`expected ${MEMBERS} sockets, the server has ${serverSockets.length}`);
  // Straight into the core, with the set-up's messages dropped: each member would otherwise be
  // sent the whole room (n² bytes: 15 GB at 10,000 members). Entering the Socket.IO room still happens.
  const core = presence.rooms as unknown as { delivery: RoomDelivery<SocketRoomConnection> };
  const delivery = core.delivery;
  core.delivery = { enter: delivery.enter.bind(delivery), exit: delivery.exit.bind(delivery), broadcast() {}, send() {} };
  for (const socket of serverSockets) {
    const presenceSocket = socket as unknown as PresenceSocket;
    await presence.rooms.join(new SocketRoomConnection(presenceSocket, presenceSocket[PRESENCE]!), 'big', { seat: 1 });
  }
  clock.advance(BATCH);
  core.delivery = delivery;
  const extraClient = await open('newcomer');
  const extra = [...io.of('/').sockets.values()].find((socket) => !serverSockets.includes(socket))!;
  /** Waits until the members (in the child) got `expected` messages since the last reset, then resets. */
  const drained = async (expected: number): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { received } = await ask<{ received: number }>('count');
      if (received >= expected) break;
      if (Date.now() > deadline) throw new Error(`only ${received} of ${expected} messages arrived`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await ask('reset');
  };
  const ownDrained = async (expected: number): Promise<void> => {
    while (ownReceived < expected) await new Promise((resolve) => setTimeout(resolve, 2));
    ownReceived = 0;
  };
  // Settle the join messages of the set-up before measuring.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await ask('reset');

  const connected = io.of('/').sockets.size;
  if (connected !== MEMBERS + 1) throw new Error(`${connected} sockets connected before measuring; expected ${MEMBERS + 1}`);
  const ours: number[] = [];
  const bare: number[] = [];
  let sample: string | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    // Ours: the join (and then the leave) of one user, through the batch, to every member.
    await presence.join(extra, 'big', { seat: 1 });
    await ownDrained(1); // the joiner's own copy of the room
    let start = now();
    clock.advance(BATCH);
    ours.push(now() - start);
    await drained(MEMBERS);
    await presence.leave(extra, 'big');
    start = now();
    clock.advance(BATCH);
    ours.push(now() - start);
    await drained(MEMBERS);
    // Bare: the same two messages, emitted straight to the room.
    sample ??= JSON.stringify({
      room: 'big',
      count: MEMBERS + 1,
      joined: [
        {
          userId: 'newcomer',
          status: 'Online',
          availability: 'available',
          customStatus: null,
          meta: { seat: 1 },
          devices: [{ platform: 'Web', instanceId: 'x'.repeat(16) }],
        },
      ],
      left: [],
      updated: [],
    });
    const joinMessage = JSON.parse(sample) as object;
    const leaveMessage = { room: 'big', count: MEMBERS, joined: [], left: ['newcomer'], updated: [] };
    for (const message of [joinMessage, leaveMessage]) {
      start = now();
      io.to(ROOM_PREFIX + 'big').emit('presence:room', message);
      bare.push(now() - start);
      await drained(MEMBERS);
    }
  }
  extraClient.disconnect();
  await stopChild(child);
  await presence.close();
  await new Promise<void>((resolve) => io.close(() => resolve()));
  const oursRate = 1000 / median(ours);
  const bareRate = 1000 / median(bare);
  return [
    {
      name: `a join or a leave delivered to ${MEMBERS.toLocaleString('en-US')} members (server time per message)`,
      value: oursRate,
      unit: 'messages/s',
      higherIsBetter: true,
      baseline: bareRate,
      baselineName: 'io.to(room).emit of the same message',
      target: '≥ 0.9x',
      note: `median of ${ROUNDS * 2}; ours is the batch flush (diff built, encoded, written to each socket)`,
    },
  ];
}

/**
 * count() in Redis mode at 100,000 members: the room's join order is filled straight in Redis (as
 * 100,000 joins would leave it), then count() is asked from a mount; Redis's own command counter
 * shows how many commands (round trips) each count() costs.
 */
async function redisCountFigure(): Promise<Figure[]> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const raw = new Redis(url);
  const prefix = `bench-rooms:${process.pid}:`;
  const presence = createPresence({ store: new RedisStore({ client: new Redis(url), prefix }), canJoin: () => true });
  const order = `${prefix}{r:big}:order`;
  for (let from = 0; from < COUNT_MEMBERS; from += 10_000) {
    const pipeline = raw.pipeline();
    for (let i = from; i < from + 10_000; i++) pipeline.zadd(order, i + 1, `user-${i}`);
    await pipeline.exec();
  }
  const room = presence.room('big');
  if ((await room.count()) !== COUNT_MEMBERS) throw new Error('count() in Redis mode answered wrong');
  const commands = async (): Promise<number> => {
    const stats = await raw.info('commandstats');
    return Array.from(stats.matchAll(/calls=(\d+)/g)).reduce((sum, match) => sum + Number(match[1]), 0);
  };
  const calls = 2000;
  const before = await commands();
  const start = now();
  for (let i = 0; i < calls; i++) await room.count();
  const seconds = (now() - start) / 1000;
  // The INFO call itself is one more command.
  const perCall = ((await commands()) - before - 1) / calls;
  await presence.close();
  await raw.del(order);
  raw.disconnect();
  return [
    {
      name: `count() at ${COUNT_MEMBERS.toLocaleString('en-US')} members (Redis, one after another)`,
      value: calls / seconds,
      unit: 'calls/s',
      higherIsBetter: true,
      target: 'one round trip',
      note: `${perCall.toFixed(2)} Redis commands per count() (ZCARD), whatever the room's size`,
    },
  ];
}

/**
 * BURST_MEMBERS client sockets (in a child process) join one room, their joins spread evenly over
 * BURST_MS, at the defaults (roomBatchInterval 50 ms, roomMemberLimit 1000): the presence:room
 * messages each member gets after its join answer, against one message per join, where each member
 * would hear of every later join (n − 1 − i for the i-th joiner: (n − 1) / 2 on average, n − 1 for
 * the first). Every client must end holding the full count.
 */
async function burstFigures(): Promise<Figure[]> {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'] });
  const presence = createPresence({
    store: new MemoryStore(),
    loginPolicy: 'multi',
    canJoin: () => true,
    authenticate: (handshake) => ({ userId: String(handshake.auth.token) }),
  });
  presence.attach(io);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const child = fork(new URL('./room-clients.ts', import.meta.url), [url, String(BURST_MEMBERS), 'burst-'], {
    execArgv: ['--import', 'tsx'],
    stdio: 'inherit',
  });
  const next = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const onMessage = (message: { type: string } & T): void => {
        if (message.type !== type) return;
        child.off('message', onMessage);
        resolve(message);
      };
      child.on('message', onMessage);
    });
  await next('ready');
  const start = now();
  const joined = next<{ refused: number; emitted: number }>('joined');
  child.send({ type: 'join-spread', room: 'burst', ms: BURST_MS });
  const { refused, emitted } = await joined;
  const spread = now() - start;
  if (refused > 0) throw new Error(`${refused} joins of the burst were refused`);
  // Two batches more for the last diffs.
  await new Promise((resolve) => setTimeout(resolve, 4 * BATCH));
  const stats = next<{ messages: number[]; counts: number[] }>('burst-stats');
  child.send({ type: 'burst-stats' });
  const { messages, counts } = await stats;
  await stopChild(child);
  await presence.close();
  await new Promise<void>((resolve) => io.close(() => resolve()));
  const behind = counts.filter((count) => count !== BURST_MEMBERS).length;
  if (behind > 0) throw new Error(`${behind} of ${BURST_MEMBERS} clients hold a count other than ${BURST_MEMBERS} after the burst`);
  const total = messages.reduce((sum, count) => sum + count, 0);
  const perJoin = (BURST_MEMBERS * (BURST_MEMBERS - 1)) / 2;
  return [
    {
      name: `${BURST_MEMBERS.toLocaleString('en-US')} members joining within one second: presence:room messages per member`,
      value: total / BURST_MEMBERS,
      unit: 'messages',
      higherIsBetter: false,
      baseline: perJoin / BURST_MEMBERS,
      baselineName: 'one message per join, computed',
      note: `${total.toLocaleString('en-US')} messages in all against ${perJoin.toLocaleString('en-US')}; at most ${Math.max(...messages)} to one member against ${BURST_MEMBERS - 1}; joins sent over ${Math.round(emitted)} ms, all answered ${Math.round(spread)} ms after the burst began; every client ends at count ${BURST_MEMBERS}`,
    },
  ];
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.send({ type: 'close' });
  });
}

const only = process.env.ROOMS_BENCH_ONLY;
const figures = [
  ...(only && only !== 'core' ? [] : await coreFigures()),
  ...(process.env.ROOMS_BENCH_REDIS === '0' || (only && only !== 'redis') ? [] : await redisCountFigure()),
  ...(only && only !== 'burst' ? [] : await burstFigures()),
  ...(only && only !== 'delivery' ? [] : await deliveryFigures()),
];
report('rooms', figures);
process.exit(0);
