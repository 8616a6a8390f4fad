// A session kicked while its holder's subscriber is reconnecting is refused there too, not resumed as a second tab.

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createPresence, PresenceError, type EndNotice, type Presence } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { PrivateRedis, waitFor } from './fixtures/cluster-harness.js';

describe('Redis: ends missed while the subscriber reconnects', function () {
  this.timeout(30_000);
  let redis: PrivateRedis;
  const opened: { presence: Presence; client: Redis }[] = [];

  function open(): { presence: Presence; store: RedisStore } {
    const client = new Redis(redis.url, { retryStrategy: () => 50 });
    const store = new RedisStore({ client, prefix: 'resub:', leaseTtl: 1500, sweepInterval: 100 });
    const presence = createPresence({ loginPolicy: 'triple', store, logger: { warn: () => {}, error: () => {} } });
    opened.push({ presence, client });
    return { presence, store };
  }

  beforeEach(async function () {
    redis = await PrivateRedis.start();
  });

  afterEach(async function () {
    for (const { presence, client } of opened.splice(0)) {
      await presence.close();
      client.disconnect();
    }
    await redis.kill();
  });

  it('refuses a resume of a session kicked meanwhile, and tells the connection still open there', async function () {
    const holder = open();
    const kicker = open();
    const subscriber = (holder.store as unknown as { subscriber: Redis }).subscriber;
    await waitFor(() => !holder.store.mayMissEnds() && !kicker.store.mayMissEnds(), 'both subscriptions in place');
    const told: EndNotice[] = [];
    const phone = await holder.presence.engine.connect({ userId: 'u', platform: 'iPhone', instanceId: 'phone' }, (notice) => told.push(notice));
    // The holder's subscriber drops and stays away for a while (a reconnection after a Redis restart can lag the main client's).
    subscriber.options.retryStrategy = () => 1500;
    subscriber.disconnect(true);
    await waitFor(() => subscriber.status !== 'ready', 'the subscriber to be away');
    expect(holder.store.mayMissEnds()).to.equal(true);
    // Another process logs in a device that displaces the phone: its end is published, and the holder does not hear it.
    const ipad = await kicker.presence.engine.connect({ userId: 'u', platform: 'iPad', instanceId: 'ipad' }, () => {});
    expect(ipad.kicked).to.deep.equal([{ platform: 'iPhone', instanceId: 'phone' }]);
    expect(told).to.deep.equal([]);
    // The phone reconnects to the holder with its session, as a second connection: refused, not joined locally.
    const refusal = await holder.presence.engine
      .connect({ userId: 'u', platform: 'iPhone', instanceId: 'phone', sessionId: phone.connection.sessionId }, () => {})
      .then(
        () => 'let in',
        (error: unknown) => (error instanceof PresenceError ? error.code : String(error)),
      );
    expect(refusal).to.equal('SESSION_REVOKED');
    // Its first connection, still open there, is told now.
    expect(told).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'iPad', instanceId: 'ipad' } }]);
    expect(holder.presence.engine.liveInstances).to.equal(0);
    // Once the subscription is back and the reconcile is over, a second tab of a live session joins locally again.
    await waitFor(() => !holder.store.mayMissEnds(), 'the subscription back', 10_000);
    const tab = await kicker.presence.engine.connect({ userId: 'u', platform: 'iPad', instanceId: 'ipad', sessionId: ipad.connection.sessionId }, () => {});
    expect(tab.resumed).to.equal(true);
  });
});
