// express-presence/redis: the Redis-backed store for running many processes.

export { RedisStore, StoreLayoutError, type RedisStoreOptions } from './redis-store.js';
