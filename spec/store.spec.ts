// The store conformance suite against MemoryStore and RedisStore.

import type { Redis } from 'ioredis';
import { MemoryStore, type PresenceStore } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { storeConformance } from './helpers/store-conformance.js';
import { deleteKeys, redisClient, uniquePrefix } from './helpers/redis.js';

storeConformance('MemoryStore', { create: (limits) => new MemoryStore(limits) });

const clients: Redis[] = [];
const prefixes: string[] = [];
storeConformance('RedisStore', {
  create(limits) {
    const client = redisClient();
    clients.push(client);
    const prefix = uniquePrefix('conformance');
    prefixes.push(prefix);
    return new RedisStore({ client, prefix, sweepInterval: 50, ...limits });
  },
  sibling(store: PresenceStore) {
    const client = redisClient();
    clients.push(client);
    return new RedisStore({ client, prefix: (store as RedisStore).prefix, sweepInterval: 50 });
  },
  async cleanup() {
    const admin = clients[0];
    if (admin) for (const prefix of prefixes.splice(0)) await deleteKeys(admin, prefix);
    for (const client of clients.splice(0)) client.disconnect();
  },
});
