// Planned changes made at once go to Redis in one call per node (lib/redis/batch.ts, plannedBatch in presence.lua): each is
// still checked and applied on its own, a user met twice in one call has its second change run by the full function, and
// the counts, indexes and revocations come out as if each had been sent alone. On one Redis and on a Redis Cluster, where a
// call's changes span many slots of one node.

import { expect } from 'chai';
import type { Cluster, Redis } from 'ioredis';
import type { StoreContext } from '../lib/core/store.js';
import { RedisStore } from '../lib/redis/index.js';
import { clusterClient, deleteKeys, layoutOf, ownedBy, redisClient, requireCluster, uniquePrefix } from './helpers/redis.js';

const USERS = 60;
const limits = { loginPolicy: 'multi' as const, maxInstancesPerPlatform: 10, maxWebInstances: 10 };

function context(): StoreContext {
  return {
    clock: {
      now: () => Date.now(),
      setTimeout: (callback: () => void, ms: number) => setTimeout(callback, ms),
      clearTimeout: (handle: unknown) => clearTimeout(handle as NodeJS.Timeout),
    },
    pushOnlineTtl: 3_600_000,
    reconnectGrace: { mobile: 0, desktop: 0, web: 0, miniProgram: 0 },
    logger: { info: () => {}, warn: () => {}, error: () => {} },
    owner: 'o1',
    expired: () => {},
    changed: () => {},
    ended: () => {},
    liveInstances: () => [],
  } as unknown as StoreContext;
}

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
      await store.init(context());
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

    if (where === 'a Redis Cluster')
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
          let refused = 0;
          Object.assign(client, {
            fcall: (fn: string, ...rest: unknown[]) => {
              if (fn.endsWith('_plannedBatch') && refused === 0 && rest.filter((arg) => arg === 'L' || arg === 'R').length > 1) {
                refused++;
                return Promise.reject(new Error('ERR Script attempted to access a non local key in a cluster node script: plannedBatch'));
              }
              return fcall(fn, ...rest);
            },
          });
          Object.assign(batches, { add });
          sizes.length = 0;
          const second = await Promise.all(users.map((userId) => login(userId, 'c')));
          expect(second.map((result) => result.outcome)).to.deep.equal(users.map(() => 'created'));
          expect(refused).to.equal(1);
          expect(sizes.filter((size) => size === 1).length, 'calls of one change').to.be.greaterThan(0);
          for (const userId of users) {
            const [user] = await store.get([userId]);
            expect(user?.instances.map((r) => r.instanceId).sort(), userId).to.deep.equal(['a', 'b', 'c']);
          }
          expect((await store.stats()).instances.Online - 3 * USERS).to.equal(0);
        });
  });
}
