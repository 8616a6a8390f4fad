// Redis for tests: REDIS_URL (default 127.0.0.1:6379), a Redis Cluster at REDIS_CLUSTER_NODES, unique key prefixes, and cleanup.

import { Cluster, Redis } from 'ioredis';
import { BUCKETS, RedisLayout } from '../../lib/redis/layout.js';
import type { StoreContext } from '../../lib/core/store.js';
import { skipBecause } from './skip.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The nodes of a Redis Cluster for the cluster cases (`.ci/run` starts one): `host:port,host:port,...`. */
export const REDIS_CLUSTER_NODES = (process.env.REDIS_CLUSTER_NODES ?? '')
  .split(',')
  .map((node) => node.trim())
  .filter(Boolean)
  .map((node) => {
    const [host, port] = node.split(':');
    return { host: host as string, port: Number(port) };
  });

export function redisClient(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: false });
}

/** An ioredis Cluster over REDIS_CLUSTER_NODES. */
export function clusterClient(): Cluster {
  return new Cluster(REDIS_CLUSTER_NODES, { redisOptions: { maxRetriesPerRequest: null }, shardedSubscribers: true });
}

/**
 * In a before hook of the cluster cases: skips them with a reason when no cluster is configured, except under CI (`CI` set),
 * where a missing cluster fails.
 */
export function requireCluster(context: Mocha.Context): void {
  if (REDIS_CLUSTER_NODES.length > 0) return;
  if (process.env.CI) throw new Error('REDIS_CLUSTER_NODES is not set: under CI the Redis Cluster cases must run (.ci/run starts a cluster)');
  skipBecause(context, 'no Redis Cluster: set REDIS_CLUSTER_NODES=host:port,... (.ci/run starts one)');
}

export function uniquePrefix(label: string): string {
  return `test:${label}:${process.pid}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2, 8)}:`;
}

/** Deletes every key under `prefix` (on every master of a cluster). */
export async function deleteKeys(client: Redis | Cluster, prefix: string): Promise<void> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      // One key at a time: on a cluster the keys of one scan sit in many slots.
      for (const key of keys) await node.del(key);
    } while (cursor !== '0');
  }
}

/** The layout's key names for a test's prefix. */
export function layoutOf(prefix: string): RedisLayout {
  return new RedisLayout(prefix);
}

/** Whether any bucket still lists the process among the leases (it renewed, or its devices are not all reaped yet). */
export async function leaseListed(client: Redis | Cluster, prefix: string, owner: string): Promise<boolean> {
  const layout = new RedisLayout(prefix);
  for (let bucket = 0; bucket < BUCKETS; bucket++) if ((await client.zscore(layout.shared(bucket)[3], owner)) !== null) return true;
  return false;
}

/** As if the process's lease ran out now (a stall): every bucket's entry of it is made past due. */
export async function expireLease(client: Redis | Cluster, prefix: string, owner: string): Promise<void> {
  const layout = new RedisLayout(prefix);
  // All at once (sent together), so that the process's next renewal does not come in between.
  await Promise.all(Array.from({ length: BUCKETS }, (_, bucket) => client.zadd(layout.shared(bucket)[3], 'XX', 0, owner)));
}

/** Whether the process's lease is live in every bucket. */
export async function leaseLive(client: Redis | Cluster, prefix: string, owner: string): Promise<boolean> {
  const layout = new RedisLayout(prefix);
  for (let bucket = 0; bucket < BUCKETS; bucket++) {
    const until = await client.zscore(layout.shared(bucket)[3], owner);
    if (until === null || Number(until) <= Date.now()) return false;
  }
  return true;
}

/** The devices a process holds, as [userId, instanceId, sessionId], over every bucket. */
export async function ownedBy(client: Redis | Cluster, prefix: string, owner: string): Promise<[string, string, string][]> {
  const layout = new RedisLayout(prefix);
  const owned: [string, string, string][] = [];
  for (let bucket = 0; bucket < BUCKETS; bucket++) {
    for (const member of await client.zrangebylex(layout.shared(bucket)[2], `[${owner}\0`, `(${owner}\x01`))
      owned.push(JSON.parse(member.slice(owner.length + 1)) as [string, string, string]);
  }
  return owned;
}

/** Whether any bucket notes the process gone (a handover or a reap under way). */
export async function notedGone(client: Redis | Cluster, prefix: string, owner: string): Promise<boolean> {
  const layout = new RedisLayout(prefix);
  for (let bucket = 0; bucket < BUCKETS; bucket++) if ((await client.hexists(layout.shared(bucket)[4], `${owner}:at`)) === 1) return true;
  return false;
}

/**
 * The context of a store driven directly by a spec, with no engine behind it: process `o1`, a PushOnline TTL of an hour, no
 * reconnect grace, and callbacks that do nothing. `now`: the clock.
 */
export function directContext(now: () => number = () => Date.now()): StoreContext {
  return {
    clock: {
      now,
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
