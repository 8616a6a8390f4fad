// callbackReceiver against our own sender: a real presence whose callback.url is an Express app (4 and 5, with or without a host body parser).

import { expect } from 'chai';
import express from 'express';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import request from 'supertest';
import {
  callbackReceiver,
  createPresence,
  signCallback,
  SIGNATURE_HEADER,
  type CallbackDeliveryStats,
  type Presence,
  type PresenceOptions,
  type StateChangeCallbackBody,
} from '../lib/index.js';
import { waitFor } from './fixtures/socket-harness.js';

const express4 = createRequire(import.meta.url)('express4') as typeof express;

const SECRET = 'hook-secret';

/** How the host app is set up in front of the receiver, with that Express's own parsers. */
const SETUPS: Record<string, (app: express.Express, parsers: typeof express) => void> = {
  'no body parser': () => {},
  'a global express.json()': (app, parsers) => app.use(parsers.json()),
  'a global express.json() keeping req.rawBody': (app, parsers) =>
    app.use(
      parsers.json({
        verify: (req, _res, buf) => {
          (req as IncomingMessage & { rawBody?: Buffer }).rawBody = buf;
        },
      }),
    ),
  // Express 4's parser sets req.body = {} even when it skips the body: the stream is still unread.
  'a global express.json() for another content type': (app, parsers) => app.use(parsers.json({ type: 'application/vnd.other+json' })),
  'a global express.raw()': (app, parsers) => app.use(parsers.raw({ type: '*/*' })),
  'a global express.text()': (app, parsers) => app.use(parsers.text({ type: 'application/json' })),
};

interface Hook {
  url: string;
  events: { event: StateChangeCallbackBody; query: string }[];
  close(): Promise<void>;
}

async function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  const server = await new Promise<Server>((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/presence-hook` };
}

function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('callbackReceiver', () => {
  const presences: Presence[] = [];
  const servers: Server[] = [];

  afterEach(async () => {
    for (const presence of presences.splice(0)) await presence.close();
    for (const server of servers.splice(0)) await stop(server);
  });

  function sender(url: string, callback: Partial<NonNullable<PresenceOptions['callback']>> = {}): Presence {
    const presence = createPresence({ callback: { url, secret: SECRET, backoff: 10, ...callback }, logger: { warn: () => {}, error: () => {} } });
    presences.push(presence);
    return presence;
  }

  /** One device logs in and its connection closes: two events, Login/Register then Disconnect/LinkClose. */
  async function loginAndClose(presence: Presence, userId = 'u1'): Promise<void> {
    const { connection } = await presence.engine.connect({ userId, platform: 'Android', instanceId: 'phone-1', clientIp: '10.0.0.7' }, () => {});
    presence.engine.disconnect(connection, 'closed');
  }

  function stats(presence: Presence): CallbackDeliveryStats {
    return presence.metrics.snapshot().callback as CallbackDeliveryStats;
  }

  async function hook(app: express.Express, handler?: (event: StateChangeCallbackBody) => void | Promise<void>, secret: string = SECRET): Promise<Hook> {
    const events: Hook['events'] = [];
    app.post(
      '/presence-hook',
      callbackReceiver(
        async (received, req) => {
          // These cases send only device state changes.
          const event = received as StateChangeCallbackBody;
          await handler?.(event);
          events.push({ event, query: new URL(req.url ?? '/', 'http://x').searchParams.toString() });
        },
        { secret, logger: { warn: () => {}, error: () => {} } },
      ),
    );
    const { server, url } = await listen(app);
    servers.push(server);
    return { url, events, close: () => stop(server) };
  }

  for (const [flavour, make] of [
    ['Express 5', express],
    ['Express 4', express4],
  ] as const) {
    for (const [setup, apply] of Object.entries(SETUPS)) {
      it(`${flavour} with ${setup}: verifies, parses, hands each event over in order, and is acknowledged`, async () => {
        const app = make();
        apply(app, make);
        const receiver = await hook(app);
        const presence = sender(receiver.url);
        await loginAndClose(presence);
        await waitFor(() => receiver.events.length === 2, 'both events');
        expect(receiver.events.map(({ event }) => `${event.Info.Action}/${event.Info.Reason}`)).to.deep.equal(['Login/Register', 'Disconnect/LinkClose']);
        const [first, second] = receiver.events.map(({ event }) => event.Seq);
        expect(second, 'the later event numbered above the earlier one').to.be.greaterThan(first as number);
        expect(receiver.events[0]?.event).to.deep.include({ CallbackCommand: 'State.StateChange', Platform: 'Android', InstId: 'phone-1' });
        expect(receiver.events[0]?.query).to.include('ClientIP=10.0.0.7').and.include('OptPlatform=Android');
        await waitFor(() => stats(presence).delivered === 2, 'the sender to count both delivered');
        expect(stats(presence)).to.include({ delivered: 2, retried: 0, failed: 0 });
      });
    }
  }

  it('refuses a wrong signature with 401: the handler never sees the event, the sender retries and gives it up', async () => {
    const receiver = await hook(express(), undefined, 'the-right-secret');
    const presence = sender(receiver.url, { maxRetries: 2 });
    const failed: Error[] = [];
    presence.on('callback-failed', (_body, error) => failed.push(error));
    await loginAndClose(presence);
    await waitFor(() => failed.length === 2, 'both events given up', 5000);
    expect(failed[0]?.message).to.match(/HTTP 401/);
    expect(receiver.events).to.deep.equal([]);
    expect(stats(presence)).to.include({ delivered: 0, failed: 2, retried: 4 });
  });

  it('answers a handler that throws with 500, so the sender retries the event until the handler takes it', async () => {
    let calls = 0;
    const receiver = await hook(express(), () => {
      if (++calls <= 2) throw new Error('database down');
    });
    const presence = sender(receiver.url, { maxRetries: 5 });
    const { connection } = await presence.engine.connect({ userId: 'u2', platform: 'Web' }, () => {});
    await waitFor(() => receiver.events.length === 1, 'the event taken on the third attempt');
    expect(calls).to.equal(3);
    await waitFor(() => stats(presence).delivered === 1, 'the delivery counted');
    expect(stats(presence)).to.include({ delivered: 1, retried: 2, failed: 0 });
    presence.engine.disconnect(connection, 'closed');
  });

  it('answers bad requests in the source format: unsigned, forged, not JSON, not a callback, not a POST', async () => {
    const logged: unknown[][] = [];
    const presence = createPresence({
      callback: { url: 'http://127.0.0.1:9/unused', secret: SECRET },
      logger: { warn: () => {}, error: (...args) => logged.push(args) },
    });
    presences.push(presence);
    const seen: StateChangeCallbackBody[] = [];
    const app = express();
    // The mount's receiver takes the mount's callback.secret.
    app.use(
      '/presence-hook',
      presence.callbackReceiver((event) => void seen.push(event as StateChangeCallbackBody)),
    );
    const body = JSON.stringify({
      CallbackCommand: 'State.StateChange',
      EventTime: 1,
      Info: { Action: 'Login', To_Account: 'u9', Reason: 'Register' },
      Seq: 1,
    });
    const post = (text: string, signature?: string) => {
      const pending = request(app).post('/presence-hook').set('Content-Type', 'application/json');
      return (signature === undefined ? pending : pending.set(SIGNATURE_HEADER, signature)).send(text);
    };

    const unsigned = await post(body);
    expect(unsigned.status).to.equal(401);
    expect(unsigned.body).to.deep.equal({ ActionStatus: 'FAIL', ErrorCode: 90009, ErrorInfo: `bad or missing ${SIGNATURE_HEADER}` });
    expect((await post(body, signCallback(body, 'not-the-secret'))).status).to.equal(401);
    expect((await post(body.replace('u9', 'u8'), signCallback(body, SECRET))).status).to.equal(401);

    const notJson = await post('{"CallbackCommand":', signCallback('{"CallbackCommand":', SECRET));
    expect(notJson.status).to.equal(400);
    expect(notJson.body).to.include({ ActionStatus: 'FAIL', ErrorCode: 90001 });
    expect(notJson.body.ErrorInfo).to.match(/not valid JSON/);
    const other = JSON.stringify({ CallbackCommand: 'Group.CallbackAfterNewMember' });
    expect((await post(other, signCallback(other, SECRET))).body.ErrorInfo).to.match(/not a status-change callback/);
    const get = await request(app).get('/presence-hook');
    expect(get.status).to.equal(405);
    expect(get.headers.allow).to.equal('POST');
    const huge = await request(app)
      .post('/presence-hook')
      .set('Content-Type', 'application/json')
      .send(`"${'x'.repeat(1024 * 1024)}"`);
    expect(huge.status).to.equal(413);
    expect(seen).to.deep.equal([]);

    const good = await post(body, signCallback(body, SECRET));
    expect(good.status).to.equal(200);
    expect(good.body).to.deep.equal({ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '' });
    expect(seen.map((event) => event.Info.To_Account)).to.deep.equal(['u9']);
    expect(logged).to.deep.equal([]);
  });

  it('answers 500, and tells the app to mount it earlier, when a middleware before it read the body and kept nothing', async () => {
    const logged: string[] = [];
    const app = express();
    app.use((req, _res, nextMiddleware) => {
      req.resume();
      req.on('end', () => nextMiddleware());
    });
    app.post(
      '/hook',
      callbackReceiver(() => {}, { logger: { warn: () => {}, error: (message: string) => logged.push(message) } }),
    );
    const answer = await request(app).post('/hook').set('Content-Type', 'application/json').send('{}');
    expect(answer.status).to.equal(500);
    expect(answer.body).to.deep.equal({ ActionStatus: 'FAIL', ErrorCode: 90994, ErrorInfo: 'the body was read by another middleware before the receiver' });
    expect(logged).to.have.length(1);
    expect(logged[0]).to.match(/mount it before that parser/);
  });

  it('without a secret takes unsigned events; refuses a bad handler or option with a TypeError', async () => {
    const seen: string[] = [];
    const app = express();
    app.post(
      '/hook',
      callbackReceiver((event) => void seen.push(event.Info.To_Account)),
    );
    const body = JSON.stringify({ CallbackCommand: 'State.StateChange', Info: { To_Account: 'u3' } });
    expect((await request(app).post('/hook').set('Content-Type', 'application/json').send(body)).status).to.equal(200);
    expect(seen).to.deep.equal(['u3']);
    expect(() => callbackReceiver('nope' as never)).to.throw(TypeError, /takes a handler/);
    expect(() => callbackReceiver(() => {}, { secert: 'x' } as never)).to.throw(TypeError, /did you mean callbackReceiver\.secret/);
    expect(() => callbackReceiver(() => {}, { secret: '' })).to.throw(TypeError, /secret must be a non-empty string/);
  });

  describe('the sender and plain receivers', () => {
    const ANSWERS: Record<string, (res: express.Response) => void> = {
      '204 No Content': (res) => void res.sendStatus(204),
      '200 with an empty body': (res) => void res.status(200).end(),
      '200 {}': (res) => void res.json({}),
    };
    for (const [name, answer] of Object.entries(ANSWERS)) {
      it(`counts ${name} as delivered, without a retry`, async () => {
        let received = 0;
        const app = express();
        app.post('/presence-hook', (_req, res) => {
          received++;
          answer(res);
        });
        const { server, url } = await listen(app);
        servers.push(server);
        const presence = sender(url);
        await loginAndClose(presence);
        await waitFor(() => stats(presence).delivered === 2, 'both events delivered');
        expect(stats(presence)).to.include({ delivered: 2, retried: 0, failed: 0 });
        expect(received).to.equal(2);
      });
    }

    it('still retries a 200 that says FAIL', async () => {
      let received = 0;
      const app = express();
      app.post('/presence-hook', (_req, res) => void res.json(++received === 1 ? { ActionStatus: 'FAIL', ErrorCode: 1 } : {}));
      const { server, url } = await listen(app);
      servers.push(server);
      const presence = sender(url);
      const { connection } = await presence.engine.connect({ userId: 'u4', platform: 'Web' }, () => {});
      await waitFor(() => stats(presence).delivered === 1, 'the event delivered on its retry');
      expect(stats(presence)).to.include({ delivered: 1, retried: 1 });
      presence.engine.disconnect(connection, 'closed');
    });
  });
});
