// Planned changes made at once go to Redis in one call per node (lib/redis/batch.ts, plannedBatch in presence.lua): each is
// still checked and applied on its own, a user met twice in one call has its second change run by the full function, and
// the counts, indexes and revocations come out as if each had been sent alone. On one Redis and on a Redis Cluster, where a
// call's changes span many slots of one node.

import { expect } from 'chai';
import { ReplyError, type Cluster, type Redis } from 'ioredis';
import { RedisStore } from '../lib/redis/index.js';
import { BUCKET_TAGS, bucketOf as bucketOfUser, slotOf } from '../lib/redis/layout.js';
import { planLogin } from '../lib/redis/planned.js';
import type { BatchAnswer, BatchEntry } from '../lib/redis/batch.js';
import { clusterClient, deleteKeys, directContext, layoutOf, ownedBy, redisClient, requireCluster, uniquePrefix } from './helpers/redis.js';

const USERS = 60;
const limits = { loginPolicy: 'multi' as const, maxInstancesPerPlatform: 10, maxWebInstances: 10 };

/** The number of changes of each plannedBatch call the client sends. */
function batchSizes(client: Redis | Cluster): number[] {
  const sizes: number[] = [];
  const fcall = client.fcall.bind(client) as (...args: unknown[]) => Promise<unknown>;
  Object.assign(client, {
    fcall: (fn: string, ...rest: unknown[]) => {
      if (fn.endsWith('_plannedBatch')) sizes.push(rest.filter((arg) => arg === 'L' || arg === 'R').length);
      return fcall(fn, ...rest);
    },
  });
  return sizes;
}

for (const where of ['one Redis', 'a Redis Cluster'] as const) {
  describe(`RedisStore batches of planned changes, on ${where}`, function () {
    this.timeout(60_000);
    let admin: Redis | Cluster;
    let store: RedisStore;
    let sizes: number[];
    const prefix = uniquePrefix('batch');
    /** A fresh login of one of the user's devices (its session: `<userId>-<instanceId>`). */
    const login = (userId: string, instanceId: string) =>
      store.login({
        userId,
        platform: 'Web',
        instanceId,
        resumeSessionId: undefined,
        newSessionId: `${userId}-${instanceId}`,
        version: undefined,
        at: Date.now(),
        limits,
      });

    before(async function () {
      if (where === 'a Redis Cluster') requireCluster(this);
      const client = where === 'one Redis' ? redisClient() : clusterClient();
      admin = where === 'one Redis' ? redisClient() : clusterClient();
      sizes = batchSizes(client);
      store = new RedisStore({ client, prefix, sweepInterval: 3_600_000 });
      await store.init(directContext());
    });

    after(async () => {
      await store?.close();
      if (admin) {
        await deleteKeys(admin, prefix);
        admin.disconnect();
      }
    });

    it('checks each change on its own, and leaves the counts, owned devices and revocations of each', async () => {
      const users = Array.from({ length: USERS }, (_, i) => `bu${i}`);
      // One device each, one at a time: the first login of a user is the full function; the process now remembers each record.
      for (const userId of users) expect((await login(userId, 'a')).outcome).to.equal('created');
      sizes.length = 0;

      // At once: a second device for everyone, a third for every other user (that user's second change in the same turn),
      // and the first device's logout for every third user.
      const results = await Promise.all(
        users.flatMap((userId, i) => [
          login(userId, 'b'),
          ...(i % 2 === 0 ? [login(userId, 'c')] : []),
          ...(i % 3 === 0
            ? [store.remove({ userId, instanceId: 'a', sessionId: `${userId}-a`, at: Date.now(), lastSeen: Date.now(), revoke: true, owner: 'o1' })]
            : []),
        ]),
      );
      expect(results.every((result) => result !== null && (!('outcome' in result) || result.outcome === 'created'))).to.equal(true);
      expect(Math.max(...sizes), 'changes in one call').to.be.greaterThan(1);

      const expected = new Map(users.map((userId, i) => [userId, ['a', 'b', 'c'].filter((d) => !(d === 'c' && i % 2 !== 0) && !(d === 'a' && i % 3 === 0))]));
      let devices = 0;
      for (const [userId, instances] of expected) {
        const [user] = await store.get([userId]);
        expect(user?.instances.map((r) => r.instanceId).sort(), userId).to.deep.equal(instances);
        devices += instances.length;
      }
      const stats = await store.stats();
      expect(stats.users.Online).to.equal(USERS);
      expect(stats.instances.Online).to.equal(devices);
      expect(stats.platforms.Web.Online).to.equal(devices);
      const owned = (await ownedBy(admin, prefix, 'o1')).map(([userId, instanceId]) => `${userId}/${instanceId}`).sort();
      expect(owned).to.deep.equal([...expected].flatMap(([userId, instances]) => instances.map((d) => `${userId}/${d}`)).sort());
      const layout = layoutOf(prefix);
      for (const [i, userId] of users.entries()) {
        const revoked = await admin.hkeys(layout.userKeys(userId)[1]);
        expect(revoked, userId).to.deep.equal(i % 3 === 0 ? [`${userId}-a`] : []);
      }

      // And back to nobody, at once: every device's logout.
      await Promise.all(
        [...expected].flatMap(([userId, instances]) =>
          instances.map((d) =>
            store.remove({ userId, instanceId: d, sessionId: `${userId}-${d}`, at: Date.now(), lastSeen: Date.now(), revoke: true, owner: 'o1' }),
          ),
        ),
      );
      const after = await store.stats();
      expect([after.users.Online, after.instances.Online, after.platforms.Web.Online]).to.deep.equal([0, 0, 0]);
      expect(await ownedBy(admin, prefix, 'o1')).to.deep.equal([]);
      for (const [user] of await Promise.all(users.map((userId) => store.get([userId])))) expect(user?.instances ?? []).to.deep.equal([]);
    });

    it("keeps a user's changes in the order they were made: a full function waits for the user's plan on its way", async () => {
      await login('or1', 'a');
      // The logout is planned and waits for the node's next call; the login of the same device right after is a full function
      // (the device is still in the record remembered). It must find the device gone, not end it as displaced.
      const [ended, again] = await Promise.all([
        store.remove({ userId: 'or1', instanceId: 'a', sessionId: 'or1-a', at: Date.now(), lastSeen: Date.now(), revoke: true, owner: 'o1' }),
        store.login({
          userId: 'or1',
          platform: 'Web',
          instanceId: 'a',
          resumeSessionId: undefined,
          newSessionId: 'or1-a2',
          version: undefined,
          at: Date.now(),
          limits,
        }),
      ]);
      expect(ended?.instanceStatus).to.equal('Offline');
      expect(again.outcome).to.equal('created');
      expect(again.outcome === 'created' && again.change.kicked).to.deep.equal([]);
      const [user] = await store.get(['or1']);
      expect(user?.instances.map((r) => r.sessionId)).to.deep.equal(['or1-a2']);
    });

    if (where === 'one Redis')
      it('a call that fails half-way leaves the counts of the calls after it whole', async () => {
        await login('dl1', 'a');
        // The user's bucket's owned set made unwritable: the planned login fails at its ZADD, after its record was written.
        const owned = layoutOf(prefix).shared(bucketOfUser('dl1'))[2];
        const kept = await admin.zrange(owned, '0', '-1');
        await admin.del(owned);
        await admin.set(owned, 'not a sorted set');
        const failed = await login('dl1', 'b').then(
          () => 'answered',
          (error: Error) => error.message,
        );
        expect(failed).to.match(/WRONGTYPE/);
        await admin.del(owned);
        if (kept.length > 0) await admin.zadd(owned, ...kept.flatMap((member) => ['0', member]));
        // Later full functions still count: a new user's login and its logout move the counts both ways.
        const before = await store.stats();
        await login('dl2', 'a');
        const during = await store.stats();
        expect(during.instances.Online - before.instances.Online).to.equal(1);
        expect(during.users.Online - before.users.Online).to.equal(1);
      });

    if (where === 'a Redis Cluster')
      it('reads every key a change writes before it writes any: a key of another node fails the call with nothing changed', async () => {
        const client = (store as unknown as { client: Cluster }).client;
        const nodeOfBucket = (bucket: number) => client.slots[slotOf(BUCKET_TAGS[bucket] as string)]?.join(',');
        const nodeOfUser = (userId: string) => nodeOfBucket(bucketOfUser(userId));
        // Two users of one node, and a bucket of another node.
        const users = Array.from({ length: 200 }, (_, i) => `kx${i}`);
        const first = users[0] as string;
        const second = users.find((userId) => userId !== first && nodeOfUser(userId) === nodeOfUser(first)) as string;
        const elsewhere = Array.from({ length: 128 }, (_, b) => b).find((b) => nodeOfBucket(b) !== nodeOfUser(first)) as number;
        const layout = layoutOf(prefix);
        const memory = (store as unknown as { records: { get(userId: string): string | undefined } }).records;
        const entryOf = (userId: string, owned: string): BatchEntry => {
          const plan = planLogin(
            memory.get(userId) as string,
            { userId, platform: 'Web', instanceId: 'b', resumeSessionId: undefined, newSessionId: `${userId}-b`, version: undefined, at: Date.now(), limits },
            'o1',
          );
          if (!plan) throw new Error(`no plan for ${userId}`);
          return { stats: layout.shared(bucketOfUser(userId))[0], keys: [layout.userKeys(userId)[0], owned], args: ['L', plan.args.length, ...plan.args] };
        };
        await login(first, 'a');
        await login(second, 'a');
        const before = await store.stats();
        const recordBefore = await admin.get(layout.userKeys(first)[0]);
        // The second change's owned set is another node's: the node refuses it while reading, before the first change is written.
        const send = (store as unknown as { sendBatch(entries: readonly BatchEntry[]): Promise<BatchAnswer[]> }).sendBatch.bind(store);
        const batch = [entryOf(first, layout.shared(bucketOfUser(first))[2]), entryOf(second, layout.shared(elsewhere)[2])];
        const calls: number[] = [];
        const fcall = client.fcall.bind(client) as (...args: unknown[]) => Promise<unknown>;
        Object.assign(client, {
          fcall: (fn: string, ...rest: unknown[]) =>
            fcall(fn, ...rest).then(
              (answer) => (calls.push(rest.filter((arg) => arg === 'L').length), answer),
              (error: unknown) => {
                calls.push(-rest.filter((arg) => arg === 'L').length);
                throw error;
              },
            ),
        });
        const answers = await send(batch);
        Object.assign(client, { fcall });
        // Refused whole, then each alone: the first applies once; the second's keys span two slots and are refused again.
        expect(calls[0], 'the call of both, refused').to.equal(-2);
        expect(calls.slice(1).sort(), 'each alone').to.deep.equal([-1, 1]);
        expect(answers[0]).to.equal(true);
        expect(typeof answers[1]).to.equal('object');
        expect(await admin.get(layout.userKeys(first)[0])).to.not.equal(recordBefore);
        const [user] = await store.get([first]);
        expect(user?.instances.map((r) => r.instanceId).sort()).to.deep.equal(['a', 'b']);
        expect((await store.stats()).instances.Online - before.instances.Online).to.equal(1);
      });

    if (where === 'a Redis Cluster')
      it('leaves the changes of users another node serves to the full function, and sends each alone when a node refuses a key', async () => {
        // As if the slot map were stale: every change grouped for one node, so each call spans the three. A record another
        // node numbered is not this node's run: that change answers 0 (the full function makes it) before its key is read.
        const batches = (store as unknown as { batches: { add: (node: string, entry: unknown) => Promise<boolean> } }).batches;
        const add = batches.add.bind(batches);
        Object.assign(batches, { add: (_node: string, entry: unknown) => add('stale', entry) });
        const users = Array.from({ length: USERS }, (_, i) => `mv${i}`);
        for (const userId of users) await login(userId, 'a');
        sizes.length = 0;
        const first = await Promise.all(users.map((userId) => login(userId, 'b')));
        expect(first.map((result) => result.outcome)).to.deep.equal(users.map(() => 'created'));
        expect(Math.max(...sizes), 'changes in one call').to.be.greaterThan(1);

        // A slot that moved while its record kept this node's run: the node refuses the key, before the call changed anything
        // (every record is read before any write); each change is then sent alone, routed by its own keys.
        const client = (store as unknown as { client: Cluster }).client;
        const fcall = client.fcall.bind(client) as (...args: unknown[]) => Promise<unknown>;
        // One of those sent alone fails as well: only its own change fails.
        let refused = 0;
        let failedUser = '';
        Object.assign(client, {
          fcall: (fn: string, ...rest: unknown[]) => {
            const changes = rest.filter((arg) => arg === 'L' || arg === 'R').length;
            if (fn.endsWith('_plannedBatch') && refused === 0 && changes > 1) {
              refused++;
              return Promise.reject(new ReplyError('ERR Script attempted to access a non local key in a cluster node script: plannedBatch'));
            }
            if (fn.endsWith('_plannedBatch') && refused === 1 && changes === 1 && failedUser === '') {
              failedUser = (rest.find((arg) => typeof arg === 'string' && arg.includes(':u:')) as string).split(':u:')[1] as string;
              return Promise.reject(new ReplyError('ERR injected'));
            }
            return fcall(fn, ...rest);
          },
        });
        Object.assign(batches, { add });
        sizes.length = 0;
        const before = await store.stats();
        const second = await Promise.allSettled(users.map((userId) => login(userId, 'c')));
        expect(refused).to.equal(1);
        expect(sizes.filter((size) => size === 1).length, 'calls of one change').to.be.greaterThan(0);
        expect(
          second.map((result, i) => (result.status === 'fulfilled' ? result.value.outcome : `${users[i]}: ${(result.reason as Error).message}`)),
        ).to.deep.equal(users.map((userId) => (userId === failedUser ? `${userId}: ERR injected` : 'created')));
        for (const userId of users) {
          const [user] = await store.get([userId]);
          expect(user?.instances.map((r) => r.instanceId).sort(), userId).to.deep.equal(userId === failedUser ? ['a', 'b'] : ['a', 'b', 'c']);
        }
        expect((await store.stats()).instances.Online - before.instances.Online).to.equal(USERS - 1);
      });
  });
}
