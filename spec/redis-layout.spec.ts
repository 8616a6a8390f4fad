// RedisStore's key layout: hash tags and buckets fit Redis Cluster, and data of another layout is refused with what to do.

import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { createPresence, type Presence } from '../lib/index.js';
import { RedisStore, StoreLayoutError } from '../lib/redis/index.js';
import { BUCKETS, BUCKET_TAGS, bucketOf, slotOf } from '../lib/redis/layout.js';
import { deleteKeys, redisClient, uniquePrefix } from './helpers/redis.js';

const noop = () => {};

describe('Redis key layout', function () {
  this.timeout(20_000);
  let admin: Redis;
  const presences: Presence[] = [];
  const prefixes: string[] = [];
  const clients: Redis[] = [];

  function open(prefix: string): Presence {
    const client = redisClient();
    clients.push(client);
    prefixes.push(prefix);
    const presence = createPresence({ store: new RedisStore({ client, prefix }), logger: { warn: noop, error: noop } });
    presences.push(presence);
    return presence;
  }

  before(() => {
    admin = redisClient();
  });
  afterEach(async () => {
    for (const presence of presences.splice(0)) await presence.close();
    for (const prefix of prefixes.splice(0)) await deleteKeys(admin, prefix);
    for (const client of clients.splice(0)) client.disconnect();
  });
  after(() => admin.disconnect());

  it('hashes tags as Redis Cluster does, and gives each bucket its own even share of the slots', () => {
    // CRC16/XMODEM's check value: Redis Cluster's keyHashSlot("123456789") is 12739.
    expect(slotOf('123456789')).to.equal(12739);
    expect(BUCKET_TAGS).to.have.length(BUCKETS);
    BUCKET_TAGS.forEach((tag, bucket) => expect(Math.floor((slotOf(tag) * BUCKETS) / 16384), tag).to.equal(bucket));
    const counts = new Array<number>(BUCKETS).fill(0);
    for (let i = 0; i < 64_000; i++) counts[bucketOf(`user-${i}`)]!++;
    expect(Math.min(...counts)).to.be.greaterThan(350);
    expect(Math.max(...counts)).to.be.lessThan(650);
  });

  it('refuses a prefix with braces, naming it', () => {
    expect(() => new RedisStore({ client: admin, prefix: 'app:{x}:' })).to.throw(TypeError, /prefix must not contain braces.*"app:\{x\}:"/);
  });

  it('refuses every call, saying what to do, when 0.1 data sits under the prefix', async () => {
    const prefix = uniquePrefix('old');
    // What 0.1 left: its statistics hash and process set right under the prefix.
    await admin.hset(`${prefix}stats`, 'u:Online', 1);
    await admin.sadd(`${prefix}procs`, 'old-process');
    const presence = open(prefix);
    const login = await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w' }, noop).catch((error: unknown) => error);
    expect(login)
      .to.have.property('message')
      .that.matches(/SERVER_ERROR|express-presence 0\.1/);
    const query = await presence.query(['u']).catch((error: unknown) => error);
    expect(query).to.be.instanceOf(StoreLayoutError);
    expect((query as StoreLayoutError).code).to.equal('ERR_PRESENCE_REDIS_LAYOUT');
    expect((query as Error).message)
      .to.include(prefix)
      .and.include('Upgrading from 0.1')
      .and.include('presence:v2:');
    expect(await admin.exists(`${prefix}layout`), 'nothing written').to.equal(0);
  });

  it('refuses data of another layout version, and writes its own on fresh data', async () => {
    const fresh = uniquePrefix('fresh');
    await open(fresh).engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w' }, noop);
    expect(await admin.get(`${fresh}layout`)).to.equal('2');
    const future = uniquePrefix('future');
    await admin.set(`${future}layout`, '3');
    const query = await open(future)
      .query(['u'])
      .catch((error: unknown) => error);
    expect(query).to.be.instanceOf(StoreLayoutError);
    expect((query as Error).message).to.match(/layout "3"; this version reads layout 2/);
  });
});
