// Rooms over real Socket.IO connections: joins and their refusals, diffs batched and coalesced, leaves on every end, the grace, big rooms, the server API.

import { expect } from 'chai';
import { createPresence, MemoryStore, type PresenceStore, type RoomChange, type RoomMessage, type RoomSnapshot } from '../lib/index.js';
import { auth, delay, startHarness, waitFor, type Device, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';
import { coreStore } from './helpers/core-store.js';

type Answer<T = object> = ({ ok: true } & T) | { ok: false; code: string; message: string };

async function emit<T = object>(device: Device, event: string, payload?: unknown): Promise<Answer<T>> {
  const socket = device.socket.timeout(3000) as unknown as { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> };
  return (await socket.emitWithAck(event, payload)) as Answer<T>;
}

function join(device: Device, room: unknown, meta?: unknown): Promise<Answer<RoomSnapshot>> {
  return emit<RoomSnapshot>(device, 'presence:join', meta === undefined ? { room } : { room, meta });
}

async function joined(device: Device, room: string, meta?: unknown): Promise<RoomSnapshot> {
  const answer = await join(device, room, meta);
  if (!answer.ok) throw new Error(`join refused: ${answer.code} ${answer.message}`);
  return answer;
}

function messages(device: Device): RoomMessage[] {
  const seen: RoomMessage[] = [];
  (device.socket as unknown as { on(event: string, listener: (message: RoomMessage) => void): void }).on('presence:room', (message) => seen.push(message));
  return seen;
}

const allow = { canJoin: () => true, roomBatchInterval: 20 };

describe('socket: rooms', () => {
  let harness: Harness | undefined;

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness({ loginPolicy: 'multi', ...options });
    return harness;
  }

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  describe('joining from the client', () => {
    it('is refused FORBIDDEN without canJoin, and when canJoin says no, throws or answers anything but true', async () => {
      const h = await start({ canJoin: (_userId: string, room: string) => (room === 'boom' ? Promise.reject(new Error('db down')) : room === 'ok') });
      const a = await h.connect(auth('a', 'Web'));
      expect(await join(a, 'ok')).to.include({ ok: true, count: 1 });
      for (const room of ['no', 'boom']) {
        const answer = await join(a, room);
        expect(answer).to.include({ ok: false, code: 'FORBIDDEN' });
      }
      expect(h.errors.some((args) => String(args[0]).includes('canJoin threw'))).to.equal(true);
      expect(h.presence.rooms.count('no')).to.equal(0);
      await h.close();
      harness = await startHarness({});
      const b = await harness.connect(auth('b', 'Web'));
      const answer = await join(b, 'lobby');
      expect(answer).to.include({ ok: false, code: 'FORBIDDEN' });
      expect((answer as { message: string }).message).to.include('canJoin');
    });

    it('passes canJoin the user, the room and the meta', async () => {
      const calls: unknown[][] = [];
      const h = await start({ canJoin: (...args: unknown[]) => (calls.push(args), true) });
      const a = await h.connect(auth('a', 'Web'));
      await joined(a, 'doc:1', { cursor: 3 });
      expect(calls).to.deep.equal([['a', 'doc:1', { cursor: 3 }]]);
    });

    it('refuses bad names, bad payloads and meta over 1024 bytes with BAD_REQUEST, and a room beyond maxRoomsPerConnection with TOO_MANY_ROOMS', async () => {
      const h = await start({ ...allow, maxRoomsPerConnection: 2 });
      const a = await h.connect(auth('a', 'Web'));
      for (const room of ['', 'x'.repeat(129), 5, null]) expect(await join(a, room), String(room)).to.include({ ok: false, code: 'BAD_REQUEST' });
      expect(await emit(a, 'presence:join', 'lobby')).to.include({ ok: false, code: 'BAD_REQUEST' });
      const big = await join(a, 'r', { text: 'é'.repeat(510) });
      expect(big).to.include({ ok: false, code: 'BAD_REQUEST' });
      expect((big as { message: string }).message).to.match(/1024 bytes/);
      expect(await join(a, 'r', { text: 'x'.repeat(1000) })).to.include({ ok: true });
      expect(await join(a, 'x'.repeat(128))).to.include({ ok: true });
      const third = await join(a, 'third');
      expect(third).to.include({ ok: false, code: 'TOO_MANY_ROOMS' });
      expect((third as { message: string }).message).to.include('maxRoomsPerConnection');
      // Joining again a room it is in is no new room.
      expect(await join(a, 'r')).to.include({ ok: true });
      expect(await emit(a, 'presence:leave', { room: 'r' })).to.deep.equal({ ok: true });
      expect(await join(a, 'third')).to.include({ ok: true });
      expect(await emit(a, 'presence:room-update', { room: 'elsewhere', meta: 1 })).to.include({ ok: false, code: 'BAD_REQUEST' });
      expect(await emit(a, 'presence:room-update', { room: 'third' })).to.include({ ok: false, code: 'BAD_REQUEST' });
      expect(await emit(a, 'presence:leave', 7)).to.include({ ok: false, code: 'BAD_REQUEST' });
    });
  });

  describe('answers and diffs', () => {
    it('answers members and count; others get one joined diff, the joiner none about itself', async () => {
      const h = await start(allow);
      const a = await h.connect(auth('a', 'Web'));
      const aSeen = messages(a);
      const first = await joined(a, 'lobby', { name: 'Ann' });
      expect(first).to.deep.equal({
        ok: true,
        room: 'lobby',
        count: 1,
        members: [
          {
            userId: 'a',
            status: 'Online',
            availability: 'available',
            customStatus: null,
            meta: { name: 'Ann' },
            devices: [{ platform: 'Web', instanceId: a.session.instanceId }],
          },
        ],
      });
      const b = await h.connect(auth('b', 'Android'));
      const bSeen = messages(b);
      const second = await joined(b, 'lobby');
      expect(second.count).to.equal(2);
      expect(second.members!.map((m) => m.userId)).to.deep.equal(['a', 'b']);
      expect(second.members![1]!.meta).to.equal(null);
      await waitFor(() => aSeen.length === 1, 'a diff');
      expect(aSeen[0]).to.deep.equal({ room: 'lobby', count: 2, joined: [second.members![1]], left: [], updated: [] });
      await delay(80);
      expect(bSeen, 'no diff about its own join').to.deep.equal([]);
    });

    it('a meta change is an update, never a leave and a join; a leave lists the user id', async () => {
      const h = await start(allow);
      const a = await h.connect(auth('a', 'Web'));
      const b = await h.connect(auth('b', 'Web'));
      await joined(a, 'lobby');
      const seen = messages(a);
      await joined(b, 'lobby', { typing: false });
      await waitFor(() => seen.length === 1, 'the join');
      seen.length = 0;
      expect(await emit(b, 'presence:room-update', { room: 'lobby', meta: { typing: true } })).to.deep.equal({ ok: true });
      await waitFor(() => seen.length === 1, 'the update');
      expect(seen[0]!.joined).to.deep.equal([]);
      expect(seen[0]!.left).to.deep.equal([]);
      expect(seen[0]!.updated.map((m) => [m.userId, m.meta])).to.deep.equal([['b', { typing: true }]]);
      await emit(b, 'presence:leave', { room: 'lobby' });
      await waitFor(() => seen.length === 2, 'the leave');
      expect(seen[1]).to.deep.equal({ room: 'lobby', count: 1, joined: [], left: ['b'], updated: [] });
    });

    it('batches a batch interval of changes into one message, and a join and a leave inside one batch cancel out', async () => {
      const h = await start({ canJoin: () => true, roomBatchInterval: '400ms' });
      const watcher = await h.connect(auth('w', 'Web'));
      await joined(watcher, 'lobby');
      const seen = messages(watcher);
      const flap = await h.connect(auth('flap', 'Web'));
      const others = await Promise.all(['c', 'd', 'e'].map((user) => h.connect(auth(user, 'Web'))));
      await joined(flap, 'lobby');
      await emit(flap, 'presence:leave', { room: 'lobby' });
      await Promise.all(others.map((device) => joined(device, 'lobby')));
      await waitFor(() => seen.length >= 1, 'the batch', 5000);
      await delay(500);
      const userIds = seen.flatMap((message) => message.joined.map((m) => m.userId));
      expect(userIds.sort()).to.deep.equal(['c', 'd', 'e']);
      expect(seen.flatMap((message) => message.left)).to.deep.equal([]);
      // Everything happened well within 400 ms on any machine that answers acks: one message.
      expect(seen.length).to.be.at.most(2);
    });

    it('tabs of one device and devices of one user are one member; a member leaves with its last connection', async () => {
      const h = await start(allow);
      const watcher = await h.connect(auth('w', 'Web'));
      await joined(watcher, 'lobby');
      const seen = messages(watcher);
      const tab1 = await h.connect(auth('u', 'Web', { instanceId: 'tabs' }));
      const tab2 = await h.connect(auth('u', 'Web', { instanceId: 'tabs', sessionId: tab1.session.sessionId }));
      const phone = await h.connect(auth('u', 'Android', { instanceId: 'phone' }));
      await joined(tab1, 'lobby');
      await joined(tab2, 'lobby');
      const answer = await joined(phone, 'lobby');
      expect(answer.count).to.equal(2);
      expect(answer.members!.find((m) => m.userId === 'u')!.devices).to.deep.equal([
        { platform: 'Web', instanceId: 'tabs' },
        { platform: 'Android', instanceId: 'phone' },
      ]);
      await waitFor(() => seen.some((message) => message.joined.length + message.updated.length > 0), 'u joined');
      tab1.socket.disconnect();
      await emit(phone, 'presence:leave', { room: 'lobby' });
      await waitFor(() => seen.at(-1)?.updated.at(-1)?.devices.length === 1, 'u down to the tab');
      expect(seen.flatMap((message) => message.left)).to.deep.equal([]);
      tab2.socket.disconnect();
      await waitFor(() => seen.some((message) => message.left.includes('u')), 'u left');
      expect(h.presence.rooms.count('lobby')).to.equal(1);
    });

    it('a member whose custom status changes is updated', async () => {
      const h = await start(allow);
      const a = await h.connect(auth('a', 'Web'));
      const b = await h.connect(auth('b', 'Web'));
      await h.presence.setCustomStatus('b', 'at lunch');
      await joined(a, 'lobby');
      const seen = messages(a);
      const answer = await joined(b, 'lobby');
      expect(answer.members!.find((m) => m.userId === 'b')!.customStatus, 'read from the store at join').to.equal('at lunch');
      await waitFor(() => seen.length === 1, 'the join');
      seen.length = 0;
      await emit(b, 'presence:set-status', { customStatus: 'back' });
      await waitFor(() => seen.length === 1, 'the update');
      expect(seen[0]!.updated.map((m) => [m.userId, m.customStatus])).to.deep.equal([['b', 'back']]);
    });

    it('above roomMemberLimit answers and diffs carry the count only; below it again the list comes back', async () => {
      const h = await start({ ...allow, roomMemberLimit: 2 });
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((user) => h.connect(auth(user, 'Web'))));
      await joined(a!, 'big');
      const seen = messages(a!);
      await joined(b!, 'big');
      await waitFor(() => seen.length === 1, 'b joined');
      const third = await joined(c!, 'big');
      expect(third).to.include({ count: 3, members: null });
      await waitFor(() => seen.length === 2, 'the count');
      expect(seen[1]).to.deep.equal({ room: 'big', count: 3, joined: [], left: [], updated: [], members: null });
      await emit(b!, 'presence:leave', { room: 'big' });
      await waitFor(() => seen.length === 3, 'the list again');
      expect(seen[2]!.count).to.equal(2);
      expect(seen[2]!.members!.map((m) => m.userId)).to.deep.equal(['a', 'c']);
    });
  });

  describe('leaving', () => {
    async function member(h: Harness, userId: string, platform = 'Web', extra: Record<string, unknown> = {}): Promise<Device> {
      const d = await h.connect(auth(userId, platform, extra));
      await joined(d, 'lobby');
      return d;
    }

    it('on logout, on a kick and on a closed connection without grace', async () => {
      const h = await start(allow);
      const watcher = await member(h, 'w');
      const seen = messages(watcher);
      const left = (): string[] => seen.flatMap((message) => message.left);
      const out = await member(h, 'out');
      const kicked = await member(h, 'kicked');
      const closed = await member(h, 'closed');
      await waitFor(() => seen.flatMap((m) => m.joined).length === 3, 'three joins');
      expect(await emit(out, 'presence:logout')).to.deep.equal({ ok: true });
      await waitFor(() => left().includes('out'), 'logout leaves');
      await h.presence.kick('kicked');
      await waitFor(() => left().includes('kicked'), 'kick leaves');
      closed.socket.disconnect();
      await waitFor(() => left().includes('closed'), 'close leaves');
      expect(kicked.kicks).to.have.length(1);
      expect(h.presence.rooms.count('lobby')).to.equal(1);
    });

    it('with a reconnect grace a connection back within it and rejoining causes no leave and no join; one that stays away leaves once it ends', async () => {
      const h = await start({ ...allow, reconnectGrace: '600ms' });
      const watcher = await member(h, 'w');
      const seen = messages(watcher);
      const flapper = await member(h, 'f');
      const leaver = await member(h, 'l');
      await waitFor(() => seen.flatMap((m) => m.joined).length === 2, 'two joins');
      const before = seen.length;
      flapper.socket.disconnect();
      leaver.socket.disconnect();
      await delay(50);
      expect(h.presence.rooms.count('lobby'), 'held for the grace').to.equal(3);
      const back = await h.connect(auth('f', 'Web', { instanceId: flapper.session.instanceId, sessionId: flapper.session.sessionId }));
      expect(back.session.resumed).to.equal(true);
      const answer = await joined(back, 'lobby');
      expect(answer.count).to.equal(3);
      await waitFor(() => seen.some((message) => message.left.includes('l')), 'the one away leaves after the grace', 5000);
      const after = seen.slice(before);
      expect(after.flatMap((m) => m.left)).to.deep.equal(['l']);
      expect(after.flatMap((m) => m.joined)).to.deep.equal([]);
      expect(after.flatMap((m) => m.updated)).to.deep.equal([]);
      expect(h.presence.rooms.count('lobby')).to.equal(2);
    });
  });

  describe('held for the grace, then ended by the server', () => {
    it('a kick or a logout elsewhere of a device whose connection is held leaves at once, not at the end of the grace', async () => {
      const h = await start({ ...allow, reconnectGrace: '20s' });
      const watcher = await h.connect(auth('w', 'Web'));
      await joined(watcher, 'lobby');
      const seen = messages(watcher);
      const phone = await h.connect(auth('p', 'Android', { instanceId: 'phone' }));
      await joined(phone, 'lobby');
      await waitFor(() => seen.some((message) => message.joined.length > 0), 'p joined');
      phone.socket.disconnect();
      await delay(50);
      expect(h.presence.rooms.count('lobby'), 'held').to.equal(2);
      await h.presence.kick('p');
      await waitFor(() => seen.some((message) => message.left.includes('p')), 'the kick leaves', 3000);
      expect(h.presence.rooms.count('lobby')).to.equal(1);
    });

    it('concurrent joins waiting on canJoin cannot overshoot maxRoomsPerConnection', async () => {
      const h = await start({ canJoin: () => delay(50).then(() => true), maxRoomsPerConnection: 2, roomBatchInterval: 20 });
      const a = await h.connect(auth('a', 'Web'));
      const answers = await Promise.all(['r1', 'r2', 'r3'].map((room) => join(a, room)));
      expect(answers.filter((answer) => answer.ok)).to.have.length(2);
      expect(answers.filter((answer) => !answer.ok).map((answer) => (answer as { code: string }).code)).to.deep.equal(['TOO_MANY_ROOMS']);
    });
  });

  describe('the server API and events', () => {
    it('presence.join needs no canJoin and tells the client the room; presence.leave; room() counts and pages; room events fire', async () => {
      const h = await start({ roomBatchInterval: 20 });
      const events: [string, unknown][] = [];
      h.presence.on('room-occupied', (event) => events.push(['occupied', event]));
      h.presence.on('room-vacated', (event) => events.push(['vacated', event]));
      const changes: RoomChange[] = [];
      h.presence.on('room-change', (change) => changes.push(change));
      const devices = await Promise.all(['u1', 'u2', 'u3', 'u4', 'u5'].map((user) => h.connect(auth(user, 'Web'))));
      const seen = messages(devices[0]!);
      const sockets = [...h.io.of('/').sockets.values()];
      const socketOf = (d: Device) => sockets.find((s) => s.id === d.socket.id)!;
      const snapshot = await h.presence.join(socketOf(devices[0]!), 'team', { role: 'lead' });
      expect(snapshot).to.deep.include({ room: 'team', count: 1 });
      await waitFor(() => seen.length === 1, 'the room told');
      expect(seen[0]!.members!.map((m) => m.meta)).to.deep.equal([{ role: 'lead' }]);
      for (const d of devices.slice(1)) await h.presence.join(socketOf(d), 'team');
      await waitFor(() => changes.flatMap((change) => change.joined).length === 5, 'five joined');
      const room = h.presence.room('team');
      expect(await room.count()).to.equal(5);
      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const page: { members: { userId: string }[]; nextCursor: string | null; count: number } = await room.members({ limit: 2, cursor });
        expect(page.count).to.equal(5);
        pages.push(page.members.map((m) => m.userId));
        cursor = page.nextCursor;
      } while (cursor);
      expect(pages).to.deep.equal([['u1', 'u2'], ['u3', 'u4'], ['u5']]);
      for (const limit of [0, 1001, 1.5, '2']) {
        const caught = await room.members({ limit: limit as number }).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(caught, String(limit)).to.be.instanceOf(TypeError);
      }
      for (const d of devices) await h.presence.leave(socketOf(d), 'team');
      expect(await room.count()).to.equal(0);
      await waitFor(() => changes.flatMap((change) => change.left).length === 5, 'five left');
      expect(events).to.deep.equal([
        ['occupied', { room: 'team' }],
        ['vacated', { room: 'team' }],
      ]);
      expect(changes.flatMap((change) => change.joined.map((m) => m.userId))).to.deep.equal(['u1', 'u2', 'u3', 'u4', 'u5']);
      expect(() => h.presence.room('')).to.throw(TypeError, /1 to 128/);
      await h.presence.join({}, 'team').then(
        () => expect.fail('joined a non-socket'),
        (error: Error) => expect(error).to.be.instanceOf(TypeError),
      );
    });
  });

  describe('on a store that does not support rooms (Redis mode today)', () => {
    it('refuses joins UNSUPPORTED and presence.room() throws, naming the store', async () => {
      // A store shared by processes: everything a store needs, and no `rooms` capability.
      const sharedStore = (memory = new MemoryStore()): PresenceStore => coreStore(memory);
      const h = await start({ ...allow, store: sharedStore() });
      const a = await h.connect(auth('a', 'Web'));
      const answer = await join(a, 'lobby');
      expect(answer).to.include({ ok: false, code: 'UNSUPPORTED' });
      expect((answer as { message: string }).message).to.match(/not yet supported/);
      expect(() => h.presence.room('lobby')).to.throw(/not yet supported/);
      const presence = createPresence({ store: sharedStore() });
      expect(() => presence.room('lobby')).to.throw(/not yet supported/);
      await presence.close();
    });
  });
});
