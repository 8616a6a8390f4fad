// Persistence hooks: a MemoryStore keeps PushOnline devices, sessions and last seen across restarts, with no ghost Online.

import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createPresence, ManualClock, MemoryStore, PresenceError, type PersistenceBatch, type PersistedState, type PresenceChange } from '../lib/index.js';
import { sqlitePersistence } from '../lib/sqlite/index.js';

const noop = () => {};

async function until(condition: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A persistence that keeps its rows in a Map, like a database would. */
function mapPersistence() {
  const users = new Map<string, PersistenceBatch['users'][number]>();
  const revoked = new Map<string, number>();
  const batches: PersistenceBatch[] = [];
  return {
    batches,
    users,
    flushInterval: 100,
    load(): PersistedState {
      return {
        users: [...users.values()].map((user) => structuredClone(user)),
        revokedSessions: [...revoked].map(([sessionId, expiresAt]) => ({ sessionId, expiresAt })),
      };
    },
    save(batch: PersistenceBatch) {
      batches.push(structuredClone(batch));
      for (const user of batch.users) users.set(user.userId, structuredClone(user));
      for (const session of batch.revokedSessions) revoked.set(session.sessionId, session.expiresAt);
    },
  };
}

describe('persistence hooks', function () {
  it('saves each revoked session with its user and restores it per user; one saved without a user is refused for any user', async function () {
    const clock = new ManualClock();
    const batches: PersistenceBatch[] = [];
    const saving = {
      flushInterval: 100,
      load: (): PersistedState => ({ users: [] }),
      save: (batch: PersistenceBatch) => void batches.push(structuredClone(batch)),
    };
    const first = createPresence({ clock, store: new MemoryStore({ persistence: saving }) });
    const tab = await first.engine.connect({ userId: 'alice', platform: 'Web', instanceId: 'tab' }, noop);
    await first.engine.logout(tab.connection);
    await first.close();
    const saved = batches.flatMap((batch) => batch.revokedSessions);
    expect(saved).to.deep.equal([{ userId: 'alice', sessionId: tab.connection.sessionId, expiresAt: clock.now() + 604_800_000 }]);

    const { userId: _userId, ...withoutUser } = saved[0]!;
    const restoring = (revokedSessions: PersistedState['revokedSessions']) => ({ load: (): PersistedState => ({ users: [], revokedSessions }), save: noop });
    for (const [label, revokedSessions] of [
      ['with its user', saved],
      ['without a user', [withoutUser]],
    ] as const) {
      const second = createPresence({ clock, store: new MemoryStore({ persistence: restoring(revokedSessions) }) });
      let refused: unknown;
      await second.engine
        .connect({ userId: 'alice', platform: 'Web', instanceId: 'tab', sessionId: tab.connection.sessionId }, noop)
        .catch((error: unknown) => (refused = error));
      expect(refused, label).to.be.instanceOf(PresenceError).with.property('code', 'SESSION_REVOKED');
      await second.close();
    }
  });

  it('brings back PushOnline devices with their sessions and last seen, and closes devices that were Online', async function () {
    const clock = new ManualClock();
    const persistence = mapPersistence();
    const first = createPresence({ clock, loginPolicy: 'multi', store: new MemoryStore({ persistence }) });
    const phone = await first.engine.connect({ userId: 'alice', platform: 'iPhone', instanceId: 'phone' }, noop);
    const pc = await first.engine.connect({ userId: 'alice', platform: 'Mac', instanceId: 'pc' }, noop);
    const web = await first.engine.connect({ userId: 'bob', platform: 'Web', instanceId: 'tab' }, noop);
    first.engine.disconnect(phone.connection, 'closed');
    clock.advance(5000);
    await first.engine.logout(web.connection);
    clock.advance(100);
    expect(persistence.users.get('alice')?.instances.map((i) => `${i.instanceId}:${i.status}`)).to.deep.equal(['phone:PushOnline', 'pc:Online']);
    const lastSeenBefore = (await first.query(['bob']))[0]?.lastSeen;

    // The process dies without closing: whatever was saved is all there is.
    const changes: PresenceChange[] = [];
    const second = createPresence({ clock, loginPolicy: 'multi', store: new MemoryStore({ persistence }) });
    second.on('change', (change) => changes.push(change));
    const [alice, bob] = await second.query(['alice', 'bob']);
    expect(alice?.status).to.equal('PushOnline');
    expect(alice?.instances?.map((i) => `${i.instanceId}:${i.status}`)).to.deep.equal(['phone:PushOnline']);
    expect(bob).to.include({ status: 'Offline', lastSeen: lastSeenBefore });
    expect(changes.map((c) => `${c.userId}/${c.instanceId}/${c.action}/${c.reason}/${c.instanceStatus}`)).to.deep.equal([
      'alice/pc/Disconnect/LinkClose/Offline',
    ]);
    // Alice's saved sequence (her first three changes) may miss changes made after the last save: brought back, it starts again
    // from the clock, above every number of the first process.
    expect(persistence.users.get('alice')?.seq).to.equal(Date.UTC(2026, 0, 1) * 1000 + 2);
    expect(changes[0]?.seq).to.equal(clock.now() * 1000);

    const resumed = await second.engine.connect({ userId: 'alice', platform: 'iPhone', instanceId: 'phone', sessionId: phone.connection.sessionId }, noop);
    expect(resumed.resumed).to.equal(true);
    let refused: unknown;
    await second.engine
      .connect({ userId: 'bob', platform: 'Web', instanceId: 'tab', sessionId: web.connection.sessionId }, noop)
      .catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(PresenceError).with.property('code', 'SESSION_REVOKED');
    void pc;
    await second.close();
  });

  it('keeps the PushOnline TTL running across the restart', async function () {
    const clock = new ManualClock();
    const persistence = mapPersistence();
    const first = createPresence({ clock, pushOnlineTtl: 10_000, store: new MemoryStore({ persistence }) });
    const phone = await first.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, noop);
    first.engine.disconnect(phone.connection, 'closed');
    clock.advance(6000);
    const second = createPresence({ clock, pushOnlineTtl: 10_000, store: new MemoryStore({ persistence }) });
    const expired: PresenceChange[] = [];
    second.on('change', (change) => expired.push(change));
    expect((await second.query(['u']))[0]?.status).to.equal('PushOnline');
    clock.advance(3999);
    expect(expired).to.have.length(0);
    clock.advance(1);
    expect(expired.map((c) => `${c.action}/${c.reason}`)).to.deep.equal(['Logout/Expired']);
    await second.close();
  });

  it('numbers changes after a crash above those the last save missed (seq never goes back)', async function () {
    const clock = new ManualClock();
    const persistence = mapPersistence();
    const first = createPresence({ clock, loginPolicy: 'multi', store: new MemoryStore({ persistence }) });
    const seen: number[] = [];
    first.on('change', (change) => seen.push(change.seq));
    const phone = await first.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, noop);
    clock.advance(100);
    await until(() => persistence.batches.length > 0, 'the first save');
    // Three more changes, then the process dies before its next save.
    first.engine.disconnect(phone.connection, 'closed');
    const web = await first.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w' }, noop);
    await first.engine.logout(web.connection);
    expect(persistence.users.get('u')?.seq).to.equal(seen[0]);
    expect(seen).to.have.length(4);
    clock.advance(1);
    const second = createPresence({ clock, loginPolicy: 'multi', store: new MemoryStore({ persistence }) });
    const later: number[] = [];
    second.on('change', (change) => later.push(change.seq));
    await second.engine.connect({ userId: 'u', platform: 'Mac', instanceId: 'm' }, noop);
    // The phone saved Online is closed at the restart, then the Mac logs in: both above every number of the first process.
    expect(later).to.have.length(2);
    expect(Math.min(...later)).to.be.greaterThan(Math.max(...seen));
    await second.close();
  });

  it('writes behind in batches, never for heartbeats, and retries a failed save', async function () {
    const clock = new ManualClock();
    const persistence = mapPersistence();
    let fail = true;
    const save = persistence.save.bind(persistence);
    persistence.save = (batch: PersistenceBatch) => {
      if (fail) throw new Error('database is down');
      save(batch);
    };
    const errors: unknown[] = [];
    const presence = createPresence({
      clock,
      logger: { warn: noop, error: (...args: unknown[]) => errors.push(args) },
      store: new MemoryStore({ persistence }),
    });
    await presence.query([]);
    const { connection } = await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w' }, noop);
    await presence.engine.connect({ userId: 'v', platform: 'Web', instanceId: 'w' }, noop);
    clock.advance(100);
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).to.have.length(1);
    fail = false;
    clock.advance(100);
    await new Promise((resolve) => setImmediate(resolve));
    expect(persistence.batches).to.have.length(1);
    expect(persistence.batches[0]?.users.map((u) => u.userId).sort()).to.deep.equal(['u', 'v']);
    for (let i = 0; i < 1000; i++) presence.engine.heartbeat(connection);
    clock.advance(500);
    await new Promise((resolve) => setImmediate(resolve));
    expect(persistence.batches).to.have.length(1);
    await presence.close();
  });

  it('refuses a malformed persistence with a TypeError', function () {
    expect(() => new MemoryStore({ persistence: { load: () => ({ users: [] }) } as never })).to.throw(TypeError, /persistence must be an object/);
    expect(() => new MemoryStore({ persistence: { load: () => ({ users: [] }), save: noop, flushInterval: 0 } })).to.throw(TypeError, /flushInterval/);
  });

  describe('SQLite (better-sqlite3)', function () {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'presence-sqlite-'))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('a process killed with SIGKILL and started again keeps PushOnline devices and sessions, with no ghost Online', async function () {
      this.timeout(20_000);
      const file = join(dir, 'presence.db');
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'persist-child.ts'), file], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const sessions = await new Promise<{ phone: string; tablet: string; kicked: string }>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string));
        });
        child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
      });
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));

      const db = new Database(file);
      const changes: PresenceChange[] = [];
      const presence = createPresence({ loginPolicy: 'multi', store: new MemoryStore({ persistence: sqlitePersistence(db, { flushInterval: 20 }) }) });
      presence.on('change', (change) => changes.push(change));
      const [alice, bob] = await presence.query(['alice', 'bob']);
      expect(alice?.customStatus).to.equal('on the train');
      expect(alice?.instances?.map((i) => `${i.platform}/${i.instanceId}/${i.status}`).sort()).to.deep.equal([
        'Android/phone/PushOnline',
        'iPad/tablet/PushOnline',
      ]);
      expect(alice?.status).to.equal('PushOnline');
      expect(bob?.status).to.equal('Offline');
      expect(changes.map((c) => `${c.instanceId}/${c.reason}/${c.instanceStatus}`).sort()).to.deep.equal([
        'pc/LinkClose/Offline',
        'phone/LinkClose/PushOnline',
      ]);

      const tablet = await presence.engine.connect({ userId: 'alice', platform: 'iPad', instanceId: 'tablet', sessionId: sessions.tablet }, noop);
      expect(tablet.resumed).to.equal(true);
      let refused: unknown;
      await presence.engine
        .connect({ userId: 'bob', platform: 'Web', instanceId: 'tab', sessionId: sessions.kicked }, noop)
        .catch((error: unknown) => (refused = error));
      expect(refused).to.be.instanceOf(PresenceError).with.property('code', 'SESSION_REVOKED');
      await presence.close();
      db.close();
    });
  });
});
