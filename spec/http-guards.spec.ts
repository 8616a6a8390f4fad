// The admin routes' guards: JSON bodies only (415), bodyTimeout (408), short excerpts of bad input, a host's own body parser, and sourceHttpStatus.

import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import express from 'express';
import request from 'supertest';
import { createPresence, ManualClock, MemoryStore, type Presence, type PresenceOptions, type PresenceRouter } from '../lib/index.js';

const express4 = createRequire(import.meta.url)('express4') as typeof express;

const MOUNT = '/admin/presence';
const ADMIN = 'Bearer admin';

function newPresence(extra: PresenceOptions = {}): Presence {
  return createPresence({
    clock: new ManualClock(),
    loginPolicy: 'multi',
    logger: { warn: () => {}, error: () => {} },
    store: new MemoryStore({ maxOfflineUsers: 100, maxRevokedSessions: 100 }),
    // Cookie-based, as an admin UI's would be: exactly where a cross-site form could ride along.
    authorize: (req) => req.headers.authorization === ADMIN || req.headers.cookie === 'admin=1',
    ...extra,
  });
}

async function onlineDevices(presence: Presence, userId: string): Promise<number> {
  return (await presence.query([userId]))[0]?.instances?.length ?? 0;
}

/** A raw HTTP request whose body is written as given (or stalls), answering status, headers and text. */
function rawRequest(
  server: http.Server,
  path: string,
  headers: Record<string, string>,
  body: string | undefined,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string; closed: Promise<void> }> {
  const port = (server.address() as AddressInfo).port;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      const closed = new Promise<void>((done) => res.socket.once('close', () => done()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, closed }));
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    // Otherwise: headers sent, the body never comes (req stays open).
    else req.flushHeaders();
  });
}

const HOSTS = [
  ['Express 5', () => express()],
  ['Express 4', () => express4()],
] as const;

for (const [hostName, makeApp] of HOSTS) {
  describe(`admin route guards in ${hostName}`, function () {
    this.timeout(20_000);
    let presence: Presence;
    let app: express.Express;

    beforeEach(async () => {
      presence = newPresence();
      await presence.engine.connect({ userId: 'u1', platform: 'Web', instanceId: 'w1' }, () => {});
      app = makeApp();
      app.use(MOUNT, presence.router());
    });
    afterEach(() => presence.close());

    describe('Content-Type', () => {
      it('refuses a text/plain kick (what a cross-site form sends) with 415 and kicks nobody', async () => {
        for (const path of ['/users/u1/kick', '/v4/im_open_login_svc/kick']) {
          const res = await request(app)
            .post(MOUNT + path)
            .set('Cookie', 'admin=1')
            .set('Content-Type', 'text/plain')
            .send(path.startsWith('/v4') ? '{"UserID":"u1"}' : '{}');
          expect(res.status, path).to.equal(415);
          expect(res.text).to.match(/application\/json/);
        }
        // A body-less form post (Content-Length 0) is refused too: it would otherwise kick every device.
        for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
          const empty = await request(app).post(`${MOUNT}/users/u1/kick`).set('Cookie', 'admin=1').set('Content-Type', type).set('Content-Length', '0');
          expect(empty.status, type).to.equal(415);
        }
        expect(await onlineDevices(presence, 'u1')).to.equal(1);
      });

      it('refuses a body sent without any Content-Type with 415, in the route family shape', async () => {
        const server = app.listen(0, '127.0.0.1');
        try {
          await new Promise((resolve) => server.once('listening', resolve));
          const plain = await rawRequest(server, `${MOUNT}/users/query`, { Authorization: ADMIN, 'Content-Length': '15' }, '{"userIds":[]}\n');
          expect(plain.status).to.equal(415);
          expect(plain.headers['content-type']).to.match(/^application\/problem\+json/);
          expect(JSON.parse(plain.text).detail).to.match(/got no Content-Type/);
          const source = await rawRequest(
            server,
            `${MOUNT}/v4/openim/querystate`,
            { Authorization: ADMIN, 'Transfer-Encoding': 'chunked' },
            '{"To_Account":["u1"]}',
          );
          expect(source.status).to.equal(415);
          expect(JSON.parse(source.text)).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
        } finally {
          server.close();
        }
      });

      it('takes application/json with parameters and any application/…+json, and a kick without a body or type', async () => {
        const json = await request(app)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'Application/JSON; charset=UTF-8')
          .send('{"userIds":["u1"]}');
        expect(json.status).to.equal(200);
        const suffix = await request(app)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/merge-patch+json')
          .send('{"userIds":["u1"]}');
        expect(suffix.status).to.equal(200);
        const lookalike = await request(app)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/jsonp')
          .send('{"userIds":["u1"]}');
        expect(lookalike.status).to.equal(415);
        const bare = await request(app).post(`${MOUNT}/users/u1/kick`).set('Authorization', ADMIN);
        expect(bare.status).to.equal(200);
        expect(bare.body).to.deep.equal({ kicked: [{ platform: 'Web', instanceId: 'w1' }] });
      });

      it('quotes a long Content-Type only in a short excerpt', async () => {
        const res = await request(app)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', `text/${'x'.repeat(5000)}`)
          .send('{}');
        expect(res.status).to.equal(415);
        expect(res.text.length).to.be.below(400);
        expect(res.body.detail).to.match(/… \(5005 characters\)/);
      });
    });

    describe('bad input echoed back', () => {
      it('cuts a 900 KB unknown field name to a short excerpt (and suggests nothing for it)', async () => {
        const name = 'z'.repeat(900_000);
        const res = await request(app)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/json')
          .send(`{"userIds":[],"${name}":1}`);
        expect(res.status).to.equal(400);
        expect(res.text.length).to.be.below(400);
        expect(res.body.detail).to.equal(`unknown field "${'z'.repeat(40)}"… (900000 characters) in the body (accepted: userIds, detail)`);
      });

      it('cuts the JSON parser message, which quotes the input', async () => {
        const res = await request(app)
          .post(`${MOUNT}/v4/openim/querystate`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/json')
          .send(`{"To_Account": ${'y'.repeat(100_000)}}`);
        expect(res.status).to.equal(400);
        expect(res.body.ErrorCode).to.equal(90001);
        expect(res.text.length).to.be.below(400);
      });

      it('cuts a long path in a 405', async () => {
        const res = await request(app)
          .put(`${MOUNT}/users/${'p'.repeat(5000)}`)
          .set('Authorization', ADMIN);
        expect(res.status).to.equal(405);
        expect(res.text.length).to.be.below(400);
      });
    });

    describe('bodyTimeout', () => {
      it('answers 408 and closes the connection when the body stalls past bodyTimeout, in both route shapes', async () => {
        await presence.close();
        presence = newPresence({ bodyTimeout: '300ms' });
        const host = makeApp();
        host.use(MOUNT, presence.router());
        const server = host.listen(0, '127.0.0.1');
        try {
          await new Promise((resolve) => server.once('listening', resolve));
          for (const [path, family] of [
            ['/users/query', 'plain'],
            ['/v4/openim/querystate', 'source'],
          ] as const) {
            const started = Date.now();
            // Content-Length promises 100 bytes; none come.
            const res = await rawRequest(
              server,
              MOUNT + path,
              { Authorization: ADMIN, 'Content-Type': 'application/json', 'Content-Length': '100' },
              undefined,
            );
            const took = Date.now() - started;
            expect(res.status, path).to.equal(408);
            expect(took, path).to.be.within(250, 5000);
            expect(res.headers.connection).to.equal('close');
            const body = JSON.parse(res.text) as { detail?: string; ErrorInfo?: string; ErrorCode?: number };
            expect(family === 'plain' ? body.detail : body.ErrorInfo).to.match(/did not arrive within bodyTimeout \(300 ms\)/);
            if (family === 'source') expect(body.ErrorCode).to.equal(90001);
            await res.closed;
          }
        } finally {
          server.close();
        }
      });

      it('reads a slow body that completes within bodyTimeout', async () => {
        await presence.close();
        presence = newPresence({ bodyTimeout: '2s' });
        await presence.engine.connect({ userId: 'u1', platform: 'Web', instanceId: 'w1' }, () => {});
        const host = makeApp();
        host.use(MOUNT, presence.router());
        const server = host.listen(0, '127.0.0.1');
        try {
          await new Promise((resolve) => server.once('listening', resolve));
          const port = (server.address() as AddressInfo).port;
          const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
            const req = http.request(
              { host: '127.0.0.1', port, path: `${MOUNT}/users/query`, method: 'POST', headers: { Authorization: ADMIN, 'Content-Type': 'application/json' } },
              (res) => {
                let text = '';
                res.on('data', (chunk: Buffer) => (text += chunk.toString()));
                res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
              },
            );
            req.on('error', reject);
            req.write('{"userIds":');
            setTimeout(() => req.end('["u1"]}'), 200);
          });
          expect(answer.status).to.equal(200);
          expect(JSON.parse(answer.text).users[0].status).to.equal('Online');
        } finally {
          server.close();
        }
      });
    });

    describe("with the host's own express.json() before the router", () => {
      let hosted: express.Express;
      let router: PresenceRouter;
      const hostErrors: unknown[] = [];

      beforeEach(() => {
        hostErrors.length = 0;
        hosted = makeApp();
        hosted.use((makeApp === HOSTS[1][1] ? express4 : express).json({ limit: '1kb' }));
        router = presence.router();
        hosted.use(MOUNT, router);
        hosted.get('/host/boom', (_req, _res, next) => next(new Error('host failure')));
        // The host's own error handler, after the router: it must see only what is not ours.
        hosted.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
          hostErrors.push(error);
          res.status(599).json({ host: 'error handler' });
        });
      });

      it('answers malformed JSON with 90001 / a 400 problem, not the HTML error page', async () => {
        const source = await request(hosted)
          .post(`${MOUNT}/v4/openim/querystate`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/json')
          .send('{"To_Account": [');
        expect(source.status).to.equal(400);
        expect(source.headers['content-type']).to.match(/^application\/json/);
        expect(source.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
        expect(source.body.ErrorInfo).to.match(/not valid JSON/);
        expect(source.text).to.not.match(/<html|at .*\.js/i);
        const plain = await request(hosted).post(`${MOUNT}/users/query`).set('Authorization', ADMIN).set('Content-Type', 'application/json').send('{nope');
        expect(plain.status).to.equal(400);
        expect(plain.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(plain.body.detail).to.match(/not valid JSON/);
        expect(hostErrors).to.have.length(0);
      });

      it('answers a body over the host limit with 413, an unsupported charset or encoding with 415, in our shapes', async () => {
        const big = await request(hosted)
          .post(`${MOUNT}/v4/openim/querystate`)
          .set('Authorization', ADMIN)
          .send({ To_Account: Array.from({ length: 200 }, (_, i) => `user-${i}`) });
        expect(big.status).to.equal(413);
        expect(big.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
        expect(big.body.ErrorInfo).to.match(/larger than the limit of 1024 bytes/);
        const charset = await request(hosted)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/json; charset=koi8-r')
          .send('{"userIds":[]}');
        expect(charset.status).to.equal(415);
        expect(charset.body.detail).to.match(/charset "koi8-r" is not supported/);
        const encoding = await request(hosted)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .set('Content-Type', 'application/json')
          .set('Content-Encoding', 'x-unknown')
          .send('{"userIds":[]}');
        expect(encoding.status).to.equal(415);
        expect(encoding.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(hostErrors).to.have.length(0);
      });

      it('authorises before answering a parse failure', async () => {
        const res = await request(hosted).post(`${MOUNT}/v4/openim/querystate`).set('Content-Type', 'application/json').send('{"To_Account": [');
        expect(res.status).to.equal(401);
        expect(res.body.ErrorCode).to.equal(90009);
      });

      it('takes the body the host parsed, and leaves other errors and other paths to the host', async () => {
        const ok = await request(hosted)
          .post(`${MOUNT}/users/query`)
          .set('Authorization', ADMIN)
          .send({ userIds: ['u1'] });
        expect(ok.status).to.equal(200);
        expect(ok.body.users[0].status).to.equal('Online');
        const boom = await request(hosted).get('/host/boom');
        expect(boom.status).to.equal(599);
        const elsewhere = await request(hosted).post('/host/other').set('Content-Type', 'application/json').send('{bad');
        expect(elsewhere.status).to.equal(599);
        expect(hostErrors).to.have.length(2);
        expect((hostErrors[1] as { type?: string }).type).to.equal('entity.parse.failed');
      });

      it('answers parse failures when mounted on an express.Router() with its errorHandler', async () => {
        const outer = makeApp();
        const inner = (makeApp === HOSTS[1][1] ? express4 : express).Router();
        inner.use((makeApp === HOSTS[1][1] ? express4 : express).json());
        inner.use('/presence', router, router.errorHandler);
        outer.use('/api', inner);
        const res = await request(outer).post('/api/presence/users/query').set('Authorization', ADMIN).set('Content-Type', 'application/json').send('{nope');
        expect(res.status).to.equal(400);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      });
    });

    describe("sourceHttpStatus: 'always-200'", () => {
      it('answers every source-route refusal with HTTP 200, ActionStatus FAIL and the code; plain routes unchanged', async () => {
        const ported = makeApp();
        ported.use(MOUNT, presence.router({ sourceHttpStatus: 'always-200' }));
        const cases: [request.Test, number][] = [
          [
            request(ported)
              .post(`${MOUNT}/v4/openim/querystate`)
              .send({ To_Account: ['u1'] }),
            90009,
          ],
          [request(ported).post(`${MOUNT}/v4/openim/querystate`).set('Authorization', ADMIN).send({ To_Account: 'u1' }), 90003],
          [request(ported).post(`${MOUNT}/v4/openim/querystate`).set('Authorization', ADMIN).set('Content-Type', 'application/json').send('{'), 90001],
          [request(ported).post(`${MOUNT}/v4/im_open_login_svc/kick`).set('Authorization', ADMIN).set('Content-Type', 'text/plain').send('{}'), 90001],
          [request(ported).get(`${MOUNT}/v4/openim/querystate`).set('Authorization', ADMIN), 90001],
        ];
        for (const [pending, code] of cases) {
          const res = await pending;
          expect(res.status, res.text).to.equal(200);
          expect(res.body).to.include({ ActionStatus: 'FAIL', ErrorCode: code });
          expect(res.body.ErrorInfo).to.be.a('string').and.not.equal('');
        }
        const ok = await request(ported)
          .post(`${MOUNT}/v4/openim/querystate`)
          .set('Authorization', ADMIN)
          .send({ To_Account: ['u1'] });
        expect(ok.body).to.include({ ActionStatus: 'OK', ErrorCode: 0 });
        expect((await request(ported).get(`${MOUNT}/stats`)).status).to.equal(401);
        // The default is unchanged.
        expect(
          (
            await request(app)
              .post(`${MOUNT}/v4/openim/querystate`)
              .send({ To_Account: ['u1'] })
          ).status,
        ).to.equal(401);
      });
    });
  });
}

describe('router({ sourceHttpStatus }) validation', () => {
  it('refuses bad values and misspelt keys with a TypeError and a suggestion', async () => {
    const presence = newPresence();
    expect(() => presence.router({ sourceHttpStatus: 'always200' as never })).to.throw(
      TypeError,
      'router sourceHttpStatus must be one of "http-status", "always-200"; got "always200"; did you mean "always-200"?',
    );
    expect(() => presence.router({ sourceHttpStatus: 200 as never })).to.throw(TypeError, /sourceHttpStatus must be one of .*; got number/);
    expect(() => presence.router({ sourceHttpstatus: 'always-200' } as never)).to.throw(
      TypeError,
      /unknown router option sourceHttpstatus; did you mean sourceHttpStatus\?/,
    );
    expect(() => presence.router({ sourceHttpStatus: 'http-status' })).to.not.throw();
    await presence.close();
  });
});
