// A store that starts asynchronously (its init answers a promise): calls wait for it; a failed start refuses every call, named.

import { expect } from 'chai';
import {
  createPresence,
  MemoryStore,
  StoreUnavailableError,
  type PersistedState,
  type PresenceStore,
  type SharedRoomsBackend,
  type StoreContext,
} from '../lib/index.js';
import { auth, startHarness, type Harness } from './fixtures/socket-harness.js';
import { coreStore } from './helpers/core-store.js';

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
  /** An init that never settles: the store hangs at start (its database never answers). */
  hang(): void {
    this.settle = undefined;
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

describe('a store whose init is asynchronous, beyond the core', function () {
  this.timeout(20_000);

  /** A rooms binding that records what reached it. */
  function recordingRooms(): { backend: SharedRoomsBackend; calls: string[] } {
    const calls: string[] = [];
    const backend: SharedRoomsBackend = {
      start: () => void calls.push('start'),
      set: async () => void calls.push('set'),
      state: async () => (calls.push('state'), { version: 0, users: [] }),
      count: async (room) => (calls.push(`count ${room}`), 7),
      page: async () => (calls.push('page'), { users: [], count: 0, more: false }),
      status: () => void calls.push('status'),
      unlist: () => void calls.push('unlist'),
      close: async () => void calls.push('close'),
    };
    return { backend, calls };
  }

  /** A SlowStartStore that shares rooms through `binding`, as a multi-process store would. */
  function sharedSlowStart(binding: SharedRoomsBackend): { store: PresenceStore; inner: SlowStartStore } {
    const inner = new SlowStartStore();
    const store: PresenceStore = { ...coreStore(inner), rooms: 'shared', sharedRooms: () => binding };
    return { store, inner };
  }

  it('holds the shared rooms binding back too: started, and asked, only once init resolved', async () => {
    const { backend, calls } = recordingRooms();
    const { store, inner } = sharedSlowStart(backend);
    const presence = createPresence({ store, storeTimeout: '5s' });
    const count = presence.room('lobby').count();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls, 'the binding was used before the store was ready').to.deep.equal([]);
    inner.finish();
    expect(await count).to.equal(7);
    expect(calls).to.deep.equal(['start', 'count lobby']);
    await presence.close();
    expect(calls.at(-1)).to.equal('close');
  });

  it('refuses room reads after a failed init and never starts the binding', async () => {
    const { backend, calls } = recordingRooms();
    const { store, inner } = sharedSlowStart(backend);
    const presence = createPresence({ store, logger: { warn() {}, error() {} } });
    const count = presence
      .room('lobby')
      .count()
      .then(
        () => null,
        (error: unknown) => error,
      );
    inner.fail('no database');
    expect(await count).to.be.instanceOf(StoreUnavailableError);
    await presence.close();
    expect(calls, 'a binding that never started is not closed either').to.deep.equal([]);
  });

  it('does not let an init that never settles hold close() past storeTimeout, and still closes the store', async () => {
    const store = new SlowStartStore();
    const presence = createPresence({ store, storeTimeout: '300ms' });
    store.hang();
    const started = Date.now();
    await presence.close();
    expect(Date.now() - started).to.be.within(250, 3000);
    expect(store.closed).to.equal(true);
  });

  it('calls a store method patched after createPresence, as patched', async () => {
    const store = new SlowStartStore();
    const presence = createPresence({ store });
    let asked = 0;
    const stats = store.stats.bind(store);
    store.stats = () => (asked++, stats());
    store.finish();
    await presence.stats();
    expect(asked).to.equal(1);
    await presence.close();
  });
});

describe('a MemoryStore with persistence, used directly', () => {
  it('answers a call made before its saved state is loaded only after loading, with counts that agree', async () => {
    let finishLoad!: (state: PersistedState) => void;
    const saved: PersistedState = {
      users: [
        {
          userId: 'old',
          lastSeen: 1000,
          customStatus: 'away',
          instances: [{ instanceId: 'p', platform: 'Android', status: 'PushOnline', since: Date.now(), version: null, sessionId: 's-old', order: 1 }],
        },
      ] as never,
    };
    const store = new MemoryStore({ persistence: { load: () => new Promise<PersistedState>((resolve) => (finishLoad = resolve)), save: () => {} } });
    const presence = createPresence({ store });
    // Straight on the store, as code holding the reference may: it must wait for the load, not answer from an empty state.
    const login = store.login({
      userId: 'new',
      platform: 'Web',
      instanceId: 'w',
      resumeSessionId: undefined,
      newSessionId: 's-new',
      version: undefined,
      at: Date.now(),
      limits: { loginPolicy: 'multi', maxInstancesPerPlatform: 1, maxWebInstances: 1 },
      owner: presence.engine.owner,
    });
    const read = store.get(['old']);
    // load() is asked on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    finishLoad(saved);
    expect(await login).to.include({ outcome: 'created' });
    expect((await read)[0]?.instances.map((instance) => instance.instanceId)).to.deep.equal(['p']);
    const stats = await store.stats();
    expect(stats.users).to.include({ Online: 1, PushOnline: 1 });
    expect(stats.instances).to.deep.equal({ Online: 1, PushOnline: 1 });
    await presence.close();
  });

  it('starts with what it restored, logged, when the saved state cannot be restored whole', async () => {
    const errors: unknown[][] = [];
    const store = new MemoryStore({ persistence: { load: () => ({ users: [{ userId: 'broken', instances: null }] as never }), save: () => {} } });
    const presence = createPresence({ store, logger: { warn() {}, error: (...args: unknown[]) => errors.push(args) } });
    await presence.ready();
    const [user] = await presence.query(['someone'], { detail: false });
    expect(user).to.include({ status: 'Offline' });
    expect(errors.some((args) => String(args[0]).includes('restoring persisted presence failed'))).to.equal(true);
    await presence.close();
  });
});

describe('createPresence checks the store it is given', () => {
  const core = () => coreStore(new MemoryStore(), { coreOnly: true });

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

  it('takes null optional members as absent', async () => {
    const presence = createPresence({ store: { ...core(), close: null, init: null } as never });
    await presence.ready();
    await presence.close();
  });

  it('refuses an init that is not a function', () => {
    expect(() => createPresence({ store: { ...core(), init: 'soon' } as never })).to.throw(TypeError, /store\.init must be a function or absent; got "soon"/);
  });
});
