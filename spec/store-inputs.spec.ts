// A store called with what it does not take says so, and a fault of the code or of the data is never taken for an outage:
// the store stays up and keeps answering the other calls.

import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { MemoryStore } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { deleteKeys, directContext, layoutOf, redisClient, uniquePrefix } from './helpers/redis.js';

describe('store inputs and faults of the code', () => {
  it('MemoryStore get() refuses anything but an array of user ids, naming it', () => {
    const store = new MemoryStore();
    expect(() => store.get('u1' as unknown as string[])).to.throw(TypeError, /get\(userIds\): userIds must be an array of user ids; got string/);
  });

  describe('RedisStore', () => {
    let admin: Redis;
    let store: RedisStore;
    const prefix = uniquePrefix('inputs');
    const errors: string[] = [];

    before(async () => {
      admin = redisClient();
      store = new RedisStore({ client: redisClient(), prefix, sweepInterval: 3_600_000 });
      const context = directContext();
      await store.init({ ...context, logger: { ...context.logger, error: (message: string) => errors.push(message) } });
    });

    after(async () => {
      await store.close();
      await deleteKeys(admin, prefix);
      admin.disconnect();
    });

    it('refuses a get() of anything but an array, naming it, and stays up', async () => {
      const refusal = await store.get('u1' as unknown as string[]).then(
        () => 'answered',
        (error: Error) => `${error.name}: ${error.message}`,
      );
      expect(refusal).to.match(/^TypeError: Redis store get\(userIds\): userIds must be an array of user ids; got string$/);
      expect(await store.get(['u1'])).to.deep.equal([undefined]);
    });

    it('answers a record that is not JSON with the parse error, not as Redis unreachable, and keeps serving', async () => {
      await admin.set(layoutOf(prefix).user('broken'), '{not json');
      const refusal = await store.get(['broken']).then(
        () => 'answered',
        (error: Error) => error.name,
      );
      expect(refusal).to.equal('SyntaxError');
      expect(await store.get(['someone-else'])).to.deep.equal([undefined]);
      expect(errors.filter((message) => /unreachable/.test(message))).to.deep.equal([]);
    });
  });
});
