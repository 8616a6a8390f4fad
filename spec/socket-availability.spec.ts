// Availability and privacy over real Socket.IO clients, in memory and Redis mode: every surface a viewer reaches.

import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import type { Redis } from 'ioredis';
import type { Adapter } from 'socket.io-adapter';
import {
  MemoryStore,
  type ChangedPayload,
  type PresenceCallbackBody,
  type PresenceStore,
  type RoomMessage,
  type RoomSnapshot,
  type SubscribeResult,
} from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { auth, delay, startHarness, waitFor, type Device, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';
import { deleteKeys, redisClient, uniquePrefix } from './helpers/redis.js';

type Answered<T> = ({ ok: true } & T) | { ok: false; code: string; message: string };

const ADMIN = 'Bearer admin';

async function ask<T = object>(device: Device, event: string, payload?: unknown): Promise<Answered<T>> {
  const socket = device.socket as unknown as { timeout(ms: number): { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> } };
  return (await (payload === undefined ? socket.timeout(2000).emitWithAck(event) : socket.timeout(2000).emitWithAck(event, payload))) as Answered<T>;
}

/** Everything one viewer's socket is told, in order. */
function record(device: Device): { changed: ChangedPayload[]; rooms: RoomMessage[]; all: unknown[] } {
  const seen = { changed: [] as ChangedPayload[], rooms: [] as RoomMessage[], all: [] as unknown[] };
  const socket = device.socket as unknown as { onAny(listener: (event: string, ...args: unknown[]) => void): void };
  socket.onAny((event, payload) => {
    seen.all.push([event, payload]);
    if (event === 'presence:changed') seen.changed.push(payload as ChangedPayload);
    if (event === 'presence:room') seen.rooms.push(payload as RoomMessage);
  });
  return seen;
}

const ISO_TIME = /\d{4}-\d\d-\d\dT\d\d:\d\d/;

interface Mode {
  name: string;
  store(): PresenceStore;
  rooms: boolean;
}

const clients: Redis[] = [];
const prefixes: string[] = [];
const modes: Mode[] = [
  { name: 'memory', store: () => new MemoryStore(), rooms: true },
  {
    name: 'Redis',
    store: () => {
      const client = redisClient();
      clients.push(client);
      const prefix = uniquePrefix('availability');
      prefixes.push(prefix);
      return new RedisStore({ client, prefix, sweepInterval: 100 });
    },
    // RedisStore refuses rooms (not shared across processes yet): the room surfaces are walked in memory mode.
    rooms: false,
  },
];

for (const mode of modes) {
  describe(`socket: availability and privacy (${mode.name})`, function () {
    this.timeout(20_000);
    let harness: Harness | undefined;

    async function start(options: HarnessOptions = {}): Promise<Harness> {
      harness = await startHarness({
        loginPolicy: 'multi',
        store: mode.store(),
        canJoin: () => true,
        roomBatchInterval: 20,
        authorize: (req) => req.headers.authorization === ADMIN,
        ...options,
      });
      return harness;
    }

    afterEach(async () => {
      await harness?.close();
      harness = undefined;
      const admin = clients[0];
      if (admin) for (const prefix of prefixes.splice(0)) await deleteKeys(admin, prefix);
      for (const client of clients.splice(0)) client.disconnect();
    });

    it('an invisible user is Offline with a frozen last seen on every surface a viewer reaches; the truth to their own devices and the backend', async () => {
      const h = await start({ contacts: (userId) => (userId.startsWith('viewer') ? ['ghost'] : []) });
      const ghost = await h.connect(auth('ghost', 'Web', { instanceId: 'ghost-web' }));
      expect(await ask(ghost, 'presence:set-status', { customStatus: 'coding' })).to.include({ ok: true });
      if (mode.rooms) await ask(ghost, 'presence:join', { room: 'lobby', meta: { seat: 1 } });
      const viewer = await h.connect(auth('viewer', 'Web'));
      expect(viewer.session.contacts?.[0], 'contacts snapshot before').to.include({ userId: 'ghost', status: 'Online', customStatus: 'coding' });
      const seen = record(viewer);
      if (mode.rooms) {
        const answer = (await ask<RoomSnapshot>(viewer, 'presence:join', { room: 'lobby' })) as RoomSnapshot;
        expect(answer.count).to.equal(2);
      }
      await ask(viewer, 'presence:subscribe', { userIds: ['ghost'] });

      const before = Date.now();
      expect(await ask(ghost, 'presence:set-availability', { availability: 'invisible' })).to.deep.equal({ ok: true, availability: 'invisible' });
      const after = Date.now();
      await waitFor(() => seen.changed.length === 1, 'going invisible to look like going offline');
      const gone = seen.changed[0]!;
      expect(gone).to.include({ userId: 'ghost', status: 'Offline', availability: 'available', idleSince: null, customStatus: 'coding' });
      expect(Date.parse(gone.lastSeen!)).to.be.within(before - 5, after + 5);
      if (mode.rooms) {
        await waitFor(() => seen.rooms.some((message) => message.left.includes('ghost')), 'a left in the room');
        expect(seen.rooms.at(-1)).to.include({ count: 1 });
      }

      // While invisible: a new custom status, another device, activity, a room join and meta from the new device.
      expect(await ask(ghost, 'presence:set-status', { customStatus: 'secret plans' })).to.include({ ok: true });
      await ask(ghost, 'presence:activity');
      const mac = await h.connect(auth('ghost', 'Mac', { instanceId: 'ghost-mac' }));
      if (mode.rooms) {
        await ask(mac, 'presence:join', { room: 'lobby', meta: { seat: 'hidden-seat' } });
        await ask(ghost, 'presence:room-update', { room: 'lobby', meta: { seat: 'moved' } });
      }
      mac.socket.disconnect();
      await delay(150);

      // A viewer arriving now: contacts snapshot, subscribe answer and room join answer.
      const late = await h.connect(auth('viewer2', 'Web'));
      const lateSeen = record(late);
      const snapshot = late.session.contacts ?? [];
      const subscribed = (await ask<SubscribeResult>(late, 'presence:subscribe', { userIds: ['ghost'] })) as SubscribeResult;
      let lateRoom: RoomSnapshot | undefined;
      if (mode.rooms) lateRoom = (await ask<RoomSnapshot>(late, 'presence:join', { room: 'lobby' })) as RoomSnapshot;
      await delay(100);

      const frozen = { userId: 'ghost', status: 'Offline', availability: 'available', idleSince: null, customStatus: 'coding', lastSeen: gone.lastSeen };
      expect(snapshot, 'contacts snapshot').to.deep.equal([frozen]);
      expect(subscribed.users, 'subscribe answer').to.deep.equal([frozen]);
      expect(seen.changed, 'nothing more pushed to the first viewer').to.have.length(1);
      if (lateRoom) {
        expect(lateRoom.count, 'the count leaves the invisible user out').to.equal(2);
        expect(lateRoom.members!.map((member) => member.userId).sort()).to.deep.equal(['viewer', 'viewer2']);
        expect(seen.rooms.flatMap((message) => [...message.joined, ...message.updated]).map((member) => member.userId)).to.not.include('ghost');
        expect(
          seen.rooms.every((message) => message.count <= 2),
          'no count revealed the ghost',
        ).to.equal(true);
      }
      const told = JSON.stringify([seen.all, lateSeen.all, snapshot, subscribed, lateRoom]);
      for (const secret of ['secret plans', 'ghost-mac', 'ghost-web', 'hidden-seat', 'moved', 'invisible', '"userId":"ghost","status":"Online"']) {
        expect(told, `nothing a viewer got reveals ${secret}`).to.not.include(secret);
      }
      expect(told.match(/"userId":"ghost"[^}]*"lastSeen":"([^"]+)"/g)?.every((entry) => entry.includes(gone.lastSeen!))).to.equal(true);

      // The truth: the user's own device watching themselves, the backend's query, rooms and source routes.
      const self = (await ask<SubscribeResult>(ghost, 'presence:subscribe', { userIds: ['ghost'] })) as SubscribeResult;
      expect(self.users[0]).to.include({ status: 'Online', availability: 'invisible', customStatus: 'secret plans' });
      expect((await h.presence.query(['ghost'], { detail: false }))[0]).to.include({
        status: 'Online',
        availability: 'invisible',
        customStatus: 'secret plans',
      });
      if (mode.rooms) {
        const page = await h.presence.room('lobby').members();
        expect(page.count).to.equal(3);
        expect(page.members.find((member) => member.userId === 'ghost')).to.include({ availability: 'invisible' });
      }
      const app = express();
      app.use(h.presence.router({}));
      const source = await request(app)
        .post('/v4/openim/query_online_status')
        .set('authorization', ADMIN)
        .send({ To_Account: ['ghost', 'viewer'], IsReturnCustomStatus: 1 });
      expect(source.body.QueryResult).to.deep.equal([
        { To_Account: 'ghost', Status: 'Online', Availability: 'invisible', CustomStatus: 'secret plans' },
        { To_Account: 'viewer', Status: 'Online', Availability: 'available', CustomStatus: '' },
      ]);

      // Visible again: Online, with the real custom status, and back in the room.
      await ask(ghost, 'presence:set-availability', { availability: 'available' });
      await waitFor(() => seen.changed.length === 2, 'becoming visible');
      expect(seen.changed[1]).to.include({ status: 'Online', availability: 'available', customStatus: 'secret plans' });
      if (mode.rooms) await waitFor(() => seen.rooms.some((message) => message.joined.some((member) => member.userId === 'ghost')), 'a joined in the room');
    });

    it('hidden last seen: no time and no bucket on any surface, idleSince included; approximate gives the bucket; a bad rule hides, logged once', async () => {
      const rule = (viewerId: string, targetId: string): 'exact' | 'approximate' | 'hidden' => {
        if (targetId === 'private') return 'hidden';
        if (targetId === 'vague') return 'approximate';
        if (targetId === 'broken')
          return (
            viewerId === 'thrower'
              ? (() => {
                  throw new Error('rule down');
                })()
              : 'sometimes'
          ) as never;
        return 'exact';
      };
      const h = await start({ contacts: () => ['private', 'vague', 'broken'], lastSeenVisibility: rule, idleTimeout: { web: '1s' } });
      for (const userId of ['private', 'vague', 'broken']) {
        const d = await h.connect(auth(userId, 'Web'));
        await ask(d, 'presence:set-status', { customStatus: `${userId} status` });
        d.socket.disconnect();
      }
      await waitFor(
        async () => (await h.presence.query(['private', 'vague', 'broken'], { detail: false })).every((user) => user.status === 'Offline'),
        'all offline',
      );
      const viewer = await h.connect(auth('viewer', 'Web'));
      const seen = record(viewer);
      const byId = (users: readonly ChangedPayload[]) => Object.fromEntries(users.map((user) => [user.userId, user]));
      const snapshot = byId(viewer.session.contacts ?? []);
      const answer = byId(((await ask<SubscribeResult>(viewer, 'presence:subscribe', { userIds: ['private', 'vague', 'broken'] })) as SubscribeResult).users);
      for (const view of [snapshot, answer]) {
        expect(view.private).to.deep.equal({
          userId: 'private',
          status: 'Offline',
          availability: 'available',
          idleSince: null,
          customStatus: 'private status',
          lastSeen: null,
        });
        expect(view.vague).to.deep.include({ lastSeen: null, lastSeenApprox: 'recently', idleSince: null });
        expect(view.broken).to.deep.include({ lastSeen: null, idleSince: null });
        expect(view.broken).to.not.have.property('lastSeenApprox');
      }
      // The private user comes back, goes idle, and leaves: pushed without a time.
      const back = await h.connect(auth('private', 'Web'));
      if (mode.rooms) {
        await ask(back, 'presence:join', { room: 'r' });
        const room = (await ask<RoomSnapshot>(viewer, 'presence:join', { room: 'r' })) as RoomSnapshot;
        expect(JSON.stringify(room)).to.not.match(ISO_TIME);
      }
      await waitFor(async () => (await h.presence.query(['private'], { detail: false }))[0]!.availability === 'away', 'idle', 5000);
      back.socket.disconnect();
      await waitFor(() => seen.changed.filter((change) => change.userId === 'private').length >= 3, 'login, idle and logout pushed', 5000);
      const pushed = seen.changed.filter((change) => change.userId === 'private');
      expect(pushed.map((change) => change.status)).to.include.members(['Online', 'Offline']);
      expect(
        pushed.some((change) => change.availability === 'away'),
        'away is shown',
      ).to.equal(true);
      for (const change of pushed) {
        expect(change).to.include({ lastSeen: null, idleSince: null });
        expect(change).to.not.have.property('lastSeenApprox');
      }
      expect(JSON.stringify(seen.all.filter((entry) => JSON.stringify(entry).includes('"private"')))).to.not.match(ISO_TIME);
      // The backend still gets the truth.
      expect((await h.presence.query(['private'], { detail: false }))[0]!.lastSeen).to.match(ISO_TIME);
      // A second viewer makes the rule throw: hidden, and the failures (junk, throw) logged once.
      const thrower = await h.connect(auth('thrower', 'Web'));
      expect(byId(thrower.session.contacts ?? []).broken).to.include({ lastSeen: null });
      const logged = h.errors.filter((args) => String(args[0]).includes('lastSeenVisibility'));
      expect(logged, 'logged once').to.have.length(1);
    });

    it('with a cluster adapter (watchers possibly elsewhere) the per-viewer relay finds the watchers through fetchSockets', async () => {
      let fetched = 0;
      const h = await start({
        lastSeenVisibility: (viewerId) => (viewerId === 'exact-viewer' ? 'exact' : 'hidden'),
        beforeAttach: (io) => {
          const Base = io.of('/').adapter.constructor as typeof Adapter;
          // A stand-in for a cluster adapter: a subclass of the default one, counting the fetches.
          class ClusterLike extends Base {
            override fetchSockets(...args: Parameters<Adapter['fetchSockets']>): ReturnType<Adapter['fetchSockets']> {
              fetched++;
              return super.fetchSockets(...args);
            }
          }
          io.adapter(ClusterLike);
        },
      });
      const exact = await h.connect(auth('exact-viewer', 'Web'));
      const hidden = await h.connect(auth('hidden-viewer', 'Web'));
      const seenExact = record(exact);
      const seenHidden = record(hidden);
      for (const viewer of [exact, hidden]) await ask(viewer, 'presence:subscribe', { userIds: ['t'] });
      const t = await h.connect(auth('t', 'Web'));
      await waitFor(() => seenExact.changed.length === 1 && seenHidden.changed.length === 1, 'the login pushed to both');
      expect(seenExact.changed[0]!.lastSeen).to.match(ISO_TIME);
      expect(seenHidden.changed[0]!.lastSeen).to.equal(null);
      expect(fetched).to.be.greaterThan(0);
      t.socket.disconnect();
    });

    it('presence:set-availability and presence:activity: answers, bad input with did-you-mean, rate-limited like other events (heartbeats never)', async () => {
      const h = await start({ eventRateLimit: { perSecond: 1, burst: 3 } });
      const d = await h.connect(auth('u', 'Web'));
      const typo = await ask(d, 'presence:set-availability', { availability: 'dnt' });
      expect(typo).to.deep.include({ ok: false, code: 'BAD_REQUEST' });
      expect((typo as { message: string }).message).to.match(/availability must be one of .*got "dnt"; did you mean "dnd"\?/);
      expect(await ask(d, 'presence:set-availability', 'dnd')).to.deep.include({ ok: false, code: 'BAD_REQUEST' });
      expect(await ask(d, 'presence:activity', 42)).to.deep.include({ ok: false, code: 'BAD_REQUEST' });
      const limited = await ask(d, 'presence:activity');
      expect(limited).to.deep.include({ ok: false, code: 'RATE_LIMITED' });
      for (let i = 0; i < 5; i++) expect(await ask(d, 'presence:heartbeat')).to.include({ ok: true });
      const bad = await ask(d, 'presence:set-status', { customStatus: 'x', ttl: 10 });
      expect(bad).to.deep.include({ ok: false });
    });

    it('custom status with a ttl is cleared with a change pushed; contacts are subscribed within maxSubscriptions', async () => {
      const h = await start({ maxSubscriptions: 2, contacts: (userId) => (userId === 'w' ? ['a', 'b', 'c'] : []) });
      const a = await h.connect(auth('a', 'Web'));
      const watcher = await h.connect(auth('w', 'Web'));
      expect((watcher.session.contacts ?? []).map((user) => user.userId)).to.deep.equal(['a', 'b']);
      expect(h.errors.some((args) => String(args[0]).includes('contacts'))).to.equal(true);
      const seen = record(watcher);
      expect(await ask(a, 'presence:set-status', { customStatus: 'brb', ttl: '1s' })).to.deep.equal({ ok: true, customStatus: 'brb' });
      await waitFor(() => seen.changed.length === 1, 'the status pushed');
      await waitFor(() => seen.changed.length === 2, 'the expiry pushed', 4000);
      expect(seen.changed.map((change) => change.customStatus)).to.deep.equal(['brb', null]);
      expect((await h.presence.query(['a'], { detail: false }))[0]!.customStatus).to.equal(null);
    });

    it('calls back on custom status and availability changes (State.StatusChange); state changes carry Availability', async () => {
      const received: PresenceCallbackBody[] = [];
      const hook = express();
      const { createPresence } = await import('../lib/index.js');
      hook.post(
        '/hook',
        createPresence().callbackReceiver((event) => void received.push(event)),
      );
      const server = hook.listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
      const port = (server.address() as { port: number }).port;
      try {
        const h = await start({ callback: { url: `http://127.0.0.1:${port}/hook`, backoff: 10 } });
        const d = await h.connect(auth('u', 'Web'));
        await ask(d, 'presence:set-status', { customStatus: 'lunch' });
        await ask(d, 'presence:set-availability', { availability: 'dnd' });
        await waitFor(() => received.length === 3, 'three callbacks');
        expect(received[0]).to.include({ CallbackCommand: 'State.StateChange', Availability: 'available' });
        expect(received[1]).to.deep.include({
          CallbackCommand: 'State.StatusChange',
          Info: { Action: 'SetCustomStatus', To_Account: 'u', Reason: 'Set' },
          CustomStatus: 'lunch',
          Availability: 'available',
          IdleSince: null,
          UserStatus: 'Online',
        });
        expect(received[2]).to.deep.include({
          CallbackCommand: 'State.StatusChange',
          Info: { Action: 'SetAvailability', To_Account: 'u', Reason: 'Set' },
          Availability: 'dnd',
          PreviousAvailability: 'available',
          CustomStatus: 'lunch',
        });
        d.socket.disconnect();
        await waitFor(() => received.length === 4, 'the logout');
        expect(received[3]).to.include({ CallbackCommand: 'State.StateChange', Availability: 'dnd' });
      } finally {
        server.close();
      }
    });
  });
}
