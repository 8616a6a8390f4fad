// Tabs of one device on two processes (README: "Several tabs of one device ... share one instance, which goes when its last tab
// does"), and a logout on one process reaching the device's connections on the others, even a resume racing it.

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createPresence, type Connection, type EndNotice, type Presence, type PresenceChange, type PresenceOptions } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { bucketOf } from '../lib/redis/layout.js';
import { REDIS_URL, deleteKeys, layoutOf, leaseListed, ownedBy, redisClient, uniquePrefix } from './helpers/redis.js';
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
} from './fixtures/cluster-harness.js';

const LEASE_TTL = 1500;

/** One process: a presence over its own RedisStore, its changes, and what each connection was told when the server ended it. */
interface Proc {
  name: string;
  presence: Presence;
  client: Redis;
  changes: PresenceChange[];
  errors: string[];
  connect(
    userId: string,
    platform: string,
    instanceId: string,
    sessionId?: string,
  ): Promise<{ connection: Connection; sessionId: string; resumed: boolean; told: EndNotice[] }>;
}

/** The device records of a user as the scripts keep them (lib/redis/scripts.ts): [instanceId, platform, status, ..., owner(s), version]. */
async function rawDevices(admin: Redis, prefix: string, userId: string): Promise<unknown[][]> {
  const text = await admin.get(layoutOf(prefix).user(userId));
  if (text === null) return [];
  const record = JSON.parse(text) as { i: unknown[][] | Record<string, never> };
  return Array.isArray(record.i) ? record.i : [];
}

describe('Redis: tabs of one device on two processes', function () {
  this.timeout(30_000);
  let prefix: string;
  let admin: Redis;
  let redisUrl = REDIS_URL;
  const procs: Proc[] = [];

  /** Waits until `count` stores listen on the ended channel. */
  async function subscribed(count: number): Promise<void> {
    await waitFor(
      async () => ((await admin.pubsub('NUMSUB', layoutOf(prefix).endedChannel(0))) as [string, number])[1] >= count,
      'the stores to subscribe',
      3000,
    );
  }

  function open(name: string, options: Partial<PresenceOptions> = {}): Proc {
    const client = new Redis(redisUrl, { retryStrategy: () => 50 });
    client.on('error', () => {}); // the store reports an outage itself; this one outlives the store when Redis is killed first
    const store = new RedisStore({ client, prefix, leaseTtl: LEASE_TTL, sweepInterval: 100 });
    const errors: string[] = [];
    const presence = createPresence({
      loginPolicy: 'multi',
      store,
      logger: { warn: () => {}, error: (message: string) => errors.push(message) },
      ...options,
    });
    const changes: PresenceChange[] = [];
    presence.on('change', (change) => changes.push(change));
    const proc: Proc = {
      name,
      presence,
      client,
      changes,
      errors,
      async connect(userId, platform, instanceId, sessionId) {
        const told: EndNotice[] = [];
        const result = await presence.engine.connect({ userId, platform, instanceId, sessionId }, (notice) => told.push(notice));
        return { connection: result.connection, sessionId: result.connection.sessionId, resumed: result.resumed, told };
      },
    };
    procs.push(proc);
    return proc;
  }

  async function status(userId: string): Promise<string> {
    const [user] = await (procs[0] as Proc).presence.query([userId]);
    return `${user?.status}:${(user?.instances ?? []).map((instance) => `${instance.instanceId}/${instance.status}`).join(',')}`;
  }

  /** Every change of the user on every process, as `action/reason/userStatus`. */
  function changesOf(userId: string): string[] {
    return procs
      .flatMap((proc) => proc.changes)
      .filter((change) => change.userId === userId)
      .sort((a, b) => a.seq - b.seq)
      .map((change) => `${change.action}/${change.reason}/${change.userStatus}`);
  }

  beforeEach(function () {
    prefix = uniquePrefix('tabs');
    redisUrl = REDIS_URL;
    admin = redisClient();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') for (const proc of procs) console.log(`--- ${proc.name} errors: ${JSON.stringify(proc.errors)}`);
    for (const proc of procs.splice(0)) {
      await proc.presence.close();
      proc.client.disconnect();
    }
    await deleteKeys(admin, prefix).catch(() => undefined);
    admin.disconnect();
  });

  for (const platform of ['Windows', 'Android'] as const) {
    for (const first of ['older', 'newer'] as const) {
      it(`a ${platform} with a tab on each process stays Online until the last tab closes (the ${first} first), then changes once`, async function () {
        const a = open('A');
        const b = open('B');
        const older = await a.connect('u', platform, 'dev');
        const newer = await b.connect('u', platform, 'dev', older.sessionId);
        expect(newer.resumed).to.equal(true);
        expect(newer.sessionId).to.equal(older.sessionId);
        const [closeFirst, closeLast] = first === 'older' ? [older, newer] : [newer, older];
        const [procFirst, procLast] = first === 'older' ? [a, b] : [b, a];
        procFirst.presence.engine.disconnect(closeFirst.connection, 'closed');
        await delay(200);
        expect(await status('u'), 'after the first tab closed').to.equal('Online:dev/Online');
        expect(changesOf('u')).to.deep.equal(['Login/Register/Online']);
        expect(procLast.presence.engine.liveInstances).to.equal(1);
        procLast.presence.engine.disconnect(closeLast.connection, 'closed');
        const after = platform === 'Android' ? 'PushOnline:dev/PushOnline' : 'Offline:';
        await waitFor(async () => (await status('u')) === after, `u ${after}`);
        await delay(100);
        expect(changesOf('u')).to.deep.equal(['Login/Register/Online', `Disconnect/LinkClose/${platform === 'Android' ? 'PushOnline' : 'Offline'}`]);
        const [user] = await a.presence.query(['u']);
        expect(user?.lastSeen, 'last seen').to.be.a('string');
      });
    }
  }

  it('keeps one owner as a plain string (the format older versions wrote), a list only while several processes hold the device', async function () {
    const a = open('A');
    const b = open('B');
    const tab1 = await a.connect('u', 'Web', 'w');
    const ownerA = a.presence.engine.owner;
    const ownerB = b.presence.engine.owner;
    expect((await rawDevices(admin, prefix, 'u'))[0]?.[6]).to.equal(ownerA);
    const tab2 = await b.connect('u', 'Web', 'w', tab1.sessionId);
    expect((await rawDevices(admin, prefix, 'u'))[0]?.[6]).to.have.members([ownerA, ownerB]);
    a.presence.engine.disconnect(tab1.connection, 'closed');
    await waitFor(async () => (await rawDevices(admin, prefix, 'u'))[0]?.[6] === ownerB, 'B the only holder');
    expect((await ownedBy(admin, prefix, ownerA)).some((d) => JSON.stringify(d) === JSON.stringify(['u', 'w', tab1.sessionId]))).to.equal(false);
    expect((await ownedBy(admin, prefix, ownerB)).some((d) => JSON.stringify(d) === JSON.stringify(['u', 'w', tab1.sessionId]))).to.equal(true);
    b.presence.engine.disconnect(tab2.connection, 'closed');
    await waitFor(async () => (await status('u')) === 'Offline:', 'u Offline');
  });

  it('reads a record an older version wrote (one owner string) and lets a second process join and leave it', async function () {
    const a = open('A');
    const b = open('B');
    const ownerA = a.presence.engine.owner;
    // What the previous scripts wrote for a Windows held by A; A holds it live.
    const tab1 = await a.connect('u', 'Windows', 'pc');
    const sid = tab1.sessionId;
    const text = (await admin.get(layoutOf(prefix).user('u'))) as string;
    expect(JSON.parse(text).i[0]).to.deep.equal(['pc', 'Windows', 'Online', JSON.parse(text).i[0][3], 1, sid, ownerA, '']);
    const tab2 = await b.connect('u', 'Windows', 'pc', sid);
    expect(tab2.resumed).to.equal(true);
    b.presence.engine.disconnect(tab2.connection, 'closed');
    await delay(150);
    expect(await status('u')).to.equal('Online:pc/Online');
    a.presence.engine.disconnect(tab1.connection, 'closed');
    await waitFor(async () => (await status('u')) === 'Offline:', 'u Offline');
    expect(changesOf('u')).to.deep.equal(['Login/Register/Online', 'Disconnect/LinkClose/Offline']);
  });

  it('a tab that times out on one process leaves the device Online while the other process hears its tab; the last timeout ends it once', async function () {
    const options = { heartbeatTimeout: { desktop: '600ms' } };
    const a = open('A', options);
    const b = open('B', options);
    const tab1 = await a.connect('u', 'Mac', 'mac');
    const tab2 = await b.connect('u', 'Mac', 'mac', tab1.sessionId);
    // Only B's tab talks.
    const beat = setInterval(() => b.presence.engine.heartbeat(tab2.connection), 100);
    try {
      await waitFor(() => tab1.told.length > 0, "A's tab timed out", 3000);
      expect(tab1.told).to.deep.equal([{ reason: 'TimeOut' }]);
      await delay(300);
      expect(await status('u')).to.equal('Online:mac/Online');
      expect(tab2.connection.open).to.equal(true);
      expect(changesOf('u')).to.deep.equal(['Login/Register/Online']);
    } finally {
      clearInterval(beat);
    }
    await waitFor(() => tab2.told.length > 0, "B's tab timed out", 3000);
    await waitFor(async () => (await status('u')) === 'Offline:', 'u Offline');
    await delay(100);
    expect(changesOf('u')).to.deep.equal(['Login/Register/Online', 'Disconnect/TimeOut/Offline']);
  });

  it('a process that dies holding one tab is reaped without ending the device another process holds', async function () {
    const a = open('A', { handoverGrace: '300ms' });
    const b = open('B');
    const tab1 = await a.connect('u', 'Linux', 'lx');
    const tab2 = await b.connect('u', 'Linux', 'lx', tab1.sessionId);
    // A goes away (its lease given up and handed over: B reaps it at its first sweep after the handover).
    await a.presence.close();
    await waitFor(async () => ((await leaseListed(admin, prefix, a.presence.engine.owner)) ? 1 : 0) === 0, 'A reaped');
    expect(await status('u')).to.equal('Online:lx/Online');
    expect(tab2.connection.open).to.equal(true);
    expect((await rawDevices(admin, prefix, 'u'))[0]?.[6]).to.equal(b.presence.engine.owner);
    b.presence.engine.disconnect(tab2.connection, 'closed');
    await waitFor(async () => (await status('u')) === 'Offline:', 'u Offline');
  });

  it("a logout on one process ends the device's tab on another", async function () {
    const a = open('A');
    const b = open('B');
    const tab1 = await a.connect('u', 'Web', 'w');
    const tab2 = await b.connect('u', 'Web', 'w', tab1.sessionId);
    expect(tab2.resumed).to.equal(true);
    // A process hears ends only once its subscription is in place (one made at start-up is known to
    // miss what is published before that; README).
    await subscribed(2);
    await a.presence.engine.logout(tab1.connection);
    await waitFor(() => tab2.told.length > 0, "B's tab told", 3000);
    expect(tab2.told).to.deep.equal([{ reason: 'Logout' }]);
    expect(tab2.connection.open).to.equal(false);
    expect(b.presence.engine.liveInstances).to.equal(0);
    expect(await status('u')).to.equal('Offline:');
    const refused = await b.connect('u', 'Web', 'w', tab1.sessionId).catch((error: { code?: string }) => error.code);
    expect(refused).to.equal('SESSION_REVOKED');
    expect(changesOf('u')).to.deep.equal(['Login/Register/Online', 'Logout/Unregister/Offline']);
  });

  it("publishes a logout's end to the device's other holders only, not to the process that made it (its engine ended it there)", async function () {
    const a = open('A');
    const b = open('B');
    const shared = await a.connect('u', 'Web', 'shared');
    const sharedOnB = await b.connect('u', 'Web', 'shared', shared.sessionId);
    expect(sharedOnB.resumed).to.equal(true);
    // Another device of the user, held by A alone (a Mac: the Web tab stays within the policy).
    const alone = await a.connect('u', 'Mac', 'alone');
    const layout = layoutOf(prefix);
    const bucket = bucketOf('u');
    const channels = {
      [layout.endedChannel(bucket, a.presence.engine.owner)]: 'A',
      [layout.endedChannel(bucket, b.presence.engine.owner)]: 'B',
      [layout.endedChannel(bucket)]: 'all',
    };
    const listener = redisClient();
    const heard: string[] = [];
    listener.on('message', (channel: string, message: string) => heard.push(`${channels[channel]} ${(JSON.parse(message) as { sid: string }).sid}`));
    try {
      await listener.subscribe(...Object.keys(channels));
      await a.presence.engine.logout(alone.connection);
      await a.presence.engine.logout(shared.connection);
      await waitFor(() => heard.length > 0, "B's channel told", 3000);
      await delay(100);
      expect(heard).to.deep.equal([`B ${shared.sessionId}`]);
      expect(a.presence.engine.liveInstances).to.equal(0);
      await waitFor(() => sharedOnB.told.length > 0, "B's tab told", 3000);
      expect(sharedOnB.told).to.deep.equal([{ reason: 'Logout' }]);
    } finally {
      listener.disconnect();
    }
  });

  it('a resume racing a logout on another process is refused or ended right after, never left open (50 rounds)', async function () {
    const a = open('A');
    const b = open('B');
    const outcomes = { refused: 0, ended: 0 };
    // A process hears ends only once its subscription is in place (README); round 0 came before it on a loaded machine.
    await subscribed(2);
    for (let round = 0; round < 50; round++) {
      const userId = `r${round}`;
      const held = await a.connect(userId, 'Windows', 'pc');
      const [resume] = await Promise.all([
        b.connect(userId, 'Windows', 'pc', held.sessionId).catch((error: { code?: string }) => error.code ?? String(error)),
        // A turn of the event loop later or not: both orders must come out right.
        (round % 2 === 0 ? Promise.resolve() : delay(1)).then(() => a.presence.engine.logout(held.connection)),
      ]);
      if (typeof resume === 'string') {
        expect(resume, `round ${round}`).to.equal('SESSION_REVOKED');
        outcomes.refused++;
      } else {
        await waitFor(() => !resume.connection.open, `round ${round}: the resumed connection ended`, 3000);
        expect(resume.told, `round ${round}`).to.deep.equal([{ reason: 'Logout' }]);
        outcomes.ended++;
      }
      expect(await status(userId), `round ${round}`).to.equal('Offline:');
    }
    expect(b.presence.engine.liveInstances).to.equal(0);
    expect(outcomes.refused + outcomes.ended).to.equal(50);
    console.log(`      (${outcomes.refused} resumes refused SESSION_REVOKED, ${outcomes.ended} resumed then ended)`);
  });

  describe('with a Redis of its own, restarted empty', function () {
    let redis: PrivateRedis;
    beforeEach(async function () {
      redis = await PrivateRedis.start();
      redisUrl = redis.url;
      admin.disconnect();
      admin = new Redis(redis.url, { retryStrategy: () => 50 });
      admin.on('error', () => {});
    });
    afterEach(async function () {
      await redis.kill();
    });

    it('both processes re-assert the tabs they hold; the device then goes with its last tab', async function () {
      const a = open('A');
      const b = open('B');
      const tab1 = await a.connect('u', 'Windows', 'pc');
      const tab2 = await b.connect('u', 'Windows', 'pc', tab1.sessionId);
      await redis.kill();
      await delay(200);
      await redis.start();
      await waitFor(async () => {
        const owners = (await rawDevices(admin, prefix, 'u').catch(() => []))[0]?.[6];
        return Array.isArray(owners) && owners.length === 2;
      }, 'both processes re-asserted the device');
      a.presence.engine.disconnect(tab1.connection, 'closed');
      await delay(200);
      expect(await status('u')).to.equal('Online:pc/Online');
      b.presence.engine.disconnect(tab2.connection, 'closed');
      await waitFor(async () => (await status('u')) === 'Offline:', 'u Offline');
    });
  });
});

describe('cluster: tabs of one device on two processes (real sockets)', function () {
  this.timeout(60_000);
  const prefix = uniquePrefix('tabs-cluster');
  let admin: Redis;
  let receiver: CallbackReceiver;
  let nodes: ClusterNode[] = [];
  let a: ClusterNode, b: ClusterNode, c: ClusterNode;
  const devices: ClusterDevice[] = [];

  async function tab(node: ClusterNode, userId: string, platform: string, extra: Record<string, unknown>): Promise<ClusterDevice> {
    const device = await connectDevice(node.url, userId, platform, extra);
    devices.push(device);
    return device;
  }

  async function statusOn(node: ClusterNode, userId: string): Promise<string> {
    const [user] = await node.query([userId]);
    return `${user?.status}:${(user?.instances ?? []).map((instance) => `${instance.instanceId}/${instance.status}`).join(',')}`;
  }

  function callbacksOf(userId: string): string[] {
    return receiver.of(userId).map((body) => `${body.Info.Action}/${body.Info.Reason}`);
  }

  before(async function () {
    admin = redisClient();
    receiver = await callbackReceiver();
    nodes = await Promise.all(
      ['A', 'B', 'C'].map((name) =>
        startNode({ name, redisUrl: REDIS_URL, prefix, loginPolicy: 'multi', leaseTtl: LEASE_TTL, sweepInterval: 200, callbackUrl: receiver.url }),
      ),
    );
    [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
  });

  after(async function () {
    for (const device of devices) device.socket.disconnect();
    await Promise.all(nodes.map((node) => node.close()));
    await receiver.close();
    await deleteKeys(admin, prefix);
    admin.disconnect();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed')
      for (const node of nodes) console.log(`--- ${node.name} output:\n${node.output}\n--- logs: ${JSON.stringify(node.logs)}`);
  });

  for (const first of ['first', 'second'] as const) {
    it(`two tabs on two processes, the ${first} tab closed first: Online until the last closes, one Disconnect/LinkClose`, async function () {
      const userId = `tabs-${first}`;
      const one = await tab(a, userId, 'Web', { instanceId: 'browser' });
      const two = await tab(b, userId, 'Web', { instanceId: 'browser', sessionId: one.session.sessionId });
      expect(two.session.resumed).to.equal(true);
      const [early, late] = first === 'first' ? [one, two] : [two, one];
      early.socket.disconnect();
      await delay(300);
      for (const node of nodes) expect(await statusOn(node, userId), node.name).to.equal('Online:browser/Online');
      expect(late.socket.connected).to.equal(true);
      late.socket.disconnect();
      for (const node of nodes) await waitFor(async () => (await statusOn(node, userId)) === 'Offline:', `${userId} Offline on ${node.name}`);
      await waitFor(() => callbacksOf(userId).length >= 2, 'two callbacks');
      await delay(200);
      expect(callbacksOf(userId)).to.deep.equal(['Login/Register', 'Disconnect/LinkClose']);
    });
  }

  it('a process holding one tab is SIGKILLed: the device stays Online through the reaping, with its other tab', async function () {
    const userId = 'tabs-kill';
    const one = await tab(b, userId, 'Windows', { instanceId: 'pc' });
    const two = await tab(c, userId, 'Windows', { instanceId: 'pc', sessionId: one.session.sessionId });
    expect(two.session.resumed).to.equal(true);
    const killed = b.owner;
    await b.kill('SIGKILL');
    nodes = nodes.filter((node) => node !== b);
    await waitFor(async () => ((await leaseListed(admin, prefix, killed)) ? 1 : 0) === 0, 'B reaped', LEASE_TTL + 5000);
    expect(await statusOn(a, userId)).to.equal('Online:pc/Online');
    expect(two.socket.connected).to.equal(true);
    expect(callbacksOf(userId)).to.deep.equal(['Login/Register']);
    two.socket.disconnect();
    await waitFor(async () => (await statusOn(a, userId)) === 'Offline:', `${userId} Offline`);
    await waitFor(() => callbacksOf(userId).length >= 2, 'two callbacks');
    expect(callbacksOf(userId)).to.deep.equal(['Login/Register', 'Disconnect/LinkClose']);
  });

  it("a logout from one tab disconnects the device's tab on another process, whose session is then refused", async function () {
    const userId = 'tabs-logout';
    const one = await tab(a, userId, 'Mac', { instanceId: 'mac' });
    const two = await tab(c, userId, 'Mac', { instanceId: 'mac', sessionId: one.session.sessionId });
    expect(two.session.resumed).to.equal(true);
    const answer = await one.socket.timeout(5000).emitWithAck('presence:logout');
    expect(answer.ok).to.equal(true);
    await waitFor(() => two.disconnects.length > 0, 'the tab on C disconnected');
    expect(two.disconnects).to.deep.equal(['io server disconnect']);
    expect(await statusOn(c, userId)).to.equal('Offline:');
    const refused = await connectDevice(c.url, userId, 'Mac', { instanceId: 'mac', sessionId: one.session.sessionId }).catch(
      (error: { code?: string }) => error,
    );
    expect((refused as { code?: string }).code).to.equal('SESSION_REVOKED');
    expect((await c.call<{ live: number }>('counts')).live).to.equal(0);
  });
});
