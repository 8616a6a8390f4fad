// Rooms in Redis mode over three real processes (on one Redis, and on a Redis Cluster: REDIS_CLUSTER_NODES): a join on one reaches the others, counts agree on every process, a SIGKILLed process's members leave within the lease, racing joins converge.

import { expect } from 'chai';
import { fork, type ChildProcess } from 'node:child_process';
import type { Cluster, Redis } from 'ioredis';
import { io as ioc } from 'socket.io-client';
import { auth, device, waitFor, type Device, type TestSocket } from './fixtures/socket-harness.js';
import { clusterClient, deleteKeys, REDIS_CLUSTER_NODES, REDIS_URL, redisClient, requireCluster, uniquePrefix } from './helpers/redis.js';
import { emit, join, type View } from './helpers/room-view.js';

const LEASE_TTL = 1500;
const SWEEP_INTERVAL = 250;
const BATCH = 20;

interface Node {
  child: ChildProcess;
  url: string;
  logs: string[];
}

function startNode(prefix: string, handoverGrace: number, reconnectGrace: number, cluster: boolean): Promise<Node> {
  const redisCluster = cluster ? REDIS_CLUSTER_NODES.map((node) => `${node.host}:${node.port}`).join(',') : undefined;
  const child = fork(
    new URL('./fixtures/rooms-node.ts', import.meta.url),
    [JSON.stringify({ redisUrl: REDIS_URL, redisCluster, prefix, leaseTtl: LEASE_TTL, sweepInterval: SWEEP_INTERVAL, handoverGrace, reconnectGrace })],
    {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('a rooms node did not start within 20 s')), 20_000);
    child.on('message', (message: { type: string; port?: number; message?: string; level?: string }) => {
      if (message.type === 'log') logs.push(`${message.level}: ${message.message}`);
      if (message.type === 'ready') {
        clearTimeout(timer);
        resolve({ child, url: `http://127.0.0.1:${message.port}`, logs });
      }
    });
    child.once('exit', (code) => reject(new Error(`a rooms node exited (${code}) before it was ready`)));
  });
}

async function stopNode(node: Node): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  const exited = new Promise((resolve) => node.child.once('exit', resolve));
  node.child.send({ type: 'close' });
  const timer = setTimeout(() => node.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function getJson<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(url, { ...init, headers: { authorization: 'Bearer admin', 'content-type': 'application/json', ...init?.headers } });
  expect(response.status, `${url} answered ${response.status}`).to.equal(200);
  return (await response.json()) as T;
}

/** Over one Redis and over a Redis Cluster (REDIS_CLUSTER_NODES; .ci/run starts one), as spec/cluster.spec.ts. */
const TARGETS: { label: string; client: () => Redis | Cluster; cluster: boolean }[] = [
  { label: 'one Redis', client: redisClient, cluster: false },
  { label: 'a Redis Cluster', client: clusterClient, cluster: true },
];

for (const target of TARGETS)
  describe(`Redis mode: rooms over three processes, over ${target.label}`, function () {
    this.timeout(60_000);
    let client: Redis | Cluster;
    const start = (prefix: string, handoverGrace = 0, reconnectGrace = 0) => startNode(prefix, handoverGrace, reconnectGrace, target.cluster);

    before(function () {
      if (target.cluster) requireCluster(this);
    });

    let prefix: string;
    let nodes: Node[];
    const sockets: TestSocket[] = [];

    /** A device logging in on `node`; with `resume` ({ instanceId, sessionId }) it resumes that session there. */
    const connect = async (node: Node, userId: string, platform = 'Web', resume?: { instanceId: string; sessionId: string }): Promise<Device> => {
      const socket: TestSocket = ioc(node.url, {
        forceNew: true,
        transports: ['websocket'],
        reconnection: false,
        auth: auth(userId, platform, resume),
      });
      sockets.push(socket);
      return device(socket);
    };
    /** Nothing left and nothing joined in what the view was told since message `before`. */
    const expectNoLeaveNoJoin = (view: View, before: number): void => {
      const after = view.messages.slice(before);
      expect(
        after.flatMap((message) => message.left),
        'no leave',
      ).to.deep.equal([]);
      expect(
        after.flatMap((message) => message.joined),
        'no join',
      ).to.deep.equal([]);
    };
    /** The count as each process's router answers it, by its three routes. */
    const countsEverywhere = async (room: string): Promise<number[]> => {
      const answers: number[] = [];
      for (const node of nodes) {
        if (node.child.exitCode !== null || node.child.signalCode !== null) continue;
        const page = await getJson<{ count: number }>(`${node.url}/presence/rooms/${encodeURIComponent(room)}?limit=1`);
        const query = await getJson<{ rooms: { count: number }[] }>(`${node.url}/presence/rooms/query`, {
          method: 'POST',
          body: JSON.stringify({ rooms: [room] }),
        });
        const group = await getJson<{ OnlineMemberNum: number }>(`${node.url}/presence/v4/group_open_http_svc/get_online_member_num`, {
          method: 'POST',
          body: JSON.stringify({ GroupId: room }),
        });
        answers.push(page.count, query.rooms[0]!.count, group.OnlineMemberNum);
      }
      return answers;
    };

    beforeEach(async function () {
      this.timeout(60_000);
      client = target.client();
      prefix = uniquePrefix('rooms-cluster');
      nodes = await Promise.all([start(prefix), start(prefix), start(prefix)]);
    });

    afterEach(async () => {
      for (const socket of sockets.splice(0)) socket.disconnect();
      await Promise.all(nodes.map(stopNode));
      const logged = nodes.flatMap((node) => node.logs);
      await deleteKeys(client, prefix);
      client.disconnect();
      expect(logged, 'nothing logged by the processes').to.deep.equal([]);
    });

    it('a join on one process reaches members on the others, once; every process counts the same by every route', async () => {
      const [a, b, c] = nodes as [Node, Node, Node];
      const alice = await connect(a, 'alice');
      const bob = await connect(b, 'bob');
      const carol = await connect(c, 'carol', 'Android');
      const { view: aliceView } = await join(alice, 'lobby', { seat: 1 });
      const { view: bobView, answer } = await join(bob, 'lobby', { seat: 2 });
      expect(answer.members!.map((member) => member.userId).sort()).to.deep.equal(['alice', 'bob']);
      await waitFor(() => aliceView.members.has('bob'), 'alice hears bob', 5000);
      await join(carol, 'lobby', { seat: 3 });
      await waitFor(() => aliceView.members.has('carol') && bobView.members.has('carol'), 'alice and bob hear carol', 5000);
      expect(aliceView.members.get('carol')).to.deep.include({ meta: { seat: 3 }, devices: [{ platform: 'Android', instanceId: carol.session.instanceId }] });
      expect(await countsEverywhere('lobby')).to.deep.equal(Array(9).fill(3));
      const joins = aliceView.messages.flatMap((message) => message.joined.map((member) => member.userId));
      expect(joins.sort()).to.deep.equal(['bob', 'carol']);
      // The same page from every process, in join order.
      const pages = await Promise.all(nodes.map((node) => getJson<{ members: { userId: string }[] }>(`${node.url}/presence/rooms/lobby`)));
      for (const page of pages) expect(page.members.map((member) => member.userId)).to.deep.equal(['alice', 'bob', 'carol']);
    });

    it('a SIGKILLed process: its members leave on the others within the lease bound, and the counts follow', async () => {
      const [a, b, c] = nodes as [Node, Node, Node];
      const watcher = await connect(a, 'watcher');
      const { view } = await join(watcher, 'hall');
      const other = await connect(c, 'other');
      await join(other, 'hall');
      // On the process to be killed: two users, and one user who also has a device elsewhere (stays a member).
      for (const userId of ['doomed1', 'doomed2', 'both']) await join(await connect(b, userId), 'hall');
      await join(await connect(c, 'both', 'Android'), 'hall');
      await waitFor(() => view.userIds.length === 5, 'five members', 5000);
      expect(await countsEverywhere('hall')).to.deep.equal(Array(9).fill(5));

      const killedAt = Date.now();
      b.child.kill('SIGKILL');
      await waitFor(
        () => !view.members.has('doomed1') && !view.members.has('doomed2'),
        'the killed process’s members leave',
        LEASE_TTL + SWEEP_INTERVAL + 5000,
      );
      const elapsed = Date.now() - killedAt;
      // The bound: the lease runs out (leaseTtl), a sweep notices (sweepInterval), a batch delivers; plus a loaded machine's slack.
      expect(elapsed, `left after ${elapsed} ms`).to.be.at.most(LEASE_TTL + SWEEP_INTERVAL + BATCH + 1500);
      expect(view.userIds).to.deep.equal(['both', 'other', 'watcher']);
      expect(view.members.get('both')!.devices.map((d) => d.platform)).to.deep.equal(['Android']);
      expect(view.messages.flatMap((message) => message.left).sort()).to.deep.equal(['doomed1', 'doomed2']);
      await waitFor(async () => (await countsEverywhere('hall')).every((count) => count === 3), 'every process counting 3', 5000);
      // The killed process's logs are gone with it: checked only on the live two.
      nodes = [a, c];
    });

    it('racing joins and leaves on three processes converge: every view, count and page agree', async () => {
      const users = Array.from({ length: 15 }, (_, i) => `racer${i}`);
      const devices = await Promise.all(users.map((userId, i) => connect(nodes[i % 3]!, userId)));
      const views = new Map<Device, View>();
      const inRoom = new Set<string>();
      for (let round = 0; round < 10; round++) {
        await Promise.all(
          devices.map(async (racer, i) => {
            if (Math.random() < 0.5) {
              views.set(racer, (await join(racer, 'race', { round })).view);
              inRoom.add(users[i]!);
            } else {
              await emit(racer, 'presence:leave', { room: 'race' });
              views.delete(racer);
              inRoom.delete(users[i]!);
            }
          }),
        );
      }
      const expected = [...inRoom].sort();
      await waitFor(
        async () => (await countsEverywhere('race')).every((count) => count === expected.length),
        `every process counting ${expected.length}`,
        10_000,
      );
      await waitFor(
        () => [...views.values()].every((view) => view.userIds.join() === expected.join() && view.count === expected.length),
        'every view equal to the room',
        10_000,
      );
      const pages = await Promise.all(
        nodes.map((node) => getJson<{ members: { userId: string; meta: unknown }[] }>(`${node.url}/presence/rooms/race?limit=1000`)),
      );
      for (const page of pages) expect(page.members.map((member) => member.userId).sort()).to.deep.equal(expected);
      expect(pages[0]).to.deep.equal(pages[1]);
      expect(pages[1]).to.deep.equal(pages[2]);
    });
    it('a graceful close with handoverGrace: a device resumed on another process and rejoined causes no leave and no join', async () => {
      const [a, , c] = nodes as [Node, Node, Node];
      const HANDOVER = 2000;
      await stopNode(nodes[1]!);
      const b = await start(prefix, HANDOVER);
      nodes[1] = b;
      const watcher = await connect(a, 'watcher');
      const { view } = await join(watcher, 'handover');
      const mover = await connect(b, 'mover');
      await join(mover, 'handover', { seat: 7 });
      await waitFor(() => view.members.has('mover'), 'the watcher hears the mover', 5000);
      const before = view.messages.length;

      // The process closes gracefully; the device resumes its session on another process and rejoins (as the client helper does).
      await stopNode(b);
      // Longer than a sweep, shorter than the grace: without the hold the part would be reaped (a leave) before the device is back.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const resumed = await connect(c, 'mover', 'Web', { instanceId: mover.session.instanceId, sessionId: mover.session.sessionId });
      expect(resumed.session.resumed, 'the session was resumed').to.equal(true);
      await join(resumed, 'handover');
      // Past the handover grace, the lease and a sweep: the closed process's part is reaped by now.
      await new Promise((resolve) => setTimeout(resolve, HANDOVER + LEASE_TTL + SWEEP_INTERVAL + 500));
      expectNoLeaveNoJoin(view, before);
      expect(view.members.get('mover')).to.deep.include({ meta: { seat: 7 }, devices: [{ platform: 'Web', instanceId: mover.session.instanceId }] });
      expect(await countsEverywhere('handover')).to.deep.equal(Array(6).fill(2));
      nodes = [a, c];
    });
    it('with a reconnect grace, a SIGKILLed process’s member resumed elsewhere within lease + grace and rejoined causes no leave', async () => {
      const GRACE = 2500;
      await Promise.all(nodes.map(stopNode));
      nodes = await Promise.all([start(prefix, 0, GRACE), start(prefix, 0, GRACE), start(prefix, 0, GRACE)]);
      const [a, b, c] = nodes as [Node, Node, Node];
      const watcher = await connect(a, 'watcher');
      const { view } = await join(watcher, 'grace');
      const mover = await connect(b, 'mover');
      await join(mover, 'grace', { seat: 9 });
      await waitFor(() => view.members.has('mover'), 'the watcher hears the mover', 5000);
      const before = view.messages.length;
      b.child.kill('SIGKILL');
      // Past the lease bound (where without a grace the member would have left), within the grace.
      await new Promise((resolve) => setTimeout(resolve, LEASE_TTL + SWEEP_INTERVAL + 500));
      expect(view.members.has('mover'), 'still a member within the grace').to.equal(true);
      const resumed = await connect(c, 'mover', 'Web', { instanceId: mover.session.instanceId, sessionId: mover.session.sessionId });
      await join(resumed, 'grace');
      await new Promise((resolve) => setTimeout(resolve, GRACE + SWEEP_INTERVAL + 500));
      expectNoLeaveNoJoin(view, before);
      expect(view.members.get('mover')).to.deep.include({ meta: { seat: 9 } });
      expect(await countsEverywhere('grace')).to.deep.equal(Array(6).fill(2));
      nodes = [a, c];
    });
  });
