// Deploys in Redis mode: close() hands a process's devices over (rolling restarts by SIGTERM, clients reconnecting through a proxy), ends them itself with handoverGrace 0, is complete, and the reaper honours the reconnect grace after a SIGKILL.

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createPresence, type Connection, type Presence, type PresenceChange, type PresenceOptions, type StateChangeCallbackBody } from '../lib/index.js';
import { createPresenceClient, type PresenceClient } from '../lib/client/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { REDIS_URL, deleteKeys, expireLease, layoutOf, leaseListed, leaseLive, notedGone, ownedBy, redisClient, uniquePrefix } from './helpers/redis.js';
import {
  callbackReceiver,
  connectDevice,
  delay,
  startNode,
  TcpProxy,
  waitFor,
  type CallbackReceiver,
  type ClusterDevice,
  type ClusterNode,
  type ClusterNodeConfig,
} from './fixtures/cluster-harness.js';

const LEASE_TTL = 1500;
const SWEEP_INTERVAL = 200;
/** SPEC.md: timed transitions happen within 100 ms of their due time; the sweepers' and this process's clocks are the same clock. */
const TOLERANCE = 100;
const PLATFORMS = ['Android', 'Windows', 'Web'] as const;
const platformOf = (i: number): (typeof PLATFORMS)[number] => PLATFORMS[i % PLATFORMS.length] as (typeof PLATFORMS)[number];

/** A user's callbacks as `Action/Reason Status`, in Seq order; fails unless their Seqs strictly increase. */
function callbacksOf(bodies: readonly StateChangeCallbackBody[], userId: string): string[] {
  const mine = bodies.filter((body) => body.Info.To_Account === userId).sort((a, b) => a.Seq - b.Seq);
  const seqs = mine.map((body) => body.Seq);
  expect(new Set(seqs).size, `${userId}'s Seqs ${JSON.stringify(seqs)} are distinct`).to.equal(seqs.length);
  return mine.map((body) => `${body.Info.Action}/${body.Info.Reason} ${body.Status}`);
}

/** The action and status a device that does not come back is ended with: a closed connection. */
function endedAs(platform: string): string {
  return `Disconnect/LinkClose ${platform === 'Android' ? 'PushOnline' : 'Offline'}`;
}

describe('deploys: in-process presences over one Redis', function () {
  this.timeout(30_000);
  let prefix: string;
  let admin: Redis;
  const opened: { presence: Presence; client: Redis; changes: PresenceChange[]; warnings: string[] }[] = [];

  function open(options: Partial<PresenceOptions> = {}, leaseTtl = LEASE_TTL): (typeof opened)[number] {
    const client = new Redis(REDIS_URL);
    const warnings: string[] = [];
    const presence = createPresence({
      loginPolicy: 'multi',
      store: new RedisStore({ client, prefix, leaseTtl, sweepInterval: 100 }),
      logger: { warn: (message: string) => warnings.push(message), error: (message: string) => warnings.push(`error: ${message}`) },
      ...options,
    });
    const changes: PresenceChange[] = [];
    presence.on('change', (change) => changes.push(change));
    const entry = { presence, client, changes, warnings };
    opened.push(entry);
    return entry;
  }

  function connect(proc: (typeof opened)[number], userId: string, platform: string, instanceId: string, sessionId?: string) {
    return proc.presence.engine.connect({ userId, platform, instanceId, ...(sessionId ? { sessionId } : {}) }, () => {});
  }

  async function statusOf(userId: string): Promise<string> {
    // Read through the process opened last (never the one closed).
    const [user] = await (opened[opened.length - 1] as (typeof opened)[number]).presence.query([userId]);
    return `${user?.status}:${(user?.instances ?? []).map((instance) => instance.status).join(',')}`;
  }

  const described = (changes: readonly PresenceChange[]) =>
    changes.map((change) => `${change.userId} ${change.action}/${change.reason} ${change.instanceStatus}`);

  beforeEach(function () {
    prefix = uniquePrefix('deploy');
    admin = redisClient();
  });

  afterEach(async function () {
    for (const proc of opened.splice(0)) {
      await proc.presence.close();
      proc.client.disconnect();
    }
    await deleteKeys(admin, prefix);
    admin.disconnect();
  });

  it('hands over on close(): a device resumed elsewhere within the grace changes nothing, one not back is ended once after it', async function () {
    const a = open({ handoverGrace: '1s' });
    const b = open();
    const c = open();
    const back = await connect(a, 'back', 'Android', 'phone');
    const late = await connect(a, 'late', 'Web', 'tab');
    await connect(a, 'phone', 'Android', 'phone');
    await connect(a, 'pc', 'Windows', 'pc');
    const moved = await connect(a, 'moved', 'Web', 'tab');
    const closedAt = Date.now();
    await a.presence.close();
    expect(described(a.changes.filter((change) => change.action !== 'Login')), 'close() made no transition').to.deep.equal([]);
    // Resumed at once on B: it moves there; its close there is then its own, at once (not held until A's grace ends).
    expect((await connect(b, 'back', 'Android', 'phone', back.connection.sessionId)).resumed).to.equal(true);
    const movedThere = await connect(b, 'moved', 'Web', 'tab', moved.connection.sessionId);
    b.presence.engine.disconnect(movedThere.connection, 'closed');
    await waitFor(() => b.changes.length === 1, "moved's close on B");
    expect(Date.now() - closedAt, "moved's close came before A's grace ended").to.be.below(1000);
    // Resumed on C late in the grace.
    await delay(Math.max(0, closedAt + 700 - Date.now()));
    expect((await connect(c, 'late', 'Web', 'tab', late.connection.sessionId)).resumed).to.equal(true);
    await waitFor(
      async () => (await statusOf('pc')) === 'Offline:' && (await statusOf('phone')) === 'PushOnline:PushOnline',
      'the two not back to be ended',
      5000,
    );
    // And nothing more happens afterwards: each ended once in the cluster, by one of the sweepers.
    await delay(500);
    const ends = [...b.changes, ...c.changes].filter((change) => change.userId !== 'moved');
    expect(described(ends).sort()).to.deep.equal(['pc Disconnect/LinkClose Offline', 'phone Disconnect/LinkClose PushOnline']);
    for (const change of ends) expect(change.at - closedAt, `${change.userId} ended after the grace`).to.be.at.least(1000 - TOLERANCE);
    expect(described(b.changes.filter((change) => change.userId === 'moved'))).to.deep.equal(['moved Disconnect/LinkClose Offline']);
    expect(await statusOf('back')).to.equal('Online:Online');
    expect(await statusOf('late')).to.equal('Online:Online');
    // A is forgotten once all its devices are settled.
    const owner = a.presence.engine.owner;
    expect((await leaseListed(admin, prefix, owner)) ? 1 : 0).to.equal(0);
    expect(await notedGone(admin, prefix, owner)).to.equal(false);
    expect(await ownedBy(admin, prefix, owner)).to.deep.equal([]);
  });

  it("waits a class's reconnect grace when it is longer than the handover", async function () {
    const reconnectGrace = { web: 2000 };
    const a = open({ handoverGrace: '500ms', reconnectGrace });
    const b = open({ reconnectGrace });
    await connect(a, 'phone', 'Android', 'phone');
    await connect(a, 'tab', 'Web', 'tab');
    const closedAt = Date.now();
    await a.presence.close();
    await waitFor(() => b.changes.length === 2, 'both devices ended', 6000);
    const [first, second] = b.changes as [PresenceChange, PresenceChange];
    expect(described([first, second])).to.deep.equal(['phone Disconnect/LinkClose PushOnline', 'tab Disconnect/LinkClose Offline']);
    expect(first.at - closedAt).to.be.within(500 - TOLERANCE, 1500);
    expect(second.at - closedAt).to.be.at.least(2000 - TOLERANCE);
  });

  it('with handoverGrace 0, close() itself ends its devices, emitted before it resolves; no other process ends them again', async function () {
    const a = open({ handoverGrace: 0 });
    const b = open();
    await connect(a, 'phone', 'Android', 'phone');
    await connect(a, 'tab', 'Web', 'tab');
    await connect(a, 'pc', 'Linux', 'pc');
    const loginSeq = new Map(a.changes.map((change) => [change.userId, change.seq]));
    a.changes.length = 0;
    await a.presence.close();
    expect(described(a.changes)).to.deep.equal([
      'phone Disconnect/LinkClose PushOnline',
      'tab Disconnect/LinkClose Offline',
      'pc Disconnect/LinkClose Offline',
    ]);
    // Each user's next change: no change was lost between its login and close()'s end.
    expect(a.changes.map((change) => change.seq - (loginSeq.get(change.userId) as number))).to.deep.equal([1, 1, 1]);
    expect(await statusOf('phone')).to.equal('PushOnline:PushOnline');
    expect(await statusOf('tab')).to.equal('Offline:');
    await delay(600);
    expect(b.changes).to.deep.equal([]);
    expect((await leaseListed(admin, prefix, a.presence.engine.owner)) ? 1 : 0).to.equal(0);
  });

  it('a process whose lease lapsed (stalled) takes back, when it renews, a device another process took over meanwhile', async function () {
    // A long reconnect grace: nobody reaps A meanwhile (its entry stays among the processes), only its lapse is noted.
    const a = open({ reconnectGrace: '10s' }, 3000);
    const b = open({ reconnectGrace: '10s' }, 3000);
    const tab1 = await connect(a, 'u', 'Web', 'w');
    // A's lease written (so that a renewal finding it gone is a lapse, not its first), and its start-up reconciliation over.
    await waitFor(async () => await leaseLive(admin, prefix, a.presence.engine.owner), "A's lease");
    await delay(200);
    // What a stall past the lease looks like to the others; a tab of the device then resumes on B and takes it over.
    await expireLease(admin, prefix, a.presence.engine.owner);
    const tab2 = await connect(b, 'u', 'Web', 'w', tab1.connection.sessionId);
    const owners = async () => (JSON.parse((await admin.get(layoutOf(prefix).user('u'))) as string) as { i: unknown[][] }).i[0]?.[6];
    expect(await owners()).to.equal(b.presence.engine.owner);
    // A renews its lease (every leaseTtl / 3), hears that it was gone, and holds its device again.
    await waitFor(() => a.warnings.some((message) => /lease ran out/.test(message)), 'A to notice', 3000);
    await waitFor(async () => Array.isArray(await owners()), 'A to hold the device again', 3000);
    // Timeouts, which the reconnect grace does not hold back.
    b.presence.engine.disconnect(tab2.connection, 'timeout');
    await delay(300);
    expect(await statusOf('u')).to.equal('Online:Online');
    a.presence.engine.disconnect(tab1.connection as Connection, 'timeout');
    await waitFor(() => a.changes.length === 2, 'u gone with its last tab');
    await delay(300);
    expect(await statusOf('u')).to.equal('Offline:');
    expect(described([...a.changes, ...b.changes].filter((change) => change.action !== 'Login'))).to.deep.equal(['u Disconnect/TimeOut Offline']);
  });
});

/** Devices using the client helper through the proxy, and a watcher subscribed to all of them. */
interface Fleet {
  clients: Map<string, PresenceClient>;
  /** Each device's disconnects so far. */
  disconnects: Map<string, number>;
  watcher: PresenceClient;
  /** Every status the watcher was told for each user (subscribe answers, re-subscriptions and changes). */
  seen: Map<string, string[]>;
  /** Devices that lost their network with a process and never come back. */
  departed: Set<string>;
}

function client(url: string, userId: string, platform: string): PresenceClient {
  return createPresenceClient({
    url,
    platform: platform as 'Web',
    instanceId: `${userId}-device`,
    auth: { token: `tok:${userId}` },
    trackVisibility: false,
    socketOptions: { transports: ['websocket'], forceNew: true, reconnectionDelay: 300, reconnectionDelayMax: 1000 },
  });
}

const connected = (device: PresenceClient): boolean => device.socket.connected && device.session !== undefined;

async function startFleet(url: string, count: number): Promise<Fleet> {
  const clients = new Map<string, PresenceClient>();
  const disconnects = new Map<string, number>();
  for (let start = 0; start < count; start += 50) {
    for (let i = start; i < Math.min(count, start + 50); i++) {
      const userId = `u${i}`;
      const device = client(url, userId, platformOf(i));
      clients.set(userId, device);
      disconnects.set(userId, 0);
      device.on('disconnect', () => disconnects.set(userId, (disconnects.get(userId) ?? 0) + 1));
    }
    await waitFor(() => [...clients.values()].every(connected), `${clients.size} devices logged in`, 20_000);
  }
  const watcher = client(url, 'watcher', 'Web');
  await waitFor(() => connected(watcher), 'the watcher logged in');
  const seen = new Map<string, string[]>([...clients.keys()].map((userId) => [userId, []]));
  const answer = await watcher.subscribe([...clients.keys()], (change) => seen.get(change.userId)?.push(change.status));
  for (const user of answer.users) seen.get(user.userId)?.push(user.status);
  return { clients, disconnects, watcher, seen, departed: new Set() };
}

/** The status changes the watcher saw for a user: what it was told, repeats (re-subscriptions) left out. */
function transitions(seen: readonly string[]): string[] {
  const changes: string[] = [];
  for (let i = 1; i < seen.length; i++) if (seen[i] !== seen[i - 1]) changes.push(seen[i] as string);
  return changes;
}

describe('deploys: a rolling restart of three processes (SIGTERM, clients reconnecting through a proxy)', function () {
  this.timeout(90_000);
  const DEVICES = Number(process.env.DEPLOY_DEVICES ?? 300);
  const HANDOVER = 2500;
  let prefix: string;
  let admin: Redis;
  let receiver: CallbackReceiver;
  let proxy: TcpProxy;
  let nodes: ClusterNode[] = [];
  let fleet: Fleet | undefined;

  function config(name: string): ClusterNodeConfig {
    return {
      name,
      redisUrl: REDIS_URL,
      prefix,
      loginPolicy: 'single',
      leaseTtl: LEASE_TTL,
      sweepInterval: SWEEP_INTERVAL,
      callbackUrl: receiver.url,
      handoverGrace: HANDOVER,
    };
  }

  beforeEach(async function () {
    prefix = uniquePrefix('rolling');
    admin = redisClient();
    receiver = await callbackReceiver();
    proxy = await TcpProxy.start();
    nodes = await Promise.all(['A', 'B', 'C'].map((name) => startNode(config(name))));
    for (const node of nodes) proxy.add(node.port);
    fleet = await startFleet(proxy.url, DEVICES);
    // Every login called back (and nothing else yet).
    await waitFor(() => receiver.bodies.length === DEVICES + 1, 'the login callbacks', 20_000);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') for (const node of nodes) console.log(`--- ${node.name} logs: ${JSON.stringify(node.logs.slice(0, 20))}`);
    for (const device of fleet?.clients.values() ?? []) device.close();
    fleet?.watcher.close();
    fleet = undefined;
    await Promise.all(nodes.map((node) => node.close()));
    await proxy.close();
    await receiver.close();
    await deleteKeys(admin, prefix);
    admin.disconnect();
  });

  /**
   * Stops node `index` as a deploy does (out of the proxy, SIGTERM) and starts its replacement; waits until every device it had
   * (except those in `leaving`) reconnected to another. Answers the users it had and when it was stopped.
   */
  async function restart(index: number, leaving: (users: string[]) => string[] = () => []): Promise<{ users: string[]; at: number; left: string[] }> {
    const running = fleet as Fleet;
    const old = nodes[index] as ClusterNode;
    const users = (await old.sockets()).filter((userId) => userId !== 'watcher');
    const left = leaving(users);
    // These lose their network as the process goes: they never come back.
    for (const userId of left) {
      running.departed.add(userId);
      running.clients.get(userId)?.once('disconnect', () => running.clients.get(userId)?.close());
    }
    const before = new Map(users.map((userId) => [userId, running.disconnects.get(userId) ?? 0]));
    proxy.remove(old.port);
    const at = Date.now();
    expect(await old.terminate(), `${old.name}'s exit code`).to.equal(0);
    expect(old.errors(), `${old.name}'s errors`).to.deep.equal([]);
    const fresh = await startNode(config(`${old.name}'`));
    nodes[index] = fresh;
    proxy.add(fresh.port);
    await waitFor(
      () =>
        users.every((userId) => (running.disconnects.get(userId) ?? 0) > (before.get(userId) ?? 0)) &&
        [...running.clients].every(([userId, device]) => running.departed.has(userId) || connected(device)) &&
        connected(running.watcher),
      `${old.name}'s devices to reconnect elsewhere`,
      15_000,
    );
    return { users, at, left };
  }

  async function statuses(userIds: readonly string[]): Promise<Map<string, string>> {
    const answer = await (nodes[0] as ClusterNode).query([...userIds]);
    return new Map(answer.map((user) => [user.userId, user.status]));
  }

  it(`${DEVICES} devices, every process restarted in turn: no flap, no callback, every device Online`, async function () {
    const running = fleet as Fleet;
    const baseline = receiver.bodies.length;
    const moved: number[] = [];
    for (let index = 0; index < nodes.length; index++) moved.push((await restart(index)).users.length);
    expect(
      moved.every((count) => count > 0),
      `devices on each stopped process: ${moved.join(', ')}`,
    ).to.equal(true);
    // Past every handover: nothing is reaped later either.
    await delay(HANDOVER + 3 * SWEEP_INTERVAL);
    const userIds = [...running.clients.keys()];
    const flaps = userIds.filter((userId) => transitions(running.seen.get(userId) ?? []).length > 0);
    expect(flaps, 'users the watcher saw change').to.deep.equal([]);
    expect(
      receiver.bodies.slice(baseline).map((body) => `${body.Info.To_Account} ${body.Info.Action}/${body.Info.Reason}`),
      'callbacks during the deploy',
    ).to.deep.equal([]);
    const now = await statuses(userIds);
    expect(userIds.filter((userId) => now.get(userId) !== 'Online')).to.deep.equal([]);
    expect([...running.clients.values()].every(connected)).to.equal(true);
  });

  it('devices that do not come back are each ended once, as a closed connection, after the handover grace', async function () {
    const running = fleet as Fleet;
    const baseline = receiver.bodies.length;
    const gone = new Map<string, number>();
    for (let index = 0; index < nodes.length; index++) {
      // A tenth of each process's devices, of every platform.
      const { at, left } = await restart(index, (users) => users.filter((_, i) => i % 10 === 0));
      for (const userId of left) gone.set(userId, at);
    }
    expect(gone.size).to.be.greaterThan(3);
    const userIds = [...running.clients.keys()];
    const platform = (userId: string) => platformOf(Number(userId.slice(1)));
    await waitFor(
      async () => {
        const now = await statuses([...gone.keys()]);
        return [...gone.keys()].every((userId) => now.get(userId) === (platform(userId) === 'Android' ? 'PushOnline' : 'Offline'));
      },
      'the devices not back to be ended',
      HANDOVER + 10_000,
    );
    await delay(HANDOVER + 3 * SWEEP_INTERVAL);
    const during = receiver.bodies.slice(baseline);
    for (const userId of userIds) {
      const expected = gone.has(userId) ? [endedAs(platform(userId))] : [];
      expect(callbacksOf(during, userId), `${userId}'s callbacks during the deploy`).to.deep.equal(expected);
      expect(transitions(running.seen.get(userId) ?? []), `what the watcher saw of ${userId}`).to.deep.equal(
        gone.has(userId) ? [platform(userId) === 'Android' ? 'PushOnline' : 'Offline'] : [],
      );
    }
    for (const body of during) {
      const stoppedAt = gone.get(body.Info.To_Account) as number;
      expect(body.EventTime - stoppedAt, `${body.Info.To_Account} ended after the handover grace`).to.be.within(HANDOVER - TOLERANCE, HANDOVER + 6000);
    }
    // Every Seq strictly after the user's login.
    for (const body of during)
      expect(body.Seq).to.be.greaterThan(receiver.bodies.find((login) => login.Info.To_Account === body.Info.To_Account)?.Seq ?? Infinity);
    const now = await statuses(userIds);
    expect(userIds.filter((userId) => !gone.has(userId) && now.get(userId) !== 'Online')).to.deep.equal([]);
  });
});

describe('deploys: SIGTERM with handoverGrace 0, and a SIGKILL with a reconnect grace (real processes)', function () {
  this.timeout(60_000);
  let prefix: string;
  let admin: Redis;
  let receiver: CallbackReceiver;
  let proxy: TcpProxy;
  let nodes: ClusterNode[] = [];
  const devices: ClusterDevice[] = [];
  const clients: PresenceClient[] = [];

  beforeEach(async function () {
    prefix = uniquePrefix('deploy-real');
    admin = redisClient();
    receiver = await callbackReceiver();
    proxy = await TcpProxy.start();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') for (const node of nodes) console.log(`--- ${node.name} logs: ${JSON.stringify(node.logs.slice(0, 20))}`);
    for (const device of devices.splice(0)) device.socket.disconnect();
    for (const device of clients.splice(0)) device.close();
    await Promise.all(nodes.map((node) => node.close()));
    await proxy.close();
    await receiver.close();
    await deleteKeys(admin, prefix);
    admin.disconnect();
  });

  function start(names: string[], extra: Partial<ClusterNodeConfig>): Promise<ClusterNode[]> {
    return Promise.all(
      names.map((name) =>
        startNode({
          name,
          redisUrl: REDIS_URL,
          prefix,
          loginPolicy: 'single',
          leaseTtl: LEASE_TTL,
          sweepInterval: SWEEP_INTERVAL,
          callbackUrl: receiver.url,
          ...extra,
        }),
      ),
    );
  }

  it('SIGTERM with handoverGrace 0: every device ended, emitted and called back before the process exits', async function () {
    nodes = await start(['A', 'B'], { handoverGrace: 0 });
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    const users = Array.from({ length: 30 }, (_, i) => `g${i}`);
    devices.push(...(await Promise.all(users.map((userId, i) => connectDevice(a.url, userId, platformOf(i), { instanceId: 'd' })))));
    await waitFor(() => receiver.bodies.length === users.length, 'the login callbacks');
    // As on a Redis that never ran the ends' script: it loads on first use, its writes answering after close() began.
    await admin.script('FLUSH');
    expect(await a.terminate()).to.equal(0);
    // Read at once: close() resolved (and the process exited) only after every callback was delivered.
    for (const [i, userId] of users.entries()) {
      expect(callbacksOf(receiver.bodies, userId), userId).to.deep.equal(['Login/Register Online', endedAs(platformOf(i))]);
    }
    const answer = await b.query(users);
    expect(answer.map((user) => user.status)).to.deep.equal(users.map((_, i) => (platformOf(i) === 'Android' ? 'PushOnline' : 'Offline')));
    // Nobody ends them again.
    await delay(4 * SWEEP_INTERVAL);
    expect(receiver.bodies).to.have.length(users.length * 2);
    expect((await b.call<{ changes: { main: number } }>('counts')).changes.main).to.equal(0);
  });

  it('SIGKILL with a reconnect grace: devices back within it (even after the lease ran out) do not flap; the others end after it', async function () {
    const GRACE = 3000;
    nodes = await start(['A', 'B'], { reconnectGrace: GRACE });
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    proxy.add(a.port);
    // All on A first, then B takes the reconnections.
    const users = Array.from({ length: 30 }, (_, i) => `k${i}`);
    for (const [i, userId] of users.entries()) clients.push(client(proxy.url, userId, platformOf(i)));
    await waitFor(() => clients.every(connected), 'the devices logged in on A', 15_000);
    proxy.add(b.port);
    await waitFor(() => receiver.bodies.length === users.length, 'the login callbacks');
    const prompt = users.filter((_, i) => i % 3 === 0);
    const late = users.filter((_, i) => i % 3 === 1);
    const never = users.filter((_, i) => i % 3 === 2);
    const byUser = new Map(users.map((userId, i) => [userId, clients[i] as PresenceClient]));
    for (const userId of [...late, ...never]) byUser.get(userId)?.once('disconnect', () => byUser.get(userId)?.close());
    proxy.remove(a.port);
    await a.kill('SIGKILL');
    const killedAt = Date.now();
    // The late ones come back after A's lease ran out (and B found it gone), within the grace.
    await delay(LEASE_TTL + 2 * SWEEP_INTERVAL + 500);
    for (const userId of late) byUser.get(userId)?.connect();
    await waitFor(() => [...prompt, ...late].every((userId) => connected(byUser.get(userId) as PresenceClient)), 'the devices back on B', 10_000);
    expect(Date.now() - killedAt, 'back within the grace').to.be.below(LEASE_TTL + GRACE - 500);
    await waitFor(() => receiver.bodies.length === users.length + never.length, 'the devices not back to be ended', LEASE_TTL + GRACE + 5000);
    await delay(4 * SWEEP_INTERVAL);
    for (const [i, userId] of users.entries()) {
      const expected = never.includes(userId) ? ['Login/Register Online', endedAs(platformOf(i))] : ['Login/Register Online'];
      expect(callbacksOf(receiver.bodies, userId), userId).to.deep.equal(expected);
    }
    for (const body of receiver.bodies.filter((entry) => entry.Info.Action === 'Disconnect')) {
      // The lease ran out between 2/3 of it and all of it after the kill; the grace counts from then.
      expect(body.EventTime - killedAt, `${body.Info.To_Account} ended after lease + grace`).to.be.at.least((LEASE_TTL * 2) / 3 + GRACE - TOLERANCE);
    }
    const answer = await b.query(users);
    expect(answer.filter((user) => !never.includes(user.userId)).every((user) => user.status === 'Online')).to.equal(true);
  });
});
