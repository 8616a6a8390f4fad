// Rooms in Redis mode, three mounts sharing one Redis (or a Redis Cluster: REDIS_CLUSTER_NODES) in this process: joins reach every mount's members, counts and pages agree, racing joins and leaves converge.

import { expect } from 'chai';
import { Cluster, type Redis } from 'ioredis';
import { RedisStore } from '../lib/redis/index.js';
import { auth, startHarness, waitFor, type Device, type Harness } from './fixtures/socket-harness.js';
import { clusterClient, deleteKeys, redisClient, requireCluster, uniquePrefix } from './helpers/redis.js';
import { emit, join, type View } from './helpers/room-view.js';

const allow = (): boolean => true;

/** The keys matching a pattern (on every master of a cluster). */
async function keysMatching(client: Redis | Cluster, pattern: string): Promise<string[]> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  return (await Promise.all(nodes.map((node) => node.keys(pattern)))).flat();
}

/** Over one Redis and over a Redis Cluster (REDIS_CLUSTER_NODES; .ci/run starts one), as spec/cluster.spec.ts. */
const TARGETS: { label: string; client: () => Redis | Cluster; cluster: boolean }[] = [
  { label: 'one Redis', client: redisClient, cluster: false },
  { label: 'a Redis Cluster', client: clusterClient, cluster: true },
];

for (const target of TARGETS)
  describe(`Redis mode: rooms across three mounts, over ${target.label}`, function () {
    this.timeout(30_000);
    let client: Redis | Cluster;
    let prefix: string;
    let mounts: Harness[];

    before(function () {
      if (target.cluster) requireCluster(this);
    });

    beforeEach(async () => {
      client = target.client();
      prefix = uniquePrefix('rooms');
      mounts = [];
      for (let i = 0; i < 3; i++) {
        mounts.push(
          await startHarness({
            store: new RedisStore({ client: target.client(), prefix, leaseTtl: 1500, sweepInterval: 200 }),
            canJoin: allow,
            loginPolicy: 'multi',
            roomBatchInterval: 20,
          }),
        );
      }
    });

    afterEach(async () => {
      for (const mount of mounts) {
        for (const socket of mount.sockets) socket.disconnect();
        await mount.presence.close();
        await mount.close();
      }
      await deleteKeys(client, prefix);
      client.disconnect();
    });

    const counts = (room: string): Promise<number[]> => Promise.all(mounts.map((mount) => mount.presence.room(room).count()));

    it('a join on one mount reaches the members on the others, once, and every mount counts the same', async () => {
      const [a, b, c] = mounts as [Harness, Harness, Harness];
      const alice = await a.connect(auth('alice', 'Web'));
      const bob = await b.connect(auth('bob', 'Web'));
      const carol = await c.connect(auth('carol', 'Android'));
      const { view: aliceView, answer: first } = await join(alice, 'lobby', { seat: 1 });
      expect(first.count).to.equal(1);
      const { view: bobView, answer: second } = await join(bob, 'lobby', { seat: 2 });
      // bob's answer on another process lists alice, with her meta and device.
      expect(second.count).to.equal(2);
      expect(second.members!.map((member) => member.userId).sort()).to.deep.equal(['alice', 'bob']);
      expect(second.members!.find((member) => member.userId === 'alice')).to.deep.include({
        meta: { seat: 1 },
        devices: [{ platform: 'Web', instanceId: alice.session.instanceId }],
      });
      await waitFor(() => aliceView.members.has('bob'), 'alice hears bob');
      const { view: carolView } = await join(carol, 'lobby');
      await waitFor(() => aliceView.members.has('carol') && bobView.members.has('carol'), 'alice and bob hear carol');
      expect(carolView.userIds).to.deep.equal(['alice', 'bob', 'carol']);
      expect(await counts('lobby')).to.deep.equal([3, 3, 3]);
      // Each join was told once to each other member, and never to the joiner.
      const joinsOf = (view: View, userId: string): number =>
        view.messages.flatMap((message) => message.joined).filter((member) => member.userId === userId).length;
      expect(joinsOf(aliceView, 'bob')).to.equal(1);
      expect(joinsOf(aliceView, 'carol')).to.equal(1);
      expect(joinsOf(bobView, 'bob')).to.equal(0);
      for (const view of [aliceView, bobView, carolView]) await waitFor(() => view.count === 3 || view === carolView, 'counts of 3');
      expect(aliceView.count).to.equal(3);
      expect(bobView.count).to.equal(3);
    });

    it('a meta update on one mount is an update on the others, never a leave and a join', async () => {
      const [a, b] = mounts as [Harness, Harness, Harness];
      const alice = await a.connect(auth('alice', 'Web'));
      const bob = await b.connect(auth('bob', 'Web'));
      const { view: aliceView } = await join(alice, 'doc', 'reading');
      await join(bob, 'doc');
      await waitFor(() => aliceView.members.has('bob'), 'alice hears bob');
      await emit(bob, 'presence:room-update', { room: 'doc', meta: { cursor: 42 } });
      await waitFor(() => JSON.stringify(aliceView.members.get('bob')?.meta) === '{"cursor":42}', 'alice sees bob’s meta');
      expect(aliceView.messages.flatMap((message) => message.left)).to.deep.equal([]);
      expect(aliceView.messages.flatMap((message) => message.joined).filter((member) => member.userId === 'bob')).to.have.lengthOf(1);
      const page = await mounts[2]!.presence.room('doc').members();
      expect(page.members.map((member) => [member.userId, member.meta])).to.deep.equal([
        ['alice', 'reading'],
        ['bob', { cursor: 42 }],
      ]);
    });

    it('a member going invisible on one mount is a left (and the count one less) on the others; the backend still lists them, marked', async () => {
      const [a, b, c] = mounts as [Harness, Harness, Harness];
      const ghost = await a.connect(auth('ghost', 'Web'));
      const bob = await b.connect(auth('bob', 'Web'));
      await join(ghost, 'den', 'here');
      const { view } = await join(bob, 'den');
      expect(view.userIds).to.deep.equal(['bob', 'ghost']);
      expect(await emit(ghost, 'presence:set-availability', { availability: 'invisible' })).to.deep.equal({ ok: true, availability: 'invisible' });
      await waitFor(() => !view.members.has('ghost') && view.count === 1, 'bob to see ghost leave and a count of 1');
      // A join on a third mount is told nothing of the invisible member either.
      const carol = await c.connect(auth('carol', 'Web'));
      const { answer } = await join(carol, 'den');
      expect(answer.members!.map((member) => member.userId)).to.deep.equal(['bob', 'carol']);
      expect(answer.count).to.equal(2);
      // The backend sees the truth, on any mount.
      const page = await b.presence.room('den').members();
      expect(page.members.find((member) => member.userId === 'ghost')).to.deep.include({ availability: 'invisible' });
      expect(await b.presence.room('den').count()).to.equal(3);
      await emit(ghost, 'presence:set-availability', { availability: 'available' });
      await waitFor(() => view.members.has('ghost') && view.count === 3, 'bob to see ghost join again');
      expect(view.members.get('ghost')).to.deep.include({ meta: 'here', availability: 'available' });
    });

    it('leaving, disconnecting and logging out on one mount are a left on the others; counts follow everywhere', async () => {
      const [a, b, c] = mounts as [Harness, Harness, Harness];
      const watcher = await a.connect(auth('watcher', 'Web'));
      const { view } = await join(watcher, 'hall');
      const bob = await b.connect(auth('bob', 'Web'));
      const carol = await c.connect(auth('carol', 'Web'));
      const dave = await c.connect(auth('dave', 'Mac'));
      for (const device of [bob, carol, dave]) await join(device, 'hall');
      await waitFor(() => view.userIds.length === 4, 'four members');
      await emit(bob, 'presence:leave', { room: 'hall' });
      carol.socket.disconnect();
      await emit(dave, 'presence:logout', {});
      await waitFor(() => view.userIds.length === 1, 'only the watcher left');
      expect(view.count).to.equal(1);
      await waitFor(async () => (await counts('hall')).every((count) => count === 1), 'every mount counts 1');
    });

    it('one user on two mounts is one member with both devices; leaving on one keeps the member', async () => {
      const [a, b, c] = mounts as [Harness, Harness, Harness];
      const watcher = await c.connect(auth('watcher', 'Web'));
      const { view } = await join(watcher, 'team');
      const web = await a.connect(auth('u', 'Web'));
      const phone = await b.connect(auth('u', 'Android'));
      await join(web, 'team');
      await join(phone, 'team');
      await waitFor(() => view.members.get('u')?.devices.length === 2, 'u with two devices');
      expect(await counts('team')).to.deep.equal([2, 2, 2]);
      await emit(web, 'presence:leave', { room: 'team' });
      await waitFor(() => view.members.get('u')?.devices.length === 1, 'u down to the phone');
      expect(view.messages.flatMap((message) => message.left)).to.deep.equal([]);
      expect(view.members.get('u')!.devices).to.deep.equal([{ platform: 'Android', instanceId: phone.session.instanceId }]);
    });

    it('pages are the same from every mount, each member once, in join order', async () => {
      const devices: Device[] = [];
      for (let i = 0; i < 12; i++) {
        const device = await mounts[i % 3]!.connect(auth(`p${i}`, 'Web'));
        await join(device, 'paged', { i });
        devices.push(device);
      }
      const pages = await Promise.all(
        mounts.map(async (mount) => {
          const seen: string[] = [];
          let cursor: string | null = null;
          do {
            const page = await mount.presence.room('paged').members({ limit: 5, cursor });
            expect(page.members.length).to.be.at.most(5);
            expect(page.count).to.equal(12);
            seen.push(...page.members.map((member) => member.userId));
            cursor = page.nextCursor;
          } while (cursor !== null);
          return seen;
        }),
      );
      const expected = Array.from({ length: 12 }, (_, i) => `p${i}`);
      for (const seen of pages) expect(seen).to.deep.equal(expected);
    });

    it('racing joins and leaves on three mounts converge: every view equals the store, every mount counts the same', async () => {
      const users = Array.from({ length: 18 }, (_, i) => `r${i}`);
      const devices = await Promise.all(users.map((userId, i) => mounts[i % 3]!.connect(auth(userId, 'Web'))));
      const views = new Map<Device, View>();
      const inRoom = new Set<number>();
      // Each round: every device joins or leaves at random, all at once.
      for (let round = 0; round < 8; round++) {
        await Promise.all(
          devices.map(async (device, i) => {
            if (Math.random() < 0.5) {
              const { view } = await join(device, 'race', { round });
              views.set(device, view);
              inRoom.add(i);
            } else {
              await emit(device, 'presence:leave', { room: 'race' });
              views.delete(device);
              inRoom.delete(i);
            }
          }),
        );
      }
      const expected = [...inRoom].map((i) => users[i]!).sort();
      await waitFor(async () => (await counts('race')).every((count) => count === expected.length), `every mount counting ${expected.length}`, 10_000);
      await waitFor(() => [...views.values()].every((view) => view.userIds.join() === expected.join()), 'every view equal to the room', 10_000);
      for (const view of views.values()) expect(view.count).to.equal(expected.length);
      const page = await mounts[0]!.presence.room('race').members({ limit: 1000 });
      expect(page.members.map((member) => member.userId).sort()).to.deep.equal(expected);
      for (const mount of mounts) expect(mount.errors, 'nothing logged').to.deep.equal([]);
    });
    it('a member’s custom status set on its own process reaches the members on the others as an update', async () => {
      const [a, b] = mounts as [Harness, Harness, Harness];
      const watcher = await a.connect(auth('watcher', 'Web'));
      const { view } = await join(watcher, 'status');
      const bob = await b.connect(auth('bob', 'Web'));
      await join(bob, 'status');
      await waitFor(() => view.members.has('bob'), 'the watcher hears bob');
      await emit(bob, 'presence:set-status', { customStatus: 'in a call' });
      await waitFor(() => view.members.get('bob')?.customStatus === 'in a call', 'the watcher sees bob’s custom status');
      expect(view.messages.flatMap((message) => message.left)).to.deep.equal([]);
    });

    it('room-occupied, room-change and room-vacated fire once in the cluster, not once per process', async () => {
      const events: string[] = [];
      mounts.forEach((mount, i) => {
        mount.presence.on('room-occupied', ({ room }) => events.push(`${i} occupied ${room}`));
        mount.presence.on('room-vacated', ({ room }) => events.push(`${i} vacated ${room}`));
        mount.presence.on('room-change', (change) =>
          events.push(
            `${i} change ${change.room} +${change.joined.map((m) => m.userId).join()} -${change.left.join()} ~${change.updated.map((m) => m.userId).join()} ${change.count}`,
          ),
        );
      });
      const alice = await mounts[0]!.connect(auth('alice', 'Web'));
      const bob = await mounts[1]!.connect(auth('bob', 'Web'));
      // Each step waits for the store to have the last, so the writes of two processes reach it in the order the test means.
      const counted = (count: number): Promise<void> => waitFor(async () => (await mounts[2]!.presence.room('events').count()) === count, `count ${count}`);
      await join(alice, 'events');
      await counted(1);
      await join(bob, 'events');
      await counted(2);
      await emit(alice, 'presence:leave', { room: 'events' });
      await counted(1);
      await emit(bob, 'presence:leave', { room: 'events' });
      await waitFor(() => events.some((event) => event.includes('vacated')), 'vacated');
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Each process announces what its own writes changed, in order; two processes' events have no order between them.
      const of = (mount: string): string[] => events.filter((event) => event.startsWith(`${mount} `));
      expect(of('0')).to.deep.equal(['0 occupied events', '0 change events +alice - ~ 1', '0 change events + -alice ~ 1']);
      expect(of('1')).to.deep.equal(['1 change events +bob - ~ 2', '1 change events + -bob ~ 0', '1 vacated events']);
      expect(of('2')).to.deep.equal([]);
    });
    it('after Redis lost a room (an empty restart) and the subscriptions were re-made, every process writes its part again', async () => {
      const [a, b] = mounts as [Harness, Harness, Harness];
      const watcher = await a.connect(auth('watcher', 'Web'));
      const { view } = await join(watcher, 'restart');
      const bob = await b.connect(auth('bob', 'Web'));
      await join(bob, 'restart', 'by the door');
      await waitFor(() => view.members.has('bob'), 'the watcher hears bob');
      const keys = await keysMatching(client, `${prefix}{r:restart}:*`);
      expect(keys.length).to.be.greaterThan(0);
      await client.del(...keys);
      expect(await a.presence.room('restart').count()).to.equal(0);
      // What a Redis restart does to every subscriber: the connection drops and comes back.
      for (const mount of mounts) {
        const backend = (mount.presence.rooms.shared as unknown as { backend: { subscriber: { disconnect(reconnect: boolean): void } } }).backend;
        backend.subscriber.disconnect(true);
      }
      await waitFor(
        async () => (await Promise.all(mounts.map((mount) => mount.presence.room('restart').count()))).every((count) => count === 2),
        'every mount counting 2 again',
        10_000,
      );
      // The watcher may see bob leave and come back while the processes reload an emptied room: it ends with him.
      await waitFor(() => view.userIds.join() === 'bob,watcher' && view.count === 2, 'the watcher holding bob again', 10_000);
      expect(view.members.get('bob')!.meta).to.equal('by the door');
    });
    it('a process lists (for its reaper) only the rooms it has members in', async () => {
      const [a] = mounts as [Harness, Harness, Harness];
      const list = `${prefix}{o:${a.presence.engine.owner}}:rooms`;
      const alice = await a.connect(auth('alice', 'Web'));
      const bob = await a.connect(auth('bob', 'Web'));
      await join(alice, 'one');
      await join(bob, 'one');
      await join(alice, 'two');
      expect((await client.smembers(list)).sort()).to.deep.equal(['one', 'two']);
      await emit(alice, 'presence:leave', { room: 'one' });
      await emit(alice, 'presence:leave', { room: 'two' });
      await waitFor(async () => (await client.smembers(list)).join() === 'one', 'only room one listed');
      await emit(bob, 'presence:leave', { room: 'one' });
      await waitFor(async () => (await client.smembers(list)).length === 0, 'nothing listed');
      await join(bob, 'one');
      expect(await client.smembers(list)).to.deep.equal(['one']);
    });
  });
