// express-presence/testing: the store conformance kit. The behaviour every PresenceStore must have, as one suite you run
// against your own store with mocha (or any runner with describe/it/afterEach globals, or pass them in): the suite our
// MemoryStore and RedisStore pass, multi-process cases included when the factory gives a sibling store.
//
//   import { storeConformance } from 'express-presence/testing';
//   storeConformance('MyStore', { create: () => new MyStore(), sibling: (store) => new MyStore(sameData(store)) });

import { expect } from './expect.js';
import { createPresence, PLATFORMS, PresenceError, type Platform, type PresenceChange, type PresenceOptions, type PresenceStore } from '../index.js';
import { kickOldestBeyondLimit } from '../core/policy.js';
import type { Presence } from '../presence.js';
import type { LoginPolicy } from '../core/types.js';

/** The test functions the suite is declared with (mocha's, jest's and vitest's globals have this shape, as has node:test). */
export interface SuiteFunctions {
  describe(name: string, body: () => void): unknown;
  it(name: string, body: () => Promise<void>): unknown;
  afterEach(body: () => Promise<void>): unknown;
}

function suiteFunctions(given: SuiteFunctions | undefined): SuiteFunctions {
  if (given) return given;
  const globals = globalThis as unknown as Partial<SuiteFunctions>;
  if (typeof globals.describe !== 'function' || typeof globals.it !== 'function' || typeof globals.afterEach !== 'function') {
    throw new TypeError(
      'storeConformance() declares its cases with describe/it/afterEach: run it under mocha (or jest, vitest with globals), or pass them: storeConformance(name, factory, { describe, it, afterEach }) from node:test',
    );
  }
  return globals as SuiteFunctions;
}

/** Store options every store takes, for the cases that need small bounds. */
export interface StoreLimits {
  /** Revoked sessions kept per user. */
  maxRevokedSessionsPerUser?: number;
}

export interface StoreFactory {
  /** A fresh, empty store (its own namespace). */
  create(limits?: StoreLimits): PresenceStore | Promise<PresenceStore>;
  /** A second store over the same data, as another process would have; omit for single-process stores. */
  sibling?(store: PresenceStore): PresenceStore;
  /** Releases what create() made, after the presence using it closed. */
  cleanup?(): Promise<void>;
}

const noop = () => {};

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 4000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function storeConformance(name: string, factory: StoreFactory, functions?: SuiteFunctions): void {
  if (typeof name !== 'string' || name === '') throw new TypeError('storeConformance() takes a name for the suite, then a factory { create() }');
  if (typeof factory !== 'object' || factory === null || typeof factory.create !== 'function') {
    throw new TypeError('storeConformance() takes a factory { create(limits?) => PresenceStore, sibling?(store), cleanup?() }');
  }
  const { describe, it, afterEach } = suiteFunctions(functions);
  describe(`store conformance: ${name}`, function (this: unknown) {
    // Some cases wait for timers and Redis round trips; mocha's default 2 s is short for a remote store.
    (this as { timeout?: (ms: number) => void } | undefined)?.timeout?.(30_000);
    const opened: Presence[] = [];

    async function open(options: PresenceOptions = {}, limits?: StoreLimits): Promise<{ presence: Presence; changes: PresenceChange[] }> {
      const store = await factory.create(limits);
      const presence = createPresence({ ...options, store });
      opened.push(presence);
      // A store that starts asynchronously is ready before a case calls it directly (presence.config.store).
      await presence.ready();
      const changes: PresenceChange[] = [];
      presence.on('change', (change) => changes.push(change));
      return { presence, changes };
    }

    afterEach(async function () {
      for (const presence of opened.splice(0)) await presence.close();
      await factory.cleanup?.();
    });

    it('logs a device in, closes it to PushOnline, and resumes its session without a new session', async function () {
      const { presence, changes } = await open();
      const first = await presence.engine.connect({ userId: 'u1', platform: 'Android', instanceId: 'a1', version: '1.2' }, noop);
      expect(first.resumed).to.equal(false);
      const [online] = await presence.query(['u1']);
      expect(online?.status).to.equal('Online');
      expect(online?.instances).to.have.length(1);
      expect(online?.instances?.[0]).to.include({ instanceId: 'a1', platform: 'Android', status: 'Online', version: '1.2' });
      presence.engine.disconnect(first.connection, 'closed');
      await until(async () => (await presence.query(['u1']))[0]?.status === 'PushOnline', 'PushOnline');
      const again = await presence.engine.connect({ userId: 'u1', platform: 'Android', instanceId: 'a1', sessionId: first.connection.sessionId }, noop);
      expect(again.resumed).to.equal(true);
      expect(again.connection.sessionId).to.equal(first.connection.sessionId);
      // Seq: one more per change from the user's first (which starts from a clock, README "Sequence numbers").
      const seq0 = changes[0]?.seq ?? NaN;
      expect(changes.map((c) => `${c.action}/${c.reason}/${c.instanceStatus}/${c.seq - seq0 + 1}`)).to.deep.equal([
        'Login/Register/Online/1',
        'Disconnect/LinkClose/PushOnline/2',
        'Login/Register/Online/3',
      ]);
    });

    it('numbers each user’s changes strictly increasing, one more per change, and above them all in a store that forgot the user', async function () {
      // A fresh, empty store over the same users: what a restarted process (memory) or an empty Redis restart sees.
      const seen = new Map<string, number[]>();
      const note = (changes: PresenceChange[]) => {
        for (const change of changes.splice(0)) seen.set(change.userId, [...(seen.get(change.userId) ?? []), change.seq]);
      };
      const users = ['u1', 'u2', 'u3'];
      for (let round = 0; round < 3; round++) {
        const before = new Map([...seen].map(([userId, seqs]) => [userId, Math.max(...seqs)]));
        // A restarted process needs more than a millisecond to start again; the memory store's clock counts milliseconds.
        await new Promise((resolve) => setTimeout(resolve, 5));
        const { presence, changes } = await open({ loginPolicy: 'single' });
        for (const [i, userId] of users.entries()) {
          const phone = await presence.engine.connect({ userId, platform: 'Android', instanceId: `a${round}` }, noop);
          presence.engine.disconnect(phone.connection, 'closed');
          await until(async () => (await presence.query([userId]))[0]?.status === 'PushOnline', `${userId} PushOnline`);
          await presence.engine.connect({ userId, platform: 'Android', instanceId: `a${round}`, sessionId: phone.connection.sessionId }, noop);
          const web = await presence.engine.connect({ userId, platform: 'Web', instanceId: `w${round}` }, noop);
          if (i % 2 === 0) await presence.kick(userId);
          else await presence.engine.logout(web.connection);
        }
        const fresh = new Map<string, number[]>();
        for (const change of changes) fresh.set(change.userId, [...(fresh.get(change.userId) ?? []), change.seq]);
        for (const userId of users) {
          const seqs = fresh.get(userId) ?? [];
          expect(seqs.length, `${userId}'s changes in round ${round}`).to.be.greaterThan(3);
          expect(seqs, `${userId} in round ${round}: one more per change`).to.deep.equal(seqs.map((_, k) => (seqs[0] as number) + k));
          expect(Number.isSafeInteger(seqs[seqs.length - 1]), 'a safe integer').to.equal(true);
          const earlier = before.get(userId);
          if (earlier !== undefined) expect(seqs[0], `${userId}'s first seq in round ${round} above every earlier one`).to.be.greaterThan(earlier);
        }
        note(changes);
        await presence.close();
      }
    });

    it('refuses a session revoked by logout or kick, and starts afresh on an unknown one', async function () {
      const { presence } = await open();
      const a = await presence.engine.connect({ userId: 'u1', platform: 'Web', instanceId: 'w1' }, noop);
      await presence.engine.logout(a.connection);
      let refused: unknown;
      await presence.engine
        .connect({ userId: 'u1', platform: 'Web', instanceId: 'w1', sessionId: a.connection.sessionId }, noop)
        .catch((error: unknown) => (refused = error));
      expect(refused).to.be.instanceOf(PresenceError).with.property('code', 'SESSION_REVOKED');

      const b = await presence.engine.connect({ userId: 'u1', platform: 'iPad', instanceId: 'p1' }, noop);
      expect(await presence.kick('u1')).to.deep.equal([{ platform: 'iPad', instanceId: 'p1' }]);
      refused = undefined;
      await presence.engine
        .connect({ userId: 'u1', platform: 'iPad', instanceId: 'p1', sessionId: b.connection.sessionId }, noop)
        .catch((error: unknown) => (refused = error));
      expect(refused).to.be.instanceOf(PresenceError).with.property('code', 'SESSION_REVOKED');

      const fresh = await presence.engine.connect({ userId: 'u1', platform: 'iPad', instanceId: 'p1', sessionId: 'never-issued' }, noop);
      expect(fresh.resumed).to.equal(false);
      expect(fresh.connection.sessionId).to.not.equal('never-issued');
    });

    it("keeps revoked sessions per user: another user's churn evicts none of them; beyond the per-user bound the churner's own oldest go", async function () {
      const { presence } = await open({}, { maxRevokedSessionsPerUser: 3 });
      const refused = async (userId: string, platform: string, instanceId: string, sessionId: string): Promise<boolean> => {
        try {
          const back = await presence.engine.connect({ userId, platform, instanceId, sessionId }, noop);
          presence.engine.disconnect(back.connection, 'closed');
          return false;
        } catch (error) {
          if (error instanceof PresenceError && error.code === 'SESSION_REVOKED') return true;
          throw error;
        }
      };
      // The victim: a phone kicked by the user's new phone, and a tab logged out.
      const phone = await presence.engine.connect({ userId: 'victim', platform: 'Android', instanceId: 'old' }, noop);
      await presence.engine.connect({ userId: 'victim', platform: 'Android', instanceId: 'new' }, noop);
      const tab = await presence.engine.connect({ userId: 'victim', platform: 'Web', instanceId: 'tab' }, noop);
      await presence.engine.logout(tab.connection);
      // The churner kicks themselves over and over: far more revocations than any one user may keep.
      const churned: string[] = [];
      for (let i = 0; i < 30; i++)
        churned.push((await presence.engine.connect({ userId: 'churner', platform: 'Web', instanceId: `w${i}` }, noop)).connection.sessionId);
      expect(await refused('victim', 'Android', 'old', phone.connection.sessionId), 'the kicked phone').to.equal(true);
      expect(await refused('victim', 'Web', 'tab', tab.connection.sessionId), 'the logged-out tab').to.equal(true);
      // Another user presenting the victim's revoked session never gets it back: refused (MemoryStore), or a fresh session of
      // their own (RedisStore keeps revocations with their user, in the user's hash slot).
      const replay = await presence.engine
        .connect({ userId: 'replayer', platform: 'Android', instanceId: 'old', sessionId: phone.connection.sessionId }, noop)
        .catch((error: unknown) => error);
      if (replay instanceof PresenceError) expect(replay.code).to.equal('SESSION_REVOKED');
      else {
        const replayed = replay as Awaited<ReturnType<typeof presence.engine.connect>>;
        expect(replayed.resumed, "another user replaying the victim's session").to.equal(false);
        expect(replayed.connection.sessionId).to.not.equal(phone.connection.sessionId);
        presence.engine.disconnect(replayed.connection, 'closed');
      }
      // The churner's newest revocations hold; their oldest were forgotten to keep within the bound.
      expect(await refused('churner', 'Web', 'w28', churned[28]!)).to.equal(true);
      expect(await refused('churner', 'Web', 'w26', churned[26]!)).to.equal(true);
      expect(await refused('churner', 'Web', 'w0', churned[0]!)).to.equal(false);
    });

    for (const loginPolicy of ['single', 'dual', 'triple', 'multi'] as LoginPolicy[]) {
      it(`decides the ${loginPolicy} policy for every ordered pair of platforms as the policy function does`, async function () {
        const { presence } = await open({ loginPolicy });
        let n = 0;
        for (const first of PLATFORMS) {
          for (const second of PLATFORMS) {
            const userId = `pair-${n++}`;
            await presence.engine.connect({ userId, platform: first, instanceId: 'first' }, noop);
            const { kicked } = await presence.engine.connect({ userId, platform: second, instanceId: 'second' }, noop);
            const expected = kickOldestBeyondLimit([{ platform: first, instanceId: 'first', order: 1 }], second, {
              loginPolicy,
              maxInstancesPerPlatform: 1,
              maxWebInstances: 1,
            });
            expect(kicked, `${first} then ${second}`).to.deep.equal(expected.map(({ platform, instanceId }) => ({ platform, instanceId })));
            const [user] = await presence.query([userId]);
            expect(user?.instances?.map((i) => i.instanceId).sort(), `${first} then ${second}`).to.deep.equal(
              expected.length ? ['second'] : ['first', 'second'],
            );
          }
        }
      });
    }

    it('kicks the oldest beyond maxInstancesPerPlatform and maxWebInstances, PushOnline devices counted', async function () {
      const { presence } = await open({ loginPolicy: 'multi', maxInstancesPerPlatform: 2, maxWebInstances: 2 });
      const a1 = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a1' }, noop);
      presence.engine.disconnect(a1.connection, 'closed');
      await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a2' }, noop);
      const third = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a3' }, noop);
      expect(third.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'a1' }]);
      await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w1' }, noop);
      await presence.engine.connect({ userId: 'u', platform: 'MiniProgram', instanceId: 'm1' }, noop);
      const web = await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w2' }, noop);
      expect(web.kicked).to.deep.equal([{ platform: 'Web', instanceId: 'w1' }]);
      const [user] = await presence.query(['u']);
      expect(user?.instances?.map((i) => i.instanceId).sort()).to.deep.equal(['a2', 'a3', 'm1', 'w2']);
    });

    it('lists kicks oldest first, a fresh login of the same instance displacing its own earlier session', async function () {
      const { presence } = await open({ loginPolicy: 'single', maxWebInstances: 2 });
      await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w1' }, noop);
      await presence.engine.connect({ userId: 'u', platform: 'MiniProgram', instanceId: 'm1' }, noop);
      const again = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'm1' }, noop);
      expect(again.kicked).to.deep.equal([
        { platform: 'Web', instanceId: 'w1' },
        { platform: 'MiniProgram', instanceId: 'm1' },
      ]);
      const [user] = await presence.query(['u']);
      expect(user?.instances?.map((i) => `${i.platform}/${i.instanceId}`)).to.deep.equal(['Android/m1']);
    });

    it('tells the displaced connection who displaced it', async function () {
      const { presence } = await open();
      const notices: unknown[] = [];
      await presence.engine.connect({ userId: 'u', platform: 'Mac', instanceId: 'mac' }, (notice) => notices.push(notice));
      await presence.engine.connect({ userId: 'u', platform: 'iPhone', instanceId: 'phone' }, noop);
      await until(() => notices.length > 0, 'the kick notice');
      expect(notices).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'iPhone', instanceId: 'phone' } }]);
    });

    it('admin-kicks one platform or one instance, revoking only those', async function () {
      const { presence, changes } = await open({ loginPolicy: 'multi' });
      await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, noop);
      await presence.engine.connect({ userId: 'u', platform: 'Windows', instanceId: 'w' }, noop);
      await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'b' }, noop);
      expect(await presence.kick('u', { platform: 'Windows' })).to.deep.equal([{ platform: 'Windows', instanceId: 'w' }]);
      expect(await presence.kick('u', { instanceId: 'b' })).to.deep.equal([{ platform: 'Web', instanceId: 'b' }]);
      expect(await presence.kick('nobody')).to.deep.equal([]);
      const [user] = await presence.query(['u']);
      expect(user?.instances?.map((i) => i.instanceId)).to.deep.equal(['a']);
      expect(changes.slice(-2).map((c) => `${c.action}/${c.reason}/${c.instanceStatus}`)).to.deep.equal(['Logout/Kicked/Offline', 'Logout/Kicked/Offline']);
    });

    it('ignores a late close from a session that was replaced', async function () {
      const { presence, changes } = await open();
      const old = await presence.engine.connect({ userId: 'u', platform: 'Linux', instanceId: 'same' }, noop);
      await presence.engine.connect({ userId: 'u', platform: 'Linux', instanceId: 'same' }, noop);
      const before = changes.length;
      presence.engine.disconnect(old.connection, 'closed');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(changes.length).to.equal(before);
      expect((await presence.query(['u']))[0]?.status).to.equal('Online');
    });

    it('keeps custom status, last seen and counts', async function () {
      const { presence } = await open({ loginPolicy: 'multi' });
      await presence.setCustomStatus('u', 'in a meeting ☕');
      const a = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, noop);
      await presence.engine.connect({ userId: 'v', platform: 'Web', instanceId: 'w' }, noop);
      presence.engine.disconnect(a.connection, 'closed');
      await until(async () => (await presence.stats()).instances.PushOnline === 1, 'one PushOnline device');
      const stats = await presence.stats();
      expect(stats.users).to.include({ Online: 1, PushOnline: 1 });
      expect(stats.instances).to.deep.equal({ Online: 1, PushOnline: 1 });
      expect(stats.platforms.Android).to.deep.equal({ Online: 0, PushOnline: 1 });
      expect(stats.platforms.Web).to.deep.equal({ Online: 1, PushOnline: 0 });
      const [u, nobody] = await presence.query(['u', 'nobody']);
      expect(u?.customStatus).to.equal('in a meeting ☕');
      expect(u?.lastSeen).to.be.a('string');
      expect(nobody).to.deep.equal({
        userId: 'nobody',
        status: 'Offline',
        lastSeen: null,
        customStatus: null,
        availability: 'available',
        idleSince: null,
        instances: [],
      });
      await presence.setCustomStatus('u', null);
      expect((await presence.query(['u'], { detail: false }))[0]).to.deep.equal({
        userId: 'u',
        status: 'PushOnline',
        lastSeen: u?.lastSeen,
        customStatus: null,
        availability: 'available',
        idleSince: null,
      });
    });

    it('keeps availability: change events carry it, invisible freezes what others see, a choice is activity', async function () {
      const { presence, changes } = await open({ loginPolicy: 'multi' });
      const store = presence.config.store;
      const availability: string[] = [];
      presence.on('availability', (change) => availability.push(`${change.previousAvailability}>${change.availability}/${change.reason}`));
      await presence.setCustomStatus('u', 'before');
      const a = await presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, noop);
      expect(await presence.setAvailability('u', 'dnd')).to.include({ availability: 'dnd', previousAvailability: 'available', reason: 'set' });
      expect(await presence.setAvailability('u', 'dnd'), 'the same choice again changes nothing').to.equal(null);
      expect((await presence.query(['u'], { detail: false }))[0]).to.include({ availability: 'dnd', idleSince: null });
      // Idleness never overrides a chosen dnd.
      expect(await store.setAvailability?.({ kind: 'idle', userId: 'u', at: Date.now(), idleSince: Date.now() })).to.equal(null);
      const wentInvisible = Date.now();
      await presence.setAvailability('u', 'invisible');
      await presence.setCustomStatus('u', 'while invisible');
      presence.engine.disconnect(a.connection, 'closed');
      await until(() => changes.some((c) => c.reason === 'LinkClose'), 'the close');
      expect(changes.at(-1)).to.include({ availability: 'invisible' });
      const [truth] = await presence.engine.truths(['u']);
      expect(truth).to.include({ availability: 'invisible', customStatus: 'while invisible', frozenCustomStatus: 'before' });
      expect(truth?.frozenLastSeen).to.be.within(wentInvisible - 5, Date.now());
      expect((await presence.query(['u'], { detail: false }))[0]).to.include({ availability: 'invisible', customStatus: 'while invisible' });
      await presence.setAvailability('u', 'available');
      expect(availability).to.deep.equal(['available>dnd/set', 'dnd>invisible/set', 'invisible>available/set']);
    });

    it('takes automatic away only over a chosen available and after the last recorded activity; activity ends it', async function () {
      const { presence } = await open();
      const store = presence.config.store;
      const setAvailability = store.setAvailability?.bind(store);
      if (!setAvailability) throw new Error('the store lacks setAvailability');
      await presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'w' }, noop);
      const t = Date.now();
      await setAvailability({ kind: 'activity', userId: 'u', at: t });
      expect(await setAvailability({ kind: 'idle', userId: 'u', at: t + 10, idleSince: t - 1 }), 'an activity came after idleSince').to.equal(null);
      const idle = await setAvailability({ kind: 'idle', userId: 'u', at: t + 10, idleSince: t });
      expect(idle?.state).to.include({ availability: 'available', idleSince: t });
      expect(idle?.previousAvailability).to.equal('available');
      expect((await presence.query(['u'], { detail: false }))[0]).to.include({ availability: 'away', idleSince: new Date(t).toISOString() });
      expect(await setAvailability({ kind: 'idle', userId: 'u', at: t + 20, idleSince: t + 5 }), 'already idle').to.equal(null);
      const back = await setAvailability({ kind: 'activity', userId: 'u', at: t + 30 });
      expect(back?.previousAvailability).to.equal('away');
      expect(back?.state.idleSince).to.equal(null);
      expect(await setAvailability({ kind: 'activity', userId: 'u', at: t + 40 }), 'activity while available changes nothing').to.equal(null);
      expect(await setAvailability({ kind: 'idle', userId: 'nobody', at: t, idleSince: t }), 'an unknown user').to.equal(null);
    });

    it("lets a fresh login made before the device's current state began yield to it (a late attempt), the device untouched", async function () {
      const { presence } = await open({ loginPolicy: 'multi' });
      const store = presence.config.store;
      const t = Date.now();
      const base = {
        userId: 'late',
        platform: 'Windows',
        instanceId: 'pc',
        resumeSessionId: undefined,
        version: undefined,
        limits: { loginPolicy: 'multi', maxInstancesPerPlatform: 1, maxWebInstances: 1 },
        owner: presence.engine.owner,
      } as const;
      expect(await store.login({ ...base, newSessionId: 's-current', at: t })).to.include({ outcome: 'created' });
      const late = await store.login({ ...base, newSessionId: 's-late', at: t - 1000 });
      expect(late.outcome, "a login older than the device's session").to.equal('revoked');
      expect((await store.get(['late']))[0]?.instances.map((instance) => instance.sessionId)).to.deep.equal(['s-current']);
      // One made after it displaces it, as the policy says.
      const later = await store.login({ ...base, newSessionId: 's-later', at: t + 1 });
      expect(later.outcome).to.equal('created');
      expect(later.outcome === 'created' && later.change.kicked.map((kicked) => kicked.sessionId)).to.deep.equal(['s-current']);
      expect((await store.get(['late']))[0]?.instances.map((instance) => instance.sessionId)).to.deep.equal(['s-later']);
    });

    it('answers a custom status past its expiry as none, and clears only the status that expired', async function () {
      const { presence } = await open();
      const store = presence.config.store;
      const t = Date.now();
      await store.setCustomStatus({ userId: 'u', customStatus: 'short', at: t, expiresAt: t + 150 });
      expect((await store.get(['u']))[0]).to.include({ customStatus: 'short', customStatusExpiresAt: t + 150 });
      expect(await store.setCustomStatus({ userId: 'u', customStatus: null, at: t, ifExpiresAt: t + 999 }), 'another expiry').to.equal(null);
      await store.setCustomStatus({ userId: 'v', customStatus: 'long', at: t, expiresAt: t + 60_000 });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const [u, v] = await store.get(['u', 'v']);
      expect(u?.customStatus, 'expired').to.equal(null);
      expect(v?.customStatus).to.equal('long');
      expect(await store.setCustomStatus({ userId: 'u', customStatus: null, at: Date.now(), ifExpiresAt: t + 150 })).to.not.equal(null);
      // A new status without a ttl does not expire.
      await store.setCustomStatus({ userId: 'v', customStatus: 'kept', at: t });
      expect((await store.get(['v']))[0]?.customStatusExpiresAt ?? null).to.equal(null);
    });

    it('expires a PushOnline device after the TTL, once', async function () {
      const { presence, changes } = await open({ pushOnlineTtl: 300 });
      const a = await presence.engine.connect({ userId: 'u', platform: 'iPhone', instanceId: 'i' }, noop);
      presence.engine.disconnect(a.connection, 'closed');
      await until(() => changes.some((c) => c.reason === 'Expired'), 'the expiry', 5000);
      expect((await presence.query(['u']))[0]?.status).to.equal('Offline');
      expect(changes.filter((c) => c.reason === 'Expired')).to.have.length(1);
    });

    it('never exceeds the policy when logins race', async function () {
      const store = await factory.create();
      const presences = [createPresence({ store })];
      if (factory.sibling) presences.push(createPresence({ store: factory.sibling(store) }));
      opened.push(...presences);
      const platforms: Platform[] = ['Android', 'iPhone', 'Windows', 'Mac', 'Web', 'MiniProgram', 'Linux', 'iPad'];
      for (let round = 0; round < 20; round++) {
        const userId = `race-${round}`;
        await Promise.all(
          platforms.map((platform, i) =>
            (presences[i % presences.length] as Presence).engine.connect({ userId, platform, instanceId: `${platform}-${round}` }, noop),
          ),
        );
        const [user] = await (presences[0] as Presence).query([userId]);
        expect(user?.instances, `round ${round}`).to.have.length(1);
      }
    });

    // Multi-process cases: two presences over one shared store (the factory's sibling), as two processes would be.
    // Declared only for a factory with a sibling: a single-process store has nothing to show here.
    if (factory.sibling)
      describe('across processes (with a sibling store)', function () {
        /** This process (a) and another one (b) over the same data; b's engine answers for devices a holds. */
        async function pair(options: PresenceOptions = {}): Promise<{ a: Presence; b: Presence }> {
          const store = await factory.create();
          const a = createPresence({ ...options, store });
          const b = createPresence({ ...options, store: factory.sibling!(store) });
          opened.push(a, b);
          return { a, b };
        }

        it('answers a query on either process for a device the other holds, and sees its close', async function () {
          const { a, b } = await pair();
          const phone = await a.engine.connect({ userId: 'mp-q', platform: 'Android', instanceId: 'p1' }, noop);
          const [seen] = await b.query(['mp-q']);
          expect(seen?.status).to.equal('Online');
          expect(seen?.instances?.[0]).to.include({ instanceId: 'p1', platform: 'Android', status: 'Online' });
          a.engine.disconnect(phone.connection, 'closed');
          await until(async () => (await b.query(['mp-q']))[0]?.status === 'PushOnline', 'the other process to see the phone PushOnline');
        });

        it('tells a device on one process it was displaced by a login on the other (LoginElsewhere, with by), once', async function () {
          const { a, b } = await pair({ loginPolicy: 'single' });
          const told: string[] = [];
          await a.engine.connect({ userId: 'mp-k', platform: 'Android', instanceId: 'old' }, (notice) =>
            told.push(`${notice.reason}/${notice.by?.instanceId ?? ''}`),
          );
          const login = await b.engine.connect({ userId: 'mp-k', platform: 'iPhone', instanceId: 'new' }, noop);
          expect(login.kicked.map((k) => k.instanceId)).to.deep.equal(['old']);
          await until(() => told.length > 0, 'the displaced device to be told');
          await new Promise((resolve) => setTimeout(resolve, 100));
          expect(told).to.deep.equal(['LoginElsewhere/new']);
          const [user] = await a.query(['mp-k']);
          expect(user?.instances?.map((instance) => instance.instanceId)).to.deep.equal(['new']);
        });

        it('ends a device on one process by an admin kick made on the other, and refuses its session afterwards', async function () {
          const { a, b } = await pair();
          const told: string[] = [];
          const tab = await a.engine.connect({ userId: 'mp-a', platform: 'Web', instanceId: 'tab' }, (notice) => told.push(notice.reason));
          const kicked = await b.kick('mp-a');
          expect(kicked.map((k) => k.instanceId)).to.deep.equal(['tab']);
          await until(() => told.length > 0, 'the kicked tab to be told');
          expect(told).to.deep.equal(['AdminKick']);
          expect((await b.query(['mp-a']))[0]?.status).to.equal('Offline');
          let code: string | undefined;
          try {
            await a.engine.connect({ userId: 'mp-a', platform: 'Web', instanceId: 'tab', sessionId: tab.connection.sessionId }, noop);
          } catch (error) {
            code = (error as { code?: string }).code;
          }
          expect(code, 'the kicked session resumed').to.equal('SESSION_REVOKED');
        });
      });
  });
}
