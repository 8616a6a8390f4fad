// Fair use over real Socket.IO connections: connections and subscriptions per user, the event rate limit; other users unaffected.

import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { ManualClock, type ChangedPayload, type StateChangeCallbackBody } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { deleteKeys, layoutOf, redisClient, uniquePrefix } from './helpers/redis.js';
import { auth, delay, startHarness, waitFor, type Device, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';

type Answer = { ok: true; [key: string]: unknown } | { ok: false; code: string; message: string };

async function ask(device: Device, event: string, payload?: unknown): Promise<Answer> {
  const socket = device.socket as unknown as { timeout(ms: number): { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> } };
  return (await (payload === undefined ? socket.timeout(2000).emitWithAck(event) : socket.timeout(2000).emitWithAck(event, payload))) as Answer;
}

const subscribe = (device: Device, userIds: string[]): Promise<Answer> => ask(device, 'presence:subscribe', { userIds });
const unsubscribe = (device: Device, userIds: string[]): Promise<Answer> => ask(device, 'presence:unsubscribe', { userIds });
const targets = (count: number, from = 1): string[] => Array.from({ length: count }, (_, i) => `t${from + i}`);

const OK = JSON.stringify({ ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '' });

/** A callback receiver that holds the requests `hold` picks until `release()`, and answers the others at once. */
async function holdingReceiver(hold: (body: StateChangeCallbackBody) => boolean) {
  const accepted: StateChangeCallbackBody[] = [];
  const held: (() => void)[] = [];
  let holding = true;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as StateChangeCallbackBody;
      const answer = (): void => {
        accepted.push(body);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(OK);
      };
      if (holding && hold(body)) held.push(answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    accepted,
    held,
    release(): void {
      holding = false;
      for (const answer of held.splice(0)) answer();
    },
    async stop(): Promise<void> {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('socket: fair use', () => {
  let harness: Harness | undefined;

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness(options);
    return harness;
  }

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  describe('maxConnectionsPerUser', () => {
    it('refuses one connection too many at the handshake, kicking nobody; other users connect; a closed or kicked one frees its place', async () => {
      const h = await start({ maxConnectionsPerUser: 3 });
      const first = await h.connect(auth('alice', 'Web', { instanceId: 'w' }));
      const tabs = [first];
      for (let i = 0; i < 2; i++) tabs.push(await h.connect(auth('alice', 'Web', { instanceId: 'w', sessionId: first.session.sessionId })));
      const changesBefore = h.changes.length;

      // A new Web device would kick alice's tabs under the single policy; refused before its login, it kicks nothing.
      const refusal = await h.refused(auth('alice', 'Web', { instanceId: 'w2' }));
      expect(refusal.code).to.equal('TOO_MANY_CONNECTIONS');
      expect(refusal.message).to.match(/3 connections.*maxConnectionsPerUser/);
      // Another user is not counted with alice.
      const bob = [];
      for (let i = 0; i < 3; i++) bob.push(await h.connect(auth('bob', 'Web', { instanceId: `b${i}` })));
      await delay(30);
      for (const tab of tabs) {
        expect(tab.socket.connected).to.equal(true);
        expect(tab.kicks).to.deep.equal([]);
      }
      expect(h.changes.slice(changesBefore).filter((c) => c.userId === 'alice')).to.deep.equal([]);

      // A tab that closes gives its place back.
      tabs.pop()!.socket.disconnect();
      await waitFor(async () => {
        const again = await h.connect(auth('alice', 'Web', { instanceId: 'w', sessionId: first.session.sessionId })).catch(() => undefined);
        if (again) tabs.push(again);
        return again !== undefined;
      }, 'a free place once a tab closed');
      expect((await h.refused(auth('alice', 'Web', { instanceId: 'w', sessionId: first.session.sessionId }))).code).to.equal('TOO_MANY_CONNECTIONS');

      // Kicked connections give theirs back too.
      await h.presence.kick('alice');
      await waitFor(() => tabs.every((tab) => !tab.socket.connected), 'the kicked tabs disconnected');
      await waitFor(async () => {
        const fresh = await h.connect(auth('alice', 'Web', { instanceId: 'w3' })).catch(() => undefined);
        fresh?.socket.disconnect();
        return fresh !== undefined;
      }, 'a connection after the kick');
    });
  });

  describe('maxSubscriptionsPerUser', () => {
    it("counts a user's watched users over all their connections, gives back on unsubscribe and disconnect; another user has their own budget", async () => {
      const h = await start({ loginPolicy: 'multi', maxSubscriptions: 5, maxSubscriptionsPerUser: 8 });
      const a1 = await h.connect(auth('alice', 'Web', { instanceId: 'a1' }));
      const a2 = await h.connect(auth('alice', 'Android', { instanceId: 'a2' }));
      const bob = await h.connect(auth('bob', 'Web'));

      expect(await subscribe(a1, targets(5))).to.include({ ok: true });
      const refused = await subscribe(a2, targets(4));
      expect(refused).to.include({ ok: false, code: 'TOO_MANY_SUBSCRIPTIONS' });
      expect((refused as { message: string }).message).to.match(
        /at most 8 users over all their connections \(maxSubscriptionsPerUser\); this user watches 5 and asked for 4 more/,
      );
      expect(await subscribe(a2, targets(3))).to.include({ ok: true });
      // Watching again what a connection already watches costs nothing.
      expect(await subscribe(a2, targets(3))).to.include({ ok: true });
      expect(await subscribe(a2, ['t9'])).to.include({ ok: false, code: 'TOO_MANY_SUBSCRIPTIONS' });
      // Bob is not counted with alice.
      expect(await subscribe(bob, targets(5))).to.include({ ok: true });

      expect(await unsubscribe(a1, ['t1', 't2'])).to.deep.equal({ ok: true, watching: 3 });
      expect(await subscribe(a2, ['t4', 't5'])).to.include({ ok: true });
      expect(await subscribe(a2, ['t6'])).to.include({ ok: false, code: 'TOO_MANY_SUBSCRIPTIONS' });

      // a1 (3 watched) leaves: its share comes back, and a new connection can take it.
      a1.socket.disconnect();
      const a3 = await h.connect(auth('alice', 'Mac', { instanceId: 'a3' }));
      await waitFor(async () => (await subscribe(a3, targets(3))).ok, "a1's share given back");
      expect(await subscribe(a3, ['t9'])).to.include({ ok: false, code: 'TOO_MANY_SUBSCRIPTIONS' });

      // What is watched still works: a change of t1 reaches both of alice's connections and bob.
      const seen: Record<string, ChangedPayload[]> = { a2: [], a3: [], bob: [] };
      a2.socket.on('presence:changed', (c) => seen.a2!.push(c));
      a3.socket.on('presence:changed', (c) => seen.a3!.push(c));
      bob.socket.on('presence:changed', (c) => seen.bob!.push(c));
      await h.connect(auth('t1', 'Web'));
      await waitFor(() => seen.a2!.length === 1 && seen.a3!.length === 1 && seen.bob!.length === 1, 't1 Online told to every watcher');
    });
  });

  describe('eventRateLimit', () => {
    it('answers events beyond the bucket RATE_LIMITED and relays nothing of them; heartbeats pass; other connections and users have their own bucket', async () => {
      const clock = new ManualClock();
      const h = await start({ clock, loginPolicy: 'multi', eventRateLimit: { perSecond: 2, burst: 3 } });
      const chatty = await h.connect(auth('alice', 'Web', { instanceId: 'w' }));
      const watcher = await h.connect(auth('watcher', 'Web'));
      expect(await subscribe(watcher, ['alice'])).to.include({ ok: true });
      const relayed: ChangedPayload[] = [];
      watcher.socket.on('presence:changed', (change) => relayed.push(change));

      const answers: Answer[] = [];
      // The subscribe above was the watcher's, not alice's: alice's bucket is full (3).
      for (let i = 1; i <= 5; i++) answers.push(await ask(chatty, 'presence:set-status', { customStatus: `s${i}` }));
      expect(answers.map((a) => (a.ok ? 'ok' : a.code))).to.deep.equal(['ok', 'ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED']);
      expect((answers[3] as { message: string }).message).to.match(/more than 2 presence events per second \(eventRateLimit, burst 3\)/);
      // Every kind of presence event counts, except the heartbeat.
      expect(await ask(chatty, 'presence:background')).to.include({ ok: false, code: 'RATE_LIMITED' });
      expect(await ask(chatty, 'presence:subscribe', { userIds: ['x'] })).to.include({ ok: false, code: 'RATE_LIMITED' });
      expect(await ask(chatty, 'presence:heartbeat')).to.include({ ok: true });

      await waitFor(() => relayed.length === 3, 'three changes relayed');
      await delay(50);
      expect(relayed.map((c) => c.customStatus)).to.deep.equal(['s1', 's2', 's3']);
      expect((await h.presence.query(['alice']))[0]!.customStatus).to.equal('s3');

      // Another connection of alice and another user are not limited by this connection's bucket.
      const tab = await h.connect(auth('alice', 'Android', { instanceId: 'a' }));
      expect(await ask(tab, 'presence:set-status', { customStatus: 'from-tab' })).to.include({ ok: true });
      const bob = await h.connect(auth('bob', 'Web'));
      for (let i = 0; i < 3; i++) expect(await ask(bob, 'presence:set-status', { customStatus: `b${i}` })).to.include({ ok: true });

      // Tokens come back at perSecond: half a second is one more event.
      clock.advance(500);
      expect(await ask(chatty, 'presence:set-status', { customStatus: 's6' })).to.include({ ok: true });
      expect(await ask(chatty, 'presence:set-status', { customStatus: 's7' })).to.include({ ok: false, code: 'RATE_LIMITED' });
      expect(chatty.socket.connected).to.equal(true);
      expect(h.errors).to.deep.equal([]);
    });

    it('false turns the limit off', async () => {
      const h = await start({ clock: new ManualClock(), eventRateLimit: false });
      const chatty = await h.connect(auth('alice', 'Web'));
      for (let i = 0; i < 60; i++) expect(await ask(chatty, 'presence:set-status', { customStatus: `s${i}` })).to.include({ ok: true });
    });
  });

  describe('callback.maxQueuePerUser', () => {
    const cases = [
      { name: "one user's backlog is bounded and coalesced", maxQueuePerUser: 5, maxQueue: 1000 },
      { name: 'a backlog as large as the whole queue gives way when the total is full', maxQueuePerUser: 1000, maxQueue: 10 },
    ];
    for (const { name, maxQueuePerUser, maxQueue } of cases) {
      it(`${name}: a flapping user behind a slow receiver never costs another user a callback, and their latest state arrives`, async () => {
        const receiver = await holdingReceiver((body) => body.Info.To_Account === 'flapper');
        try {
          const h = await start({ callback: { url: receiver.url, maxQueuePerUser, maxQueue, concurrency: 2 } });
          const failed: { body: StateChangeCallbackBody; error: Error }[] = [];
          h.presence.on('callback-failed', (body, error) => failed.push({ body: body as StateChangeCallbackBody, error }));
          const FLAPS = 30;
          for (let i = 0; i < FLAPS; i++) {
            const flap = await h.connect(auth('flapper', 'Web'));
            flap.socket.disconnect();
            await waitFor(async () => (await h.status('flapper')) === 'Offline', 'the flap closed');
          }
          // The flapper's first event sits at the receiver; the rest wait in its backlog, bounded.
          await waitFor(() => receiver.held.length === 1, "the flapper's first callback at the receiver");
          const queued = h.presence.metrics.snapshot().callback!.queued;
          expect(queued).to.be.at.most(Math.min(maxQueuePerUser, maxQueue));

          const bob = await h.connect(auth('bob', 'Android'));
          await waitFor(() => receiver.accepted.some((body) => body.Info.To_Account === 'bob'), "bob's Login callback delivered");
          expect(receiver.accepted.find((body) => body.Info.To_Account === 'bob')).to.deep.include({
            Info: { Action: 'Login', To_Account: 'bob', Reason: 'Register' },
          });
          bob.socket.disconnect();
          await waitFor(() => receiver.accepted.filter((body) => body.Info.To_Account === 'bob').length === 2, "bob's Disconnect callback delivered");

          receiver.release();
          await waitFor(() => h.presence.metrics.snapshot().callback!.queued === 0, 'the backlog delivered');
          const delivered = receiver.accepted.filter((body) => body.Info.To_Account === 'flapper');
          // Every event is either delivered or handed to callback-failed as coalesced, each once; the last one is delivered.
          expect(delivered.length + failed.length).to.equal(2 * FLAPS);
          expect(failed.every(({ body, error }) => body.Info.To_Account === 'flapper' && /coalesced into a later one/.test(error.message))).to.equal(true);
          expect(new Set([...delivered, ...failed.map((f) => f.body)].map((body) => body.Seq)).size).to.equal(2 * FLAPS);
          const last = delivered[delivered.length - 1]!;
          expect(last.Seq).to.equal(Math.max(...delivered.map((body) => body.Seq), ...failed.map((f) => f.body.Seq)));
          expect(last).to.include({ UserStatus: 'Offline', Status: 'Offline' });
          expect(delivered.map((body) => body.Seq)).to.deep.equal([...delivered.map((body) => body.Seq)].sort((a, b) => a - b));
          expect(h.presence.metrics.snapshot().callback).to.include({ dropped: failed.length, failed: 0 });
          const warnings = h.errors.map((args) => String(args[0]));
          expect(
            warnings.filter((line) => /are behind/.test(line)),
            'logged once as it starts',
          ).to.have.length(1);
          expect(
            warnings.filter((line) => line.includes(`caught up; ${failed.length} event(s) were coalesced`)),
            'and once as it ends',
          ).to.have.length(1);
          expect(warnings.filter((line) => /queue is full/.test(line))).to.deep.equal([]);
        } finally {
          await harness?.close();
          harness = undefined;
          await receiver.stop();
        }
      });
    }
  });

  describe('revoked sessions, in Redis mode', () => {
    const clients: Redis[] = [];
    const others: Harness[] = [];
    let prefix = '';
    afterEach(async () => {
      for (const other of others.splice(0)) await other.close();
      if (clients[0]) await deleteKeys(clients[0], prefix);
      for (const client of clients.splice(0)) client.disconnect();
    });

    function store(): RedisStore {
      const client = redisClient();
      clients.push(client);
      return new RedisStore({ client, prefix, maxRevokedSessionsPerUser: 5 });
    }

    it("a user kicking themselves in a loop never lets another user's kicked phone back, on any process; Redis keeps at most the per-user bound", async () => {
      prefix = uniquePrefix('fair-use-revoked');
      const one = await start({ store: store() });
      const two = await startHarness({ store: store() });
      others.push(two);
      const oldPhone = await one.connect(auth('victim', 'Android', { instanceId: 'old' }));
      const newPhone = await one.connect(auth('victim', 'Android', { instanceId: 'new' }));
      await waitFor(() => oldPhone.kicks.length === 1, 'the old phone told it was kicked');

      const CHURN = 40;
      // Each new Web login of the churner, on either process, kicks (and revokes) the one before.
      for (let i = 0; i < CHURN; i++) await (i % 2 === 0 ? one : two).connect(auth('churner', 'Web', { instanceId: `w${i}` }));
      // The kicked phone tries to resume its session on the other process: refused, and the new phone stays.
      const refusal = await two.refused(auth('victim', 'Android', { instanceId: 'old', sessionId: oldPhone.session.sessionId }));
      expect(refusal.code).to.equal('SESSION_REVOKED');
      await delay(30);
      expect(newPhone.kicks).to.deep.equal([]);
      expect(newPhone.socket.connected).to.equal(true);

      const admin = clients[0]!;
      // Revocations live with their user (lib/redis/scripts.ts): one hash of "<revokedAt>|<n>|<notice>".
      const [, churnerRevoked] = layoutOf(prefix).userKeys('churner');
      const [, victimRevoked] = layoutOf(prefix).userKeys('victim');
      expect(await admin.hlen(churnerRevoked), "the churner's revocations").to.equal(5);
      expect(await admin.hlen(victimRevoked), "the victim's revocation").to.equal(1);
      expect(await admin.hget(victimRevoked, oldPhone.session.sessionId)).to.match(/^\d+\|\d+\|\{.*"reason":"LoginElsewhere"/);
      expect(await admin.pttl(churnerRevoked)).to.be.above(0);
    });
  });
});
