// Subscriptions over real Socket.IO connections: presence:changed through rooms, the cap, canSee, and two mounts side by side.

import { expect } from 'chai';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import type { Adapter } from 'socket.io-adapter';
import { createPresence, MemoryStore, type ChangedPayload, type StoreCustomStatusRequest, type SubscribeResult } from '../lib/index.js';
import {
  auth,
  delay,
  device,
  sharedManager,
  startHarness,
  tokenAuthenticate,
  waitFor,
  type Device,
  type Harness,
  type HarnessOptions,
} from './fixtures/socket-harness.js';

type Answered<T> = ({ ok: true } & T) | { ok: false; code: string; message: string };

async function subscribe(watcher: Device, userIds: unknown): Promise<Answered<SubscribeResult>> {
  return (await watcher.socket.timeout(2000).emitWithAck('presence:subscribe', { userIds } as { userIds: string[] })) as Answered<SubscribeResult>;
}

function collect(watcher: Device): ChangedPayload[] {
  const seen: ChangedPayload[] = [];
  watcher.socket.on('presence:changed', (change) => seen.push(change));
  return seen;
}

describe('socket: subscriptions', () => {
  let harness: Harness | undefined;

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness(options);
    return harness;
  }

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("answers the watched users' presence now, then pushes each change of status or custom status", async () => {
    const h = await start({ loginPolicy: 'multi' });
    const watcher = await h.connect(auth('w', 'Web'));
    const seen = collect(watcher);
    const answer = await subscribe(watcher, ['target', 'target', 'nobody']);
    expect(answer).to.deep.equal({
      ok: true,
      users: [
        { userId: 'target', status: 'Offline', availability: 'available', idleSince: null, customStatus: null, lastSeen: null },
        { userId: 'nobody', status: 'Offline', availability: 'available', idleSince: null, customStatus: null, lastSeen: null },
      ],
      denied: [],
    });
    const phone = await h.connect(auth('target', 'Android'));
    await waitFor(() => seen.length === 1, 'the login to be pushed');
    expect(seen[0]).to.include({ userId: 'target', status: 'Online', customStatus: null });
    expect(Date.parse(seen[0]!.lastSeen!)).to.be.closeTo(Date.now(), 2000);
    // A second device does not change the user's status: nothing is pushed.
    const desk = await h.connect(auth('target', 'Windows'));
    await phone.socket.timeout(1000).emitWithAck('presence:set-status', { customStatus: 'in a meeting' });
    await waitFor(() => seen.length === 2, 'the custom status to be pushed');
    expect(seen[1]).to.include({ userId: 'target', status: 'Online', customStatus: 'in a meeting' });
    phone.socket.disconnect();
    await delay(50);
    expect(seen).to.have.length(2);
    desk.socket.disconnect();
    await waitFor(() => seen.length === 3, 'the PushOnline to be pushed');
    expect(seen[2]).to.include({ userId: 'target', status: 'PushOnline', customStatus: 'in a meeting' });
    const lastSeen = seen[2]!.lastSeen;
    expect(lastSeen).to.be.a('string');
    // A custom status change of a user who is not Online carries their last-seen time.
    await h.presence.setCustomStatus('target', 'away');
    await waitFor(() => seen.length === 4, 'the offline custom status to be pushed');
    expect(seen[3]).to.deep.equal({ userId: 'target', status: 'PushOnline', availability: 'available', idleSince: null, customStatus: 'away', lastSeen });
    await h.presence.kick('target');
    await waitFor(() => seen.length === 5, 'the kick to be pushed');
    expect(seen[4]).to.include({ status: 'Offline' });
    // The answer to a later subscribe agrees with what was pushed.
    const again = await subscribe(watcher, ['target']);
    expect(again.ok && again.users[0]).to.deep.equal(seen[4]);
  });

  it('relays a custom status change of a store that answers only the status (a third-party store without availability)', async () => {
    const store = new MemoryStore();
    const full = store.setCustomStatus.bind(store);
    // Answers the user's status alone, as stores written before availability do.
    (store as unknown as { setCustomStatus: (request: StoreCustomStatusRequest) => unknown }).setCustomStatus = (request) => {
      const answer = full(request);
      return answer instanceof Promise ? answer.then((state) => state?.userStatus) : answer?.userStatus;
    };
    const h = await start({ store });
    const watcher = await h.connect(auth('w', 'Web'));
    const seen = collect(watcher);
    await subscribe(watcher, ['target']);
    await h.presence.setCustomStatus('target', 'on a train');
    await waitFor(() => seen.length === 1, 'the custom status to be pushed');
    expect(seen[0]).to.include({ userId: 'target', customStatus: 'on a train', availability: 'available' });
  });

  it('one room per watched user: a change is one emit, received once by each watcher, never by others', async () => {
    const h = await start();
    const watchers = await Promise.all([1, 2, 3].map((i) => h.connect(auth(`w${i}`, 'Web'))));
    const bystander = await h.connect(auth('b', 'Web'));
    const seen = watchers.map(collect);
    const bystanderSeen = collect(bystander);
    for (const watcher of watchers) await subscribe(watcher, ['star']);
    expect(h.io.of('/').adapter.rooms.get('presence:user:star')?.size).to.equal(3);
    const sent: string[] = [];
    const original = h.io.of('/').to.bind(h.io.of('/'));
    h.io.of('/').to = ((room: string | string[]) => {
      sent.push(String(room));
      return original(room);
    }) as typeof original;
    await h.connect(auth('star', 'iPad'));
    await waitFor(() => seen.every((s) => s.length === 1), 'every watcher to be told');
    expect(sent).to.deep.equal(['presence:user:star']);
    await delay(50);
    expect(seen.map((s) => s.length)).to.deep.equal([1, 1, 1]);
    expect(bystanderSeen).to.deep.equal([]);
  });

  it('skips the emit for unwatched users with the in-memory adapter, never with a cluster adapter (watchers may be elsewhere)', async () => {
    const h = await start();
    const broadcasts: string[] = [];
    const nsp = h.io.of('/');
    const broadcast = nsp.adapter.broadcast.bind(nsp.adapter);
    nsp.adapter.broadcast = (packet, opts) => {
      broadcasts.push([...opts.rooms].join());
      broadcast(packet, opts);
    };
    await h.connect(auth('lonely', 'Web'));
    expect(broadcasts).to.deep.equal([]);

    // A stand-in for a cluster adapter: a subclass of the default one, whose rooms show only local members.
    const http = createServer();
    const io = new Server(http, { transports: ['websocket'] });
    const Base = io.of('/').adapter.constructor as typeof Adapter;
    const clustered: string[] = [];
    class ClusterLike extends Base {
      override broadcast(...args: Parameters<Adapter['broadcast']>): void {
        clustered.push([...args[1].rooms].join());
        super.broadcast(...args);
      }
    }
    io.adapter(ClusterLike);
    const presence = createPresence({ authenticate: tokenAuthenticate }).attach(io);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const remote = sharedManager(`http://127.0.0.1:${(http.address() as AddressInfo).port}`);
    try {
      await device(remote.socket('/', { auth: auth('lonely', 'Web') }));
      await waitFor(() => clustered.length === 1, 'the change to be broadcast');
      expect(clustered).to.deep.equal(['presence:user:lonely']);
    } finally {
      remote._close();
      await presence.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    }
  });

  it('unsubscribe stops the pushes; a closed socket leaves its rooms', async () => {
    const h = await start();
    const watcher = await h.connect(auth('w', 'Web'));
    const seen = collect(watcher);
    await subscribe(watcher, ['a', 'b']);
    expect(await watcher.socket.timeout(1000).emitWithAck('presence:unsubscribe', { userIds: ['a', 'zzz'] })).to.deep.equal({ ok: true, watching: 1 });
    await h.connect(auth('a', 'Web'));
    await h.connect(auth('b', 'Web'));
    await waitFor(() => seen.length === 1, 'b to be pushed');
    await delay(50);
    expect(seen.map((c) => c.userId)).to.deep.equal(['b']);
    watcher.socket.disconnect();
    await waitFor(() => !h.io.of('/').adapter.rooms.has('presence:user:b'), 'the room to be left');
  });

  it('caps the users one connection watches at maxSubscriptions, counting each user once', async () => {
    const h = await start({ maxSubscriptions: 3 });
    const watcher = await h.connect(auth('w', 'Web'));
    const tooMany = await subscribe(watcher, ['a', 'b', 'c', 'd']);
    expect(tooMany).to.include({ ok: false, code: 'TOO_MANY_SUBSCRIPTIONS' });
    expect((await subscribe(watcher, ['a', 'b', 'a'])).ok).to.equal(true);
    const over = await subscribe(watcher, ['b', 'c', 'd']);
    expect(over).to.include({ ok: false, code: 'TOO_MANY_SUBSCRIPTIONS' });
    expect((over as { message: string }).message).to.match(/at most 3 users \(maxSubscriptions\); it watches 2 and asked for 2 more/);
    expect((await subscribe(watcher, ['a', 'b', 'c'])).ok).to.equal(true);
    await watcher.socket.timeout(1000).emitWithAck('presence:unsubscribe', { userIds: ['a'] });
    expect((await subscribe(watcher, ['d'])).ok).to.equal(true);
    // Concurrent subscribes cannot overshoot the cap either.
    const other = await h.connect(auth('v', 'Web'));
    const answers = await Promise.all([subscribe(other, ['p', 'q']), subscribe(other, ['r', 's'])]);
    expect(answers.map((a) => a.ok).sort()).to.deep.equal([false, true]);
  });

  it('a subscribe the store fails is refused as a whole: nothing stays reserved or joined, and a retry works', async () => {
    const store = new MemoryStore();
    const h = await start({ store, maxSubscriptions: 2, logger: { warn: () => {}, error: () => {} } });
    const watcher = await h.connect(auth('w', 'Web'));
    const storeGet = store.get.bind(store);
    store.get = () => Promise.reject(new Error('store down'));
    expect(await subscribe(watcher, ['a', 'b'])).to.include({ ok: false, code: 'SERVER_ERROR' });
    expect(h.io.of('/').adapter.rooms.has('presence:user:a')).to.equal(false);
    store.get = storeGet;
    // Both places of the cap are free again.
    const retry = await subscribe(watcher, ['a', 'b']);
    expect(retry.ok).to.equal(true);
    expect(await watcher.socket.timeout(1000).emitWithAck('presence:unsubscribe', { userIds: [] })).to.deep.equal({ ok: true, watching: 2 });
  });

  it('canSee (sync, async, or throwing) decides who may be watched; refused users are listed in denied and never pushed', async () => {
    const h = await start({
      canSee: (viewerId, targetId) => {
        if (targetId === 'boom') throw new Error('rule failed');
        if (targetId === 'slow-no') return new Promise((resolve) => setTimeout(() => resolve(false), 20));
        if (targetId === 'slow-yes') return new Promise((resolve) => setTimeout(() => resolve(true), 20));
        return !(viewerId === 'w' && targetId === 'secret');
      },
    });
    const watcher = await h.connect(auth('w', 'Web'));
    const seen = collect(watcher);
    const answer = await subscribe(watcher, ['friend', 'secret', 'slow-no', 'slow-yes', 'boom']);
    expect(answer.ok).to.equal(true);
    if (!answer.ok) return;
    expect(answer.users.map((u) => u.userId)).to.deep.equal(['friend', 'slow-yes']);
    expect(answer.denied).to.deep.equal(['secret', 'slow-no', 'boom']);
    expect(h.errors.map((e) => String(e[0]))).to.deep.equal(['express-presence: canSee threw; the user is treated as not visible']);
    for (const userId of ['secret', 'slow-no', 'boom', 'friend']) await h.connect(auth(userId, 'Web'));
    await waitFor(() => seen.length === 1, 'friend to be pushed');
    await delay(50);
    expect(seen.map((c) => c.userId)).to.deep.equal(['friend']);
    // Denied users do not count against the cap, and another viewer may see them.
    const other = await h.connect(auth('v', 'Web'));
    const theirs = await subscribe(other, ['secret']);
    expect(theirs.ok && theirs.denied).to.deep.equal([]);
  });

  it('two mounts with different policies on two namespaces of one io server stay independent', async () => {
    const http = createServer();
    const io = new Server(http, { transports: ['websocket'] });
    const single = createPresence({ authenticate: tokenAuthenticate, loginPolicy: 'single' }).attach(io.of('/chat'));
    const multi = createPresence({ authenticate: tokenAuthenticate, loginPolicy: 'multi', heartbeatInterval: 5000 }).attach(io.of('/game'));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    // One phone and one desktop, each multiplexing both namespaces over one connection.
    const phone = sharedManager(url);
    const desk = sharedManager(url);
    const observer = sharedManager(url);
    try {
      const phoneChat = await device(phone.socket('/chat', { auth: auth('mia', 'Android') }));
      const phoneGame = await device(phone.socket('/game', { auth: auth('mia', 'Android') }));
      const watcherGame = await device(observer.socket('/game', { auth: auth('obs', 'Web') }));
      const seenGame = collect(watcherGame);
      await subscribe(watcherGame, ['mia']);
      expect(phoneGame.session.heartbeatInterval).to.equal(5000);
      expect(phoneChat.session.heartbeatInterval).to.equal(120_000);

      const deskChat = await device(desk.socket('/chat', { auth: auth('mia', 'Windows') }));
      const deskGame = await device(desk.socket('/game', { auth: auth('mia', 'Windows') }));
      expect(deskChat.session.kicked).to.have.length(1);
      expect(deskGame.session.kicked).to.deep.equal([]);
      await waitFor(() => phoneChat.disconnects.length === 1, 'the chat kick');
      // The chat kick ended the chat socket only: the game socket on the same connection lives on.
      await delay(50);
      expect(phoneGame.socket.connected).to.equal(true);
      expect(phoneGame.kicks).to.deep.equal([]);
      expect((await single.query(['mia']))[0]!.instances!.map((i) => i.platform)).to.deep.equal(['Windows']);
      expect((await multi.query(['mia']))[0]!.instances!.map((i) => i.platform).sort()).to.deep.equal(['Android', 'Windows']);
      // Chat's changes never reach game's subscribers (mia stayed Online in the game mount all along).
      expect(seenGame).to.deep.equal([]);
      expect(io.of('/chat').adapter.rooms.has('presence:user:mia')).to.equal(false);
    } finally {
      for (const manager of [phone, desk, observer]) manager._close();
      await single.close();
      await multi.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    }
  });
});
