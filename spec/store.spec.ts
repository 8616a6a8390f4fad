// The store conformance suite against MemoryStore, RedisStore on one Redis, and RedisStore on a Redis Cluster.

import type { Cluster, Redis } from 'ioredis';
import { MemoryStore, type PresenceStore } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { storeConformance, type StoreFactory } from './helpers/store-conformance.js';
import { clusterClient, deleteKeys, redisClient, requireCluster, uniquePrefix } from './helpers/redis.js';

storeConformance('MemoryStore', { create: (limits) => new MemoryStore(limits) });

function redisFactory(connect: () => Redis | Cluster): StoreFactory {
  const clients: (Redis | Cluster)[] = [];
  const prefixes: string[] = [];
  return {
    create(limits) {
      const client = connect();
      clients.push(client);
      const prefix = uniquePrefix('conformance');
      prefixes.push(prefix);
      return new RedisStore({ client, prefix, sweepInterval: 50, ...limits });
    },
    sibling(store: PresenceStore) {
      const client = connect();
      clients.push(client);
      return new RedisStore({ client, prefix: (store as RedisStore).prefix, sweepInterval: 50 });
    },
    async cleanup() {
      const admin = clients[0];
      if (admin) for (const prefix of prefixes.splice(0)) await deleteKeys(admin, prefix);
      for (const client of clients.splice(0)) client.disconnect();
    },
  };
}

storeConformance('RedisStore', redisFactory(redisClient));

describe('on a Redis Cluster', function () {
  before(function () {
    requireCluster(this);
  });
  storeConformance('RedisStore on a Redis Cluster', redisFactory(clusterClient));
});
