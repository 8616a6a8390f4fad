// The router: every route, error code and bad input, in Express 4 and 5, with and without a host body parser, at a non-root path.

import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import express from 'express';
import request from 'supertest';
import fc from 'fast-check';
import { createPresence, ManualClock, MemoryStore, type Connection, type Presence, type PresenceOptions, type PresenceRouter } from '../lib/index.js';

const express4 = createRequire(import.meta.url)('express4') as typeof express;

const MOUNT = '/api/presence';
const ADMIN = 'Bearer admin';

interface Host {
  name: string;
  /** Whether the host parses JSON itself before the router (then malformed JSON is the host's to refuse). */
  parsesJson: boolean;
  make(router: PresenceRouter): express.Express;
}

/** After the router, a host route that answers anything we pass on, so a fall-through is visible. */
function hostFallback(app: express.Express): void {
  app.use((_req, res) => {
    res.status(404).json({ host: 'fallback' });
  });
}

const HOSTS: Host[] = [
  {
    name: 'Express 5, no body parser',
    parsesJson: false,
    make(router) {
      const app = express();
      app.use(MOUNT, router);
      hostFallback(app);
      return app;
    },
  },
  {
    name: 'Express 5, express.json() before the router',
    parsesJson: true,
    make(router) {
      const app = express();
      app.use(express.json({ limit: '10mb' }));
      app.use(MOUNT, router);
      hostFallback(app);
      return app;
    },
  },
  {
    name: 'Express 4, no body parser',
    parsesJson: false,
    make(router) {
      const app = express4();
      app.use(MOUNT, router);
      hostFallback(app);
      return app;
    },
  },
  {
    name: 'Express 4, express.json() before the router',
    parsesJson: true,
    make(router) {
      const app = express4();
      app.use(express4.json({ limit: '10mb' }));
      app.use(MOUNT, router);
      hostFallback(app);
      return app;
    },
  },
];

/** A logger that keeps what it was told instead of printing it. */
function recordingLogger(): { warn: (...args: unknown[]) => void; error: (...args: unknown[]) => void; warnings: unknown[][]; errors: unknown[][] } {
  const warnings: unknown[][] = [];
  const errors: unknown[][] = [];
  return { warnings, errors, warn: (...args) => warnings.push(args), error: (...args) => errors.push(args) };
}

async function login(presence: Presence, userId: string, platform: string, instanceId: string): Promise<Connection> {
  return (await presence.engine.connect({ userId, platform, instanceId }, () => {})).connection;
}

/** u1: Android PushOnline + Web Online; u2: iPhone PushOnline; u3: Windows Online; others never seen. */
async function seed(presence: Presence): Promise<void> {
  presence.engine.disconnect(await login(presence, 'u1', 'Android', 'a1'), 'closed');
  await login(presence, 'u1', 'Web', 'w1');
  presence.engine.disconnect(await login(presence, 'u2', 'iPhone', 'i2'), 'closed');
  await login(presence, 'u3', 'Windows', 'd3');
}

function newPresence(extra: PresenceOptions = {}): { presence: Presence; logger: ReturnType<typeof recordingLogger> } {
  const logger = recordingLogger();
  const presence = createPresence({
    clock: new ManualClock(),
    loginPolicy: 'multi',
    logger,
    // Small caches: the default MemoryStore allocates for 100 000 users, slow to build per test.
    store: new MemoryStore({ maxOfflineUsers: 1000, maxRevokedSessions: 1000 }),
    authorize: (req) => req.headers.authorization === ADMIN,
    ...extra,
  });
  return { presence, logger };
}

const SOURCE_CODES = [90001, 90003, 90009, 90011, 90994];

function expectSourceFailure(res: request.Response, status: number, code: number, mentions?: string | RegExp): void {
  expect(res.status, res.text.slice(0, 300)).to.equal(status);
  expect(res.headers['content-type']).to.match(/^application\/json/);
  expect(res.body).to.have.keys('ActionStatus', 'ErrorCode', 'ErrorInfo');
  expect(res.body.ActionStatus).to.equal('FAIL');
  expect(res.body.ErrorCode).to.equal(code);
  expect(res.body.ErrorInfo).to.be.a('string').and.not.equal('');
  if (mentions !== undefined) expect(res.body.ErrorInfo).to.match(typeof mentions === 'string' ? new RegExp(escape(mentions)) : mentions);
}

function expectProblem(res: request.Response, status: number, mentions?: string | RegExp): void {
  expect(res.status, res.text.slice(0, 300)).to.equal(status);
  expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
  expect(res.body).to.have.keys('type', 'title', 'status', 'detail');
  expect(res.body.status).to.equal(status);
  expect(res.body.type).to.be.a('string');
  expect(res.body.title).to.be.a('string').and.not.equal('');
  expect(res.body.detail).to.be.a('string').and.not.equal('');
  if (mentions !== undefined) expect(res.body.detail).to.match(typeof mentions === 'string' ? new RegExp(escape(mentions)) : mentions);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

for (const host of HOSTS) {
  describe(`router in ${host.name}, mounted at ${MOUNT}`, () => {
    let presence: Presence;
    let logger: ReturnType<typeof recordingLogger>;
    let app: express.Express;

    beforeEach(async () => {
      ({ presence, logger } = newPresence());
      await seed(presence);
      app = host.make(presence.router());
    });
    afterEach(() => presence.close());

    const post = (path: string) =>
      request(app)
        .post(MOUNT + path)
        .set('Authorization', ADMIN);
    const get = (path: string) =>
      request(app)
        .get(MOUNT + path)
        .set('Authorization', ADMIN);

    describe('POST /v4/openim/querystate', () => {
      it('answers one entry per distinct account, in request order, without Detail by default', async () => {
        const res = await post('/v4/openim/querystate').send({ To_Account: ['u3', 'u1', 'nobody', 'u2', 'u1'] });
        expect(res.status).to.equal(200);
        expect(res.headers['content-type']).to.equal('application/json; charset=utf-8');
        expect(res.headers['cache-control']).to.equal('no-store');
        expect(res.body).to.deep.equal({
          ActionStatus: 'OK',
          ErrorCode: 0,
          ErrorInfo: '',
          QueryResult: [
            { To_Account: 'u3', Status: 'Online', Availability: 'available' },
            { To_Account: 'u1', Status: 'Online', Availability: 'available' },
            { To_Account: 'nobody', Status: 'Offline', Availability: 'available' },
            { To_Account: 'u2', Status: 'PushOnline', Availability: 'available' },
          ],
        });
      });

      it('adds Detail with IsNeedDetail 1, and InstId only with IsReturnInstid 1', async () => {
        const detail = await post('/v4/openim/querystate').send({ To_Account: ['u1', 'nobody'], IsNeedDetail: 1 });
        expect(detail.body.QueryResult).to.deep.equal([
          {
            To_Account: 'u1',
            Status: 'Online',
            Availability: 'available',
            Detail: [
              { Platform: 'Android', Status: 'PushOnline' },
              { Platform: 'Web', Status: 'Online' },
            ],
          },
          { To_Account: 'nobody', Status: 'Offline', Availability: 'available', Detail: [] },
        ]);
        const withIds = await post('/v4/openim/querystate').send({ To_Account: ['u1'], IsNeedDetail: 1, IsReturnInstid: 1 });
        expect(withIds.body.QueryResult[0].Detail).to.deep.equal([
          { Platform: 'Android', Status: 'PushOnline', InstId: 'a1' },
          { Platform: 'Web', Status: 'Online', InstId: 'w1' },
        ]);
        const idsWithoutDetail = await post('/v4/openim/querystate').send({ To_Account: ['u1'], IsReturnInstid: 1 });
        expect(idsWithoutDetail.body.QueryResult).to.deep.equal([{ To_Account: 'u1', Status: 'Online', Availability: 'available' }]);
        const zeros = await post('/v4/openim/querystate').send({ To_Account: ['u1'], IsNeedDetail: 0, IsReturnInstid: 0 });
        expect(zeros.body.QueryResult).to.deep.equal([{ To_Account: 'u1', Status: 'Online', Availability: 'available' }]);
      });

      it('ignores unknown fields (source-document clients send their own)', async () => {
        const res = await post('/v4/openim/querystate?sdkappid=1&random=2').send({ To_Account: ['u2'], SomethingElse: true });
        expect(res.status).to.equal(200);
        expect(res.body.QueryResult).to.deep.equal([{ To_Account: 'u2', Status: 'PushOnline', Availability: 'available' }]);
      });

      it('is also served at /v4/openim/query_online_status, and with a trailing slash', async () => {
        const res = await post('/v4/openim/query_online_status').send({ To_Account: ['u3'], IsNeedDetail: 1 });
        expect(res.body.QueryResult).to.deep.equal([
          { To_Account: 'u3', Status: 'Online', Availability: 'available', Detail: [{ Platform: 'Windows', Status: 'Online' }] },
        ]);
        const slash = await post('/v4/openim/querystate/').send({ To_Account: ['u3'] });
        expect(slash.status).to.equal(200);
      });

      it('takes exactly 500 accounts and refuses 501 with 90011', async () => {
        const five = Array.from({ length: 500 }, (_, i) => `user${i}`);
        const ok = await post('/v4/openim/querystate').send({ To_Account: five });
        expect(ok.status).to.equal(200);
        expect(ok.body.QueryResult).to.have.length(500);
        const res = await post('/v4/openim/querystate').send({ To_Account: [...five, 'one-more'] });
        expectSourceFailure(res, 400, 90011, '501');
      });

      it('refuses a missing, null or empty To_Account with 90001', async () => {
        expectSourceFailure(await post('/v4/openim/querystate').send({ IsNeedDetail: 1 }), 400, 90001, 'To_Account is missing');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: null }), 400, 90001, 'To_Account is missing');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: [] }), 400, 90001, 'To_Account is empty');
      });

      it('refuses a To_Account that is not a list of non-empty strings with 90003, naming the entry', async () => {
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: 'u1' }), 400, 90003, 'To_Account must be a list');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: { u1: true } }), 400, 90003, 'got an object');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: ['u1', 7] }), 400, 90003, 'To_Account[1] must be a string; got 7');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: ['u1', ''] }), 400, 90003, 'To_Account[1] must not be empty');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: [null] }), 400, 90003, 'To_Account[0]');
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: ['x'.repeat(129)] }), 400, 90003, 'at most 128 characters');
      });

      it('refuses flags other than 0 and 1 with 90001, naming the flag', async () => {
        expectSourceFailure(
          await post('/v4/openim/querystate').send({ To_Account: ['u1'], IsNeedDetail: 2 }),
          400,
          90001,
          'IsNeedDetail must be 0 or 1; got 2',
        );
        expectSourceFailure(await post('/v4/openim/querystate').send({ To_Account: ['u1'], IsReturnInstid: '1' }), 400, 90001, 'IsReturnInstid');
      });

      it('refuses a body that is not a JSON object with 90001', async () => {
        expectSourceFailure(await post('/v4/openim/querystate').send(['u1']), 400, 90001, 'must be a JSON object');
        expectSourceFailure(await post('/v4/openim/querystate'), 400, 90001, 'the body is empty');
        // A cross-site form can send text/plain without a preflight: never read, whoever parsed what.
        const text = await post('/v4/openim/querystate').set('Content-Type', 'text/plain').send('{"To_Account":["u3"]}');
        expectSourceFailure(text, 415, 90001, 'application/json');
      });

      it('refuses malformed JSON with 90001, never the host HTML error page (its own parser or the host one)', async () => {
        const res = await post('/v4/openim/querystate').set('Content-Type', 'application/json').send('{"To_Account": ["u1",]}');
        expectSourceFailure(res, 400, 90001, 'not valid JSON');
      });

      if (!host.parsesJson) {
        it('refuses a compressed body with 415', async () => {
          const res = await post('/v4/openim/querystate').set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('xx');
          expectSourceFailure(res, 415, 90001, 'Content-Encoding');
        });
      }

      it('refuses a body over the 1 MB default limit with 413, and the connection stays usable', async () => {
        const big = JSON.stringify({ To_Account: ['u1'], padding: 'x'.repeat(1024 * 1024) });
        const res = await post('/v4/openim/querystate').set('Content-Type', 'application/json').send(big);
        expectSourceFailure(res, 413, 90001, 'larger than the limit of 1048576 bytes');
        const after = await post('/v4/openim/querystate').send({ To_Account: ['u1'] });
        expect(after.status).to.equal(200);
      });

      it('refuses an unauthorised call with 90009: 401 without credentials, 403 with refused ones', async () => {
        const none = await request(app)
          .post(`${MOUNT}/v4/openim/querystate`)
          .send({ To_Account: ['u1'] });
        expectSourceFailure(none, 401, 90009, 'no credentials');
        const wrong = await request(app)
          .post(`${MOUNT}/v4/openim/querystate`)
          .set('Authorization', 'Bearer nope')
          .send({ To_Account: ['u1'] });
        expectSourceFailure(wrong, 403, 90009, 'not authorised');
        const withQuery = await request(app)
          .post(`${MOUNT}/v4/openim/querystate?usersig=forged`)
          .send({ To_Account: ['u1'] });
        expectSourceFailure(withQuery, 403, 90009);
      });

      it('refuses another method with 405 and an Allow header', async () => {
        const res = await get('/v4/openim/querystate');
        expectSourceFailure(res, 405, 90001, 'takes POST; got GET');
        expect(res.headers.allow).to.equal('POST');
      });
    });

    describe('POST /v4/im_open_login_svc/kick', () => {
      it('kicks every device of UserID and lists them', async () => {
        const res = await post('/v4/im_open_login_svc/kick').send({ UserID: 'u1' });
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({
          ActionStatus: 'OK',
          ErrorCode: 0,
          ErrorInfo: '',
          KickedDevice: [
            { Platform: 'Android', InstId: 'a1' },
            { Platform: 'Web', InstId: 'w1' },
          ],
        });
        const after = await post('/v4/openim/querystate').send({ To_Account: ['u1'] });
        expect(after.body.QueryResult).to.deep.equal([{ To_Account: 'u1', Status: 'Offline', Availability: 'available' }]);
        const again = await post('/v4/im_open_login_svc/kick').send({ UserID: 'u1' });
        expect(again.body.KickedDevice).to.deep.equal([]);
      });

      it('refuses a missing or ill-typed UserID, naming it', async () => {
        expectSourceFailure(await post('/v4/im_open_login_svc/kick').send({}), 400, 90001, 'UserID is missing');
        expectSourceFailure(await post('/v4/im_open_login_svc/kick').send({ UserId: 'u1' }), 400, 90001, 'case-sensitive');
        expectSourceFailure(await post('/v4/im_open_login_svc/kick').send({ UserID: ['u1'] }), 400, 90003, 'UserID must be a string');
        expectSourceFailure(await post('/v4/im_open_login_svc/kick').send({ UserID: '' }), 400, 90003, 'UserID must not be empty');
        // The host's strict express.json() refuses a bare string itself; the router's own parser takes it and refuses it.
        expectSourceFailure(
          await post('/v4/im_open_login_svc/kick').send('"u1"').set('Content-Type', 'application/json'),
          400,
          90001,
          /JSON object|not valid JSON/,
        );
      });

      it('is behind authorize', async () => {
        const res = await request(app).post(`${MOUNT}/v4/im_open_login_svc/kick`).send({ UserID: 'u1' });
        expectSourceFailure(res, 401, 90009);
        expect((await presence.query(['u1']))[0]?.status).to.equal('Online');
      });
    });

    describe('GET /users/:userId', () => {
      it('answers the user with every device', async () => {
        const res = await get('/users/u1');
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal((await presence.query(['u1']))[0]);
        expect(res.body.status).to.equal('Online');
        expect(res.body.instances.map((i: { platform: string; status: string }) => `${i.platform}:${i.status}`)).to.deep.equal([
          'Android:PushOnline',
          'Web:Online',
        ]);
      });

      it('answers Offline for a user never seen, and decodes the path', async () => {
        const res = await get('/users/nobody');
        expect(res.body).to.deep.equal({
          userId: 'nobody',
          status: 'Offline',
          lastSeen: null,
          customStatus: null,
          availability: 'available',
          idleSince: null,
          instances: [],
        });
        const encoded = await get(`/users/${encodeURIComponent('team/ä b')}`);
        expect(encoded.body.userId).to.equal('team/ä b');
      });

      it('refuses a bad user id with 400 naming it', async () => {
        expectProblem(await get(`/users/${'x'.repeat(129)}`), 400, 'userId in the path must be at most 128 characters');
        expectProblem(await get('/users/%E0%A4%A'), 400, 'percent-encoding');
      });

      it('answers HEAD like GET, without a body', async () => {
        const res = await request(app).head(`${MOUNT}/users/u1`).set('Authorization', ADMIN);
        expect(res.status).to.equal(200);
        expect(res.headers['content-type']).to.match(/^application\/json/);
      });

      it('refuses POST with 405 in the problem shape', async () => {
        const res = await post('/users/u1').send({});
        expectProblem(res, 405, 'takes GET, HEAD; got POST');
        expect(res.headers.allow).to.equal('GET, HEAD');
      });
    });

    describe('POST /users/query', () => {
      it('answers each distinct user in order, with devices unless detail is false', async () => {
        const res = await post('/users/query').send({ userIds: ['u2', 'nobody', 'u2'] });
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal({ users: await presence.query(['u2', 'nobody']) });
        const lean = await post('/users/query').send({ userIds: ['u2'], detail: false });
        expect(lean.body.users).to.deep.equal(await presence.query(['u2'], { detail: false }));
        expect(lean.body.users[0]).to.not.have.property('instances');
        const none = await post('/users/query').send({ userIds: [] });
        expect(none.body).to.deep.equal({ users: [] });
      });

      it('refuses unknown fields, naming them with a suggestion', async () => {
        expectProblem(await post('/users/query').send({ userIDs: ['u1'] }), 400, 'unknown field "userIDs" in the body; did you mean "userIds"?');
        expectProblem(await post('/users/query').send({ userIds: ['u1'], extra: 1 }), 400, 'unknown field "extra"');
      });

      it('refuses bad input with 400 naming what was wrong', async () => {
        expectProblem(await post('/users/query'), 400, 'the body is empty');
        expectProblem(await post('/users/query').send([1]), 400, 'must be a JSON object');
        expectProblem(await post('/users/query').send({}), 400, 'userIds is missing');
        expectProblem(await post('/users/query').send({ userIds: 'u1' }), 400, 'userIds must be a list');
        expectProblem(await post('/users/query').send({ userIds: ['u1', ''] }), 400, 'userIds[1] must not be empty');
        expectProblem(await post('/users/query').send({ userIds: [false] }), 400, 'userIds[0] must be a string; got false');
        expectProblem(await post('/users/query').send({ userIds: Array.from({ length: 501 }, (_, i) => `u${i}`) }), 400, 'at most 500');
        expectProblem(await post('/users/query').send({ userIds: ['u1'], detail: 'yes' }), 400, 'detail must be true or false');
        expectProblem(await post('/users/query').set('Content-Type', 'application/json').send('{userIds'), 400, 'not valid JSON');
      });

      it('refuses an unauthorised call in the problem shape', async () => {
        expectProblem(
          await request(app)
            .post(`${MOUNT}/users/query`)
            .send({ userIds: ['u1'] }),
          401,
          'no credentials',
        );
        expectProblem(
          await request(app)
            .post(`${MOUNT}/users/query`)
            .set('Cookie', 'sid=1')
            .send({ userIds: ['u1'] }),
          403,
          'not authorised',
        );
      });
    });

    describe('POST /users/:userId/kick', () => {
      it('kicks only the devices matching platform or instanceId', async () => {
        const android = await post('/users/u1/kick').send({ platform: 'Android' });
        expect(android.status).to.equal(200);
        expect(android.body).to.deep.equal({ kicked: [{ platform: 'Android', instanceId: 'a1' }] });
        const byId = await post('/users/u1/kick').send({ instanceId: 'w1' });
        expect(byId.body).to.deep.equal({ kicked: [{ platform: 'Web', instanceId: 'w1' }] });
        expect((await presence.query(['u1']))[0]?.status).to.equal('Offline');
      });

      it('kicks every device with no body or an empty object, and accepts iOS for iPhone', async () => {
        expect((await post('/users/u1/kick')).body.kicked).to.have.length(2);
        expect((await post('/users/u3/kick').send({})).body).to.deep.equal({ kicked: [{ platform: 'Windows', instanceId: 'd3' }] });
        expect((await post('/users/u2/kick').send({ platform: 'iOS' })).body).to.deep.equal({ kicked: [{ platform: 'iPhone', instanceId: 'i2' }] });
      });

      it('refuses unknown fields, so a misspelt filter never kicks every device', async () => {
        expectProblem(await post('/users/u1/kick').send({ platfrom: 'Web' }), 400, 'unknown field "platfrom" in the body; did you mean "platform"?');
        expect((await presence.query(['u1']))[0]?.instances).to.have.length(2);
      });

      it('refuses bad filters with 400 naming them', async () => {
        expectProblem(await post('/users/u1/kick').send({ platform: 'Nokia' }), 400, 'platform must be one of');
        expectProblem(await post('/users/u1/kick').send({ platform: 3 }), 400, 'got 3');
        expectProblem(await post('/users/u1/kick').send({ instanceId: '' }), 400, 'instanceId must not be empty');
        expectProblem(await post('/users/u1/kick').send({ instanceId: 5 }), 400, 'instanceId must be a string');
        expectProblem(await post('/users/u1/kick').send(['Android']), 400, 'must be a JSON object');
        expectProblem(await post(`/users/${'y'.repeat(200)}/kick`).send({}), 400, 'userId in the path');
        expect((await presence.query(['u1']))[0]?.instances).to.have.length(2);
      });
    });

    describe('GET /stats', () => {
      it('counts users and devices by status and platform', async () => {
        const res = await get('/stats');
        expect(res.status).to.equal(200);
        expect(res.body).to.deep.equal(await presence.stats());
        expect(res.body.users).to.include({ Online: 2, PushOnline: 1 });
        expect(res.body.instances).to.deep.equal({ Online: 2, PushOnline: 2 });
        expect(res.body.platforms.Android).to.deep.equal({ Online: 0, PushOnline: 1 });
      });

      it('is behind authorize', async () => {
        expectProblem(await request(app).get(`${MOUNT}/stats`), 401);
      });
    });

    it('passes paths it does not serve to the host, without authorising them', async () => {
      for (const path of ['/', '/users', '/users/u1/other', '/v4/openim', '/v4/openim/sendmsg', '/stats/more']) {
        const res = await request(app)
          .post(MOUNT + path)
          .send({});
        expect(res.status, path).to.equal(404);
        expect(res.body, path).to.deep.equal({ host: 'fallback' });
      }
      const outside = await request(app).get('/stats').set('Authorization', ADMIN);
      expect(outside.body).to.deep.equal({ host: 'fallback' });
    });

    it('answers a throwing or rejecting authorize with 500 in the route shape and logs it', async () => {
      const throwing = host.make(
        presence.router({
          authorize: () => {
            throw new Error('boom');
          },
        }),
      );
      expectSourceFailure(
        await request(throwing)
          .post(`${MOUNT}/v4/openim/querystate`)
          .send({ To_Account: ['u1'] }),
        500,
        90994,
      );
      const rejecting = host.make(presence.router({ authorize: () => Promise.reject(new Error('db down')) }));
      expectProblem(await request(rejecting).get(`${MOUNT}/stats`), 500, 'server log');
      expect(logger.errors.map((args) => (args[1] as Error).message)).to.deep.equal(['boom', 'db down']);
    });

    it('takes an async authorize, and treats a non-boolean answer as a refusal (warned once)', async () => {
      const asyncApp = host.make(presence.router({ authorize: async (req) => req.headers.authorization === ADMIN }));
      expect((await request(asyncApp).get(`${MOUNT}/stats`).set('Authorization', ADMIN)).status).to.equal(200);
      expectProblem(await request(asyncApp).get(`${MOUNT}/stats`).set('Authorization', 'no'), 403);
      const strange = host.make(presence.router({ authorize: (() => 'yes') as unknown as () => boolean }));
      expectProblem(await request(strange).get(`${MOUNT}/stats`).set('Authorization', ADMIN), 403);
      expectProblem(await request(strange).get(`${MOUNT}/stats`).set('Authorization', ADMIN), 403);
      expect(logger.warnings).to.have.length(1);
      expect(String(logger.warnings[0]?.[0])).to.match(/must answer true or false/);
    });

    it('takes a per-router body limit', async () => {
      const small = host.make(presence.router({ bodyLimit: '1kb' }));
      const res = await request(small)
        .post(`${MOUNT}/users/query`)
        .set('Authorization', ADMIN)
        .send({ userIds: Array.from({ length: 200 }, (_, i) => `user-${i}`) });
      expectProblem(res, 413, 'larger than the limit of 1024 bytes');
      const fits = await request(small)
        .post(`${MOUNT}/users/query`)
        .set('Authorization', ADMIN)
        .send({ userIds: ['u1'] });
      expect(fits.status).to.equal(200);
    });
  });
}

describe('router without Express', () => {
  let presence: Presence;
  let server: http.Server;
  let base: string;

  before(async () => {
    ({ presence } = newPresence({ bodyLimit: 2048 }));
    await seed(presence);
    const router = presence.router();
    server = http.createServer((req, res) => router(req, res, () => res.writeHead(404).end('next')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.close();
    await presence.close();
  });

  it('serves a bare node:http server at the root', async () => {
    const res = await request(server)
      .post('/v4/openim/querystate')
      .set('Authorization', ADMIN)
      .send({ To_Account: ['u3'] });
    expect(res.body.QueryResult).to.deep.equal([{ To_Account: 'u3', Status: 'Online', Availability: 'available' }]);
    expect((await request(server).get('/elsewhere')).text).to.equal('next');
  });

  it('refuses a chunked body over the limit with 413 and closes the connection', async () => {
    const { status, body, connection } = await new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
      const req = http.request(`${base}/users/query`, { method: 'POST', headers: { Authorization: ADMIN, 'Content-Type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, connection: res.headers.connection }));
      });
      req.on('error', reject);
      // No Content-Length: the limit is found while reading.
      req.write('{"userIds":["');
      for (let i = 0; i < 10; i++) req.write('x'.repeat(500));
      req.end('"]}');
    });
    expect(status).to.equal(413);
    expect(JSON.parse(body).detail).to.match(/larger than the limit of 2048 bytes/);
    expect(connection).to.equal('close');
  });

  it('answers a chunked body within the limit', async () => {
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(`${base}/users/query`, { method: 'POST', headers: { Authorization: ADMIN, 'Content-Type': 'application/json' } }, (answer) => {
        let text = '';
        answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
        answer.on('end', () => resolve({ status: answer.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.write('{"userIds":');
      req.end('["u2"]}');
    });
    expect(res.status).to.equal(200);
    expect(JSON.parse(res.text).users[0].status).to.equal('PushOnline');
  });
});

describe('router()', () => {
  it('throws a TypeError without authorize', () => {
    const presence = createPresence({ store: new MemoryStore({ maxOfflineUsers: 10, maxRevokedSessions: 10 }) });
    expect(() => presence.router()).to.throw(TypeError, /router\(\) needs an authorize function/);
    void presence.close();
  });

  it('throws a TypeError naming a bad router option', () => {
    const presence = createPresence({ authorize: () => true, store: new MemoryStore({ maxOfflineUsers: 10, maxRevokedSessions: 10 }) });
    expect(() => presence.router({ bodylimit: 10 } as never)).to.throw(TypeError, /unknown router option bodylimit; did you mean bodyLimit\?/);
    expect(() => presence.router({ bodyLimit: 'lots' })).to.throw(TypeError, /router bodyLimit must be/);
    expect(() => presence.router({ authorize: 'yes' as never })).to.throw(TypeError, /router authorize must be a function/);
    void presence.close();
  });
});

describe('router under arbitrary input (property)', () => {
  const ROUTES: { method: 'get' | 'post'; path: string; family: 'source' | 'plain' }[] = [
    { method: 'post', path: '/v4/openim/querystate', family: 'source' },
    { method: 'post', path: '/v4/openim/query_online_status', family: 'source' },
    { method: 'post', path: '/v4/im_open_login_svc/kick', family: 'source' },
    { method: 'post', path: '/users/query', family: 'plain' },
    { method: 'post', path: '/users/u1/kick', family: 'plain' },
    { method: 'get', path: '/users/u1', family: 'plain' },
    { method: 'get', path: '/stats', family: 'plain' },
  ];

  for (const [name, makeApp] of [
    ['Express 5', () => express()],
    ['Express 4', () => express4()],
  ] as const) {
    describe(name, () => {
      let presence: Presence;
      let server: http.Server;

      before(async () => {
        ({ presence } = newPresence());
        await seed(presence);
        const app = makeApp();
        app.use(MOUNT, presence.router());
        server = http.createServer(app);
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      });
      after(async () => {
        server.close();
        await presence.close();
      });

      /** Near-valid bodies reach the deeper checks; arbitrary JSON and text cover the rest. */
      const nearValid = fc
        .record(
          {
            To_Account: fc.oneof(fc.array(fc.oneof(fc.string(), fc.constantFrom('u1', 'u2')), { maxLength: 8 }), fc.jsonValue()),
            IsNeedDetail: fc.oneof(fc.constantFrom(0, 1), fc.jsonValue()),
            IsReturnInstid: fc.oneof(fc.constantFrom(0, 1), fc.jsonValue()),
            UserID: fc.oneof(fc.string(), fc.jsonValue()),
            userIds: fc.oneof(fc.array(fc.string(), { maxLength: 8 }), fc.jsonValue()),
            detail: fc.jsonValue(),
            platform: fc.oneof(fc.constantFrom('Android', 'Web', 'iOS'), fc.jsonValue()),
            instanceId: fc.oneof(fc.string(), fc.jsonValue()),
          },
          { requiredKeys: [] },
        )
        .map((value) => JSON.stringify(value));
      const body = fc.oneof(
        nearValid,
        fc.jsonValue().map((value) => JSON.stringify(value)),
        fc.string({ unit: 'grapheme', maxLength: 60 }),
        fc.string({ maxLength: 60 }),
      );

      it('never answers 5xx, and every refusal has the documented shape', async () => {
        await fc.assert(
          fc.asyncProperty(fc.constantFrom(...ROUTES), body, fc.constantFrom('application/json', 'text/plain', undefined), async (route, text, contentType) => {
            const agent = request(server);
            let pending = (route.method === 'post' ? agent.post(MOUNT + route.path) : agent.get(MOUNT + route.path)).set('Authorization', ADMIN);
            if (contentType) pending = pending.set('Content-Type', contentType);
            const res = route.method === 'post' ? await pending.send(text) : await pending;
            expect(res.status, `${route.path} ${text}: ${res.text}`).to.be.below(500);
            // Only JSON is read: a text/plain body (a cross-site form's) is refused, whatever it holds.
            if (route.method === 'post' && contentType === 'text/plain') expect(res.status, `${route.path} ${text}`).to.equal(415);
            if (route.family === 'source') {
              expect(res.headers['content-type']).to.match(/^application\/json/);
              expect(res.body.ActionStatus).to.equal(res.status === 200 ? 'OK' : 'FAIL');
              expect(res.body.ErrorInfo).to.be.a('string');
              if (res.status === 200) expect(res.body.ErrorCode).to.equal(0);
              else {
                expect(SOURCE_CODES).to.include(res.body.ErrorCode);
                expect(res.body.ErrorInfo).to.not.equal('');
              }
            } else if (res.status !== 200) {
              expect(res.status).to.be.oneOf(contentType === 'application/json' ? [400] : [400, 415]);
              expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
              expect(res.body).to.have.keys('type', 'title', 'status', 'detail');
              expect(res.body.status).to.equal(res.status);
            }
          }),
          { numRuns: 300 },
        );
      });

      it('refuses arbitrary user ids in the path cleanly', async () => {
        await fc.assert(
          fc.asyncProperty(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 200 }), async (id) => {
            const res = await request(server)
              .get(`${MOUNT}/users/${encodeURIComponent(id)}`)
              .set('Authorization', ADMIN);
            expect(res.status).to.be.oneOf(id.length <= 128 ? [200] : [400]);
            if (res.status === 200) expect(res.body.userId).to.equal(id);
            else expectProblem(res, 400, 'userId in the path');
          }),
          { numRuns: 100 },
        );
      });
    });
  }
});
