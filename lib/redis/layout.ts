// Where RedisStore keeps things: key names, hash tags and buckets, so that a Redis Cluster can serve every script.

/** Version of the key layout, written at `<prefix>layout`; the layout of 0.1 (no buckets, keys built in Lua) had none. */
export const LAYOUT_VERSION = '2';

/**
 * Users are spread over this many buckets. Every key of a user, and the bucket's shared structures (statistics, expiry queue,
 * owned devices, leases, handovers, end channels), carry the bucket's hash tag: one script touches one slot, and no key is
 * touched by every login.
 */
export const BUCKETS = 128;

/** CRC16/XMODEM, as Redis Cluster hashes keys (its `keyHashSlot`). */
function crc16(text: string): number {
  const bytes = Buffer.from(text, 'utf8');
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Redis Cluster slot of a hash tag (the text between the braces). */
export function slotOf(tag: string): number {
  return crc16(tag) % 16384;
}

/**
 * One tag per bucket, chosen so that bucket i's slot lies in the i-th equal part of the 16384 slots: a cluster whose masters
 * share the slots in even ranges (what `redis-cli --cluster create` makes) gets an even share of the buckets on each master.
 */
export const BUCKET_TAGS: readonly string[] = (() => {
  const tags: string[] = new Array(BUCKETS);
  let found = 0;
  for (let n = 0; found < BUCKETS; n++) {
    const tag = `b${n.toString(36)}`;
    const part = Math.floor((slotOf(tag) * BUCKETS) / 16384);
    if (tags[part] === undefined) {
      tags[part] = tag;
      found++;
    }
  }
  return tags;
})();

/** The bucket of a user (FNV-1a of its id). */
export function bucketOf(userId: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    hash ^= userId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % BUCKETS;
}

/** Key names under one prefix. */
export class RedisLayout {
  constructor(readonly prefix: string) {}

  /** `<prefix>{<tag>}:`, the start of every key of bucket b. */
  base(bucket: number): string {
    return `${this.prefix}{${BUCKET_TAGS[bucket] as string}}:`;
  }

  /** The layout marker (no tag: read alone). */
  get layout(): string {
    return `${this.prefix}layout`;
  }

  /** The bucket's shared keys, in the order every script takes them as KEYS[1..5]. */
  shared(bucket: number): [stats: string, expiry: string, owned: string, leases: string, gone: string] {
    const base = this.base(bucket);
    return [`${base}stats`, `${base}expiry`, `${base}owned`, `${base}leases`, `${base}gone`];
  }

  /** A user's keys, in the order the scripts take them: record, revoked sessions (with when and why), admin kick marks. */
  userKeys(userId: string): [record: string, revoked: string, kicks: string] {
    const base = this.base(bucketOf(userId));
    return [`${base}u:${userId}`, `${base}r:${userId}`, `${base}kk:${userId}`];
  }

  user(userId: string): string {
    return `${this.base(bucketOf(userId))}u:${userId}`;
  }

  /** The channel of ends aimed at one process's devices in bucket b, and the one every process hears. */
  endedChannel(bucket: number, owner?: string): string {
    return owner === undefined ? `${this.base(bucket)}ended` : `${this.base(bucket)}ended:${owner}`;
  }
}
