// Several processes over one Redis: kicks, queries, subscriptions and callbacks across processes, racing logins, SIGKILL, Redis pauses and restarts.

import { expect } from 'chai';
import { Redis, type Cluster } from 'ioredis';
import { io as ioc } from 'socket.io-client';
import type { StateChangeCallbackBody, UserPresence } from '../lib/index.js';
import {
  REDIS_CLUSTER_NODES,
  REDIS_URL,
  clusterClient,
  deleteKeys,
  layoutOf,
  leaseListed,
  ownedBy,
  redisClient,
  requireCluster,
  uniquePrefix,
} from './helpers/redis.js';
import {
  callbackReceiver,
  connectDevice,
  delay,
  PrivateRedis,
  startNode,
  waitFor,
  type CallbackReceiver,
  type ClusterDevice,
  type ClusterNode,
  type ClusterNodeConfig,
} from './fixtures/cluster-harness.js';

const LEASE_TTL = 1500;
const SWEEP_INTERVAL = 200;

interface QueryStateAnswer {
  ActionStatus: string;
  QueryResult: { To_Account: string; Status: string; Detail?: { Platform: string; Status: string; InstId?: string }[] }[];
}

/** Starts `names.length` nodes over one prefix. */
async function startCluster(names: string[], config: Partial<ClusterNodeConfig> & { prefix: string }): Promise<ClusterNode[]> {
  return Promise.all(
    names.map((name) => startNode({ name, redisUrl: REDIS_URL, loginPolicy: 'single', leaseTtl: LEASE_TTL, sweepInterval: SWEEP_INTERVAL, ...config })),
  );
}

/**
 * The hooks every suite here shares: its nodes started before its cases (by `start`, which also sets up what the suite needs),
 * its devices and nodes closed after them (then `release`), and each node's output printed when a case failed.
 */
function clusterHooks(suite: {
  start: () => Promise<ClusterNode[]>;
  devices: readonly ClusterDevice[];
  release?: (nodes: readonly ClusterNode[]) => Promise<void>;
}): void {
  const held = { nodes: [] as ClusterNode[] };
  before(async function () {
    held.nodes = await suite.start();
  });
  after(async function () {
    for (const device of suite.devices) device.socket.disconnect();
    await Promise.all(held.nodes.map((node) => node.close()));
    await suite.release?.(held.nodes);
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed')
      for (const node of held.nodes) console.log(`--- ${node.name} output:\n${node.output}\n--- logs: ${JSON.stringify(node.logs)}`);
  });
}

/** A user's record as RedisStore keeps it (lib/redis/scripts.ts): sequence, and devices as [instanceId, platform, status, ...]. */
function storedUser(text: string | null): { s: number; i: string[][] } | undefined {
  if (text === null) return undefined;
  // s: the user's last sequence number, a decimal string (README "Sequence numbers").
  const record = JSON.parse(text) as { s: string | number; i: string[][] | Record<string, never> };
  return { s: Number(record.s), i: Array.isArray(record.i) ? record.i : [] };
}

/**
 * Every callback of `userId` came exactly once: from the user's first change (a Login from Offline, numbered from Redis's
 * clock) one more Seq per change, each once, up to the store's own last sequence number of the user.
 */
async function expectOneCallbackPerChange(
  admin: Redis | Cluster,
  prefix: string,
  receiver: CallbackReceiver,
  userId: string,
): Promise<StateChangeCallbackBody[]> {
  const last = storedUser(await admin.get(layoutOf(prefix).user(userId)))?.s ?? 0;
  expect(last, `${userId} changed`).to.be.greaterThan(0);
  const bodies = await waitFor(
    () => receiver.of(userId).some((body) => body.Seq === last) && receiver.of(userId),
    `the callback of ${userId} with Seq ${last}`,
  );
  expect(bodies[0]?.PreviousUserStatus, `${userId}'s first callback`).to.equal('Offline');
  const first = bodies[0]?.Seq ?? NaN;
  expect(
    bodies.map((body) => body.Seq),
    `Seqs of ${userId}'s callbacks`,
  ).to.deep.equal(Array.from({ length: last - first + 1 }, (_, i) => first + i));
  return bodies;
}

type Policy = 'single' | 'dual' | 'triple' | 'multi';
interface RacePolicy {
  name: string;
  loginPolicy: Policy;
  maxInstancesPerPlatform: number;
  maxWebInstances: number;
  /** Platforms drawn for each side of a round. */
  sides: [string[], string[]];
}

const MOBILE = ['Android', 'iPhone', 'iPad'];
const DESKTOP = ['Windows', 'Mac', 'Linux'];
const WEB = ['Web', 'MiniProgram'];
const ALL = [...MOBILE, ...DESKTOP, ...WEB];

function limitGroup(platform: string): string {
  return WEB.includes(platform) ? 'Web' : platform;
}

/** The set of platform groups among which the policy allows only one (as SPEC.md says). */
function category(policy: Policy, platform: string): string {
  switch (policy) {
    case 'single':
      return 'any';
    case 'dual':
      return WEB.includes(platform) ? 'web' : 'native';
    case 'triple':
      return WEB.includes(platform) ? 'web' : MOBILE.includes(platform) ? 'mobile' : 'desktop';
    case 'multi':
      return limitGroup(platform);
  }
}

/** What is wrong with a user's stored devices under a policy, or '' when nothing is. */
function policyViolation(policy: RacePolicy, platforms: string[]): string {
  const perGroup = new Map<string, number>();
  const groupsPerCategory = new Map<string, Set<string>>();
  for (const platform of platforms) {
    const group = limitGroup(platform);
    perGroup.set(group, (perGroup.get(group) ?? 0) + 1);
    const cat = category(policy.loginPolicy, platform);
    groupsPerCategory.set(cat, (groupsPerCategory.get(cat) ?? new Set()).add(group));
  }
  for (const [group, count] of perGroup) {
    const limit = group === 'Web' ? policy.maxWebInstances : policy.maxInstancesPerPlatform;
    if (count > limit) return `${count} devices on ${group} (limit ${limit})`;
  }
  for (const [cat, groups] of groupsPerCategory) if (groups.size > 1) return `${[...groups].join(' and ')} together (${cat})`;
  return '';
}

/** A small deterministic generator, so a failing round can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function expectAgreement(nodes: ClusterNode[], expected: Record<string, string>, what: string, timeout: number): Promise<void> {
  const userIds = Object.keys(expected);
  const want = userIds.map((userId) => `${userId}:${expected[userId]}`);
  let last: string[][] = [];
  try {
    await waitFor(
      async () => {
        last = await Promise.all(nodes.map(async (node) => (await node.query(userIds)).map((user) => `${user.userId}:${user.status}`)));
        return last.every((answer) => JSON.stringify(answer) === JSON.stringify(want));
      },
      what,
      timeout,
    );
  } catch (error) {
    const wrong = last.map((answer, i) => `${nodes[i]?.name}: ${answer.filter((entry, j) => entry !== want[j]).join(', ')}`);
    throw new Error(`${(error as Error).message}; still wrong: ${wrong.join(' | ')}`, { cause: error });
  }
}

// On a redis-server of its own: CLIENT PAUSE ALL stalls every client of a server, and other suites may share 6379.
/** The cluster cases run over one Redis and over a Redis Cluster (REDIS_CLUSTER_NODES; .ci/run starts one). */
const TARGETS: { label: string; admin: () => Redis | Cluster; config: Partial<ClusterNodeConfig>; cluster: boolean }[] = [
  { label: 'one Redis', admin: redisClient, config: {}, cluster: false },
  {
    label: 'a Redis Cluster',
    admin: clusterClient,
    config: { redisCluster: REDIS_CLUSTER_NODES.map((node) => `${node.host}:${node.port}`).join(',') },
    cluster: true,
  },
];

for (const target of TARGETS) {
  describe(`over ${target.label}`, function () {
    before(function () {
      if (target.cluster) requireCluster(this);
    });

    describe(`cluster: three processes over ${target.label}`, function () {
      this.timeout(60_000);
      const prefix = uniquePrefix('cluster3');
      let admin: Redis | Cluster;
      let receiver: CallbackReceiver;
      let nodes: ClusterNode[] = [];
      let a: ClusterNode, b: ClusterNode, c: ClusterNode;
      const devices: ClusterDevice[] = [];
      const users = new Set<string>();

      function connect(node: ClusterNode, userId: string, platform: string, extra: Record<string, unknown> = {}): Promise<ClusterDevice> {
        users.add(userId);
        return connectDevice(node.url, userId, platform, extra).then((device) => {
          devices.push(device);
          return device;
        });
      }

      clusterHooks({
        devices,
        start: async () => {
          admin = target.admin();
          receiver = await callbackReceiver();
          nodes = await startCluster(['A', 'B', 'C'], { ...target.config, prefix, callbackUrl: receiver.url });
          [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
          return nodes;
        },
        release: async () => {
          await receiver.close();
          await deleteKeys(admin, prefix);
          admin.disconnect();
        },
      });

      it('a login on one process kicks a device on another; the kicked session is refused on every process', async function () {
        const phone = await connect(a, 'kim', 'Android', { instanceId: 'phone' });
        const pc = await connect(b, 'kim', 'Windows', { instanceId: 'pc' });
        expect(pc.session.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'phone' }]);
        await waitFor(() => phone.disconnects.length > 0, 'the phone on A to be disconnected');
        expect(phone.kicks).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Windows', instanceId: 'pc' } }]);
        expect(phone.disconnects).to.deep.equal(['io server disconnect']);

        // The phone's own socket reconnects with its session, as a client resuming would: refused.
        phone.socket.auth = { token: 'tok:kim', platform: 'Android', instanceId: 'phone', sessionId: phone.session.sessionId };
        const refusal = await new Promise<{ code?: string }>((resolve) => {
          phone.socket.once('connect_error', (error: Error & { data?: { code?: string } }) => resolve(error.data ?? {}));
          phone.socket.connect();
        });
        expect(refusal.code).to.equal('SESSION_REVOKED');
        // ... and so it is behind the load balancer, on any process.
        for (const node of nodes) {
          const error = await connect(node, 'kim', 'Android', { instanceId: 'phone', sessionId: phone.session.sessionId }).catch((e: { code?: string }) => e);
          expect((error as { code?: string }).code, node.name).to.equal('SESSION_REVOKED');
        }
        expect(pc.socket.connected).to.equal(true);
        const bodies = await expectOneCallbackPerChange(admin, prefix, receiver, 'kim');
        expect(bodies.map((body) => `${body.Info.Action}/${body.Info.Reason}/${body.InstId}`)).to.deep.equal(['Login/Register/phone', 'Login/Register/pc']);
        expect(bodies[1]?.KickedDevice).to.deep.equal([{ Platform: 'Android', InstId: 'phone' }]);
      });

      it('any process answers querystate and GET /users/:userId for users connected anywhere', async function () {
        await connect(a, 'ann', 'Android', { instanceId: 'ann-phone' });
        await connect(b, 'bob', 'Web', { instanceId: 'bob-tab', version: '2.1' });
        await connect(c, 'cat', 'Mac', { instanceId: 'cat-mac' });
        const dan = await connect(c, 'dan', 'iPhone', { instanceId: 'dan-phone' });
        dan.socket.disconnect();
        await waitFor(async () => (await a.query(['dan']))[0]?.status === 'PushOnline', 'dan PushOnline');

        const expected = [
          { To_Account: 'ann', Status: 'Online', Availability: 'available', Detail: [{ Platform: 'Android', Status: 'Online', InstId: 'ann-phone' }] },
          { To_Account: 'bob', Status: 'Online', Availability: 'available', Detail: [{ Platform: 'Web', Status: 'Online', InstId: 'bob-tab' }] },
          { To_Account: 'cat', Status: 'Online', Availability: 'available', Detail: [{ Platform: 'Mac', Status: 'Online', InstId: 'cat-mac' }] },
          { To_Account: 'dan', Status: 'PushOnline', Availability: 'available', Detail: [{ Platform: 'iPhone', Status: 'PushOnline', InstId: 'dan-phone' }] },
          { To_Account: 'nobody', Status: 'Offline', Availability: 'available', Detail: [] },
        ];
        for (const node of nodes) {
          const answer = await node.http<QueryStateAnswer>('/v4/openim/querystate', {
            To_Account: ['ann', 'bob', 'cat', 'dan', 'nobody'],
            IsNeedDetail: 1,
            IsReturnInstid: 1,
          });
          expect(answer.status, node.name).to.equal(200);
          expect(answer.body.QueryResult, node.name).to.deep.equal(expected);
          const bob = await node.http<UserPresence>('/users/bob');
          expect(bob.status).to.equal(200);
          expect(bob.body).to.include({ userId: 'bob', status: 'Online', customStatus: null });
          expect(bob.body.instances).to.have.length(1);
          expect(bob.body.instances?.[0]).to.include({ instanceId: 'bob-tab', platform: 'Web', status: 'Online', version: '2.1' });
        }
      });

      it('a subscription on one process hears status changes made on another', async function () {
        const watcher = await connect(a, 'watcher', 'Web', { instanceId: 'watch-tab' });
        const answer = await watcher.socket.timeout(5000).emitWithAck('presence:subscribe', { userIds: ['sue'] });
        expect(answer).to.deep.include({
          ok: true,
          users: [{ userId: 'sue', status: 'Offline', customStatus: null, availability: 'available', idleSince: null, lastSeen: null }],
        });

        const sue = await connect(c, 'sue', 'Android', { instanceId: 'sue-phone' });
        await waitFor(() => watcher.changed.length >= 1, 'presence:changed Online on A');
        sue.socket.disconnect();
        await waitFor(() => watcher.changed.length >= 2, 'presence:changed PushOnline on A');
        const kicked = await b.http<{ kicked: unknown[] }>('/users/sue/kick', {});
        expect(kicked.body.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'sue-phone' }]);
        await waitFor(() => watcher.changed.length >= 3, 'presence:changed Offline on A');
        await delay(100);
        expect(watcher.changed).to.deep.equal([
          { userId: 'sue', status: 'Online' },
          { userId: 'sue', status: 'PushOnline' },
          { userId: 'sue', status: 'Offline' },
        ]);
      });

      it('sends exactly one callback per change in the whole cluster, from whichever process made it', async function () {
        // Traffic on every process: logins that kick across processes, closes, logouts, admin kicks.
        const platforms = ['Android', 'iPhone', 'Windows', 'Web', 'Mac', 'MiniProgram'];
        for (let round = 0; round < 3; round++) {
          const wave = await Promise.all(
            Array.from({ length: 12 }, (_, i) =>
              connect(nodes[(i + round) % 3] as ClusterNode, `cb-${i % 6}`, platforms[(i + round) % platforms.length] as string),
            ),
          );
          await delay(50);
          for (const [i, device] of wave.entries()) {
            if (!device.socket.connected) continue;
            if (i % 3 === 0) device.socket.disconnect();
            else if (i % 3 === 1) await device.socket.timeout(5000).emitWithAck('presence:logout');
          }
          await (nodes[round] as ClusterNode).http('/users/cb-5/kick', {});
        }
        for (const userId of users) await expectOneCallbackPerChange(admin, prefix, receiver, userId);
        // Nothing more arrives later (no duplicate delivered late by another process).
        const total = receiver.bodies.length;
        await delay(3 * SWEEP_INTERVAL);
        expect(receiver.bodies.length).to.equal(total);
        for (const node of nodes) expect(node.errors(), node.name).to.deep.equal([]);
      });
    });

    describe(`cluster: logins racing on two processes over ${target.label}`, function () {
      this.timeout(90_000);
      const prefix = uniquePrefix('race');
      let admin: Redis | Cluster;
      let nodes: ClusterNode[] = [];

      const policies: RacePolicy[] = [
        { name: 'single', loginPolicy: 'single', maxInstancesPerPlatform: 1, maxWebInstances: 1, sides: [ALL, ALL] },
        { name: 'dual', loginPolicy: 'dual', maxInstancesPerPlatform: 1, maxWebInstances: 1, sides: [ALL, ALL] },
        { name: 'triple', loginPolicy: 'triple', maxInstancesPerPlatform: 1, maxWebInstances: 1, sides: [ALL, ALL] },
        {
          name: 'multi-2',
          loginPolicy: 'multi',
          maxInstancesPerPlatform: 2,
          maxWebInstances: 2,
          sides: [
            ['Android', 'Web', 'MiniProgram'],
            ['Android', 'Web', 'Mac'],
          ],
        },
      ];

      clusterHooks({
        devices: [],
        start: async () => {
          admin = target.admin();
          nodes = await startCluster(['A', 'B'], { ...target.config, prefix, loginPolicy: 'single' });
          for (const policy of policies) {
            for (const node of nodes) {
              await node.addEngine({
                name: policy.name,
                prefix: `${prefix}${policy.name}:`,
                loginPolicy: policy.loginPolicy,
                maxInstancesPerPlatform: policy.maxInstancesPerPlatform,
                maxWebInstances: policy.maxWebInstances,
              });
            }
          }
          return nodes;
        },
        release: async () => {
          await deleteKeys(admin, prefix);
          admin.disconnect();
        },
      });

      /** The platforms of each user's stored devices, read straight from Redis. */
      async function storedPlatforms(keyPrefix: string, userIds: string[]): Promise<string[][]> {
        // One GET each: on a cluster the users sit in many slots.
        const texts = await Promise.all(userIds.map((userId) => admin.get(layoutOf(keyPrefix).user(userId))));
        return texts.map((text) => storedUser(text)?.i.map((instance) => instance[1] as string) ?? []);
      }

      it('1,000 rounds through the engines of two processes, every policy: never more devices than the policy allows, and no ghost connection', async function () {
        const ROUNDS_PER_POLICY = 250;
        const BATCH = 50;
        const [a, b] = nodes as [ClusterNode, ClusterNode];
        const next = random(5);
        let rounds = 0;
        let kicks = 0;
        for (const policy of policies) {
          const users: string[] = [];
          for (let start = 0; start < ROUNDS_PER_POLICY; start += BATCH) {
            // Each round is one user; each side logs in one to three devices of it, all at once.
            const sides: { userId: string; platform: string; instanceId: string }[][] = [[], []];
            const batchUsers: string[] = [];
            for (let round = start; round < start + BATCH; round++) {
              const userId = `${policy.name}-${round}`;
              batchUsers.push(userId);
              for (const side of [0, 1] as const) {
                const count = 1 + Math.floor(next() * 3);
                const choices = policy.sides[side];
                for (let i = 0; i < count; i++) {
                  sides[side]!.push({ userId, platform: choices[Math.floor(next() * choices.length)] as string, instanceId: `${side}-${i}` });
                }
              }
            }
            const [fromA, fromB] = await Promise.all([a.login(sides[0]!, policy.name), b.login(sides[1]!, policy.name)]);
            for (const result of [...fromA, ...fromB]) {
              expect(result.error, 'a racing login was refused').to.equal(undefined);
              kicks += result.kicked?.length ?? 0;
            }
            const stored = await storedPlatforms(`${prefix}${policy.name}:`, batchUsers);
            for (const [i, platforms] of stored.entries()) {
              expect(platforms.length, `${batchUsers[i]} has no device left`).to.be.greaterThan(0);
              expect(policyViolation(policy, platforms), `${batchUsers[i]}: [${platforms.join(', ')}]`).to.equal('');
            }
            users.push(...batchUsers);
            rounds += BATCH;
          }
          // Every kicked login was told (on whichever process it lives): the open connections are exactly the stored devices.
          const stored = await storedPlatforms(`${prefix}${policy.name}:`, users);
          const expected: Record<string, number> = {};
          for (const [i, platforms] of stored.entries()) expected[users[i] as string] = platforms.length;
          await waitFor(async () => {
            const [openA, openB] = await Promise.all([
              a.call<Record<string, number>>('open', { engine: policy.name }),
              b.call<Record<string, number>>('open', { engine: policy.name }),
            ]);
            const open: Record<string, number> = { ...openA };
            for (const [userId, count] of Object.entries(openB)) open[userId] = (open[userId] ?? 0) + count;
            return JSON.stringify(Object.entries(open).sort()) === JSON.stringify(Object.entries(expected).sort());
          }, `the open connections of ${policy.name} to match the stored devices`);
        }
        expect(rounds).to.equal(1000);
        expect(kicks, 'the rounds did conflict').to.be.greaterThan(1000);
        for (const node of nodes) expect(node.errors(), node.name).to.deep.equal([]);
      });

      it('100 rounds with real sockets on two processes: one device stays, the other is kicked by it, and the store agrees', async function () {
        const [a, b] = nodes as [ClusterNode, ClusterNode];
        const BATCH = 20;
        const pairs: [string, string][] = [
          ['Android', 'Windows'],
          ['Web', 'iPhone'],
          ['Mac', 'MiniProgram'],
          ['iPad', 'Android'],
        ];
        const opened: ClusterDevice[] = [];
        try {
          for (let start = 0; start < 100; start += BATCH) {
            const rounds = await Promise.all(
              Array.from({ length: BATCH }, async (_, i) => {
                const round = start + i;
                const userId = `sock-${round}`;
                const [first, second] = pairs[round % pairs.length] as [string, string];
                const devices = await Promise.all([
                  connectDevice(a.url, userId, first, { instanceId: 'on-a' }),
                  connectDevice(b.url, userId, second, { instanceId: 'on-b' }),
                ]);
                opened.push(...devices);
                return { round, userId, devices };
              }),
            );
            for (const { round, userId, devices } of rounds) {
              await waitFor(() => devices.some((device) => device.kicks.length > 0 && device.disconnects.length > 0), `${userId}: one device kicked`);
              const [loser, winner] = devices[0]!.kicks.length > 0 ? [devices[0]!, devices[1]!] : [devices[1]!, devices[0]!];
              expect(loser.kicks, userId).to.deep.equal([
                { reason: 'LoginElsewhere', by: { platform: winner.session.platform, instanceId: winner.session.instanceId } },
              ]);
              expect(winner.kicks, userId).to.deep.equal([]);
              expect(winner.socket.connected, userId).to.equal(true);
              // The later login (in Redis's order) kicked the earlier one, which kicked nobody.
              expect(winner.session.kicked, userId).to.deep.equal([{ platform: loser.session.platform, instanceId: loser.session.instanceId }]);
              expect(loser.session.kicked, userId).to.deep.equal([]);
              const [user] = await (round % 2 === 0 ? a : b).query([userId]);
              expect(
                user?.instances?.map((instance) => `${instance.instanceId}/${instance.status}`),
                userId,
              ).to.deep.equal([`${winner.session.instanceId}/Online`]);
            }
          }
        } finally {
          for (const device of opened) device.socket.disconnect();
        }
      });
    });

    describe(`cluster: a process killed with SIGKILL over ${target.label}`, function () {
      this.timeout(60_000);
      const prefix = uniquePrefix('sigkill');
      let admin: Redis | Cluster;
      let receiver: CallbackReceiver;
      let nodes: ClusterNode[] = [];
      const devices: ClusterDevice[] = [];

      clusterHooks({
        devices,
        start: async () => {
          admin = target.admin();
          receiver = await callbackReceiver();
          return (nodes = await startCluster(['A', 'B', 'C'], { ...target.config, prefix, callbackUrl: receiver.url }));
        },
        release: async () => {
          await receiver.close();
          await deleteKeys(admin, prefix);
          admin.disconnect();
        },
      });

      it('has its Online devices closed by another process within the lease bound, once each, and leaves no ghost Online', async function () {
        const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
        // On the doomed process: every class of device; on A, devices that must not be touched.
        const doomed: [string, string][] = [
          ['k-android', 'Android'],
          ['k-iphone', 'iPhone'],
          ['k-windows', 'Windows'],
          ['k-web', 'Web'],
          ['k-mini', 'MiniProgram'],
          ['k-linux', 'Linux'],
        ];
        for (const [userId, platform] of doomed) devices.push(await connectDevice(c.url, userId, platform, { instanceId: `${userId}-dev` }));
        const survivors = [await connectDevice(a.url, 's-android', 'Android'), await connectDevice(a.url, 's-web', 'Web')];
        devices.push(...survivors);
        const userIds = [...doomed.map(([userId]) => userId), 's-android', 's-web'];
        const expected = [
          'k-android:PushOnline',
          'k-iphone:PushOnline',
          'k-windows:Offline',
          'k-web:Offline',
          'k-mini:Offline',
          'k-linux:Offline',
          's-android:Online',
          's-web:Online',
        ];
        const statuses = async (node: ClusterNode) => (await node.query(userIds)).map((user) => `${user.userId}:${user.status}`);
        expect((await statuses(a)).slice(0, 6).every((entry) => entry.endsWith(':Online'))).to.equal(true);

        const killedAt = Date.now();
        await c.kill('SIGKILL');
        await waitFor(async () => JSON.stringify(await statuses(a)) === JSON.stringify(expected), 'the dead process to be reaped', 10_000);
        const elapsed = Date.now() - killedAt;
        // The lease was renewed at most a third of it before the kill, so it ran out between 2/3 and all of leaseTtl after it;
        // the next sweep follows within sweepInterval. The margin is for a loaded CI machine.
        expect(elapsed, 'ms from SIGKILL to the devices closed').to.be.at.most(LEASE_TTL + SWEEP_INTERVAL + 1000);
        expect(elapsed, 'ms from SIGKILL to the devices closed (not before the lease ran out)').to.be.at.least((LEASE_TTL * 2) / 3 - 100);
        console.log(`      (devices of the killed process closed ${elapsed} ms after SIGKILL; bound ${LEASE_TTL + SWEEP_INTERVAL} ms)`);
        expect(await statuses(b)).to.deep.equal(expected);

        // One Disconnect/LinkClose per device of the dead process, after its Login; no more later (each process sweeps).
        await delay(5 * SWEEP_INTERVAL);
        for (const [userId] of doomed) {
          const bodies = await expectOneCallbackPerChange(admin, prefix, receiver, userId);
          expect(
            bodies.map((body) => `${body.Info.Action}/${body.Info.Reason}/${body.Status}`),
            userId,
          ).to.deep.equal(['Login/Register/Online', `Disconnect/LinkClose/${userId === 'k-android' || userId === 'k-iphone' ? 'PushOnline' : 'Offline'}`]);
        }
        // No ghost: the cluster counts exactly the live devices as Online, and the dead process's bookkeeping is gone.
        const stats = await a.http<{ instances: { Online: number; PushOnline: number } }>('/stats');
        expect(stats.body.instances).to.deep.equal({ Online: 2, PushOnline: 2 });
        expect((await leaseListed(admin, prefix, c.owner)) ? 1 : 0).to.equal(0);
        expect(await ownedBy(admin, prefix, c.owner)).to.deep.equal([]);
        for (const device of survivors) expect(device.socket.connected).to.equal(true);
        for (const node of [a, b]) expect(node.errors(), node.name).to.deep.equal([]);
      });
    });

    /** What every process must answer once the cluster has settled: `userId:status`, in order. */
  });
}

describe('cluster: Redis paused mid-traffic (CLIENT PAUSE ALL)', function () {
  this.timeout(60_000);
  const prefix = 'pause:';
  const PAUSE = 3000;
  let redis: PrivateRedis;
  let admin: Redis;
  let receiver: CallbackReceiver;
  let nodes: ClusterNode[] = [];
  const devices: ClusterDevice[] = [];

  clusterHooks({
    devices,
    start: async () => {
      redis = await PrivateRedis.start();
      admin = new Redis(redis.url);
      receiver = await callbackReceiver();
      // Logins wait out the pause here (storeTimeout above it): what is checked is the reconvergence, not the refusal.
      const config = { prefix, loginPolicy: 'multi', callbackUrl: receiver.url, redisUrl: redis.url, storeTimeout: PAUSE + 10_000 } as const;
      return (nodes = await startCluster(['A', 'B', 'C'], config));
    },
    release: async () => {
      await receiver.close();
      admin.disconnect();
      await redis.kill();
    },
  });

  it(`reconverges to what the sockets did during a ${PAUSE} ms pause (longer than the lease), on every process`, async function () {
    const expected: Record<string, string> = {};
    const connect = async (node: ClusterNode, userId: string, platform: string): Promise<ClusterDevice> => {
      const device = await connectDevice(node.url, userId, platform, { instanceId: `${userId}-dev` }, {}, PAUSE + 10_000);
      devices.push(device);
      return device;
    };
    const staying: Promise<ClusterDevice>[] = [];
    const closing: ClusterDevice[] = [];
    for (const [i, node] of nodes.entries()) {
      for (const platform of ['Android', 'Windows', 'Web']) {
        staying.push(connect(node, `stay-${i}-${platform}`, platform));
        expected[`stay-${i}-${platform}`] = 'Online';
        closing.push(await connect(node, `close-${i}-${platform}`, platform));
        expected[`close-${i}-${platform}`] = platform === 'Android' ? 'PushOnline' : 'Offline';
      }
    }
    await Promise.all(staying);

    const pauser = new Redis(redis.url);
    try {
      expect(await pauser.call('CLIENT', 'PAUSE', String(PAUSE), 'ALL')).to.equal('OK');
      const pausedAt = Date.now();
      // While Redis answers nothing: devices close, new ones log in, and some leave before their login is answered.
      for (const device of closing) device.socket.disconnect();
      const arriving: Promise<ClusterDevice>[] = [];
      for (const [i, node] of nodes.entries()) {
        for (const platform of ['iPhone', 'Mac', 'MiniProgram']) {
          arriving.push(connect(node, `new-${i}-${platform}`, platform));
          expected[`new-${i}-${platform}`] = 'Online';
        }
        // This one leaves while its login still waits on Redis: it must not stay Online.
        const leaving = ioc(node.url, { forceNew: true, transports: ['websocket'], reconnection: false, auth: { token: `tok:flash-${i}`, platform: 'Web' } });
        expected[`flash-${i}`] = 'Offline';
        await waitFor(() => leaving.io.engine?.readyState === 'open', 'the flash socket to open');
        await delay(100);
        leaving.disconnect();
      }
      await Promise.all(arriving);
      expect(Date.now() - pausedAt, 'logins waited for the pause to end').to.be.at.least(PAUSE - 300);
    } finally {
      pauser.disconnect();
    }
    await expectAgreement(nodes, expected, 'every process to agree with the sockets after the pause', 10_000);
    // ... and still after a few more lease periods (no late reaping of live processes).
    await delay(2 * LEASE_TTL);
    await expectAgreement(nodes, expected, 'every process to still agree', 1000);
    // Nothing was lost or doubled on the way: one callback per change, for every user.
    for (const userId of Object.keys(expected)) await expectOneCallbackPerChange(admin, prefix, receiver, userId);
    for (const node of nodes) expect(node.errors(), node.name).to.deep.equal([]);
  });
});

describe('cluster: Redis restarted (empty) mid-traffic', function () {
  this.timeout(60_000);
  let redis: PrivateRedis;
  let nodes: ClusterNode[] = [];
  const devices: ClusterDevice[] = [];

  clusterHooks({
    devices,
    start: async () => {
      redis = await PrivateRedis.start();
      // A login waits for Redis up to leaseTtl: 3 s leaves a loaded machine time to restart it.
      return (nodes = await startCluster(['A', 'B', 'C'], { redisUrl: redis.url, prefix: 'restart:', loginPolicy: 'multi', leaseTtl: 3000 }));
    },
    release: () => redis.kill(),
  });

  /** Logs a device in, trying again while the server refuses it (as an app does on SERVER_ERROR). */
  async function connectPersistently(node: ClusterNode, userId: string, platform: string, timeout = 20_000): Promise<ClusterDevice> {
    const deadline = Date.now() + timeout;
    for (;;) {
      try {
        const device = await connectDevice(node.url, userId, platform, { instanceId: `${userId}-dev` }, {}, timeout);
        devices.push(device);
        return device;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await delay(200);
      }
    }
  }

  it('every process re-asserts its live devices and agrees again; devices closed meanwhile are not Online; one error logged per episode', async function () {
    const expected: Record<string, string> = {};
    const closing: ClusterDevice[] = [];
    for (const [i, node] of nodes.entries()) {
      for (const platform of ['Android', 'Windows', 'Web']) {
        await connectPersistently(node, `stay-${i}-${platform}`, platform);
        expected[`stay-${i}-${platform}`] = 'Online';
        closing.push(await connectPersistently(node, `close-${i}-${platform}`, platform));
        expected[`close-${i}-${platform}`] = 'Online';
      }
    }
    await expectAgreement(nodes, expected, 'the cluster to see every device', 5000);

    for (let episode = 1; episode <= 2; episode++) {
      await redis.kill();
      await waitFor(() => nodes.every((node) => node.errors().length >= episode), `every process to notice the outage (episode ${episode})`);
      // Mid-outage: devices close, new ones try to log in, and queries are refused (never answered from a stale copy).
      for (const device of closing.splice(0)) {
        device.socket.disconnect();
        // Its PushOnline state, like everything else, goes with the empty Redis: it is gone, and above all not Online.
        expected[device.session.userId] = 'Offline';
      }
      const arriving: Promise<ClusterDevice>[] = [];
      for (const [i, node] of nodes.entries()) {
        for (const platform of ['iPhone', 'Mac', 'MiniProgram']) {
          arriving.push(connectPersistently(node, `new-${episode}-${i}-${platform}`, platform));
          expected[`new-${episode}-${i}-${platform}`] = 'Online';
        }
        const answer = await node.http<UserPresence>('/users/stay-0-Web');
        expect(answer.status, `${node.name} refuses during the outage`).to.equal(503);
      }
      await delay(300);
      await redis.start();
      await Promise.all(arriving);
      await expectAgreement(nodes, expected, `every process to agree with the sockets after restart ${episode}`, 10_000);
      for (const node of nodes) {
        expect(node.alive, `${node.name} is alive`).to.equal(true);
        expect(node.errors().length, `${node.name} logged one error per episode: ${JSON.stringify(node.errors())}`).to.equal(episode);
      }
    }
    // Stable afterwards: no late reaping of live processes, no device coming back Online.
    await delay(2 * LEASE_TTL);
    await expectAgreement(nodes, expected, 'every process to still agree', 1000);
  });
});

describe('cluster: a process frozen past its lease (SIGSTOP, then SIGCONT)', function () {
  this.timeout(60_000);
  const prefix = uniquePrefix('frozen');
  let admin: Redis;
  let receiver: CallbackReceiver;
  let nodes: ClusterNode[] = [];
  const devices: ClusterDevice[] = [];

  after(function () {
    // Before the shared after hook closes the nodes: a node still frozen could not close.
    const frozen = nodes[1];
    if (frozen?.alive) frozen.child.kill('SIGCONT');
  });
  clusterHooks({
    devices,
    start: async () => {
      admin = redisClient();
      receiver = await callbackReceiver();
      return (nodes = await startCluster(['A', 'B'], { prefix, loginPolicy: 'multi', callbackUrl: receiver.url }));
    },
    release: async () => {
      await receiver.close();
      await deleteKeys(admin, prefix);
      admin.disconnect();
    },
  });

  it('is reaped by the others while frozen, then re-asserts its live devices when it wakes', async function () {
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    for (const platform of ['Android', 'Web']) devices.push(await connectDevice(b.url, `z-${platform}`, platform, { instanceId: `z-${platform}-dev` }));
    const online = { 'z-Android': 'Online', 'z-Web': 'Online' };
    await expectAgreement(nodes, online, 'both devices Online', 3000);

    b.child.kill('SIGSTOP');
    try {
      // Its sockets stay connected (a few seconds is far below the transport's ping timeout), but its lease runs out.
      await expectAgreement([a], { 'z-Android': 'PushOnline', 'z-Web': 'Offline' }, 'A to reap the frozen process', LEASE_TTL + SWEEP_INTERVAL + 3000);
    } finally {
      b.child.kill('SIGCONT');
    }
    await expectAgreement(nodes, online, 'the woken process to re-assert its live devices', LEASE_TTL + 3000);
    for (const device of devices) expect(device.socket.connected).to.equal(true);
    for (const userId of Object.keys(online)) {
      const bodies = await expectOneCallbackPerChange(admin, prefix, receiver, userId);
      expect(bodies.map((body) => `${body.Info.Action}/${body.Info.Reason}/${body.Status}`)).to.deep.equal([
        'Login/Register/Online',
        `Disconnect/LinkClose/${userId === 'z-Android' ? 'PushOnline' : 'Offline'}`,
        'Login/Register/Online',
      ]);
    }
    for (const node of nodes) expect(node.errors(), node.name).to.deep.equal([]);
    expect(b.logs.map((entry) => entry.message).filter((message) => message.includes('lease ran out'))).to.have.length(1);
  });
});
