// A store that starts asynchronously (its init answers a promise): calls wait for it; a failed start refuses every call, named.

import { expect } from 'chai';
import { createPresence, MemoryStore, StoreUnavailableError, type StoreContext } from '../lib/index.js';
import { auth, startHarness, type Harness } from './fixtures/socket-harness.js';

/** A MemoryStore whose init takes until `finish()` (or fails with `fail()`), as a store connecting to its database would. */
class SlowStartStore extends MemoryStore {
  initCalls = 0;
  closed = false;
  private settle: { resolve: () => void; reject: (error: Error) => void } | undefined;

  override init(context: StoreContext): Promise<void> {
    this.initCalls++;
    void super.init(context);
    return new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
  }
  finish(): void {
    this.settle?.resolve();
  }
  fail(message: string): void {
    this.settle?.reject(new Error(message));
  }
  override close(): Promise<void> {
    this.closed = true;
    return super.close();
  }
}

describe('a store whose init is asynchronous', function () {
  this.timeout(20_000);
  let store: SlowStartStore;
  let harness: Harness;

  beforeEach(async () => {
    store = new SlowStartStore();
    harness = await startHarness({ store, storeTimeout: '5s' });
  });
  afterEach(() => harness.close());

  it('holds logins and queries back until init resolves, then answers them', async () => {
    let readyAt = 0;
    const ready = harness.presence.ready().then(() => (readyAt = Date.now()));
    const login = harness.connect(auth('ann', 'Web'));
    const query = harness.presence.query(['ann'], { detail: false });
    let settledEarly = false;
    void Promise.race([login, query]).then(() => (settledEarly = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settledEarly, 'answered before the store was ready').to.equal(false);
    expect(readyAt).to.equal(0);
    const finishedAt = Date.now();
    store.finish();
    await ready;
    expect(readyAt).to.be.at.least(finishedAt);
    const device = await login;
    expect(device.session.sessionId).to.be.a('string');
    // The query was asked before the login was taken: whichever order the store saw them in, it answered, after init.
    expect((await query)[0]?.userId).to.equal('ann');
    expect(await harness.status('ann')).to.equal('Online');
    expect(store.initCalls).to.equal(1);
  });

  it('refuses every call with StoreUnavailableError naming the cause when init rejects, and still closes the store', async () => {
    const login = harness.refused(auth('bob', 'Web'));
    const query = harness.presence.query(['bob']).then(
      () => null,
      (error: unknown) => error,
    );
    store.fail('connection refused by the database');
    const error = await harness.presence.ready().then(
      () => null,
      (failure: unknown) => failure,
    );
    expect(error).to.be.instanceOf(StoreUnavailableError);
    expect((error as Error).message).to.match(/failed to start.*connection refused by the database/);
    expect(await login).to.include({ code: 'SERVER_ERROR' });
    const refusedQuery = await query;
    expect(refusedQuery).to.be.instanceOf(StoreUnavailableError);
    // Later calls are refused at once, with the same cause.
    const later = await harness.presence.stats().then(
      () => null,
      (failure: unknown) => failure as Error,
    );
    expect(later?.message).to.match(/connection refused by the database/);
    expect(harness.errors.some((args) => String(args[0]).includes('the store failed to start'))).to.equal(true);
    await harness.presence.close();
    expect(store.closed, 'close() releases a store whose init failed').to.equal(true);
  });
});

describe('createPresence checks the store it is given', () => {
  const core = () => {
    const memory = new MemoryStore();
    return {
      login: memory.login.bind(memory),
      markPushOnline: memory.markPushOnline.bind(memory),
      remove: memory.remove.bind(memory),
      kick: memory.kick.bind(memory),
      setCustomStatus: memory.setCustomStatus.bind(memory),
      get: memory.get.bind(memory),
      stats: memory.stats.bind(memory),
    };
  };

  it('accepts the required core alone, with a synchronous init or none', async () => {
    const presence = createPresence({ store: core() });
    await presence.ready();
    const [user] = await presence.query(['x'], { detail: false });
    expect(user).to.include({ userId: 'x', status: 'Offline' });
    await presence.close();
  });

  it('refuses half of the multi-process part, naming both methods', () => {
    expect(() => createPresence({ store: { ...core(), handOver: () => undefined } })).to.throw(TypeError, /implements handOver\(\) but not mayMissEnds\(\)/);
    expect(() => createPresence({ store: { ...core(), mayMissEnds: () => false } })).to.throw(TypeError, /implements mayMissEnds\(\) but not handOver\(\)/);
  });

  it('refuses an init that is not a function', () => {
    expect(() => createPresence({ store: { ...core(), init: 'soon' } as never })).to.throw(TypeError, /store\.init must be a function or absent; got "soon"/);
  });
});
