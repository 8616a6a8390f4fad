// MemoryStore: bounded caches (offline users, revoked sessions), late operations on replaced sessions, and stats that stay consistent.

import { expect } from 'chai';
import fc from 'fast-check';
import { createPresence, ManualClock, MemoryStore, PLATFORMS } from '../lib/index.js';
import { inMs } from './helpers/durations.js';
import type { Connection, PresenceOptions } from '../lib/index.js';
import { harness } from './helpers/engine-harness.js';

describe('MemoryStore', () => {
  describe('offline users (last seen, custom status) in a bounded LRU cache', () => {
    it('forgets the least recently used Offline users beyond maxOfflineUsers', async () => {
      const h = harness({ store: new MemoryStore({ maxOfflineUsers: 3 }) });
      for (let i = 1; i <= 5; i++) {
        const device = await h.connect(`u${i}`, 'Web');
        h.clock.advance(1000);
        await h.presence.engine.logout(device.connection);
      }
      const users = await h.presence.query(['u1', 'u2', 'u3', 'u4', 'u5']);
      expect(users.map((u) => u.lastSeen !== null)).to.deep.equal([false, false, true, true, true]);
      expect((await h.presence.stats()).users.Offline).to.equal(3);
      await h.close();
    });

    it('never forgets users who are logged in, however many there are', async () => {
      const h = harness({ store: new MemoryStore({ maxOfflineUsers: 1 }), loginPolicy: 'multi' });
      for (let i = 0; i < 20; i++) {
        const device = await h.connect(`u${i}`, 'Android');
        h.presence.engine.disconnect(device.connection, 'closed');
      }
      const users = await h.presence.query(Array.from({ length: 20 }, (_, i) => `u${i}`));
      expect(users.every((u) => u.status === 'PushOnline')).to.equal(true);
      expect((await h.presence.stats()).users).to.deep.equal({ Online: 0, PushOnline: 20, Offline: 0 });
      await h.close();
    });

    it('brings a remembered user back on login, with its sequence, last seen and custom status', async () => {
      const h = harness({ store: new MemoryStore({ maxOfflineUsers: 5 }) });
      await h.presence.setCustomStatus('u', 'away');
      const device = await h.connect('u', 'Web');
      await h.presence.engine.logout(device.connection);
      h.clock.advance(5000);
      await h.connect('u', 'Web');
      // Numbered from the clock at the first change (ms × 1000), then one more each, the remembered user included.
      const first = (h.clock.now() - 5000) * 1000;
      expect(h.events.map((e) => e.seq)).to.deep.equal([first, first + 1, first + 2]);
      expect(h.events[2]?.customStatus).to.equal('away');
      expect((await h.presence.stats()).users).to.deep.equal({ Online: 1, PushOnline: 0, Offline: 0 });
      await h.close();
    });

    it('numbers a user the cache forgot above every number it had, even on a clock that stands still', async () => {
      const h = harness({ store: new MemoryStore({ maxOfflineUsers: 1 }) });
      for (let i = 0; i < 3; i++) await h.presence.engine.logout((await h.connect('u', 'Web')).connection);
      const before = Math.max(...h.takeEvents().map((e) => e.seq));
      // Another user going Offline evicts u; the clock has not moved.
      await h.presence.engine.logout((await h.connect('other', 'Web')).connection);
      expect((await h.presence.query(['u']))[0]?.lastSeen).to.equal(null);
      h.takeEvents();
      await h.connect('u', 'Web');
      expect(h.takeEvents()[0]?.seq).to.be.greaterThan(before);
      await h.close();
    });

    it('does not refresh a user’s place in the cache when it is only queried', async () => {
      const h = harness({ store: new MemoryStore({ maxOfflineUsers: 2 }) });
      for (const userId of ['a', 'b']) await h.presence.engine.logout((await h.connect(userId, 'Web')).connection);
      await h.presence.query(['a']);
      await h.presence.engine.logout((await h.connect('c', 'Web')).connection);
      expect((await h.presence.query(['a', 'b', 'c'])).map((u) => u.lastSeen !== null)).to.deep.equal([false, true, true]);
      await h.close();
    });
  });

  describe('revoked sessions', () => {
    it('remembers at most maxRevokedSessions (the oldest revocation is forgotten first)', async () => {
      const h = harness({ store: new MemoryStore({ maxRevokedSessions: 2 }), loginPolicy: 'multi' });
      const devices = [];
      for (const platform of ['Web', 'Mac', 'Linux']) devices.push(await h.connect('u', platform, { instanceId: platform }));
      for (const device of devices) await h.presence.kick('u', { instanceId: device.connection.instanceId });
      const [web, mac, linux] = devices as [(typeof devices)[number], (typeof devices)[number], (typeof devices)[number]];
      expect((await h.refusal('u', 'Mac', { instanceId: 'Mac', sessionId: mac.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      expect((await h.refusal('u', 'Linux', { instanceId: 'Linux', sessionId: linux.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      // The first revocation fell out of the cache: that session is unknown now, so it is a fresh login.
      const back = await h.reconnect(web);
      expect(back.resumed).to.equal(false);
      expect(back.connection.sessionId).to.not.equal(web.connection.sessionId);
      await h.close();
    });

    it("keeps revocations per user: another user's churn never evicts them; bounds are kept by the heaviest user forgetting their oldest", async () => {
      const store = new MemoryStore({ maxRevokedSessions: 6, maxRevokedSessionsPerUser: 4 });
      const h = harness({ store, pushOnlineTtl: 10_000 });
      // The victim's phone is kicked once by a new login of theirs.
      const phone = await h.connect('victim', 'Android', { instanceId: 'old' });
      await h.connect('victim', 'Android', { instanceId: 'new' });
      // Two churners kick themselves many times over (each login displaces the one before).
      const churned: Record<string, string[]> = { c1: [], c2: [] };
      for (let i = 0; i < 40; i++) {
        for (const userId of ['c1', 'c2'] as const) churned[userId]!.push((await h.connect(userId, 'Web', { instanceId: `w${i}` })).connection.sessionId);
      }
      const refused = async (userId: string, instanceId: string, sessionId: string): Promise<boolean> =>
        (await h.refusal(userId, userId === 'victim' ? 'Android' : 'Web', { instanceId, sessionId }).catch(() => undefined))?.code === 'SESSION_REVOKED';
      expect(await refused('victim', 'old', phone.connection.sessionId), "the victim's kicked phone stays refused").to.equal(true);
      // The newest of the churners' own are kept, their oldest forgotten: never more than the bounds.
      expect(store['revoked']?.size).to.be.at.most(6);
      const c1 = churned.c1!;
      expect(await refused('c1', 'w38', c1[38]!)).to.equal(true);
      expect(await refused('c1', 'w0', c1[0]!)).to.equal(false);
      // Past the PushOnline TTL everything is forgotten, and the memory with it.
      h.clock.advance(10_001);
      expect(store['revoked']?.size).to.equal(0);
      expect(store['revoked']?.['users'].size).to.equal(0);
      await h.close();
    });

    it('remembers a revocation for the PushOnline TTL, on the injected clock (even within one real millisecond)', async () => {
      const h = harness({ pushOnlineTtl: 10_000 });
      const device = await h.connect('u', 'Web', { instanceId: 'w' });
      await h.presence.engine.logout(device.connection);
      expect((await h.refusal('u', 'Web', { instanceId: 'w', sessionId: device.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      h.clock.advance(10_000);
      expect((await h.refusal('u', 'Web', { instanceId: 'w', sessionId: device.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      h.clock.advance(1);
      const back = await h.reconnect(device);
      expect(back.resumed).to.equal(false);
      await h.close();
    });
  });

  describe('operations on a session that was replaced', () => {
    it('ignores a late PushOnline or removal for an old session of the same instance', async () => {
      const clock = new ManualClock();
      const store = new MemoryStore({ maxOfflineUsers: 10, maxRevokedSessions: 10 });
      const presence = createPresence({ clock, store });
      const old = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, () => {});
      const fresh = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, () => {});
      const at = clock.now();
      expect(await store.markPushOnline({ userId: 'u', instanceId: 'a', sessionId: old.connection.sessionId, at, lastSeen: at })).to.equal(null);
      expect(await store.remove({ userId: 'u', instanceId: 'a', sessionId: old.connection.sessionId, at, lastSeen: at, revoke: false })).to.equal(null);
      expect(await store.markPushOnline({ userId: 'nobody', instanceId: 'a', sessionId: fresh.connection.sessionId, at, lastSeen: at })).to.equal(null);
      const [user] = await store.get(['u']);
      expect(user?.instances.map((i) => [i.instanceId, i.sessionId, i.status])).to.deep.equal([['a', fresh.connection.sessionId, 'Online']]);
      // Marking an already PushOnline device again changes nothing.
      expect(await store.markPushOnline({ userId: 'u', instanceId: 'a', sessionId: fresh.connection.sessionId, at, lastSeen: at })).to.not.equal(null);
      expect(await store.markPushOnline({ userId: 'u', instanceId: 'a', sessionId: fresh.connection.sessionId, at, lastSeen: at })).to.equal(null);
      expect(await store.get(['nobody'])).to.deep.equal([undefined]);
      await presence.close();
    });

    it('close() stops the PushOnline expiry timer', async () => {
      const clock = new ManualClock();
      const presence = createPresence({ clock, store: new MemoryStore({ maxOfflineUsers: 10, maxRevokedSessions: 10 }) });
      const device = await presence.engine.connect({ userId: 'u', platform: 'iPad' }, () => {});
      presence.engine.disconnect(device.connection, 'closed');
      expect(clock.pending).to.be.greaterThan(0);
      await presence.close();
      expect(clock.pending).to.equal(0);
    });
  });

  describe('stats', () => {
    type Op =
      | { kind: 'login'; user: number; platform: number; instance: number }
      | { kind: 'close'; pick: number }
      | { kind: 'logout'; pick: number }
      | { kind: 'kick'; user: number }
      | { kind: 'custom'; user: number }
      | { kind: 'advance'; ms: number };

    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('login' as const), user: fc.nat(5), platform: fc.nat(PLATFORMS.length - 1), instance: fc.nat(2) }),
      fc.record({ kind: fc.constant('close' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('logout' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('kick' as const), user: fc.nat(5) }),
      fc.record({ kind: fc.constant('custom' as const), user: fc.nat(7) }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 1500 }) }),
    );

    it('property: after any operations the counters agree with what query answers, and Offline users stay within the bound', async () => {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom('single', 'dual', 'triple', 'multi' as const), fc.array(op, { maxLength: 40 }), async (loginPolicy, ops) => {
          const clock = new ManualClock();
          const options: PresenceOptions = {
            clock,
            loginPolicy,
            maxInstancesPerPlatform: 2,
            heartbeatTimeout: inMs({ mobile: 400, desktop: 400, web: 60, miniProgram: 60 }),
            pushOnlineTtl: 1000,
            store: new MemoryStore({ maxOfflineUsers: 3, maxRevokedSessions: 50 }),
          };
          const presence = createPresence(options);
          const open: Connection[] = [];
          const userIds = Array.from({ length: 8 }, (_, i) => `u${i}`);
          try {
            for (const step of ops) {
              if (step.kind === 'login') {
                const { connection } = await presence.engine.connect(
                  { userId: `u${step.user}`, platform: PLATFORMS[step.platform], instanceId: `i${step.instance}` },
                  () => {},
                );
                open.push(connection);
              } else if (step.kind === 'close' || step.kind === 'logout') {
                const live = open.filter((connection) => connection.open);
                const connection = live[step.pick % Math.max(1, live.length)];
                if (connection && step.kind === 'close') presence.engine.disconnect(connection, 'closed');
                else if (connection) await presence.engine.logout(connection);
              } else if (step.kind === 'kick') {
                await presence.kick(`u${step.user}`);
              } else if (step.kind === 'custom') {
                await presence.setCustomStatus(`u${step.user}`, 'hi');
              } else {
                clock.advance(step.ms);
              }
              const users = await presence.query(userIds);
              const stats = await presence.stats();
              const online = users.filter((u) => u.status === 'Online').length;
              const pushOnline = users.filter((u) => u.status === 'PushOnline').length;
              expect(stats.users.Online).to.equal(online);
              expect(stats.users.PushOnline).to.equal(pushOnline);
              // Offline users the store remembers: those with a last seen time or a custom status.
              const remembered = users.filter((u) => u.status === 'Offline' && (u.lastSeen !== null || u.customStatus !== null)).length;
              expect(stats.users.Offline).to.equal(remembered);
              expect(stats.users.Offline).to.be.at.most(3);
              const devices = users.flatMap((u) => u.instances ?? []);
              expect(stats.instances).to.deep.equal({
                Online: devices.filter((d) => d.status === 'Online').length,
                PushOnline: devices.filter((d) => d.status === 'PushOnline').length,
              });
              for (const platform of PLATFORMS) {
                const mine = devices.filter((d) => d.platform === platform);
                expect(stats.platforms[platform]).to.deep.equal({
                  Online: mine.filter((d) => d.status === 'Online').length,
                  PushOnline: mine.filter((d) => d.status === 'PushOnline').length,
                });
              }
            }
          } finally {
            await presence.close();
          }
        }),
        { numRuns: 300 },
      );
    });
  });
});
