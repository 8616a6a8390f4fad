// The room core's compact state: a user resting in one room keeps their status on their member, a connection in one room keeps
// it in its own field; these walk the switches between the compact and the general forms (a second room, a leave, a close).

import { expect } from 'chai';
import { ManualClock } from '../lib/index.js';
import { RoomError, RoomRegistry, type RoomConnection } from '../lib/rooms/index.js';

let sessions = 0;

function conn(userId: string, sessionId = `s${++sessions}`): RoomConnection {
  return { userId, sessionId, instanceId: `i-${sessionId}`, platform: 'Web', roomState: undefined };
}

function registry(): { rooms: RoomRegistry; clock: ManualClock } {
  const clock = new ManualClock();
  const rooms = new RoomRegistry({
    clock,
    memberLimit: 100,
    batchInterval: 10,
    maxRoomsPerConnection: 10,
    logger: { warn() {}, error: (...args: unknown[]) => expect.fail(`logged ${String(args[0])}`) },
    lookup: () => ({ status: 'Online', customStatus: null }),
  });
  rooms.deliverWith({ enter() {}, exit() {}, broadcast() {}, send() {} });
  return { rooms, clock };
}

/** What a newcomer to the room is told: its count (invisible members left out) and who is listed. */
async function seenBy(rooms: RoomRegistry, room: string): Promise<{ count: number; listed: string[] }> {
  const snapshot = await rooms.join(conn(`viewer-${++sessions}`), room, undefined);
  return { count: snapshot.count, listed: (snapshot.members ?? []).map((member) => member.userId) };
}

describe('rooms: compact state', () => {
  it('keeps invisible members out of client counts as a user goes from two rooms to one and to none', async () => {
    const { rooms } = registry();
    const ghost = conn('ghost');
    await rooms.join(ghost, 'r1', undefined);
    await rooms.join(ghost, 'r2', undefined);
    rooms.userChanged('ghost', { availability: 'invisible' });
    expect(await seenBy(rooms, 'r1')).to.deep.include({ count: 1 });
    expect(rooms.count('r1')).to.equal(2);
    // Down to one room: the member alone carries the user from here.
    rooms.leave(ghost, 'r2');
    expect(rooms.count('r2')).to.equal(0);
    rooms.userChanged('ghost', { availability: 'available' });
    const back = await seenBy(rooms, 'r1');
    expect(back.count).to.equal(3);
    expect(back.listed).to.include('ghost');
    rooms.userChanged('ghost', { availability: 'invisible' });
    expect((await seenBy(rooms, 'r1')).count).to.equal(3);
    // Leaving while invisible takes them out of the invisible count too.
    rooms.leave(ghost, 'r1');
    expect(rooms.hasUser('ghost')).to.equal(false);
    expect(await seenBy(rooms, 'r1')).to.deep.include({ count: 4 });
    expect(rooms.count('r1')).to.equal(4);
  });

  it('carries the status of a user resting in one room into the next room they join', async () => {
    const { rooms } = registry();
    await rooms.join(conn('u'), 'r1', undefined);
    // The store's lookup would answer null: the event is newer and must not be lost at the second join.
    rooms.userChanged('u', { customStatus: 'away for lunch' });
    const snapshot = await rooms.join(conn('u'), 'r2', undefined);
    expect(snapshot.members?.find((member) => member.userId === 'u')?.customStatus).to.equal('away for lunch');
    expect(rooms.page('r1', 10, -1).members[0]?.customStatus).to.equal('away for lunch');
  });

  it('refuses a join in flight on a connection that closed meanwhile, held or not', async () => {
    const { rooms } = registry();
    // A re-join of a room the connection is in (a meta change), the connection closing without a grace.
    const first = conn('a');
    await rooms.join(first, 'r1', { seat: 1 });
    let open!: () => void;
    const rejoin = rooms.join(first, 'r1', { seat: 2 }, () => new Promise<void>((resolve) => (open = resolve)));
    await Promise.resolve();
    rooms.connectionClosed(first, 0);
    open();
    const refused = await rejoin.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(RoomError).with.property('code', 'NOT_LOGGED_IN');
    expect(rooms.count('r1')).to.equal(0);
    // A first join of a second room, the connection closing within its grace (its first room held).
    const second = conn('b');
    await rooms.join(second, 'r1', undefined);
    const join = rooms.join(second, 'r2', undefined, () => new Promise<void>((resolve) => (open = resolve)));
    await Promise.resolve();
    rooms.connectionClosed(second, 1000);
    open();
    const refusedToo = await join.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusedToo).to.be.instanceOf(RoomError).with.property('code', 'NOT_LOGGED_IN');
    expect(rooms.count('r1')).to.equal(1);
    expect(rooms.count('r2')).to.equal(0);
    expect(rooms.roomsOf(second)).to.equal(1);
    // Closed with nothing held, then asked to join again while the first join still waits: the first is still refused as closed.
    const third = conn('d');
    const waiting = rooms.join(third, 'r1', undefined, () => new Promise<void>((resolve) => (open = resolve)));
    await Promise.resolve();
    rooms.connectionClosed(third, 1000);
    const release = open;
    const again = rooms.join(third, 'r2', undefined);
    release();
    const refusedAgain = await waiting.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusedAgain).to.be.instanceOf(RoomError).with.property('code', 'NOT_LOGGED_IN');
    await again;
    expect(rooms.count('r1')).to.equal(1);
  });

  it('hands a connection held in two rooms over to its return, and lets the rest go when the grace ends', async () => {
    const { rooms, clock } = registry();
    const old = conn('c', 'same-session');
    await rooms.join(old, 'r1', undefined);
    await rooms.join(old, 'r2', undefined);
    rooms.connectionClosed(old, 100);
    const back = conn('c', 'same-session');
    await rooms.join(back, 'r1', undefined);
    expect(rooms.connectionsIn('r1', 'c')).to.deep.equal([back]);
    clock.advance(100);
    expect(rooms.count('r1')).to.equal(1);
    expect(rooms.count('r2')).to.equal(0);
    expect(rooms.hasUser('c')).to.equal(true);
    rooms.leave(back, 'r1');
    expect(rooms.hasUser('c')).to.equal(false);
    expect(rooms.roomsOf(back)).to.equal(0);
  });
});
