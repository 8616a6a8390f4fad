// The status-change callback against real HTTP receivers on loopback: body, URL, signature, order, retries, overflow, close.

import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac } from 'node:crypto';
import {
  CallbackDeliveryError,
  createPresence,
  ManualClock,
  MemoryStore,
  verifyCallbackSignature,
  type Connection,
  type Presence,
  type PresenceOptions,
  type StateChangeCallbackBody,
} from '../lib/index.js';
import { MAX_BACKOFF, retryDelay } from '../lib/callback/delivery.js';

interface Received {
  url: URL;
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: StateChangeCallbackBody;
}

type Answer = (received: Received, index: number) => { status?: number; body?: string; delay?: number; hang?: boolean };

const OK = JSON.stringify({ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '' });

/** A callback receiver on 127.0.0.1: records every request and answers as `answer` says (OK by default). */
class Receiver {
  readonly received: Received[] = [];
  /** Requests acknowledged with OK, in the order the receiver accepted them. */
  readonly accepted: StateChangeCallbackBody[] = [];
  inFlight = 0;
  maxInFlight = 0;
  private readonly server: http.Server;
  private readonly hanging = new Set<http.ServerResponse>();
  private waiters: { count: number; resolve: () => void }[] = [];

  constructor(private readonly answer: Answer = () => ({})) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const received: Received = {
          url: new URL(req.url ?? '/', 'http://receiver'),
          headers: req.headers,
          raw,
          body: JSON.parse(raw) as StateChangeCallbackBody,
        };
        const index = this.received.push(received) - 1;
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        const plan = this.answer(received, index);
        if (plan.hang) {
          this.hanging.add(res);
          return;
        }
        const reply = (): void => {
          this.inFlight--;
          const body = plan.body ?? OK;
          if ((plan.status ?? 200) === 200 && body === OK) this.accepted.push(received.body);
          res.writeHead(plan.status ?? 200, { 'Content-Type': 'application/json' }).end(body);
          this.notify();
        };
        if (plan.delay) setTimeout(reply, plan.delay);
        else reply();
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/presence-hook`;
  }

  /** Resolves once `count` events were accepted. */
  acceptedCount(count: number): Promise<void> {
    if (this.accepted.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  private notify(): void {
    this.waiters = this.waiters.filter((waiter) => {
      if (this.accepted.length < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function quietLogger(): { warn: (...args: unknown[]) => void; error: (...args: unknown[]) => void; warnings: string[]; errors: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  return { warnings, errors, warn: (message) => warnings.push(String(message)), error: (message) => errors.push(String(message)) };
}

function newPresence(options: PresenceOptions): Presence {
  return createPresence({ store: new MemoryStore({ maxOfflineUsers: 10_000, maxRevokedSessions: 10_000 }), ...options });
}

async function login(presence: Presence, userId: string, platform: string, instanceId: string, clientIp?: string): Promise<Connection> {
  return (await presence.engine.connect({ userId, platform, instanceId, clientIp }, () => {})).connection;
}

/** A URL nobody listens on. */
async function deadUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/down`;
}

function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (condition()) resolve();
      else if (Date.now() - started > ms) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(check, 5);
    };
    check();
  });
}

async function expectRejection(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome, 'should have been refused').to.be.instanceOf(Error);
  expect((outcome as Error).message).to.match(message);
}

describe('status-change callback', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function receiver(answer?: Answer): Promise<{ receiver: Receiver; url: string }> {
    const created = new Receiver(answer);
    const url = await created.start();
    cleanups.push(() => created.stop());
    return { receiver: created, url };
  }

  function mount(options: PresenceOptions): Presence {
    const presence = newPresence(options);
    cleanups.push(() => presence.close());
    return presence;
  }

  it('posts the source document body and URL parameters, with our extensions', async () => {
    const { receiver: hook, url } = await receiver();
    const clock = new ManualClock();
    const presence = mount({ clock, callback: { url: `${url}?SdkAppid=1400000000` } });

    const android = await login(presence, 'u1', 'Android', 'a1', '203.0.113.7');
    clock.advance(1000);
    presence.engine.disconnect(android, 'closed');
    clock.advance(1000);
    await login(presence, 'u1', 'iPhone', 'i1', '198.51.100.2');
    clock.advance(1000);
    await presence.kick('u1');
    await hook.acceptedCount(4);

    const start = Date.UTC(2026, 0, 1);
    const [login1, close, login2, kick] = hook.received;
    expect(login1?.url.pathname).to.equal('/presence-hook');
    expect(Object.fromEntries(login1?.url.searchParams ?? [])).to.deep.equal({
      SdkAppid: '1400000000',
      CallbackCommand: 'State.StateChange',
      contenttype: 'json',
      ClientIP: '203.0.113.7',
      OptPlatform: 'Android',
    });
    expect(login1?.headers['content-type']).to.equal('application/json; charset=utf-8');
    expect(login1?.headers['x-presence-signature']).to.equal(undefined);
    expect(login1?.body).to.deep.equal({
      CallbackCommand: 'State.StateChange',
      EventTime: start,
      Info: { Action: 'Login', To_Account: 'u1', Reason: 'Register' },
      KickedDevice: [],
      Platform: 'Android',
      InstId: 'a1',
      Status: 'Online',
      UserStatus: 'Online',
      PreviousUserStatus: 'Offline',
      Availability: 'available',
      // A user's first change is numbered from the clock (ms × 1000), each later one adds one (README "Sequence numbers").
      Seq: start * 1000,
    });
    expect(close?.body).to.deep.equal({
      CallbackCommand: 'State.StateChange',
      EventTime: start + 1000,
      Info: { Action: 'Disconnect', To_Account: 'u1', Reason: 'LinkClose' },
      KickedDevice: [],
      Platform: 'Android',
      InstId: 'a1',
      Status: 'PushOnline',
      UserStatus: 'PushOnline',
      PreviousUserStatus: 'Online',
      Availability: 'available',
      Seq: start * 1000 + 1,
    });
    // The single policy: the iPhone login displaces the PushOnline Android, named in its KickedDevice.
    expect(login2?.body).to.deep.include({
      Info: { Action: 'Login', To_Account: 'u1', Reason: 'Register' },
      KickedDevice: [{ Platform: 'Android', InstId: 'a1' }],
    });
    expect(login2?.body).to.deep.include({
      Platform: 'iPhone',
      InstId: 'i1',
      Status: 'Online',
      UserStatus: 'Online',
      PreviousUserStatus: 'PushOnline',
      Availability: 'available',
      Seq: start * 1000 + 2,
    });
    expect(login2?.url.searchParams.get('ClientIP')).to.equal('198.51.100.2');
    // An admin kick was made over HTTP: OptPlatform RESTAPI, no client address.
    expect(kick?.body).to.deep.include({
      Info: { Action: 'Logout', To_Account: 'u1', Reason: 'Kicked' },
      Status: 'Offline',
      UserStatus: 'Offline',
      Seq: start * 1000 + 3,
    });
    expect(kick?.url.searchParams.get('OptPlatform')).to.equal('RESTAPI');
    expect(kick?.url.searchParams.get('ClientIP')).to.equal('');
    expect(hook.received).to.have.length(4);
  });

  it('signs the raw body with HMAC-SHA256 when a secret is set', async () => {
    const { receiver: hook, url } = await receiver();
    const secret = 's3cr3t';
    const presence = mount({ callback: { url, secret } });
    await login(presence, 'u1', 'Web', 'w1');
    await hook.acceptedCount(1);
    const [event] = hook.received;
    const header = event?.headers['x-presence-signature'];
    expect(header).to.equal(
      `sha256=${createHmac('sha256', secret)
        .update(event?.raw ?? '')
        .digest('hex')}`,
    );
    expect(verifyCallbackSignature(event?.raw ?? '', header, secret)).to.equal(true);
    expect(verifyCallbackSignature(Buffer.from(event?.raw ?? ''), header, secret)).to.equal(true);
    expect(verifyCallbackSignature((event?.raw ?? '').replace('u1', 'u2'), header, secret)).to.equal(false);
    expect(verifyCallbackSignature(event?.raw ?? '', header, 'other')).to.equal(false);
    expect(verifyCallbackSignature(event?.raw ?? '', undefined, secret)).to.equal(false);
  });

  it('keeps each user in order while users go in parallel', async () => {
    // Receiver latency varies, so a sender that did not serialise per user would reorder.
    const { receiver: hook, url } = await receiver(() => ({ delay: Math.floor(Math.random() * 4) }));
    const presence = mount({ callback: { url } });
    const USERS = 40;
    const CYCLES = 6;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      await Promise.all(
        Array.from({ length: USERS }, async (_, u) => {
          const connection = await login(presence, `user${u}`, 'Android', `a${cycle}`);
          presence.engine.disconnect(connection, 'closed');
        }),
      );
    }
    const total = USERS * CYCLES * 2;
    await hook.acceptedCount(total);
    expect(hook.accepted).to.have.length(total);
    const seqs = new Map<string, number[]>();
    for (const body of hook.accepted) {
      const list = seqs.get(body.Info.To_Account) ?? [];
      list.push(body.Seq);
      seqs.set(body.Info.To_Account, list);
    }
    expect(seqs.size).to.equal(USERS);
    // In order: one more per change from the user's first (numbered from the clock).
    for (const [user, list] of seqs) expect(list, user).to.deep.equal(Array.from({ length: CYCLES * 2 }, (_, i) => (list[0] as number) + i));
    expect(hook.maxInFlight, 'users delivered in parallel').to.be.greaterThan(1);
    expect(hook.maxInFlight, 'bounded concurrency').to.be.at.most(16);
  });

  it('retries a failing receiver with backoff until it recovers: each event once, in order', async () => {
    const FAILURES = 7;
    let served = 0;
    const { receiver: hook, url } = await receiver(() => {
      served++;
      if (served <= 3) return { status: 503, body: 'busy' };
      if (served <= 5) return { body: JSON.stringify({ ActionStatus: 'FAIL', ErrorCode: 1 }) };
      if (served <= FAILURES) return { body: 'not json' };
      return {};
    });
    const failed: StateChangeCallbackBody[] = [];
    const presence = mount({ callback: { url, backoff: 5, maxRetries: 20 } });
    presence.on('callback-failed', (body) => failed.push(body as StateChangeCallbackBody));
    for (const user of ['a', 'b', 'c']) {
      for (let i = 0; i < 4; i++) presence.engine.disconnect(await login(presence, user, 'iPad', `p${i}`), 'closed');
    }
    await hook.acceptedCount(24);
    expect(hook.received).to.have.length(24 + FAILURES);
    for (const user of ['a', 'b', 'c']) {
      const seqs = hook.accepted.filter((body) => body.Info.To_Account === user).map((body) => body.Seq);
      expect(seqs, user).to.deep.equal(Array.from({ length: 8 }, (_, i) => (seqs[0] as number) + i));
    }
    expect(failed).to.deep.equal([]);
    // The receiver accepted the last one; the sender may not have read its answer yet.
    await until(() => presence.metrics.snapshot().callback?.queued === 0, 'the last acknowledgement');
    const snapshot = presence.metrics.snapshot();
    expect(snapshot.callback).to.deep.equal({ delivered: 24, failed: 0, dropped: 0, retried: FAILURES, queued: 0 });
  });

  it('waits for the backoff on the mount clock before retrying', async () => {
    let served = 0;
    const { receiver: hook, url } = await receiver(() => (++served === 1 ? { status: 500 } : {}));
    const clock = new ManualClock();
    const presence = mount({ clock, callback: { url, backoff: 1000 } });
    await login(presence, 'u1', 'Web', 'w1');
    await until(() => hook.received.length === 1 && presence.metrics.snapshot().callback?.retried === 1, 'the first attempt');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(hook.received, 'no retry before the clock moves').to.have.length(1);
    // Full jitter: the first retry comes within `backoff`.
    clock.advance(1000);
    await hook.acceptedCount(1);
    expect(hook.received).to.have.length(2);
  });

  it("gives up after maxRetries: counted, logged once, and emitted as 'callback-failed'", async () => {
    const url = await deadUrl();
    const logger = quietLogger();
    const presence = mount({ logger, callback: { url, maxRetries: 2, backoff: 5, timeout: '500ms' } });
    const failures: [StateChangeCallbackBody, Error][] = [];
    presence.on('callback-failed', (body, error) => failures.push([body as StateChangeCallbackBody, error]));
    await login(presence, 'u1', 'Web', 'w1');
    await login(presence, 'u2', 'Mac', 'm2');
    await until(() => failures.length === 2, 'two failures');
    const users = failures.map(([body]) => body.Info.To_Account).sort();
    expect(users).to.deep.equal(['u1', 'u2']);
    for (const [body, error] of failures) {
      expect(body.Info.Action).to.equal('Login');
      expect(error).to.be.instanceOf(CallbackDeliveryError);
      expect((error as CallbackDeliveryError).attempts).to.equal(3);
      expect(error.message).to.match(/not delivered after 3 attempt\(s\): .*ECONNREFUSED/);
    }
    expect(presence.metrics.snapshot().callback).to.deep.equal({ delivered: 0, failed: 2, dropped: 0, retried: 4, queued: 0 });
    expect(logger.errors, 'one log line per outage').to.have.length(1);
    expect(logger.errors[0]).to.match(/given up/);
  });

  it('never slows the live path when the receiver hangs: overflow is dropped, counted and logged once', async () => {
    const { receiver: hook, url } = await receiver(() => ({ hang: true }));
    const logger = quietLogger();
    const presence = mount({ logger, loginPolicy: 'multi', callback: { url, maxQueue: 5, timeout: '200ms', maxRetries: 0 } });
    const failed: Error[] = [];
    presence.on('callback-failed', (_body, error) => failed.push(error));
    const EVENTS = 400;
    const started = performance.now();
    for (let i = 0; i < EVENTS / 2; i++) presence.engine.disconnect(await login(presence, `user${i}`, 'Android', 'a'), 'closed');
    const elapsed = performance.now() - started;
    // 400 events behind a receiver that never answers: were the live path waiting on it, this would take 80 s.
    expect(elapsed, 'live path').to.be.below(1500);
    expect(presence.metrics.snapshot().callback?.dropped).to.equal(EVENTS - 5);
    expect(failed).to.have.length(EVENTS - 5);
    // A user with an event still waiting has it coalesced into the newer one; users with none get theirs dropped.
    const refused = failed.filter((error) => /queue was full \(maxQueue 5\)/.test(error.message)).length;
    const coalesced = failed.filter((error) => /coalesced into a later one/.test(error.message)).length;
    expect(refused).to.be.above(0);
    expect(refused + coalesced).to.equal(EVENTS - 5);
    expect(
      logger.warnings.filter((line) => /queue is full/.test(line)),
      'one warning per overflow episode',
    ).to.have.length(1);
    await until(() => hook.received.length === 5, 'the five queued attempts');
    // The five queued events time out (200 ms) and, with maxRetries 0, are given up.
    await until(() => failed.length === EVENTS, 'the queued events to fail');
    expect(presence.metrics.snapshot().callback).to.deep.equal({ delivered: 0, failed: 5, dropped: EVENTS - 5, retried: 0, queued: 0 });
    expect(logger.warnings.filter((line) => line.includes(`drained; ${refused} event(s) were dropped`))).to.have.length(1);
  });

  it('close() flushes what it can, at once, within the deadline', async () => {
    let served = 0;
    const { receiver: hook, url } = await receiver(() => (++served === 1 ? { status: 500 } : { delay: 20 }));
    const presence = newPresence({ callback: { url, backoff: 60_000, timeout: 2000 } });
    await login(presence, 'u1', 'Web', 'w1');
    await login(presence, 'u2', 'Web', 'w2');
    await until(() => presence.metrics.snapshot().callback?.retried === 1, 'a retry waiting a minute');
    const started = performance.now();
    await presence.close();
    // The retry waiting 60 s went at once; both logins, and the closes close() made, are delivered before it resolved.
    expect(performance.now() - started).to.be.below(1500);
    expect(hook.accepted.map((body) => `${body.Info.To_Account}:${body.Info.Action}`).sort()).to.deep.equal([
      'u1:Disconnect',
      'u1:Login',
      'u2:Disconnect',
      'u2:Login',
    ]);
  });

  it("close() gives what it could not deliver to 'callback-failed' once the deadline passes", async () => {
    const { url } = await receiver(() => ({ hang: true }));
    const presence = newPresence({ logger: quietLogger(), callback: { url, timeout: '300ms', maxRetries: 5, backoff: 10 } });
    const failed: [StateChangeCallbackBody, Error][] = [];
    presence.on('callback-failed', (body, error) => failed.push([body as StateChangeCallbackBody, error]));
    await login(presence, 'u1', 'Web', 'w1');
    const connection = await login(presence, 'u2', 'Android', 'a2');
    presence.engine.disconnect(connection, 'closed');
    const started = performance.now();
    await presence.close();
    const elapsed = performance.now() - started;
    expect(elapsed).to.be.within(250, 1500);
    // u1's close is close()'s own (u2's phone was already PushOnline). Seqs counted from each user's first.
    const first = new Map<string, number>();
    for (const [body] of failed) first.set(body.Info.To_Account, Math.min(body.Seq, first.get(body.Info.To_Account) ?? Infinity));
    const relative = failed.map(([body]) => `${body.Info.To_Account}:${body.Seq - (first.get(body.Info.To_Account) as number) + 1}`);
    expect(relative.sort()).to.deep.equal(['u1:1', 'u1:2', 'u2:1', 'u2:2']);
    for (const [, error] of failed) expect(error.message).to.match(/presence closed before the callback was delivered|no answer within 300 ms/);
  });

  it('close() reports and delivers a login the store was still taking when close() began', async () => {
    const { receiver: hook, url } = await receiver();
    const store = new MemoryStore();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const storeLogin = store.login.bind(store);
    // The store answers the second login only when the test says so.
    let logins = 0;
    store.login = async (request) => {
      if (++logins === 2) await gate;
      return storeLogin(request);
    };
    const presence = createPresence({ store, callback: { url } });
    const changes: string[] = [];
    presence.on('change', (change) => changes.push(`${change.userId}:${change.action}`));
    await login(presence, 'u1', 'Web', 'w1');
    const late = login(presence, 'u2', 'Web', 'w2');
    const closing = presence.close();
    // A connection opened once close() began is refused at once.
    await expectRejection(login(presence, 'u3', 'Web', 'w3'), /closed/);
    release();
    await expectRejection(late, /closed/);
    await closing;
    // The late login's device is ended by close() with the others (its connection was refused).
    expect(changes).to.deep.equal(['u1:Login', 'u2:Login', 'u1:Disconnect', 'u2:Disconnect']);
    expect(hook.accepted.map((body) => `${body.Info.To_Account}:${body.Info.Action}`).sort()).to.deep.equal([
      'u1:Disconnect',
      'u1:Login',
      'u2:Disconnect',
      'u2:Login',
    ]);
  });

  it('keeps delivering when a callback-failed listener throws', async () => {
    const url = await deadUrl();
    const logger = quietLogger();
    const presence = mount({ logger, callback: { url, maxRetries: 0 } });
    presence.on('callback-failed', () => {
      throw new Error('listener bug');
    });
    await login(presence, 'u1', 'Web', 'w1');
    await login(presence, 'u2', 'Web', 'w2');
    await until(() => presence.metrics.snapshot().callback?.failed === 2, 'both failures');
    expect(logger.errors.filter((line) => /'callback-failed' listener threw/.test(line))).to.have.length(2);
  });
});

describe('retryDelay', () => {
  it('draws uniformly up to the backoff doubled per failure, capped at 30 s', () => {
    const top = (): number => 0.999999;
    expect(retryDelay(250, 1, top)).to.equal(249);
    expect(retryDelay(250, 2, top)).to.equal(499);
    expect(retryDelay(250, 3, top)).to.equal(999);
    expect(retryDelay(250, 8, top)).to.equal(MAX_BACKOFF - 1);
    expect(retryDelay(250, 500, top)).to.equal(MAX_BACKOFF - 1);
    expect(retryDelay(250, 3, () => 0)).to.equal(0);
    expect(retryDelay(250, 3, () => 0.5)).to.equal(500);
  });
});
