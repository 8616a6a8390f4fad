// The stores' own options: each bad one refused with a TypeError naming it.

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { MemoryStore } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';

describe('store options', () => {
  it('MemoryStore: counts are positive integers; unknown options name the nearest known one', () => {
    expect(() => new MemoryStore({ maxOfflineUsers: 10, maxRevokedSessions: 1 })).to.not.throw();
    for (const bad of [0, -1, 1.5, '10', NaN, null]) {
      expect(() => new MemoryStore({ maxOfflineUsers: bad as number })).to.throw(TypeError, /MemoryStore: maxOfflineUsers must be a positive integer; got /);
      expect(() => new MemoryStore({ maxRevokedSessions: bad as number })).to.throw(TypeError, /MemoryStore: maxRevokedSessions must be a positive integer/);
      expect(() => new MemoryStore({ maxRevokedSessionsPerUser: bad as number })).to.throw(
        TypeError,
        /MemoryStore: maxRevokedSessionsPerUser must be a positive integer/,
      );
    }
    expect(() => new MemoryStore({ maxOfflineUsers: '10' as unknown as number })).to.throw(TypeError, /got "10"/);
    const persistence = { load: () => ({ users: [], revokedSessions: [] }), save: () => {} };
    expect(() => new MemoryStore({ persistence: { ...persistence, flushInterval: 0 } })).to.throw(
      TypeError,
      /MemoryStore: persistence\.flushInterval must be a positive integer of milliseconds; got 0/,
    );
    expect(() => new MemoryStore({ maxOfflineUser: 10 } as never)).to.throw(
      TypeError,
      /unknown option MemoryStore\.maxOfflineUser; did you mean MemoryStore\.maxOfflineUsers\?/,
    );
  });

  it('RedisStore: durations are positive integers of milliseconds; unknown options name the nearest known one', () => {
    // lazyConnect: nothing is sent; the constructor only checks what it was given.
    const client = new Redis({ lazyConnect: true });
    try {
      for (const name of ['leaseTtl', 'sweepInterval', 'offlineTtl']) {
        for (const bad of [0, -1, 2.5, '1000', Infinity]) {
          expect(() => new RedisStore({ client, [name]: bad })).to.throw(
            TypeError,
            new RegExp(`RedisStore: ${name} must be a positive integer of milliseconds; got `),
          );
        }
      }
      for (const bad of [0, -1, 2.5, '1000', null]) {
        expect(() => new RedisStore({ client, maxRevokedSessionsPerUser: bad as number })).to.throw(
          TypeError,
          /RedisStore: maxRevokedSessionsPerUser must be a positive integer; got /,
        );
      }
      expect(() => new RedisStore({ client, maxRevokedSessionPerUser: 5 } as never)).to.throw(
        TypeError,
        /unknown option RedisStore\.maxRevokedSessionPerUser; did you mean RedisStore\.maxRevokedSessionsPerUser\?/,
      );
      expect(() => new RedisStore({ client, leaseTTL: 5000 } as never)).to.throw(
        TypeError,
        /unknown option RedisStore\.leaseTTL; did you mean RedisStore\.leaseTtl\?/,
      );
      expect(() => new RedisStore({ client: {} as Redis })).to.throw(TypeError, /client must be an ioredis client/);
    } finally {
      client.disconnect();
    }
  });
});
