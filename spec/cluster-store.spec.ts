// RedisStore as one process of a cluster sees it: its record layout, a lost lease, and logins during an outage.

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createPresence, ManualClock, type Presence, type PresenceChange, type PresenceOptions } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { deleteKeys, expireLease, layoutOf, redisClient, uniquePrefix } from './helpers/redis.js';
import { delay, PrivateRedis, waitFor } from './fixtures/cluster-harness.js';

const noop = () => {};

describe('cluster: RedisStore in one process', function () {
  this.timeout(20_000);
  let admin: Redis;
  const clients: Redis[] = [];
  const presences: Presence[] = [];
  const prefixes: string[] = [];

  interface Opened {
    presence: Presence;
    changes: PresenceChange[];
    logs: string[];
  }

  function open(options: PresenceOptions & { prefix?: string; leaseTtl?: number; sweepInterval?: number; offlineTtl?: number; url?: string } = {}): Opened {
    const { prefix = uniquePrefix('store'), leaseTtl, sweepInterval, offlineTtl, url, ...presenceOptions } = options;
    prefixes.push(prefix);
    const client = url ? new Redis(url) : redisClient();
    clients.push(client);
    const logs: string[] = [];
    const presence = createPresence({
      loginPolicy: 'multi',
      ...presenceOptions,
      store: new RedisStore({
        client,
        prefix,
        ...(leaseTtl ? { leaseTtl } : {}),
        ...(sweepInterval ? { sweepInterval } : {}),
        ...(offlineTtl ? { offlineTtl } : {}),
      }),
      logger: { warn: (message: string) => logs.push(`warn: ${message}`), error: (message: string) => logs.push(`error: ${message}`) },
    });
    presences.push(presence);
    const changes: PresenceChange[] = [];
    presence.on('change', (change) => changes.push(change));
    return { presence, changes, logs };
  }

  before(function () {
    admin = redisClient();
  });

  afterEach(async function () {
    for (const presence of presences.splice(0)) await presence.close();
    for (const prefix of prefixes.splice(0)) await deleteKeys(admin, prefix);
    for (const client of clients.splice(0)) client.disconnect();
  });

  after(function () {
    admin.disconnect();
  });

  it('keeps each user as one string: no expiry while logged in, offlineTtl once Offline', async function () {
    const prefix = uniquePrefix('layout');
    const { presence } = open({ prefix, offlineTtl: 60_000 });
    const web = await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'tab' }, noop);
    expect(await admin.type(layoutOf(prefix).user('u'))).to.equal('string');
    expect(await admin.pttl(layoutOf(prefix).user('u'))).to.equal(-1);
    await presence.engine.logout(web.connection);
    const ttl = await admin.pttl(layoutOf(prefix).user('u'));
    expect(ttl).to.be.greaterThan(55_000).and.at.most(60_000);
    // Logged in again: kept for good again.
    await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'phone' }, noop);
    expect(await admin.pttl(layoutOf(prefix).user('u'))).to.equal(-1);
  });

  it('answers ids, versions and custom statuses of any characters, and times to the millisecond, as given', async function () {
    const clock = new ManualClock(1_712_345_678_901);
    const { presence } = open({ clock });
    const odd = 'a|b"c\\d\n\t☕ é/</script>';
    await presence.engine.connect({ userId: `user ${odd}`, platform: 'iPhone', instanceId: `inst ${odd}`, version: `v ${odd}` }, noop);
    await presence.setCustomStatus(`user ${odd}`, `cs ${odd}`.slice(0, 40));
    const [user] = await presence.query([`user ${odd}`]);
    expect(user).to.deep.equal({
      userId: `user ${odd}`,
      status: 'Online',
      lastSeen: '2024-04-05T19:34:38.901Z',
      customStatus: `cs ${odd}`.slice(0, 40),
      availability: 'available',
      idleSince: null,
      instances: [{ instanceId: `inst ${odd}`, platform: 'iPhone', status: 'Online', since: '2024-04-05T19:34:38.901Z', version: `v ${odd}` }],
    });
  });

  it('leaves nothing behind when the custom status of a user never seen is cleared', async function () {
    const prefix = uniquePrefix('clear');
    const { presence } = open({ prefix });
    await presence.setCustomStatus('ghost', null);
    expect(await admin.exists(layoutOf(prefix).user('ghost'))).to.equal(0);
    expect(await presence.query(['ghost'])).to.deep.equal([
      { userId: 'ghost', status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null, instances: [] },
    ]);
  });

  it('re-asserts its live devices at the next renewal when others reaped it while its lease was gone', async function () {
    const prefix = uniquePrefix('lease');
    const stalled = open({ prefix, leaseTtl: 600, sweepInterval: 50 });
    const other = open({ prefix, leaseTtl: 600, sweepInterval: 50 });
    await stalled.presence.engine.connect({ userId: 'p', platform: 'Android', instanceId: 'phone' }, noop);
    await stalled.presence.engine.connect({ userId: 'w', platform: 'Windows', instanceId: 'pc' }, noop);
    // Both subscribed, and the check of live devices that follows the first subscription over (it renews the lease).
    await waitFor(async () => ((await admin.pubsub('NUMSUB', layoutOf(prefix).endedChannel(0))) as [string, number])[1] === 2, 'both stores to subscribe');
    await delay(50);
    await waitFor(() => (stalled.presence.config.store as unknown as { reconciling?: unknown }).reconciling === undefined, 'the start-up check to end');
    // What a stall longer than the lease looks like to the others: the lease is gone.
    await expireLease(admin, prefix, stalled.presence.engine.owner);
    await waitFor(() => other.changes.length === 2, 'the other process to reap the devices', 3000);
    expect(other.changes.map((c) => `${c.userId}:${c.action}/${c.reason}/${c.instanceStatus}`).sort()).to.deep.equal([
      'p:Disconnect/LinkClose/PushOnline',
      'w:Disconnect/LinkClose/Offline',
    ]);
    // The stalled process renews (every leaseTtl/3), finds it was reaped, and logs its devices in again.
    await waitFor(async () => (await other.presence.query(['p', 'w'])).every((user) => user.status === 'Online'), 're-assertion', 3000);
    await waitFor(() => stalled.changes.length === 4, 'the re-assertions to be reported', 1000);
    expect(
      stalled.changes
        .slice(2)
        .map((c) => `${c.userId}:${c.action}/${c.reason}/${c.instanceStatus}`)
        .sort(),
    ).to.deep.equal(['p:Login/Register/Online', 'w:Login/Register/Online']);
    expect(stalled.logs).to.have.length(1);
    expect(stalled.logs[0]).to.match(/^warn: .*lease ran out/);
    // And it is not reaped again: its lease is back.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(other.changes).to.have.length(2);
  });

  describe('with a Redis of its own, stopped and started', function () {
    let redis: PrivateRedis;

    beforeEach(async function () {
      redis = await PrivateRedis.start();
    });

    afterEach(async function () {
      for (const presence of presences.splice(0)) await presence.close();
      await redis.kill();
    });

    it('holds a login while Redis is away and completes it once Redis is back (within leaseTtl)', async function () {
      const { presence, logs } = open({ url: redis.url, leaseTtl: 5000 });
      await presence.engine.connect({ userId: 'a', platform: 'Web', instanceId: 'first' }, noop);
      await redis.kill();
      await waitFor(() => logs.length > 0, 'the outage to be noticed');
      const login = presence.engine.connect({ userId: 'b', platform: 'Mac', instanceId: 'mac' }, noop);
      let settled = false;
      void login.then(
        () => (settled = true),
        () => (settled = true),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(settled, 'the login waits').to.equal(false);
      await redis.start();
      const result = await login;
      expect(result.resumed).to.equal(false);
      // 'a' was re-asserted into the empty Redis, 'b' logged in.
      await waitFor(async () => (await presence.query(['a', 'b'])).every((user) => user.status === 'Online'), 'both Online');
      expect(logs).to.deep.equal([
        'error: express-presence: Redis is unreachable; presence keeps local connections and will reconcile when it is back',
        'warn: express-presence: Redis is back; reconciling',
      ]);
    });

    it('refuses a login after waiting leaseTtl for Redis, and logs the outage once', async function () {
      const { presence, logs } = open({ url: redis.url, leaseTtl: 400 });
      await presence.engine.connect({ userId: 'a', platform: 'Web', instanceId: 'first' }, noop);
      await redis.kill();
      await waitFor(() => logs.length > 0, 'the outage to be noticed');
      const started = Date.now();
      const refusals = await Promise.all(
        [1, 2, 3].map((i) =>
          presence.engine.connect({ userId: `late${i}`, platform: 'Web' }, noop).then(
            () => undefined,
            (error: Error) => error.message,
          ),
        ),
      );
      expect(Date.now() - started).to.be.at.least(350);
      for (const message of refusals) expect(message).to.match(/Redis has not been reachable for 400 ms/);
      expect(logs).to.have.length(1);
    });
  });
});
