// Kicks across empty Redis restarts: ends a holder missed, admin kicks made while Redis is away, and what a re-asserted device is told.

import { expect } from 'chai';
import { Redis, type RedisOptions } from 'ioredis';
import { createPresence, type Connection, type EndNotice, type InstanceRef, type Presence, type PresenceChange } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { delay, PrivateRedis, waitFor } from './fixtures/cluster-harness.js';
import { reproduce } from './chaos/double-restart.repro.js';

const LEASE_TTL = 1500;

/** One process: a presence over its own RedisStore, and what each of its devices was told. */
interface Proc {
  name: string;
  presence: Presence;
  store: RedisStore;
  client: Redis;
  changes: PresenceChange[];
  logs: string[];
  /** The notices each device (by instance id) was told when the server ended it. */
  told: Map<string, EndNotice[]>;
  connect(
    userId: string,
    platform: string,
    instanceId: string,
    sessionId?: string,
  ): Promise<{ connection: Connection; sessionId: string; kicked: InstanceRef[] }>;
  /** Makes this process deaf to `ended` messages (as while its subscriber reconnects), or hear them again. */
  deaf(on: boolean): void;
}

describe('Redis: kicks across empty restarts and outages', function () {
  this.timeout(30_000);
  let redis: PrivateRedis;
  let admin: Redis;
  const procs: Proc[] = [];

  /** `retry`: the fixed delay of the client's reconnection attempts, to decide which process comes back first. */
  function open(name: string, retry = 50, leaseTtl = LEASE_TTL): Proc {
    const options: RedisOptions = { connectionName: `proc-${name}`, retryStrategy: () => retry };
    const client = new Redis(redis.url, options);
    const store = new RedisStore({ client, prefix: 'ends:', leaseTtl, sweepInterval: 100 });
    const logs: string[] = [];
    const presence = createPresence({
      loginPolicy: 'multi',
      store,
      // A login waits for Redis up to the lease; the engine's own bound is not the shorter one.
      storeTimeout: Math.max(2000, leaseTtl),
      logger: { warn: (message: string) => logs.push(`warn: ${message}`), error: (message: string) => logs.push(`error: ${message}`) },
    });
    const changes: PresenceChange[] = [];
    presence.on('change', (change) => changes.push(change));
    const told = new Map<string, EndNotice[]>();
    const proc: Proc = {
      name,
      presence,
      store,
      client,
      changes,
      logs,
      told,
      async connect(userId, platform, instanceId, sessionId) {
        const result = await presence.engine.connect({ userId, platform, instanceId, sessionId }, (notice) => {
          const list = told.get(instanceId) ?? [];
          list.push(notice);
          told.set(instanceId, list);
        });
        return { connection: result.connection, sessionId: result.connection.sessionId, kicked: result.kicked };
      },
      deaf(on) {
        const hooks = store as unknown as { onEnded(message: string): void };
        if (on) hooks.onEnded = () => {};
        else delete (hooks as Partial<typeof hooks>).onEnded;
      },
    };
    procs.push(proc);
    return proc;
  }

  /**
   * Waits until each store's reconcile is over: the one a connection starts re-asserts the devices
   * that logged in meanwhile, and one that ran after a kick would tell the holder by another way
   * than the message it is meant to miss (a loaded machine can delay it past the kick).
   */
  async function settled(...procs: Proc[]): Promise<void> {
    await waitFor(
      () => procs.every((proc) => proc.client.status === 'ready' && (proc.store as unknown as { reconciling?: unknown }).reconciling === undefined),
      'the stores to settle',
      5000,
    );
  }

  async function restartEmpty(pause = 200): Promise<void> {
    await redis.kill();
    await delay(pause);
    await redis.start();
  }

  /** Each device of the user as `platform/instanceId/status`, read straight from Redis through a presence. */
  async function stored(proc: Proc, userId: string): Promise<string[]> {
    // Refused while the process still counts Redis away (never answered from a stale copy): a poll goes on.
    const answer = await proc.presence.query([userId]).catch((error: unknown) => {
      if ((error as { code?: unknown }).code === 'STORE_UNAVAILABLE') return undefined;
      throw error;
    });
    if (!answer) return ['(store unavailable)'];
    const [user] = answer;
    return (user?.instances ?? []).map((instance) => `${instance.platform}/${instance.instanceId}/${instance.status}`).sort();
  }

  beforeEach(async function () {
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url, { retryStrategy: () => 50 });
    admin.on('error', () => {});
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') for (const proc of procs) console.log(`--- ${proc.name} logs: ${JSON.stringify(proc.logs)}`);
    for (const proc of procs.splice(0)) {
      await proc.presence.close();
      proc.client.disconnect();
    }
    admin.disconnect();
    await redis.kill();
  });

  for (const first of ['holder', 'kicker'] as const) {
    it(`a kick the holder missed survives an empty restart before the holder's next reconcile (the ${first} reconnects first)`, async function () {
      const holder = open('A', first === 'holder' ? 50 : 600);
      const kicker = open('B', first === 'kicker' ? 50 : 600);
      const mini = await holder.connect('u', 'MiniProgram', 'mini');
      await settled(holder, kicker);
      holder.deaf(true);
      const web = await kicker.connect('u', 'Web', 'web');
      expect(web.kicked).to.deep.equal([{ platform: 'MiniProgram', instanceId: 'mini' }]);
      await delay(100);
      expect(holder.told.get('mini'), 'the holder missed the end').to.equal(undefined);
      holder.deaf(false);
      // Redis restarts empty before the holder reconciled: the revocation and the record are gone; only the kicker knows.
      const changesBefore = holder.changes.length + kicker.changes.length;
      await restartEmpty();
      await waitFor(() => holder.told.get('mini'), 'the kicked MiniProgram to be told', 5000);
      // The kick was reported once, with the Web's login; re-asserting the MiniProgram and ending it again are not changes.
      await settled(holder, kicker);
      expect(holder.changes.length + kicker.changes.length, 'changes after the restart').to.equal(changesBefore);
      expect(holder.told.get('mini')).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Web', instanceId: 'web' } }]);
      expect(holder.presence.engine.liveInstances).to.equal(0);
      await waitFor(async () => (await stored(kicker, 'u')).join() === 'Web/web/Online', 'only the Web to be stored', 5000);
      // Still refused: a resume of the kicked session is not a fresh login.
      const resumed = await holder.connect('u', 'MiniProgram', 'mini', mini.sessionId).then(
        () => 'let in',
        (error: { code?: string }) => error.code,
      );
      expect(resumed).to.equal('SESSION_REVOKED');
      // And it stays so: the newer Web was never displaced, and nothing comes back later.
      await delay(2 * LEASE_TTL);
      expect(await stored(holder, 'u')).to.deep.equal(['Web/web/Online']);
      expect(kicker.told.size).to.equal(0);
    });
  }

  it('kicks are kept across two close empty restarts, the holder deaf to every publication', async function () {
    // The kicker comes back first each time, so that only the revocations it writes again can end the holder's devices.
    const holder = open('A', 600);
    const kicker = open('B', 50);
    await holder.connect('v', 'Android', 'phone');
    await holder.connect('x', 'Mac', 'mac');
    await settled(holder, kicker);
    holder.deaf(true);
    const phone2 = await kicker.connect('v', 'Android', 'phone2');
    expect(phone2.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'phone' }]);
    await kicker.presence.engine.logout(phone2.connection);
    expect(await kicker.presence.kick('x')).to.deep.equal([{ platform: 'Mac', instanceId: 'mac' }]);
    await restartEmpty(100);
    await delay(50);
    await restartEmpty(100);
    await waitFor(() => holder.told.size === 2, 'both devices to be told', 8000);
    expect(holder.told.get('phone')).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Android', instanceId: 'phone2' } }]);
    expect(holder.told.get('mac')).to.deep.equal([{ reason: 'AdminKick' }]);
    expect(holder.presence.engine.liveInstances).to.equal(0);
    await delay(LEASE_TTL);
    expect(await stored(kicker, 'v')).to.deep.equal([]);
    expect(await stored(kicker, 'x')).to.deep.equal([]);
  });

  it('an admin kick made while Redis is away waits, then ends the devices of every process, listed or as they are re-asserted', async function () {
    const slow = open('A', 800);
    const kicker = open('B', 50);
    await slow.connect('k', 'Windows', 'pc');
    await kicker.connect('k', 'Android', 'phone');
    await kicker.connect('other', 'Web', 'tab');
    await redis.kill();
    await waitFor(() => slow.logs.length > 0 && kicker.logs.length > 0, 'the outage to be noticed');
    let answer: { platform: string; instanceId: string }[] | undefined;
    const kick = kicker.presence.kick('k').then((kicked) => (answer = kicked));
    await delay(300);
    expect(answer, 'the kick waits for Redis').to.equal(undefined);
    await redis.start();
    await kick;
    // Run after the kicker re-asserted its own devices: they are found and listed. The other process comes back later.
    expect(answer).to.deep.equal([{ platform: 'Android', instanceId: 'phone' }]);
    expect(kicker.told.get('phone')).to.deep.equal([{ reason: 'AdminKick' }]);
    await waitFor(() => slow.told.get('pc'), 'the computer on the slower process to be told', 5000);
    expect(slow.told.get('pc')).to.deep.equal([{ reason: 'AdminKick' }]);
    expect(await stored(kicker, 'k')).to.deep.equal([]);
    expect(await stored(kicker, 'other')).to.deep.equal(['Web/tab/Online']);
    // A login after the kick is not its target, even when an empty restart has it re-asserted while the kick is remembered.
    await delay(5);
    await slow.connect('k', 'Mac', 'mac');
    await restartEmpty();
    await waitFor(async () => (await stored(kicker, 'k')).join() === 'Mac/mac/Online', 'the newer Mac re-asserted', 5000);
    await delay(LEASE_TTL);
    expect(await stored(kicker, 'k')).to.deep.equal(['Mac/mac/Online']);
    expect(slow.told.get('mac')).to.equal(undefined);
  });

  it('an admin kick right after an empty restart ends a device that its process re-asserts only later', async function () {
    const slow = open('A', 1000);
    const other = open('B', 50);
    await slow.connect('r', 'Linux', 'box');
    await restartEmpty();
    await waitFor(() => other.client.status === 'ready' && other.logs.some((line) => line.includes('Redis is back')), 'the other process back');
    await delay(50);
    expect(slow.client.status, 'the slow process is still reconnecting').to.not.equal('ready');
    expect(await other.presence.kick('r')).to.deep.equal([]);
    await waitFor(() => slow.told.get('box'), 'the device to be told when its process re-asserts it', 5000);
    expect(slow.told.get('box')).to.deep.equal([{ reason: 'AdminKick' }]);
    await delay(300);
    expect(await stored(other, 'r')).to.deep.equal([]);
  });

  it('refuses an admin kick after waiting leaseTtl for Redis, and makes none', async function () {
    const proc = open('A', 50, 600);
    await proc.connect('s', 'Mac', 'mac');
    await redis.kill();
    await waitFor(() => proc.logs.length > 0, 'the outage to be noticed');
    const started = Date.now();
    const refusal = await proc.presence.kick('s').then(
      () => 'kicked',
      (error: Error) => error.message,
    );
    expect(Date.now() - started).to.be.at.least(550);
    expect(refusal).to.match(/Redis has not been reachable for 600 ms \(leaseTtl\); the kick was not made/);
    await redis.start();
    await waitFor(async () => (await stored(proc, 's')).join() === 'Mac/mac/Online', 'the Mac re-asserted', 5000);
    await delay(300);
    expect(proc.told.size).to.equal(0);
  });

  it('a device re-asserted into a Redis a newer login reached first is told LoginElsewhere by that login', async function () {
    const slow = open('A', 800);
    // Its login waits out the restart (a loaded machine can take more than a second to start redis-server again).
    const other = open('B', 50, 5000);
    await slow.connect('y', 'MiniProgram', 'mini');
    await redis.kill();
    await waitFor(() => other.logs.length > 0, 'the outage to be noticed');
    // Made while Redis is away: it waits, and runs as soon as Redis is back, before the slow process re-asserts.
    const login = other.connect('y', 'Web', 'web');
    await delay(200);
    await redis.start();
    expect((await login).kicked).to.deep.equal([]);
    await waitFor(() => slow.told.get('mini'), 'the MiniProgram to yield', 5000);
    expect(slow.told.get('mini')).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Web', instanceId: 'web' } }]);
    expect(await stored(other, 'y')).to.deep.equal(['Web/web/Online']);
  });

  it('a holder that missed a LoginElsewhere end is told it, with `by`, when its reconnection finds the revocation', async function () {
    const holder = open('A', 50);
    const kicker = open('B', 50);
    await holder.connect('w', 'iPad', 'tablet');
    await settled(holder, kicker);
    holder.deaf(true);
    await kicker.connect('w', 'iPad', 'tablet2');
    await delay(100);
    expect(holder.told.get('tablet'), 'the holder missed the end').to.equal(undefined);
    holder.deaf(false);
    // The holder's connections drop (Redis itself keeps everything): it reconciles and re-asserts its live devices.
    const list = (await admin.client('LIST')) as string;
    const ids = list
      .split('\n')
      .filter((line) => line.includes(' name=proc-A '))
      .map((line) => /^id=(\d+)/.exec(line)?.[1] as string);
    expect(ids.length).to.be.at.least(2);
    for (const id of ids) await admin.client('KILL', 'ID', id);
    await waitFor(() => holder.told.get('tablet'), 'the tablet to be told', 5000);
    expect(holder.told.get('tablet')).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'iPad', instanceId: 'tablet2' } }]);
  });

  it('the double-restart reproduction (spec/chaos/double-restart.repro.ts) loses no kick', async function () {
    this.timeout(120_000);
    const result = await reproduce(Number(process.env.ROUNDS ?? 3), () => {});
    expect(result.lost, result.lines.join('\n')).to.equal(0);
    expect(result.told).to.deep.equal(Array(result.rounds).fill('LoginElsewhere by Web/web'));
  });
});
