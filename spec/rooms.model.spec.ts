// Model-based test of room membership: random joins, leaves, meta updates, closes within and after the grace, device ends
// (kick, logout) and custom-status changes, on a ManualClock; what each client holds (its join answer with every diff applied
// in order), what the backend's pages and room-change events say, must always equal a small reference model.

import { expect } from 'chai';
import fc from 'fast-check';
import { ManualClock } from '../lib/index.js';
import { RoomRegistry, type RoomConnection } from '../lib/rooms/index.js';
import type { RoomMember, RoomMessage } from '../lib/rooms/types.js';

const USERS = ['a', 'b', 'c', 'd'] as const;
const ROOMS = ['r1', 'r2'] as const;
const GRACE = 100;
const BATCH = 10;
const LIMIT = 2;

type Action =
  | { kind: 'connect'; user: number; device: number }
  | { kind: 'join'; conn: number; room: number; meta: number | undefined }
  | { kind: 'leave'; conn: number; room: number }
  | { kind: 'update'; conn: number; room: number; meta: number }
  | { kind: 'close'; conn: number; grace: boolean }
  | { kind: 'end-device'; user: number; device: number }
  | { kind: 'custom-status'; user: number; text: string | null }
  | { kind: 'tick'; ms: number };

export const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('connect' as const), user: fc.nat(3), device: fc.nat(1) }),
  fc.record({ kind: fc.constant('connect' as const), user: fc.nat(3), device: fc.nat(1) }),
  fc.record({ kind: fc.constant('join' as const), conn: fc.nat(5), room: fc.nat(1), meta: fc.option(fc.nat(3), { nil: undefined }) }),
  fc.record({ kind: fc.constant('join' as const), conn: fc.nat(5), room: fc.nat(1), meta: fc.option(fc.nat(3), { nil: undefined }) }),
  fc.record({ kind: fc.constant('leave' as const), conn: fc.nat(5), room: fc.nat(1) }),
  fc.record({ kind: fc.constant('update' as const), conn: fc.nat(5), room: fc.nat(1), meta: fc.nat(3) }),
  fc.record({ kind: fc.constant('close' as const), conn: fc.nat(5), grace: fc.boolean() }),
  fc.record({ kind: fc.constant('end-device' as const), user: fc.nat(3), device: fc.nat(1) }),
  fc.record({ kind: fc.constant('custom-status' as const), user: fc.nat(3), text: fc.constantFrom(null, 'x', 'y') }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.constantFrom(3, BATCH, 40, GRACE) }),
);

class Conn implements RoomConnection {
  open = true;
  /** Rooms this connection is in, by the model (kept while held for the grace). */
  readonly rooms = new Set<string>();
  /** When it joined each room, in join order (the core takes over the earliest held connection). */
  readonly joinedAt = new Map<string, number>();
  heldUntil = Infinity;
  constructor(
    readonly userId: string,
    readonly instanceId: string,
    readonly sessionId: string,
  ) {}
  get platform(): 'Web' {
    return 'Web';
  }
}

/** What one client holds of one room. */
interface ClientView {
  count: number;
  members: Map<string, RoomMember> | null;
}

/** A member as compared: devices as a set. */
function shape(member: { devices: readonly { instanceId: string }[]; meta: unknown; customStatus: string | null }): string {
  return JSON.stringify([[...new Set(member.devices.map((d) => d.instanceId))].sort(), member.meta, member.customStatus]);
}

export async function run(actions: Action[]): Promise<void> {
  const clock = new ManualClock();
  const customStatus = new Map<string, string | null>();
  const registry = new RoomRegistry<Conn>({
    clock,
    memberLimit: LIMIT,
    batchInterval: BATCH,
    maxRoomsPerConnection: 100,
    logger: { warn() {}, error: (...args: unknown[]) => expect.fail(`logged ${String(args[0])}`) },
    lookup: (userId) => ({ status: 'Online', customStatus: customStatus.get(userId) ?? null }),
  });
  const conns: Conn[] = [];
  const epochs = new Map<string, number>();
  let joins = 0;
  const audience = new Map<string, Set<Conn>>();
  const views = new Map<Conn, Map<string, ClientView>>();
  /** The model's meta of each member, by room then user. */
  const metas = new Map<string, Map<string, unknown>>(ROOMS.map((room) => [room, new Map()]));
  const backend = new Map<string, Map<string, RoomMember>>(ROOMS.map((room) => [room, new Map()]));
  registry.on('room-change', (change) => {
    const members = backend.get(change.room)!;
    for (const member of [...change.joined, ...change.updated]) members.set(member.userId, member);
    for (const userId of change.left) members.delete(userId);
  });

  const apply = (conn: Conn, message: RoomMessage): void => {
    const view = views.get(conn)?.get(message.room);
    expect(view, `${conn.sessionId} was sent ${message.room} while not in it`).to.not.equal(undefined);
    view!.count = message.count;
    if ('members' in message) view!.members = message.members ? new Map(message.members.map((m) => [m.userId, m])) : null;
    else if (view!.members) {
      for (const member of [...message.joined, ...message.updated]) view!.members.set(member.userId, member);
      for (const userId of message.left) view!.members.delete(userId);
    } else {
      expect(message.joined.length + message.updated.length + message.left.length, 'a diff to a client without a list').to.equal(0);
    }
  };
  registry.deliverWith({
    enter: (conn, room) => {
      if (!audience.has(room)) audience.set(room, new Set());
      audience.get(room)!.add(conn);
    },
    exit: (conn, room) => audience.get(room)?.delete(conn),
    broadcast: (room, message, except) => {
      for (const conn of audience.get(room) ?? []) if (!except.includes(conn)) apply(conn, message);
    },
    send: apply,
  });

  /** A connection is in the room, by the model: open and joined, or closed and held, within its grace. */
  const inRoom = (conn: Conn, room: string): boolean => conn.rooms.has(room) && (conn.open || clock.now() < conn.heldUntil);
  const model = (room: string): Map<string, string> => {
    const devices = new Map<string, Set<string>>();
    for (const conn of conns) {
      if (!inRoom(conn, room)) continue;
      if (!devices.has(conn.userId)) devices.set(conn.userId, new Set());
      devices.get(conn.userId)!.add(conn.instanceId);
    }
    const members = new Map<string, string>();
    for (const [userId, set] of devices) {
      members.set(userId, JSON.stringify([[...set].sort(), metas.get(room)!.get(userId) ?? null, customStatus.get(userId) ?? null]));
    }
    return members;
  };
  /** Members whose last connection went since the model last looked lose their meta. */
  const forgetGone = (): void => {
    for (const room of ROOMS) {
      const present = new Set(conns.filter((conn) => inRoom(conn, room)).map((conn) => conn.userId));
      for (const userId of [...metas.get(room)!.keys()]) if (!present.has(userId)) metas.get(room)!.delete(userId);
    }
  };
  const closeAudience = (conn: Conn): void => {
    for (const set of audience.values()) set.delete(conn);
    views.delete(conn);
  };

  const check = (): void => {
    for (let i = 0; registry.openBatches > 0; i++) {
      expect(i).to.be.below(100);
      clock.advance(BATCH);
      forgetGone();
    }
    for (const room of ROOMS) {
      const truth = model(room);
      expect(registry.count(room), `count of ${room}`).to.equal(truth.size);
      // The backend's pages: each member exactly once.
      const paged: string[] = [];
      let cursor = -1;
      for (;;) {
        const page = registry.page(room, 2, cursor);
        paged.push(...page.members.map((m) => m.userId));
        for (const member of page.members) expect(shape(member), `page ${member.userId}`).to.equal(truth.get(member.userId));
        if (page.nextCursor === null) break;
        cursor = Number(page.nextCursor);
      }
      expect([...paged].sort(), `pages of ${room}`).to.deep.equal([...truth.keys()].sort());
      const told = backend.get(room)!;
      expect([...told.keys()].sort(), `room-change of ${room}`).to.deep.equal([...truth.keys()].sort());
      for (const [userId, member] of told) expect(shape(member), `room-change ${userId}`).to.equal(truth.get(userId));
      // Every client in the room: its answer plus its diffs is the room.
      for (const conn of conns) {
        if (!conn.open || !conn.rooms.has(room)) continue;
        const view = views.get(conn)!.get(room)!;
        expect(view.count, `${conn.sessionId}'s count of ${room}`).to.equal(truth.size);
        if (truth.size > LIMIT) {
          expect(view.members, `${conn.sessionId}'s list of ${room} beyond the limit`).to.equal(null);
          continue;
        }
        expect(view.members, `${conn.sessionId}'s list of ${room}`).to.not.equal(null);
        const held = new Map([...view.members!].map(([userId, member]) => [userId, shape(member)]));
        expect(held, `${conn.sessionId}'s members of ${room}`).to.deep.equal(truth);
      }
    }
  };

  for (const step of actions) {
    switch (step.kind) {
      case 'connect': {
        const userId = USERS[step.user]!;
        const instanceId = `${userId}${step.device}`;
        const conn = new Conn(userId, instanceId, `${instanceId}#${epochs.get(instanceId) ?? 0}`);
        conns.push(conn);
        views.set(conn, new Map());
        break;
      }
      case 'join': {
        const conn = conns[step.conn];
        if (!conn?.open) break;
        const room = ROOMS[step.room]!;
        const meta = step.meta === undefined ? undefined : { n: step.meta };
        const answer = await registry.join(conn, room, meta);
        const wasMember = conns.some((other) => other !== conn && other.userId === conn.userId && inRoom(other, room)) || conn.rooms.has(room);
        // The model: a held connection of the same session in the room is taken over.
        // Only one: the one that joined first (another tab closed too keeps its own grace).
        const held = conns
          .filter((other) => !other.open && other.sessionId === conn.sessionId && inRoom(other, room))
          .sort((x, y) => x.joinedAt.get(room)! - y.joinedAt.get(room)!)[0];
        if (!conn.rooms.has(room)) held?.rooms.delete(room);
        if (!conn.rooms.has(room)) conn.joinedAt.set(room, joins++);
        conn.rooms.add(room);
        if (meta !== undefined) metas.get(room)!.set(conn.userId, meta);
        else if (!wasMember) metas.get(room)!.delete(conn.userId);
        const truth = model(room);
        expect(answer.count, 'join answer count').to.equal(truth.size);
        if (truth.size > LIMIT) expect(answer.members).to.equal(null);
        else expect(new Map(answer.members!.map((m) => [m.userId, shape(m)])), 'join answer').to.deep.equal(truth);
        views.get(conn)!.set(room, { count: answer.count, members: answer.members ? new Map(answer.members.map((m) => [m.userId, m])) : null });
        break;
      }
      case 'leave': {
        const conn = conns[step.conn];
        if (!conn?.open) break;
        const room = ROOMS[step.room]!;
        registry.leave(conn, room);
        conn.rooms.delete(room);
        views.get(conn)?.delete(room);
        forgetGone();
        break;
      }
      case 'update': {
        const conn = conns[step.conn];
        if (!conn?.open) break;
        const room = ROOMS[step.room]!;
        if (!conn.rooms.has(room)) {
          expect(() => registry.update(conn, room, { n: step.meta })).to.throw(/not in room/);
          break;
        }
        registry.update(conn, room, { n: step.meta });
        metas.get(room)!.set(conn.userId, { n: step.meta });
        break;
      }
      case 'close': {
        const conn = conns[step.conn];
        if (!conn?.open) break;
        conn.open = false;
        conn.heldUntil = step.grace ? clock.now() + GRACE : clock.now();
        closeAudience(conn);
        registry.connectionClosed(conn, step.grace ? GRACE : 0);
        forgetGone();
        break;
      }
      case 'end-device': {
        // A kick or a logout: the device's connections end at once, its held ones go, and its session is revoked.
        const instanceId = `${USERS[step.user]!}${step.device}`;
        for (const conn of conns) {
          if (conn.instanceId !== instanceId) continue;
          if (conn.open) {
            conn.open = false;
            closeAudience(conn);
            registry.connectionClosed(conn, 0);
          }
          conn.heldUntil = Math.min(conn.heldUntil, clock.now());
        }
        registry.deviceGone(USERS[step.user]!, instanceId);
        epochs.set(instanceId, (epochs.get(instanceId) ?? 0) + 1);
        forgetGone();
        break;
      }
      case 'custom-status': {
        const userId = USERS[step.user]!;
        customStatus.set(userId, step.text);
        registry.userChanged(userId, { status: 'Online', customStatus: step.text });
        break;
      }
      case 'tick':
        clock.advance(step.ms);
        forgetGone();
        break;
      default: {
        const unknown: never = step;
        throw new Error(`unknown action ${JSON.stringify(unknown)}`);
      }
    }
    // Sometimes look in the middle of a batch (diffs still waiting), always at the end.
    if (step.kind === 'tick') check();
  }
  check();
  registry.close();
}

describe('rooms: model-based membership', () => {
  it('what every client holds, the pages and the room-change events always equal the model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 10, maxLength: 60, size: 'max' }), (actions) => run(actions)),
      { numRuns: 500 },
    );
  });
});
