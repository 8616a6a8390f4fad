// GET /metrics and presence.metrics: Prometheus text per mount, counters from creation on, and a clear 404 without prom-client.

import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import request from 'supertest';
import { createPresence, ManualClock, MemoryStore, type Presence, type PresenceOptions } from '../lib/index.js';
import { promClientLoader } from '../lib/http/metrics.js';

const ADMIN = 'Bearer admin';

function newPresence(options: PresenceOptions = {}): Presence {
  return createPresence({
    clock: new ManualClock(),
    store: new MemoryStore({ maxOfflineUsers: 1000, maxRevokedSessions: 1000 }),
    authorize: (req) => req.headers.authorization === ADMIN,
    ...options,
  });
}

function app(presence: Presence): express.Express {
  const host = express();
  host.use('/presence', presence.router());
  return host;
}

/** The value of one sample line, e.g. `presence_users{status="Online"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics', () => {
  let presence: Presence;
  afterEach(() => presence.close());

  async function activity(target: Presence): Promise<void> {
    // u1: Android then closed (PushOnline), then an iPhone login displaces it (single policy).
    const { connection } = await target.engine.connect({ userId: 'u1', platform: 'Android', instanceId: 'a1' }, () => {});
    target.engine.disconnect(connection, 'closed');
    await target.engine.connect({ userId: 'u1', platform: 'iPhone', instanceId: 'i1' }, () => {});
    // u2: Web, admin-kicked; u3: Windows, stays Online.
    await target.engine.connect({ userId: 'u2', platform: 'Web', instanceId: 'w2' }, () => {});
    await target.kick('u2');
    await target.engine.connect({ userId: 'u3', platform: 'Windows', instanceId: 'd3' }, () => {});
  }

  it('serves gauges and counters in Prometheus text', async () => {
    presence = newPresence();
    await activity(presence);
    const res = await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN);
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.equal('text/plain; version=0.0.4; charset=utf-8');
    expect(res.headers['cache-control']).to.equal('no-store');
    const text = res.text;
    expect(text).to.include('# TYPE presence_users gauge');
    expect(text).to.include('# TYPE presence_transitions_total counter');
    expect(sample(text, 'presence_users{status="Online"}')).to.equal(2);
    expect(sample(text, 'presence_users{status="PushOnline"}')).to.equal(0);
    expect(sample(text, 'presence_users{status="Offline"}')).to.equal(1);
    expect(sample(text, 'presence_instances{status="Online",platform="iPhone"}')).to.equal(1);
    expect(sample(text, 'presence_instances{status="Online",platform="Windows"}')).to.equal(1);
    expect(sample(text, 'presence_instances{status="PushOnline",platform="Android"}')).to.equal(0);
    expect(sample(text, 'presence_transitions_total{action="Login",reason="Register"}')).to.equal(4);
    expect(sample(text, 'presence_transitions_total{action="Disconnect",reason="LinkClose"}')).to.equal(1);
    expect(sample(text, 'presence_transitions_total{action="Logout",reason="Kicked"}')).to.equal(1);
    expect(sample(text, 'presence_transitions_total{action="Logout",reason="Expired"}')).to.equal(0);
    expect(sample(text, 'presence_kicks_total{reason="LoginElsewhere"}')).to.equal(1);
    expect(sample(text, 'presence_kicks_total{reason="AdminKick"}')).to.equal(1);
    expect(sample(text, 'presence_callback_deliveries_total{outcome="delivered"}')).to.equal(0);
    expect(sample(text, 'presence_callback_queue_size')).to.equal(0);

    // Counters keep their totals across scrapes (they mirror our counts, not scrape deltas).
    await presence.engine.connect({ userId: 'u4', platform: 'Mac', instanceId: 'm4' }, () => {});
    const again = await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN);
    expect(sample(again.text, 'presence_transitions_total{action="Login",reason="Register"}')).to.equal(5);
    expect(sample(again.text, 'presence_users{status="Online"}')).to.equal(3);
  });

  it('counts callback deliveries', async () => {
    const receiver = http.createServer((_req, res) => res.writeHead(200).end('{"ActionStatus":"OK","ErrorCode":0}'));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      presence = newPresence({ callback: { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/` } });
      await activity(presence);
      const deadline = Date.now() + 5000;
      while (presence.metrics.snapshot().callback?.delivered !== 6 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
      const text = (await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN)).text;
      expect(sample(text, 'presence_callback_deliveries_total{outcome="delivered"}')).to.equal(6);
      expect(sample(text, 'presence_callback_deliveries_total{outcome="failed"}')).to.equal(0);
    } finally {
      receiver.closeAllConnections();
      receiver.close();
    }
  });

  it('keeps two mounts in one process apart', async () => {
    presence = newPresence();
    const other = newPresence();
    try {
      await activity(presence);
      await other.engine.connect({ userId: 'x', platform: 'Linux', instanceId: 'l' }, () => {});
      const first = await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN);
      const second = await request(app(other)).get('/presence/metrics').set('Authorization', ADMIN);
      expect(first.status).to.equal(200);
      expect(second.status).to.equal(200);
      expect(sample(first.text, 'presence_transitions_total{action="Login",reason="Register"}')).to.equal(4);
      expect(sample(second.text, 'presence_transitions_total{action="Login",reason="Register"}')).to.equal(1);
      expect(sample(second.text, 'presence_instances{status="Online",platform="Linux"}')).to.equal(1);
      expect(sample(first.text, 'presence_instances{status="Online",platform="Linux"}')).to.equal(0);
    } finally {
      await other.close();
    }
  });

  it('answers 404 with a clear message when prom-client is not installed', async () => {
    const load = promClientLoader.load;
    promClientLoader.load = () => Promise.reject(Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' }));
    try {
      presence = newPresence();
      const res = await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN);
      expect(res.status).to.equal(404);
      expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
      expect(res.body).to.deep.equal({
        type: 'about:blank',
        title: 'Not Found',
        status: 404,
        detail: 'GET /metrics needs the optional peer dependency prom-client: npm install prom-client',
      });
      // Installing it later (here: the real loader again) is picked up without a restart.
      promClientLoader.load = load;
      expect((await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN)).status).to.equal(200);
    } finally {
      promClientLoader.load = load;
    }
  });

  it('answers 500 (and logs) when prom-client fails for another reason', async () => {
    const load = promClientLoader.load;
    const errors: unknown[] = [];
    promClientLoader.load = () => Promise.reject(new Error('broken install'));
    try {
      presence = newPresence({ logger: { warn: () => {}, error: (...args: unknown[]) => errors.push(args[1]) } });
      const res = await request(app(presence)).get('/presence/metrics').set('Authorization', ADMIN);
      expect(res.status).to.equal(500);
      expect(res.body.detail).to.match(/server log/);
      expect((errors[0] as Error).message).to.equal('broken install');
    } finally {
      promClientLoader.load = load;
    }
  });

  it('is behind authorize', async () => {
    presence = newPresence();
    const res = await request(app(presence)).get('/presence/metrics');
    expect(res.status).to.equal(401);
    expect(res.body.status).to.equal(401);
  });

  it('snapshot() counts from the mount creation, without prom-client', async () => {
    presence = newPresence();
    await activity(presence);
    expect(presence.metrics.snapshot()).to.deep.equal({
      transitions: {
        'Login/Register': 4,
        'Logout/Unregister': 0,
        'Logout/Kicked': 1,
        'Logout/Expired': 0,
        'Disconnect/LinkClose': 1,
        'Disconnect/TimeOut': 0,
      },
      kicks: { LoginElsewhere: 1, AdminKick: 1 },
      callback: null,
    });
  });
});
