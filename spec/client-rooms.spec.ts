// The client helper's rooms: join answers a live room (members, count, events), leave and update, and the rejoin after a reconnect.

import { expect } from 'chai';
import { createPresenceClient, PresenceClientError, type PresenceClient, type PresenceClientOptions, type RoomChangeEvent } from '../lib/client/index.js';
import type { SessionPayload } from '../lib/index.js';
import { next, startHarness, waitFor, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';

describe('client helper: rooms', () => {
  let harness: Harness | undefined;
  const clients: PresenceClient[] = [];

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness({ loginPolicy: 'multi', canJoin: () => true, roomBatchInterval: 20, ...options });
    return harness;
  }

  async function client(userId: string, options: Partial<PresenceClientOptions> = {}): Promise<PresenceClient> {
    const created = createPresenceClient({
      url: harness!.url,
      auth: { token: `tok:${userId}` },
      platform: 'Web',
      ...options,
      socketOptions: { transports: ['websocket'], forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100, ...options.socketOptions },
    });
    clients.push(created);
    await next<SessionPayload>(created, 'session');
    return created;
  }

  afterEach(async () => {
    for (const created of clients.splice(0)) created.close();
    await harness?.close();
    harness = undefined;
  });

  it('join resolves a live room: members and count follow joins, updates and leaves, with events', async () => {
    await start();
    const ann = await client('ann');
    const room = await ann.join('lobby', { name: 'Ann' });
    expect(room.count).to.equal(1);
    expect(room.members!.map((m) => [m.userId, m.meta])).to.deep.equal([['ann', { name: 'Ann' }]]);
    const events: string[] = [];
    room.on('join', (member) => events.push(`join ${member.userId}`));
    room.on('update', (member) => events.push(`update ${member.userId} ${JSON.stringify(member.meta)}`));
    room.on('leave', (userId) => events.push(`leave ${userId}`));
    const changes: RoomChangeEvent[] = [];
    room.on('change', (change) => changes.push(change));

    const bob = await client('bob');
    const bobs = await bob.join('lobby', { name: 'Bob' });
    expect(bobs.count).to.equal(2);
    await waitFor(() => room.count === 2, 'bob in ann’s room');
    await bobs.update({ name: 'Bob', typing: true });
    await waitFor(() => events.length === 2, 'the update');
    await bobs.leave();
    await waitFor(() => room.count === 1, 'bob gone');
    expect(events).to.deep.equal(['join bob', 'update bob {"name":"Bob","typing":true}', 'leave bob']);
    expect(room.members!.map((m) => m.userId)).to.deep.equal(['ann']);
    expect(changes.map((change) => change.count)).to.deep.equal([2, 2, 1]);
  });

  it('a refused join rejects with the code', async () => {
    await start({ canJoin: (_userId: string, room: string) => room !== 'secret' });
    const ann = await client('ann');
    const error = await ann.join('secret').then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).to.be.instanceOf(PresenceClientError);
    expect((error as PresenceClientError).code).to.equal('FORBIDDEN');
  });

  it('rejoins its rooms after a reconnect: within the reconnect grace the others see no leave and no join', async () => {
    await start({ reconnectGrace: '2s' });
    const watcher = await client('w');
    const watched = await watcher.join('lobby');
    const events: string[] = [];
    watched.on('join', (member) => events.push(`join ${member.userId}`));
    watched.on('leave', (userId) => events.push(`leave ${userId}`));
    const dan = await client('dan');
    const room = await dan.join('lobby', { seat: 3 });
    await waitFor(() => watched.count === 2, 'dan joined');
    const rejoined = new Promise<RoomChangeEvent>((resolve) => room.once('change', resolve));
    dan.socket.io.engine.close(); // the network drops; socket.io-client reconnects by itself
    const session = await next<SessionPayload>(dan, 'session');
    expect(session.resumed).to.equal(true);
    const change = await rejoined;
    expect(change.count).to.equal(2);
    expect(room.members!.find((m) => m.userId === 'dan')!.meta).to.deep.equal({ seat: 3 });
    // Long enough for any leave or join to have reached the watcher.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(events).to.deep.equal(['join dan']);
    expect(harness!.presence.rooms.count('lobby')).to.equal(2);
  });
});
