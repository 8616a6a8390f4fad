// Sequence numbers in Redis mode: strictly increasing per user across empty Redis restarts, and no change for re-assertion.

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createPresence, StoreUnavailableError, type Connection, type Presence, type PresenceChange } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { callbackReceiver, delay, PrivateRedis, waitFor, type CallbackReceiver } from './fixtures/cluster-harness.js';
import { random } from './chaos/model.js';
import { expireLease } from './helpers/redis.js';

const LEASE_TTL = 1500;
const PREFIX = 'seq:';
const noop = () => {};

/** One process: a presence over its own RedisStore; every change it emitted goes to its list and to the shared log. */
interface Proc {
  presence: Presence;
  store: RedisStore;
  client: Redis;
  changes: PresenceChange[];
}

describe('Redis: sequence numbers across empty restarts', function () {
  this.timeout(60_000);
  let redis: PrivateRedis;
  let admin: Redis;
  let receiver: CallbackReceiver | undefined;
  const procs: Proc[] = [];
  /** Every change of every process, in the order they were emitted. */
  let log: PresenceChange[] = [];

  function open(callbackUrl?: string): Proc {
    const client = new Redis(redis.url, { retryStrategy: () => 50 });
    const store = new RedisStore({ client, prefix: PREFIX, leaseTtl: LEASE_TTL, sweepInterval: 100 });
    const presence = createPresence({
      loginPolicy: 'multi',
      store,
      logger: { warn: () => {}, error: () => {} },
      ...(callbackUrl ? { callback: { url: callbackUrl, backoff: 20, maxRetries: 50 } } : {}),
    });
    const changes: PresenceChange[] = [];
    presence.on('change', (change) => {
      changes.push(change);
      log.push(change);
    });
    const proc = { presence, store, client, changes };
    procs.push(proc);
    return proc;
  }

  /** Waits until each store is connected and its reconcile (the re-assertion after a restart) is over. */
  async function settled(): Promise<void> {
    await waitFor(
      () => procs.every((proc) => proc.client.status === 'ready' && (proc.store as unknown as { reconciling?: unknown }).reconciling === undefined),
      'the stores to settle',
      10_000,
    );
  }

  /** The user's devices as `instanceId/status`, read from Redis. */
  async function devices(proc: Proc, userId: string): Promise<string[]> {
    const [user] = await proc.presence.query([userId]);
    return (user?.instances ?? []).map((instance) => `${instance.instanceId}/${instance.status}`).sort();
  }

  /** Kills redis-server (its data is gone), starts it again empty, and waits until every process re-asserted its devices. */
  async function restartEmpty(expected: Record<string, string[]>): Promise<void> {
    await redis.kill();
    await delay(200);
    await redis.start();
    const first = procs[0] as Proc;
    for (const [userId, list] of Object.entries(expected)) {
      let last: string[] = [];
      await waitFor(
        async () => {
          try {
            last = await devices(first, userId);
          } catch (error) {
            // Until its client is back, the process refuses to answer rather than answer from nothing.
            if (error instanceof StoreUnavailableError) return false;
            throw error;
          }
          return JSON.stringify(last) === JSON.stringify(list);
        },
        `${userId} re-asserted as ${list.join(', ')}`,
        10_000,
      ).catch((error: Error) => {
        throw new Error(
          `${error.message} (holds ${last.join(', ') || 'nothing'}; changes ${JSON.stringify(log.filter((c) => c.userId === userId).map((c) => `${c.instanceId}/${c.action}/${c.reason}@${c.at}`))})`,
        );
      });
    }
    await settled();
  }

  function maxSeq(changes: readonly PresenceChange[], userId: string): number {
    return Math.max(0, ...changes.filter((change) => change.userId === userId).map((change) => change.seq));
  }

  beforeEach(async function () {
    log = [];
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url, { retryStrategy: () => 50 });
    admin.on('error', () => {});
  });

  afterEach(async function () {
    for (const proc of procs.splice(0)) {
      await proc.presence.close();
      proc.client.disconnect();
    }
    await receiver?.close();
    receiver = undefined;
    admin.disconnect();
    await redis.kill();
  });

  it('re-asserts devices after an empty restart with no change event nor callback, and numbers later changes above every earlier one', async function () {
    receiver = await callbackReceiver();
    const a = open(receiver.url);
    const b = open();
    await settled();
    const phone = await a.presence.engine.connect({ userId: 'u1', platform: 'Android', instanceId: 'a1' }, noop);
    const tab = await a.presence.engine.connect({ userId: 'u1', platform: 'Web', instanceId: 'w1' }, noop);
    const mac = await b.presence.engine.connect({ userId: 'u1', platform: 'Mac', instanceId: 'm1' }, noop);
    await b.presence.engine.connect({ userId: 'u2', platform: 'Web', instanceId: 'w2' }, noop);
    const iphone = await a.presence.engine.connect({ userId: 'u2', platform: 'iPhone', instanceId: 'i2' }, noop);
    a.presence.engine.disconnect(iphone.connection, 'closed');
    await waitFor(async () => (await devices(a, 'u2')).includes('i2/PushOnline'), 'the iPhone PushOnline');
    await waitFor(() => receiver?.bodies.length === a.changes.length, 'every callback of a');
    const before = [...log];
    const callbacksBefore = receiver.bodies.length;

    await restartEmpty({ u1: ['a1/Online', 'm1/Online', 'w1/Online'], u2: ['w2/Online'] });
    // Nothing is due: give a stray event or callback the time to show up, and the callback queue the time to drain.
    await delay(300);
    await waitFor(() => a.presence.metrics.snapshot().callback?.queued === 0, 'the callback queue to drain');
    expect(
      log.slice(before.length).map((change) => `${change.userId}/${change.instanceId}/${change.action}`),
      'changes for re-asserted devices',
    ).to.deep.equal([]);
    expect(
      receiver.bodies.slice(callbacksBefore).map((body) => `${body.Info.To_Account}/${body.InstId}`),
      'callbacks',
    ).to.deep.equal([]);

    // Later changes, on both processes: each above every number the user had before the restart.
    await a.presence.engine.logout(tab.connection);
    b.presence.engine.disconnect(mac.connection, 'closed');
    a.presence.engine.disconnect(phone.connection, 'closed');
    await a.presence.engine.connect({ userId: 'u2', platform: 'Android', instanceId: 'x2' }, noop);
    await waitFor(() => log.length === before.length + 4, 'the four later changes');
    for (const change of log.slice(before.length)) {
      expect(change.seq, `${change.userId}/${change.instanceId} ${change.action}`).to.be.greaterThan(maxSeq(before, change.userId));
      expect(Number.isSafeInteger(change.seq)).to.equal(true);
    }
    await waitFor(() => receiver?.bodies.length === a.changes.length, 'the later callbacks');
    const seqBefore = (userId: string) =>
      Math.max(
        ...receiver!.bodies
          .slice(0, callbacksBefore)
          .filter((body) => body.Info.To_Account === userId)
          .map((body) => body.Seq),
      );
    for (const body of receiver.bodies.slice(callbacksBefore)) expect(body.Seq).to.be.greaterThan(seqBefore(body.Info.To_Account));
  });

  it('a device whose end a reap reported is a login again when its stalled process re-asserts it', async function () {
    const a = open();
    const b = open();
    await settled();
    await a.presence.engine.connect({ userId: 'u3', platform: 'Web', instanceId: 'w3' }, noop);
    await a.presence.engine.connect({ userId: 'u3', platform: 'Android', instanceId: 'a3' }, noop);
    // As if a stalled past its lease: b reaps its devices (the lease is deleted until b has).
    await waitFor(
      async () => {
        if (b.changes.length >= 2) return true;
        await expireLease(admin, PREFIX, a.presence.engine.owner);
        return false;
      },
      "b's reap of a's devices",
      10_000,
    );
    expect(b.changes.map((change) => `${change.instanceId}/${change.action}/${change.instanceStatus}`).sort()).to.deep.equal([
      'a3/Disconnect/PushOnline',
      'w3/Disconnect/Offline',
    ]);
    // a finds its lease gone at its next renewal and re-asserts both: each a Login, numbered above the reap's.
    await waitFor(() => a.changes.filter((change) => change.action === 'Login').length >= 4, "a's re-assertion", 10_000);
    const logins = a.changes.slice(2);
    expect(logins.map((change) => `${change.instanceId}/${change.action}/${change.userStatus}`).sort()).to.deep.equal(['a3/Login/Online', 'w3/Login/Online']);
    for (const change of logins) expect(change.seq).to.be.greaterThan(maxSeq(b.changes, 'u3'));
    expect(await devices(a, 'u3')).to.deep.equal(['a3/Online', 'w3/Online']);
  });

  for (const seed of [11, 22, 33]) {
    it(`numbers each user's changes strictly increasing over a random mix of steps and empty restarts (seed ${seed})`, async function () {
      const rng = random(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)] as T;
      const a = open();
      const b = open();
      await settled();
      const users = ['u1', 'u2', 'u3'];
      const platforms = ['Android', 'Mac', 'Web'] as const;
      /** What is logged in, by `user/platform`: the connection while live, the session alone while PushOnline. */
      const live = new Map<string, { proc: Proc; connection: Connection }>();
      const pushOnline = new Map<string, string>();
      /** Changes emitted while the processes re-asserted their devices after a restart: there must be none. */
      const duringRestarts: string[] = [];
      const awaitChanges = async (count: number, what: string) => waitFor(() => log.length >= count, what, 10_000);
      for (let step = 0; step < 36; step++) {
        const userId = pick(users);
        const platform = pick(platforms);
        const key = `${userId}/${platform}`;
        const roll = rng();
        const count = log.length;
        if (step % 12 === 11) {
          for (const session of pushOnline.keys()) pushOnline.delete(session); // an empty restart forgets PushOnline devices
          const expected: Record<string, string[]> = {};
          for (const id of users)
            expected[id] = [...live.keys()]
              .filter((k) => k.startsWith(`${id}/`))
              .map((k) => `${k.split('/')[1]}-${id}/Online`)
              .sort();
          await restartEmpty(expected);
          await delay(100);
          duringRestarts.push(...log.slice(count).map((change) => `${change.userId}/${change.instanceId}/${change.action}`));
        } else if (live.has(key) && roll < 0.4) {
          const { proc, connection } = live.get(key)!;
          live.delete(key);
          proc.presence.engine.disconnect(connection, 'closed');
          if (platform === 'Android') pushOnline.set(key, connection.sessionId);
          await awaitChanges(count + 1, `the close of ${key}`);
        } else if (live.has(key) && roll < 0.6) {
          const { proc, connection } = live.get(key)!;
          live.delete(key);
          await proc.presence.engine.logout(connection);
        } else if (roll < 0.75 && [...live.keys(), ...pushOnline.keys()].some((k) => k.startsWith(`${userId}/`))) {
          const ended = [...live.keys(), ...pushOnline.keys()].filter((k) => k.startsWith(`${userId}/`)).length;
          for (const k of [...live.keys()]) if (k.startsWith(`${userId}/`)) live.delete(k);
          for (const k of [...pushOnline.keys()]) if (k.startsWith(`${userId}/`)) pushOnline.delete(k);
          await pick([a, b]).presence.kick(userId);
          await awaitChanges(count + ended, `the kick of ${userId}`);
          // An admin kick's mark makes a device its process took up in the same millisecond yield when re-asserted after an empty
          // restart (marks compare milliseconds; RELIABILITY.md, "Found by the chaos run"): the next login comes a few ms later.
          await delay(3);
        } else if (!live.has(key)) {
          const proc = pick([a, b]);
          const sessionId = pushOnline.get(key);
          pushOnline.delete(key);
          const result = await proc.presence.engine.connect({ userId, platform, instanceId: `${platform}-${userId}`, sessionId }, noop);
          live.set(key, { proc, connection: result.connection });
        }
      }
      expect(duringRestarts, 'changes while re-asserting').to.deep.equal([]);
      const restarts = 3;
      expect(log.length, 'changes made').to.be.greaterThan(restarts * 3);
      for (const userId of users) {
        const seqs = log.filter((change) => change.userId === userId).map((change) => change.seq);
        for (let i = 1; i < seqs.length; i++) expect(seqs[i], `${userId}'s change ${i} of ${JSON.stringify(seqs)}`).to.be.greaterThan(seqs[i - 1] as number);
      }
    });
  }
});
