// Option validation and defaults of createPresence, as CONTRACT.md lists them: every option good and bad.

import { expect } from 'chai';
import { createPresence, ManualClock, MemoryStore, systemClock } from '../lib/index.js';
import type { PresenceOptions } from '../lib/index.js';
import { resolveOptions } from '../lib/options.js';

/** A store that is quick to create (the default preallocates room for 100k users). */
const smallStore = (): MemoryStore => new MemoryStore({ maxOfflineUsers: 10, maxRevokedSessions: 10 });

/** Resolves the options (with a small store unless given) and answers the configuration. */
function resolve(options: Record<string, unknown>): ReturnType<typeof resolveOptions> {
  return resolveOptions({ store: smallStore(), ...options } as PresenceOptions);
}

/** Asserts that the options are refused with a TypeError whose message names `name` and matches `pattern`. */
function refuses(options: unknown, name: string, pattern?: RegExp): string {
  let caught: unknown;
  try {
    createPresence(options as PresenceOptions);
  } catch (error) {
    caught = error;
  }
  expect(caught, `${JSON.stringify(options)} should be refused`).to.be.instanceOf(TypeError);
  const message = (caught as TypeError).message;
  expect(message, 'names the option').to.include(name);
  if (pattern) expect(message).to.match(pattern);
  return message;
}

describe('options', () => {
  describe('defaults, exactly as CONTRACT.md lists them', () => {
    it('resolves an empty (or missing) options object to the defaults', async () => {
      for (const options of [undefined, {}]) {
        const presence = createPresence(options);
        const config = presence.config;
        expect(config).to.deep.include({
          loginPolicy: 'single',
          maxInstancesPerPlatform: 1,
          maxWebInstances: 1,
          heartbeatInterval: 120_000,
          heartbeatTimeout: { mobile: 400_000, desktop: 400_000, web: 60_000, miniProgram: 60_000 },
          backgroundTimeout: { mobile: 0, desktop: 0, web: 0, miniProgram: 30_000 },
          pushOnlineTtl: 604_800_000,
          reconnectGrace: { mobile: 0, desktop: 0, web: 0, miniProgram: 0 },
          authenticate: undefined,
          authorize: undefined,
          callback: undefined,
          maxSubscriptions: 1000,
          canSee: undefined,
          bodyLimit: 1024 * 1024,
          handoverGrace: 10_000,
          storeTimeout: 2000,
          maxConnectionsPerUser: 50,
          maxSubscriptionsPerUser: 20_000,
          eventRateLimit: { perSecond: 20, burst: 40 },
          bodyTimeout: 10_000,
          canJoin: undefined,
          roomMemberLimit: 1000,
          roomBatchInterval: 50,
          maxRoomsPerConnection: 100,
        });
        expect(config.store).to.be.instanceOf(MemoryStore);
        expect(config.logger).to.equal(console);
        expect(config.clock).to.equal(systemClock);
        await presence.close();
      }
    });

    it('gives each mount its own default MemoryStore', async () => {
      const a = createPresence();
      const b = createPresence();
      expect(a.config.store).to.not.equal(b.config.store);
      await a.close();
      await b.close();
    });

    it('resolves callback sub-options to their defaults', () => {
      const config = resolve({ callback: { url: 'https://example.test/hook' } });
      expect(config.callback).to.deep.include({
        url: 'https://example.test/hook',
        secret: undefined,
        timeout: 5000,
        maxRetries: 8,
        backoff: 250,
        maxQueuePerUser: 1000,
      });
    });

    it('freezes the resolved configuration', () => {
      const config = resolve({ heartbeatTimeout: { web: 1000 }, callback: { url: 'http://localhost/x' } });
      expect(Object.isFrozen(config)).to.equal(true);
      expect(Object.isFrozen(config.heartbeatTimeout)).to.equal(true);
      expect(Object.isFrozen(config.backgroundTimeout)).to.equal(true);
      expect(Object.isFrozen(config.reconnectGrace)).to.equal(true);
      expect(Object.isFrozen(config.callback)).to.equal(true);
    });

    it('does not keep reading the options object after createPresence', () => {
      const options = { heartbeatTimeout: { web: 1000 }, store: smallStore() };
      const presence = createPresence(options);
      options.heartbeatTimeout.web = 5;
      expect(presence.config.heartbeatTimeout.web).to.equal(1000);
    });
  });

  describe('the options object', () => {
    it('must be an object', () => {
      for (const bad of [null, 5, 'single', [], true]) refuses(bad, 'options must be an object');
    });

    it('refuses unknown keys, suggesting the nearest name', () => {
      const message = refuses({ loginPolicie: 'single' }, 'loginPolicie', /did you mean loginPolicy\?/);
      expect(message).to.include('accepted: loginPolicy');
      refuses({ heartbeatTimout: 1000 }, 'heartbeatTimout', /did you mean heartbeatTimeout\?/);
      refuses({ maxWebInstance: 2 }, 'maxWebInstance', /did you mean maxWebInstances\?/);
      refuses({ PushOnlineTTL: 2 }, 'PushOnlineTTL', /did you mean pushOnlineTtl\?/);
      refuses({ roomMemberLimt: 2 }, 'roomMemberLimt', /did you mean roomMemberLimit\?/);
      refuses({ canjoin: () => true }, 'canjoin', /did you mean canJoin\?/);
      const far = refuses({ zzz: 1 }, 'unknown option zzz');
      expect(far).to.not.include('did you mean');
    });
  });

  describe('loginPolicy', () => {
    it('accepts the four policies', () => {
      for (const loginPolicy of ['single', 'dual', 'triple', 'multi']) expect(resolve({ loginPolicy }).loginPolicy).to.equal(loginPolicy);
    });

    it('refuses anything else, naming what it accepts, with a "did you mean" for near misses', () => {
      const message = refuses({ loginPolicy: 'duel' }, 'loginPolicy', /did you mean "dual"\?/);
      expect(message).to.equal('loginPolicy must be one of "single", "dual", "triple", "multi"; got "duel"; did you mean "dual"?');
      refuses({ loginPolicy: 'Multi ' }, 'loginPolicy');
      refuses({ loginPolicy: 'quadruple' }, 'loginPolicy', /one of "single", "dual", "triple", "multi"/);
      refuses({ loginPolicy: 2 }, 'loginPolicy', /got 2/);
      refuses({ loginPolicy: null }, 'loginPolicy', /got null/);
      refuses({ loginPolicy: ['single'] }, 'loginPolicy');
    });
  });

  describe('counts', () => {
    for (const name of [
      'maxInstancesPerPlatform',
      'maxWebInstances',
      'maxSubscriptions',
      'maxConnectionsPerUser',
      'maxSubscriptionsPerUser',
      'roomMemberLimit',
      'maxRoomsPerConnection',
    ]) {
      it(`${name}: a positive integer`, () => {
        expect(resolve({ [name]: 1 })[name as 'maxWebInstances']).to.equal(1);
        expect(resolve({ [name]: 7 })[name as 'maxWebInstances']).to.equal(7);
        for (const bad of [0, -1, 1.5, '2', NaN, Infinity, null, true, {}]) refuses({ [name]: bad }, name, /must be an integer from 1/);
      });
    }

    it('refuses absurdly large limits', () => {
      refuses({ maxInstancesPerPlatform: 1_000_000 }, 'maxInstancesPerPlatform');
      refuses({ maxSubscriptions: 10 ** 9 }, 'maxSubscriptions');
    });
  });

  describe('durations', () => {
    for (const name of ['heartbeatInterval', 'pushOnlineTtl']) {
      it(`${name}: a positive integer of milliseconds`, () => {
        expect(resolve({ [name]: 1 })[name as 'pushOnlineTtl']).to.equal(1);
        expect(resolve({ [name]: 86_400_000 })[name as 'pushOnlineTtl']).to.equal(86_400_000);
        expect(resolve({ [name]: '90s' })[name as 'pushOnlineTtl']).to.equal(90_000);
        for (const bad of [0, -5, 2.5, '1000', '5 fortnights', NaN, Infinity, null, 2 ** 53]) refuses({ [name]: bad }, name, /must be milliseconds/);
      });
    }

    it('strings with a unit: ms, s, m, h, d, w (long forms too, decimals allowed)', () => {
      const cases: [string, number][] = [
        ['250ms', 250],
        ['30s', 30_000],
        ['1.5s', 1500],
        ['5m', 300_000],
        ['2 hours', 7_200_000],
        ['7d', 604_800_000],
        ['1w', 604_800_000],
        ['10 Seconds', 10_000],
      ];
      for (const [text, ms] of cases) expect(resolve({ pushOnlineTtl: text }).pushOnlineTtl, text).to.equal(ms);
      for (const bad of ['30', 's', '', '-5s', '5 parsecs', '1e3ms']) refuses({ pushOnlineTtl: bad }, 'pushOnlineTtl', /"500ms", "30s"/);
    });

    it('a timeout below 1 s as a bare number is refused with the seconds it surely meant; with a unit it is taken', () => {
      refuses({ heartbeatTimeout: 30 }, 'heartbeatTimeout', /did you mean 30 s = 30000\? \(write "30ms" if you meant milliseconds\)/);
      refuses({ heartbeatTimeout: { web: 60 } }, 'heartbeatTimeout.web', /did you mean 60 s = 60000/);
      refuses({ backgroundTimeout: { miniProgram: 30 } }, 'backgroundTimeout.miniProgram', /did you mean 30 s/);
      refuses({ storeTimeout: 2 }, 'storeTimeout', /did you mean 2 s = 2000/);
      refuses({ bodyTimeout: 10 }, 'bodyTimeout', /did you mean 10 s = 10000/);
      refuses({ callback: { url: 'https://example.test/', timeout: 5 } }, 'callback.timeout', /did you mean 5 s = 5000/);
      expect(resolve({ heartbeatTimeout: '30ms' }).heartbeatTimeout.web).to.equal(30);
      expect(resolve({ heartbeatTimeout: 30_000 }).heartbeatTimeout.web).to.equal(30_000);
      expect(resolve({ backgroundTimeout: 0 }).backgroundTimeout.miniProgram).to.equal(0);
      // Not timeouts: a grace or an interval of a few ms is plausible, so no floor.
      expect(resolve({ reconnectGrace: 5 }).reconnectGrace.web).to.equal(5);
      expect(resolve({ handoverGrace: 5 }).handoverGrace).to.equal(5);
    });

    it('roomBatchInterval: 0 to a minute, as ms or a string', () => {
      expect(resolve({ roomBatchInterval: 0 }).roomBatchInterval).to.equal(0);
      expect(resolve({ roomBatchInterval: 200 }).roomBatchInterval).to.equal(200);
      expect(resolve({ roomBatchInterval: '1s' }).roomBatchInterval).to.equal(1000);
      for (const bad of [-1, 1.5, 'soon', null, {}, 60_001, '2m']) refuses({ roomBatchInterval: bad }, 'roomBatchInterval');
    });

    it('handoverGrace (0 allowed), storeTimeout and bodyTimeout', () => {
      expect(resolve({ handoverGrace: 0 }).handoverGrace).to.equal(0);
      expect(resolve({ handoverGrace: '30s' }).handoverGrace).to.equal(30_000);
      expect(resolve({ storeTimeout: '500ms' }).storeTimeout).to.equal(500);
      expect(resolve({ bodyTimeout: '1m' }).bodyTimeout).to.equal(60_000);
      for (const name of ['handoverGrace', 'storeTimeout', 'bodyTimeout']) for (const bad of [-1, 'soon', null, {}, 1.5]) refuses({ [name]: bad }, name);
      refuses({ storeTimeout: 0 }, 'storeTimeout');
      refuses({ bodyTimeout: '0ms' }, 'bodyTimeout');
    });

    const perClass = [
      { name: 'heartbeatTimeout', zeroAllowed: false, defaults: { mobile: 400_000, desktop: 400_000, web: 60_000, miniProgram: 60_000 } },
      { name: 'backgroundTimeout', zeroAllowed: true, defaults: { mobile: 0, desktop: 0, web: 0, miniProgram: 30_000 } },
      { name: 'reconnectGrace', zeroAllowed: true, defaults: { mobile: 0, desktop: 0, web: 0, miniProgram: 0 } },
    ] as const;
    // Timeouts refuse a bare number below 1 s; with an explicit unit any length is taken.
    const short = (ms: number): string => `${ms}ms`;
    for (const { name, zeroAllowed, defaults } of perClass) {
      describe(name, () => {
        it('a number applies to every class', () => {
          expect(resolve({ [name]: 5000 })[name]).to.deep.equal({ mobile: 5000, desktop: 5000, web: 5000, miniProgram: 5000 });
        });

        it('an object sets any subset of classes; the rest keep their defaults', () => {
          expect(resolve({ [name]: { web: 1234 } })[name]).to.deep.equal({ ...defaults, web: 1234 });
          expect(resolve({ [name]: { mobile: short(1), miniProgram: short(2) } })[name]).to.deep.equal({ ...defaults, mobile: 1, miniProgram: 2 });
          expect(resolve({ [name]: '45s' })[name]).to.deep.equal({ mobile: 45_000, desktop: 45_000, web: 45_000, miniProgram: 45_000 });
          expect(resolve({ [name]: {} })[name]).to.deep.equal(defaults);
        });

        it(zeroAllowed ? 'accepts 0 (never / no grace)' : 'refuses 0', () => {
          if (zeroAllowed) {
            expect(resolve({ [name]: 0 })[name]).to.deep.equal({ mobile: 0, desktop: 0, web: 0, miniProgram: 0 });
            expect(resolve({ [name]: { miniProgram: 0 } })[name].miniProgram).to.equal(0);
          } else {
            refuses({ [name]: 0 }, name, /got 0/);
            refuses({ [name]: { web: 0 } }, `${name}.web`, /got 0/);
          }
        });

        it('refuses wrong types, negative or fractional values, and unknown class keys (with a suggestion)', () => {
          for (const bad of ['60', null, [1000], true, -1, 1.5, NaN]) refuses({ [name]: bad }, name);
          refuses({ [name]: { web: -1 } }, `${name}.web`);
          refuses({ [name]: { desktop: '1000' } }, `${name}.desktop`);
          refuses({ [name]: { desktop: '10 lightyears' } }, `${name}.desktop`);
          refuses({ [name]: { mobil: 1000 } }, `${name}.mobil`, new RegExp(`did you mean ${name}\\.mobile\\?`));
          refuses({ [name]: { miniprogram: 1000 } }, `${name}.miniprogram`, new RegExp(`did you mean ${name}\\.miniProgram\\?`));
          refuses({ [name]: { Web: 1000 } }, `${name}.Web`, new RegExp(`did you mean ${name}\\.web\\?`));
          refuses({ [name]: { tv: 1000 } }, `${name}.tv`, /accepted: mobile, desktop, web, miniProgram/);
        });
      });
    }
  });

  describe('functions', () => {
    for (const name of ['authenticate', 'authorize', 'canSee', 'canJoin']) {
      it(`${name}: a function (sync or async)`, () => {
        const sync = (): boolean => true;
        const asyncFn = async (): Promise<boolean> => true;
        expect(resolve({ [name]: sync })[name as 'canSee']).to.equal(sync);
        expect(resolve({ [name]: asyncFn })[name as 'canSee']).to.equal(asyncFn);
        for (const bad of [true, 'yes', {}, null, 1]) refuses({ [name]: bad }, name, /must be a function/);
      });
    }
  });

  describe('callback', () => {
    it('accepts an http(s) URL with optional secret, timeout, maxRetries and backoff', () => {
      const config = resolve({ callback: { url: 'http://127.0.0.1:9/cb?x=1', secret: 's3cret', timeout: 1000, maxRetries: 0, backoff: 10 } });
      expect(config.callback).to.deep.include({ url: 'http://127.0.0.1:9/cb?x=1', secret: 's3cret', timeout: 1000, maxRetries: 0, backoff: 10 });
    });

    it('refuses a missing or non-http URL', () => {
      refuses({ callback: {} }, 'callback.url', /http:\/\/ or https:\/\//);
      refuses({ callback: { url: 'ftp://example.test/' } }, 'callback.url');
      refuses({ callback: { url: '/relative' } }, 'callback.url');
      refuses({ callback: { url: 'not a url' } }, 'callback.url');
      refuses({ callback: { url: 42 } }, 'callback.url');
    });

    it('refuses bad sub-options, naming each', () => {
      const url = 'https://example.test/';
      refuses({ callback: { url, secret: '' } }, 'callback.secret');
      refuses({ callback: { url, secret: 5 } }, 'callback.secret');
      refuses({ callback: { url, timeout: 0 } }, 'callback.timeout');
      refuses({ callback: { url, timeout: '5' } }, 'callback.timeout');
      expect(resolve({ callback: { url, timeout: '5s', backoff: '1s' } }).callback).to.deep.include({ timeout: 5000, backoff: 1000 });
      refuses({ callback: { url, maxQueuePerUser: 0 } }, 'callback.maxQueuePerUser');
      refuses({ callback: { url, maxRetries: -1 } }, 'callback.maxRetries');
      refuses({ callback: { url, maxRetries: 2.5 } }, 'callback.maxRetries');
      refuses({ callback: { url, backoff: 0 } }, 'callback.backoff');
      refuses({ callback: { url, backoff: null } }, 'callback.backoff');
      refuses({ callback: { url, secrte: 'x' } }, 'callback.secrte', /did you mean callback\.secret\?/);
      refuses({ callback: { url, retries: 3 } }, 'callback.retries', /accepted: url, secret, timeout, maxRetries, backoff/);
    });
  });

  describe('eventRateLimit', () => {
    it('a token bucket { perSecond, burst }, or false to turn it off', () => {
      expect(resolve({ eventRateLimit: { perSecond: 5, burst: 10 } }).eventRateLimit).to.deep.equal({ perSecond: 5, burst: 10 });
      expect(resolve({ eventRateLimit: { perSecond: 0.5 } }).eventRateLimit).to.deep.equal({ perSecond: 0.5, burst: 1 });
      expect(resolve({ eventRateLimit: false }).eventRateLimit).to.equal(false);
    });

    it('refuses anything else, naming the field', () => {
      for (const bad of [true, 20, null, [], 'fast']) refuses({ eventRateLimit: bad }, 'eventRateLimit', /\{ perSecond, burst \} or false/);
      for (const bad of [0, -1, 'x', NaN, Infinity]) refuses({ eventRateLimit: { perSecond: bad } }, 'eventRateLimit.perSecond');
      for (const bad of [0, 1.5, '2']) refuses({ eventRateLimit: { perSecond: 5, burst: bad } }, 'eventRateLimit.burst');
      refuses({ eventRateLimit: { perSecnd: 5 } }, 'eventRateLimit.perSecnd', /did you mean eventRateLimit\.perSecond\?/);
    });

    it('must be an object', () => {
      for (const bad of ['https://example.test/', null, [], 1]) refuses({ callback: bad }, 'callback', /callback must be an object/);
    });
  });

  describe('store', () => {
    it('accepts a MemoryStore or any object with the store methods', () => {
      const store = smallStore();
      expect(resolveOptions({ store }).store).to.equal(store);
      const custom = {
        login: () => ({ outcome: 'revoked' as const }),
        markPushOnline: () => null,
        remove: () => null,
        kick: () => [],
        setCustomStatus: () => 'Offline' as const,
        get: () => [],
        stats: () => ({ users: { Online: 0, PushOnline: 0, Offline: 0 }, instances: { Online: 0, PushOnline: 0 }, platforms: {} as never }),
      };
      expect(resolveOptions({ store: custom }).store).to.equal(custom);
    });

    it('refuses a store missing methods, naming them', () => {
      const message = refuses({ store: { login() {}, get() {} } }, 'store', /lacks markPushOnline\(\), remove\(\), kick\(\), setCustomStatus\(\), stats\(\)/);
      expect(message).to.not.match(/lacks.*login\(\)/);
      refuses({ store: { login: 1, markPushOnline() {}, remove() {}, kick() {}, setCustomStatus() {}, get() {}, stats() {} } }, 'store', /lacks login\(\)$/);
    });

    it('refuses a non-object', () => {
      for (const bad of [null, 'memory', 1, () => {}]) refuses({ store: bad }, 'store');
    });

    it('refuses a MemoryStore already used by another mount', async () => {
      const store = smallStore();
      const first = createPresence({ store });
      expect(() => createPresence({ store })).to.throw(/already used/);
      await first.close();
    });

    it('MemoryStore validates its own options', () => {
      expect(() => new MemoryStore({ maxOfflineUsers: 0 })).to.throw(TypeError, /maxOfflineUsers/);
      expect(() => new MemoryStore({ maxRevokedSessions: 1.5 })).to.throw(TypeError, /maxRevokedSessions/);
      expect(() => new MemoryStore({ maxOfflineUser: 5 } as never)).to.throw(TypeError, /maxOfflineUser/);
      expect(() => new MemoryStore(null as never)).to.throw(TypeError, /MemoryStore options/);
    });
  });

  describe('bodyLimit', () => {
    it('accepts a number of bytes or a size string', () => {
      expect(resolve({ bodyLimit: 100 }).bodyLimit).to.equal(100);
      expect(resolve({ bodyLimit: '100b' }).bodyLimit).to.equal(100);
      expect(resolve({ bodyLimit: '500kb' }).bodyLimit).to.equal(500 * 1024);
      expect(resolve({ bodyLimit: '1mb' }).bodyLimit).to.equal(1024 * 1024);
      expect(resolve({ bodyLimit: '1.5MB' }).bodyLimit).to.equal(1.5 * 1024 * 1024);
      expect(resolve({ bodyLimit: ' 2 kb ' }).bodyLimit).to.equal(2048);
      expect(resolve({ bodyLimit: '1gb' }).bodyLimit).to.equal(1024 ** 3);
      expect(resolve({ bodyLimit: '2048' }).bodyLimit).to.equal(2048);
    });

    it('refuses anything else', () => {
      for (const bad of ['lots', '1 tb', '-1mb', '0kb', '0.0001kb', '', 0, -1, 0.5, null, {}, true]) refuses({ bodyLimit: bad }, 'bodyLimit');
    });
  });

  describe('logger', () => {
    it('accepts an object with warn() and error()', () => {
      const logger = { warn() {}, error() {} };
      expect(resolve({ logger }).logger).to.equal(logger);
    });

    it('refuses anything else', () => {
      for (const bad of [{}, { warn() {} }, { error() {} }, null, 'console', () => {}]) refuses({ logger: bad }, 'logger', /warn\(\) and error\(\)/);
    });
  });

  describe('clock', () => {
    it('accepts a ManualClock or any object with now(), setTimeout() and clearTimeout()', () => {
      const clock = new ManualClock();
      expect(resolve({ clock }).clock).to.equal(clock);
      const custom = { now: () => 0, setTimeout: () => ({}), clearTimeout: () => {} };
      expect(resolve({ clock: custom }).clock).to.equal(custom);
    });

    it('refuses anything else', () => {
      for (const bad of [{}, { now: () => 0 }, Date, null, 5, { now: 1, setTimeout() {}, clearTimeout() {} }])
        refuses({ clock: bad }, 'clock', /now\(\), setTimeout\(\) and clearTimeout\(\)/);
    });
  });

  describe('every option is validated', () => {
    it('each of CONTRACT.md’s options (and the additions) refuses a value of the wrong type', () => {
      const wrong: Record<string, unknown> = {
        loginPolicy: 1,
        maxInstancesPerPlatform: 'one',
        maxWebInstances: 'one',
        heartbeatInterval: 'soon',
        heartbeatTimeout: 'soon',
        backgroundTimeout: 'soon',
        pushOnlineTtl: 'week',
        reconnectGrace: 'some',
        authenticate: 'yes',
        authorize: 'yes',
        callback: 'http://x',
        maxSubscriptions: 'many',
        canSee: 'all',
        canJoin: 'yes',
        roomMemberLimit: 'many',
        roomBatchInterval: 'soon',
        maxRoomsPerConnection: 'many',
        store: 'memory',
        bodyLimit: 'big',
        handoverGrace: 'soon',
        storeTimeout: 'soon',
        maxConnectionsPerUser: 'many',
        maxSubscriptionsPerUser: 'many',
        eventRateLimit: 'fast',
        bodyTimeout: 'soon',
        logger: 'console',
        clock: 'now',
      };
      for (const [name, value] of Object.entries(wrong)) refuses({ [name]: value }, name);
    });
  });
});
