// No lying answers: a store that throws, hangs (memory mode) or a real Redis stopped or paused makes every route, query and login refuse within storeTimeout.

import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { Redis } from 'ioredis';
import {
  MemoryStore,
  StoreTimeoutError,
  StoreUnavailableError,
  type StoreCustomStatusRequest,
  type StoreKickRequest,
  type Presence,
  type PresenceChange,
  type StoreLoginRequest,
} from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { auth, startHarness, waitFor, type Harness } from './fixtures/socket-harness.js';
import { PrivateRedis } from './fixtures/cluster-harness.js';

const ADMIN = 'Bearer admin';
const STORE_TIMEOUT = 300;
/** How much later than storeTimeout a refusal may come on a loaded machine. */
const SLACK = 1500;

type Mode = 'ok' | 'hang' | 'throw' | 'fail';

/** A MemoryStore that, on demand, hangs every call (until released), throws StoreUnavailableError, or fails with a plain Error. */
class StallingStore extends MemoryStore {
  mode: Mode = 'ok';
  private readonly held: (() => void)[] = [];

  /** Lets every held call through, in order. */
  release(): void {
    this.mode = 'ok';
    for (const go of this.held.splice(0)) go();
  }

  private gate<T>(work: () => T | Promise<T>): T | Promise<T> {
    switch (this.mode) {
      case 'ok':
        return work();
      case 'throw':
        return Promise.reject(new StoreUnavailableError('the test database is down'));
      case 'fail':
        return Promise.reject(new Error('a bug in the store'));
      case 'hang':
        return new Promise<T>((resolve, reject) => this.held.push(() => Promise.resolve().then(work).then(resolve, reject)));
    }
  }

  override login(request: StoreLoginRequest) {
    return this.gate(() => super.login(request));
  }
  override get(userIds: readonly string[]) {
    return this.gate(() => super.get(userIds));
  }
  override kick(request: StoreKickRequest) {
    return this.gate(() => super.kick(request));
  }
  override stats() {
    return this.gate(() => super.stats());
  }
  override setCustomStatus(request: StoreCustomStatusRequest) {
    return this.gate(() => super.setCustomStatus(request));
  }
}

function adminApp(presence: Presence, options: Parameters<Presence['router']>[0] = {}): express.Express {
  const app = express();
  app.use(express.json());
  app.use('/p', presence.router(options));
  return app;
}

interface Call {
  name: string;
  family: 'source' | 'plain';
  send: (app: express.Express) => request.Test;
}

const CALLS: Call[] = [
  {
    name: 'querystate',
    family: 'source',
    send: (app) =>
      request(app)
        .post('/p/v4/openim/querystate')
        .send({ To_Account: ['u1', 'u2'] }),
  },
  {
    name: 'query_online_status',
    family: 'source',
    send: (app) =>
      request(app)
        .post('/p/v4/openim/query_online_status')
        .send({ To_Account: ['u1'] }),
  },
  { name: 'source kick', family: 'source', send: (app) => request(app).post('/p/v4/im_open_login_svc/kick').send({ UserID: 'u1' }) },
  { name: 'GET /users/:userId', family: 'plain', send: (app) => request(app).get('/p/users/u1') },
  {
    name: 'POST /users/query',
    family: 'plain',
    send: (app) =>
      request(app)
        .post('/p/users/query')
        .send({ userIds: ['u1'] }),
  },
  { name: 'POST /users/:userId/kick', family: 'plain', send: (app) => request(app).post('/p/users/u1/kick').send({}) },
  { name: 'GET /stats', family: 'plain', send: (app) => request(app).get('/p/stats') },
];

/** The route refused with 503 in its own format, saying why. */
function expectRefused(res: request.Response, family: 'source' | 'plain', why: RegExp, status = 503): void {
  expect(res.status, res.text.slice(0, 300)).to.equal(status);
  expect(res.headers['retry-after']).to.equal('1');
  if (family === 'source') {
    expect(res.headers['content-type']).to.match(/^application\/json/);
    expect(res.body).to.deep.include({ ActionStatus: 'FAIL', ErrorCode: 90994 });
    expect(res.body.ErrorInfo).to.match(why);
    expect(res.body).to.not.have.property('QueryResult');
  } else {
    expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
    expect(res.body).to.include({ status: 503, title: 'Service Unavailable' });
    expect(res.body.detail).to.match(why);
  }
}

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await work;
  return { value, ms: Date.now() - started };
}

describe('a store that cannot answer (memory mode, a stand-in store)', function () {
  this.timeout(30_000);
  let store: StallingStore;
  let harness: Harness;
  let app: express.Express;

  beforeEach(async () => {
    store = new StallingStore({ maxOfflineUsers: 100, maxRevokedSessions: 100 });
    harness = await startHarness({ store, storeTimeout: `${STORE_TIMEOUT}ms`, authorize: (req) => req.headers.authorization === ADMIN });
    app = adminApp(harness.presence);
    await harness.connect(auth('u1', 'Web'));
    await harness.connect(auth('u2', 'Android'));
  });
  afterEach(async () => {
    store.release();
    await harness.close();
  });

  it('answers every route with 503 in its format once storeTimeout has passed, while the store hangs', async () => {
    store.mode = 'hang';
    for (const call of CALLS) {
      const { value: res, ms } = await timed(call.send(app).set('Authorization', ADMIN));
      expectRefused(res, call.family, new RegExp(`storeTimeout \\(${STORE_TIMEOUT} ms\\)`));
      expect(ms, call.name).to.be.within(STORE_TIMEOUT - 20, STORE_TIMEOUT + SLACK);
    }
  });

  it('answers every route with 503 at once when the store says it is unavailable', async () => {
    store.mode = 'throw';
    for (const call of CALLS) {
      const { value: res, ms } = await timed(call.send(app).set('Authorization', ADMIN));
      expectRefused(res, call.family, /store is unavailable/);
      expect(ms, call.name).to.be.below(SLACK);
    }
    // Warned once for the episode, not once per request.
    expect(harness.errors.filter((args) => String(args[0]).includes('refused with 503'))).to.have.length(1);
  });

  it('answers 500, not 503, when the store fails with an uncoded error (a bug, not an outage)', async () => {
    store.mode = 'fail';
    const res = await request(app)
      .post('/p/v4/openim/querystate')
      .set('Authorization', ADMIN)
      .send({ To_Account: ['u1'] });
    expect(res.status).to.equal(500);
    expect(res.body.ErrorCode).to.equal(90994);
  });

  it('answers HTTP 200 with ActionStatus FAIL and 90994 on the source routes with sourceHttpStatus always-200', async () => {
    store.mode = 'throw';
    const ported = adminApp(harness.presence, { sourceHttpStatus: 'always-200' });
    const res = await request(ported)
      .post('/p/v4/openim/querystate')
      .set('Authorization', ADMIN)
      .send({ To_Account: ['u1'] });
    expectRefused(res, 'source', /store is unavailable/, 200);
    // The plain routes keep their statuses.
    expectRefused(await request(ported).get('/p/users/u1').set('Authorization', ADMIN), 'plain', /store is unavailable/);
  });

  it('rejects presence.query, kick, stats and setCustomStatus with coded errors', async () => {
    store.mode = 'hang';
    const { presence } = harness;
    for (const [name, work] of [
      ['query', () => presence.query(['u1'])],
      ['kick', () => presence.kick('u1')],
      ['stats', () => presence.stats()],
      ['setCustomStatus', () => presence.setCustomStatus('u1', 'busy')],
    ] as const) {
      const error = await (work as () => Promise<unknown>)().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error, name).to.be.instanceOf(StoreTimeoutError);
      expect(error, name).to.be.instanceOf(StoreUnavailableError);
      expect(error).to.include({ code: 'STORE_UNAVAILABLE', reason: 'timeout', timeout: STORE_TIMEOUT });
    }
    store.mode = 'throw';
    const error = await presence.query(['u1']).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).to.be.instanceOf(StoreUnavailableError).and.include({ code: 'STORE_UNAVAILABLE', reason: 'unreachable' });
  });

  it('refuses a login with SERVER_ERROR after storeTimeout, and closes it if the store takes it later', async () => {
    store.mode = 'hang';
    const { value: refusal, ms } = await timed(harness.refused(auth('late', 'Web')));
    expect(refusal).to.include({ code: 'SERVER_ERROR' });
    expect(refusal.message).to.match(/store is unavailable/);
    expect(ms).to.be.within(STORE_TIMEOUT - 20, STORE_TIMEOUT + SLACK);
    const mobile = await harness.refused(auth('late-phone', 'iPhone'));
    expect(mobile).to.include({ code: 'SERVER_ERROR' });
    // The store answers at last: the logins happened there, so they are reported, then ended as closed connections.
    store.release();
    const of = (userId: string) =>
      harness.changes.filter((change) => change.userId === userId).map((change: PresenceChange) => `${change.action}/${change.reason}/${change.userStatus}`);
    await waitFor(() => of('late').length === 2 && of('late-phone').length === 2, 'the late logins to be reported and closed');
    expect(of('late')).to.deep.equal(['Login/Register/Online', 'Disconnect/LinkClose/Offline']);
    expect(of('late-phone')).to.deep.equal(['Login/Register/Online', 'Disconnect/LinkClose/PushOnline']);
    expect(await harness.status('late')).to.equal('Offline');
    expect(await harness.status('late-phone')).to.equal('PushOnline');
    expect(harness.presence.engine.liveInstances).to.equal(2);
  });

  it('answers a subscribe with SERVER_ERROR within storeTimeout', async () => {
    const watcher = await harness.connect(auth('watcher', 'Web'));
    store.mode = 'hang';
    const { value: answer, ms } = await timed(watcher.socket.timeout(STORE_TIMEOUT + SLACK).emitWithAck('presence:subscribe', { userIds: ['u1'] }));
    expect(answer).to.deep.equal({ ok: false, code: 'SERVER_ERROR', message: 'the presence store is unavailable; try again shortly' });
    expect(ms).to.be.below(STORE_TIMEOUT + SLACK);
  });

  it('still makes and reports a kick the store answers after the route gave up (503 says the outcome is unknown)', async () => {
    const phone = await harness.connect(auth('k', 'Android'));
    store.mode = 'hang';
    const res = await request(app).post('/p/users/k/kick').set('Authorization', ADMIN).send({});
    expectRefused(res, 'plain', /outcome is unknown/);
    store.release();
    await waitFor(() => phone.kicks.length === 1, 'the kicked device to be told');
    expect(phone.kicks).to.deep.equal([{ reason: 'AdminKick' }]);
    expect(harness.changes.filter((change) => change.userId === 'k').map((change) => `${change.action}/${change.reason}`)).to.deep.equal([
      'Login/Register',
      'Logout/Kicked',
    ]);
  });
});

describe('a real Redis stopped or paused (Redis mode)', function () {
  this.timeout(60_000);
  let redis: PrivateRedis;
  let harness: Harness;
  let app: express.Express;
  const clients: Redis[] = [];
  const USERS = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'];

  beforeEach(async () => {
    redis = await PrivateRedis.start();
    const client = new Redis(redis.url);
    clients.push(client);
    harness = await startHarness({
      store: new RedisStore({ client, prefix: 'outage:', leaseTtl: 10_000 }),
      storeTimeout: `${STORE_TIMEOUT}ms`,
      authorize: (req) => req.headers.authorization === ADMIN,
    });
    app = adminApp(harness.presence);
    for (const userId of USERS) await harness.connect(auth(userId, 'Web'));
  });
  afterEach(async () => {
    await harness.close();
    for (const client of clients.splice(0)) client.disconnect();
    await redis.kill();
  });

  const querystate = () => request(app).post('/p/v4/openim/querystate').set('Authorization', ADMIN).send({ To_Account: USERS });

  it('refuses queries while Redis is stopped (never calls its own connected users Offline), and answers again once it is back', async () => {
    // Half of them read once before: what an answer from a stale copy would be built of.
    const before = await request(app)
      .post('/p/v4/openim/querystate')
      .set('Authorization', ADMIN)
      .send({ To_Account: USERS.slice(0, 3) });
    expect(before.body.QueryResult.map((entry: { Status: string }) => entry.Status)).to.deep.equal(['Online', 'Online', 'Online']);
    await redis.kill();
    await waitFor(() => harness.errors.some((args) => String(args[0]).includes('Redis is unreachable')), 'the outage to be noticed');
    const { value: during, ms } = await timed(querystate());
    expectRefused(during, 'source', /store/);
    expect(ms).to.be.below(STORE_TIMEOUT + SLACK);
    expectRefused(await request(app).get('/p/users/r4').set('Authorization', ADMIN), 'plain', /store/);
    expectRefused(await request(app).get('/p/stats').set('Authorization', ADMIN), 'plain', /store/);
    const error = await harness.presence.query(USERS).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).to.include({ code: 'STORE_UNAVAILABLE' });
    const { value: refusal, ms: loginMs } = await timed(harness.refused(auth('newcomer', 'Web')));
    expect(refusal).to.include({ code: 'SERVER_ERROR' });
    expect(loginMs).to.be.below(STORE_TIMEOUT + SLACK);

    await redis.start();
    // Back (empty): the live devices are re-asserted, and the answer is true again.
    await waitFor(
      async () => {
        const res = await querystate();
        return res.status === 200 && res.body.QueryResult.every((entry: { Status: string }) => entry.Status === 'Online');
      },
      'querystate to answer every connected user Online',
      10_000,
    );
  });

  it('bounds queries and logins by storeTimeout while Redis is paused (CLIENT PAUSE), and closes a login Redis takes after its refusal', async () => {
    const PAUSE = 4000;
    const pauser = new Redis(redis.url);
    clients.push(pauser);
    expect(await pauser.call('CLIENT', 'PAUSE', String(PAUSE), 'ALL')).to.equal('OK');
    const pausedAt = Date.now();
    const { value: during, ms } = await timed(querystate());
    expectRefused(during, 'source', /storeTimeout/);
    expect(ms).to.be.within(STORE_TIMEOUT - 20, STORE_TIMEOUT + SLACK);
    const { value: refusal, ms: loginMs } = await timed(harness.refused(auth('paused-login', 'Web')));
    expect(refusal).to.include({ code: 'SERVER_ERROR' });
    expect(loginMs).to.be.below(STORE_TIMEOUT + SLACK);
    expect(Date.now() - pausedAt, 'the refusals came before the pause ended').to.be.below(PAUSE);

    // The pause ends: Redis runs the login it held; it is reported and closed, and nobody else is touched.
    await waitFor(
      () => harness.changes.some((change) => change.userId === 'paused-login' && change.action === 'Disconnect'),
      'the late login to be closed',
      PAUSE + 10_000,
    );
    await waitFor(
      async () => {
        const res = await request(app)
          .post('/p/v4/openim/querystate')
          .set('Authorization', ADMIN)
          .send({ To_Account: [...USERS, 'paused-login'] });
        return (
          res.status === 200 &&
          JSON.stringify(res.body.QueryResult.map((entry: { Status: string }) => entry.Status)) === JSON.stringify([...USERS.map(() => 'Online'), 'Offline'])
        );
      },
      'every connected user Online and the refused login Offline',
      5000,
    );
  });
});
