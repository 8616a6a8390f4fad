// The client helper (express-presence/client) end to end against a real server: heartbeats, kicks, resume, storage, visibility.

import { expect } from 'chai';
import { io as ioc } from 'socket.io-client';
import { createPresenceClient, PresenceClientError, type PresenceClient, type PresenceClientOptions, type PresenceStorage } from '../lib/client/index.js';
import type { ChangedPayload, KickedPayload, SessionPayload } from '../lib/index.js';
import { auth, delay, next, startHarness, waitFor, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';

class MemoryStorage implements PresenceStorage {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/** A stand-in for the page's `document`, enough for the client's visibility tracking. */
class FakeDocument {
  visibilityState: 'visible' | 'hidden' = 'visible';
  private listeners = new Set<() => void>();
  addEventListener(_type: string, listener: () => void): void {
    this.listeners.add(listener);
  }
  removeEventListener(_type: string, listener: () => void): void {
    this.listeners.delete(listener);
  }
  set(state: 'visible' | 'hidden'): void {
    this.visibilityState = state;
    for (const listener of this.listeners) listener();
  }
  get listening(): number {
    return this.listeners.size;
  }
}

describe('client helper', () => {
  let harness: Harness | undefined;
  const clients: PresenceClient[] = [];

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness(options);
    return harness;
  }

  function client(userId: string, options: Partial<PresenceClientOptions> & { platform: PresenceClientOptions['platform'] }): PresenceClient {
    const created = createPresenceClient({
      url: harness!.url,
      auth: { token: `tok:${userId}` },
      ...options,
      socketOptions: { transports: ['websocket'], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100, ...options.socketOptions },
    });
    clients.push(created);
    return created;
  }

  afterEach(async () => {
    for (const created of clients.splice(0)) created.close();
    await harness?.close();
    harness = undefined;
  });

  it('logs in, tells the session, and its heartbeats keep a quiet connection Online past the heartbeat timeout', async () => {
    const h = await start({ heartbeatTimeout: '400ms', serverOptions: { pingInterval: 30_000, pingTimeout: 30_000 } });
    const helper = client('ann', { platform: 'Web', version: '2.0.0' });
    const session = await next<SessionPayload>(helper, 'session');
    expect(session).to.include({ userId: 'ann', platform: 'Web', heartbeatInterval: 200, resumed: false });
    expect(helper.sessionId).to.equal(session.sessionId);
    expect(helper.instanceId).to.equal(session.instanceId);
    // The control: a bare client on the same server, sending nothing, times out.
    await h.connect(auth('bare', 'Web'));
    await waitFor(async () => (await h.status('bare')) === 'Offline', 'the bare client to time out', 1500);
    await delay(600);
    expect(await h.status('ann')).to.equal('Online');
    expect((await h.presence.query(['ann']))[0]!.instances![0]!.version).to.equal('2.0.0');
  });

  it('uses an injected io function (the page global from /socket.io/socket.io.js)', async () => {
    await start();
    let calls = 0;
    const injected = ((...args: Parameters<typeof ioc>) => {
      calls++;
      return ioc(...args);
    }) as typeof ioc;
    const helper = client('bo', { platform: 'Web', io: injected });
    await next(helper, 'session');
    expect(calls).to.equal(1);
  });

  it('when kicked: emits kicked, forgets the revoked session, and does not reconnect', async () => {
    const h = await start({ loginPolicy: 'single' });
    const storage = new MemoryStorage();
    let handshakes = 0;
    h.io.use((_socket, nextMiddleware) => {
      handshakes++;
      nextMiddleware();
    });
    const helper = client('cat', { platform: 'Android', storage });
    const first = await next<SessionPayload>(helper, 'session');
    const kicked = next<KickedPayload>(helper, 'kicked');
    const other = await h.connect(auth('cat', 'Mac'));
    expect(await kicked).to.deep.equal({ reason: 'LoginElsewhere', by: { platform: 'Mac', instanceId: other.session.instanceId } });
    await delay(300);
    expect(helper.socket.connected).to.equal(false);
    expect(helper.socket.active).to.equal(false);
    expect(handshakes).to.equal(2);
    expect(JSON.parse(storage.getItem('express-presence')!)).to.deep.equal({ instanceId: first.instanceId });
    expect(other.socket.connected).to.equal(true);
    await expectRejects(helper.setStatus('x'), 'CLOSED');
  });

  it('resumes its session after a dropped connection, kicking nobody, and re-subscribes', async () => {
    const h = await start({ loginPolicy: 'dual' });
    const web = await h.connect(auth('dan', 'Web'));
    const helper = client('dan', { platform: 'Android', socketOptions: { reconnectionDelay: 300, reconnectionDelayMax: 300 } });
    const first = await next<SessionPayload>(helper, 'session');
    const seen: ChangedPayload[] = [];
    const initial = await helper.subscribe(['friend'], (change) => seen.push(change));
    expect(initial.users).to.deep.equal([
      { userId: 'friend', status: 'Offline', availability: 'available', idleSince: null, customStatus: null, lastSeen: null },
    ]);

    const resumed = next<SessionPayload>(helper, 'session', 3000);
    helper.socket.io.engine.close(); // the network drops; socket.io-client reconnects by itself
    await waitFor(
      async () => (await h.status('dan')) === 'Online' && (await h.presence.query(['dan']))[0]!.instances!.some((i) => i.status === 'PushOnline'),
      'PushOnline',
    );
    const friend = await h.connect(auth('friend', 'Web')); // changes while the helper is away
    const second = await resumed;
    expect(second).to.deep.include({ sessionId: first.sessionId, instanceId: first.instanceId, resumed: true, kicked: [] });
    expect(web.kicks).to.deep.equal([]);
    expect(web.socket.connected).to.equal(true);
    // The re-subscription tells what changed meanwhile, then the room delivers what follows.
    await waitFor(() => seen.length === 1, 'the re-subscription to report friend Online');
    expect(seen[0]).to.include({ userId: 'friend', status: 'Online' });
    friend.socket.disconnect();
    await waitFor(() => seen.length === 2, 'friend going Offline to be pushed');
    expect(seen[1]).to.include({ userId: 'friend', status: 'Offline' });
  });

  it('keeps instanceId and sessionId in storage: a second tab shares the device, a reload resumes it', async () => {
    const h = await start();
    const storage = new MemoryStorage();
    const tab1 = client('eve', { platform: 'Web', storage });
    const first = await next<SessionPayload>(tab1, 'session');
    const tab2 = client('eve', { platform: 'Web', storage });
    const second = await next<SessionPayload>(tab2, 'session');
    expect(second).to.deep.include({ instanceId: first.instanceId, sessionId: first.sessionId, resumed: true, kicked: [] });
    tab1.close();
    await delay(50);
    expect(await h.status('eve')).to.equal('Online');
    expect(h.changes).to.have.length(1);
  });

  it('after SESSION_REVOKED: emits the error, forgets the session, stops; connect() then logs in afresh', async () => {
    const h = await start();
    const storage = new MemoryStorage();
    const old = await h.connect(auth('fay', 'Web', { instanceId: 'browser-1' }));
    await h.presence.kick('fay');
    storage.setItem('express-presence', JSON.stringify({ instanceId: 'browser-1', sessionId: old.session.sessionId }));
    const helper = client('fay', { platform: 'Web', storage });
    const error = await next<PresenceClientError>(helper, 'error');
    expect(error).to.be.instanceOf(PresenceClientError);
    expect(error.code).to.equal('SESSION_REVOKED');
    expect(helper.socket.active).to.equal(false);
    expect(helper.sessionId).to.equal(undefined);
    const fresh = next<SessionPayload>(helper, 'session');
    helper.connect();
    expect(await fresh).to.include({ instanceId: 'browser-1', resumed: false });
  });

  it('reports handshake refusals as error events with their code', async () => {
    await start();
    const helper = client('gus', { platform: 'Symbian' as 'Web' });
    const error = await next<PresenceClientError>(helper, 'error');
    expect(error.code).to.equal('BAD_PLATFORM');
    const anonymous = createPresenceClient({ url: harness!.url, platform: 'Web', socketOptions: { transports: ['websocket'], forceNew: true } });
    clients.push(anonymous);
    expect((await next<PresenceClientError>(anonymous, 'error')).code).to.equal('UNAUTHENTICATED');
  });

  it("reports a refusal by the app's own io.use() (before or after presence's) as REFUSED with its message, and stops until connect()", async () => {
    let accept = false;
    let handshakes = 0;
    const h = await start({
      beforeAttach: (io) =>
        io.use((_socket, nextMiddleware) => {
          handshakes++;
          nextMiddleware(accept ? undefined : Object.assign(new Error('bad token'), { data: { reason: 'expired' } }));
        }),
    });
    const helper = client('lea', { platform: 'Web' });
    const error = await next<PresenceClientError>(helper, 'error');
    expect(error).to.be.instanceOf(PresenceClientError);
    expect(error).to.include({ code: 'REFUSED', message: 'bad token' });
    expect(error.data).to.deep.equal({ reason: 'expired' });
    await delay(300);
    expect(handshakes).to.equal(1);
    expect(helper.socket.active).to.equal(false);
    await expectRejects(helper.setStatus('x'), 'CLOSED');
    accept = true;
    const session = next<SessionPayload>(helper, 'session');
    helper.connect();
    expect((await session).userId).to.equal('lea');

    // A middleware after presence's refuses alike, and the device it logged in meanwhile does not stay.
    h.io.use((_socket, nextMiddleware) => nextMiddleware(new Error('banned')));
    const late = client('max', { platform: 'Android' });
    const refusal = await next<PresenceClientError>(late, 'error');
    expect(refusal).to.include({ code: 'REFUSED', message: 'banned' });
    expect(refusal.data).to.equal(undefined);
    await waitFor(async () => (await h.status('max')) !== 'Online', 'the refused device to be let go');
  });

  it('refuses a missing or relative url outside a browser at construction (BAD_OPTIONS); in a page it takes the origin', async () => {
    const h = await start();
    for (const url of [undefined, '/presence', 'localhost:3000']) {
      expect(() => createPresenceClient({ platform: 'Web', ...(url === undefined ? {} : { url }) }), String(url))
        .to.throw(TypeError, /^url must be an absolute URL such as "http:\/\/localhost:3000"/)
        .with.property('code', 'BAD_OPTIONS');
    }
    expect(() => createPresenceClient({ platform: '' as 'Web', url: h.url }))
      .to.throw(TypeError, /platform/)
      .with.property('code', 'BAD_OPTIONS');
    const global = globalThis as { location?: unknown };
    global.location = new URL(h.url);
    try {
      const inPage = createPresenceClient({ platform: 'Web', auth: { token: 'tok:ned' }, socketOptions: { transports: ['websocket'], forceNew: true } });
      clients.push(inPage);
      expect((await next<SessionPayload>(inPage, 'session')).userId).to.equal('ned');
    } finally {
      delete global.location;
    }
  });

  it('takes its auth from a function, called again before each connection', async () => {
    await start();
    let calls = 0;
    const helper = client('hal', {
      platform: 'Web',
      auth: async () => {
        calls++;
        return { token: 'tok:hal' };
      },
    });
    await next(helper, 'session');
    helper.socket.io.engine.close();
    await next(helper, 'session');
    expect(calls).to.equal(2);
  });

  it('setStatus, subscribe refusals and logout: answered as promises; logout ends the session for good', async () => {
    const h = await start({ maxSubscriptions: 2, canSee: (_viewer, target) => target !== 'hidden' });
    const storage = new MemoryStorage();
    const helper = client('ida', { platform: 'iPhone', storage });
    await next(helper, 'session');
    await helper.setStatus('busy');
    expect((await h.presence.query(['ida']))[0]!.customStatus).to.equal('busy');
    await expectRejects(helper.setStatus('x'.repeat(101)), 'BAD_REQUEST');
    await expectRejects(helper.subscribe(['a', 'b', 'c']), 'TOO_MANY_SUBSCRIPTIONS');
    const result = await helper.subscribe(['hidden', 'a']);
    expect(result.denied).to.deep.equal(['hidden']);
    expect(result.users.map((u) => u.userId)).to.deep.equal(['a']);
    await helper.unsubscribe(['a']);
    const changed: ChangedPayload[] = [];
    helper.on('changed', (change) => changed.push(change));
    await h.connect(auth('a', 'Web'));
    await delay(50);
    expect(changed).to.deep.equal([]);

    const sessionId = helper.sessionId;
    const disconnected = next<string>(helper, 'disconnect');
    await helper.logout();
    expect(await disconnected).to.be.a('string');
    expect(await h.status('ida')).to.equal('Offline');
    expect(helper.sessionId).to.equal(undefined);
    expect(JSON.parse(storage.getItem('express-presence')!).sessionId).to.equal(undefined);
    expect((await h.refused(auth('ida', 'iPhone', { sessionId }))).code).to.equal('SESSION_REVOKED');
  });

  it("reports the page's visibility as background / foreground (miniProgram's background timeout shows it), unless disabled", async () => {
    const h = await start({ backgroundTimeout: { miniProgram: '300ms' } });
    const doc = new FakeDocument();
    const global = globalThis as { document?: unknown };
    global.document = doc;
    try {
      // Activity tracking off: this case counts the visibility listener alone.
      const visible = client('jo', { platform: 'MiniProgram', trackActivity: false });
      const untracked = client('kay', { platform: 'MiniProgram', trackVisibility: false, trackActivity: false });
      await Promise.all([next(visible, 'session'), next(untracked, 'session')]);
      expect(doc.listening).to.equal(1);
      doc.set('hidden');
      await delay(150);
      doc.set('visible');
      await delay(250);
      expect(await h.status('jo')).to.equal('Online');
      doc.set('hidden');
      await waitFor(async () => (await h.status('jo')) === 'Offline', 'the background timeout', 1500);
      expect(await h.status('kay')).to.equal('Online');
      // The app's own methods do the same.
      untracked.background();
      await waitFor(async () => (await h.status('kay')) === 'Offline', 'the background timeout of the method', 1500);
      // Back in the foreground after the server dropped it: it logs in again by itself.
      await waitFor(() => !untracked.socket.connected, 'the server to drop the connection', 1500);
      untracked.foreground();
      await waitFor(async () => (await h.status('kay')) === 'Online', 'the reconnect on foreground', 1500);
      visible.close();
      expect(doc.listening).to.equal(0);
    } finally {
      delete global.document;
    }
  });

  it('setAvailability and setStatus with a ttl; input events and the page becoming visible report activity, throttled', async () => {
    const h = await start({ idleTimeout: { web: '1s' } });
    const listeners = new Map<string, Set<() => void>>();
    const doc = {
      visibilityState: 'visible',
      addEventListener(type: string, listener: () => void) {
        (listeners.get(type) ?? listeners.set(type, new Set()).get(type)!).add(listener);
      },
      removeEventListener(type: string, listener: () => void) {
        listeners.get(type)?.delete(listener);
      },
    };
    const fire = (type: string): void => listeners.get(type)?.forEach((listener) => listener());
    const global = globalThis as { document?: unknown };
    global.document = doc;
    const activities: number[] = [];
    h.presence.on('availability', (change) => activities.push(change.at));
    try {
      const c = client('ann', { platform: 'Web', activityThrottle: 300 });
      await next(c, 'session');
      expect([...listeners.keys()].sort()).to.deep.equal(['keydown', 'pointerdown', 'pointermove', 'touchstart', 'visibilitychange', 'wheel']);
      await c.setAvailability('dnd');
      expect((await h.presence.query(['ann'], { detail: false }))[0]).to.include({ availability: 'dnd' });
      await expectRejects(c.setAvailability('busy' as never), 'BAD_REQUEST');
      await c.setStatus('brb', { ttl: '1s' });
      expect((await h.presence.query(['ann'], { detail: false }))[0]!.customStatus).to.equal('brb');
      await c.setAvailability('available');
      // Idle, then a key press brings the user back.
      await waitFor(async () => (await h.presence.query(['ann'], { detail: false }))[0]!.availability === 'away', 'idle', 3000);
      fire('keydown');
      await waitFor(async () => (await h.presence.query(['ann'], { detail: false }))[0]!.availability === 'available', 'back on input');
      // Throttled: a burst of input sends one activity.
      let sent = 0;
      const socket = c.socket as unknown as { emit(event: string, ...args: unknown[]): unknown };
      const emit = socket.emit.bind(socket);
      socket.emit = (event: string, ...args: unknown[]) => {
        if (event === 'presence:activity') sent++;
        return emit(event, ...args);
      };
      await delay(350);
      for (let i = 0; i < 20; i++) fire('pointermove');
      expect(sent).to.equal(1);
      await delay(350);
      doc.visibilityState = 'visible';
      fire('visibilitychange');
      expect(sent, 'the page becoming visible').to.equal(2);
      c.close();
      expect(
        [...listeners.values()].every((set) => set.size === 0),
        'close removes the listeners',
      ).to.equal(true);
      expect(() => createPresenceClient({ url: h.url, platform: 'Web', activityThrottle: -1 })).to.throw(/activityThrottle/);
    } finally {
      delete global.document;
    }
  });
});

async function expectRejects(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(PresenceClientError);
    expect((error as PresenceClientError).code).to.equal(code);
    return;
  }
  expect.fail(`expected a rejection with ${code}`);
}
