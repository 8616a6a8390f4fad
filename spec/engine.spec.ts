// The presence engine against SPEC.md's transition table, event fields, last seen, custom status, queries and stats, on a ManualClock.

import { expect } from 'chai';
import { createPresence, ManualClock, MemoryStore, PLATFORMS, PresenceError } from '../lib/index.js';
import type { EndNotice, Platform, PlatformClass, PresenceChange, PresenceStore, StoreLoginRequest, StoreLoginResult } from '../lib/index.js';
import { harness, iso } from './helpers/engine-harness.js';

const SECOND = 1000;
const DAY = 24 * 3600 * SECOND;

const CLASS_OF: Record<Platform, PlatformClass> = {
  Android: 'mobile',
  iPhone: 'mobile',
  iPad: 'mobile',
  Windows: 'desktop',
  Mac: 'desktop',
  Linux: 'desktop',
  Web: 'web',
  MiniProgram: 'miniProgram',
};

/** Every platform, plus the iOS alias (which is iPhone). */
const NAMES: { name: string; platform: Platform }[] = [...PLATFORMS.map((platform) => ({ name: platform, platform })), { name: 'iOS', platform: 'iPhone' }];

/** SPEC.md's default heartbeat timeouts. */
const DEFAULT_HEARTBEAT_TIMEOUT: Record<PlatformClass, number> = { mobile: 400 * SECOND, desktop: 400 * SECOND, web: 60 * SECOND, miniProgram: 60 * SECOND };

const isMobile = (platform: Platform): boolean => CLASS_OF[platform] === 'mobile';

/**
 * The memory store numbers a user's first change from its clock (ms × 1000, README "Sequence numbers"), then adds one per
 * change: with the harness's clock at its start, the nth change of a user is SEQ0 + n.
 */
const SEQ0 = new ManualClock().now() * 1000 - 1;

/** The event fields a transition must carry, by value (seq counted from SEQ0). */
function fields(event: PresenceChange | undefined): Partial<PresenceChange> {
  if (!event) return {};
  const {
    userId,
    instanceId,
    platform,
    action,
    reason,
    instanceStatus,
    userStatus,
    previousUserStatus,
    kicked,
    seq,
    at,
    lastSeen,
    customStatus,
    availability,
    idleSince,
  } = event;
  return {
    userId,
    instanceId,
    platform,
    action,
    reason,
    instanceStatus,
    userStatus,
    previousUserStatus,
    kicked,
    seq: seq - SEQ0,
    at,
    lastSeen,
    customStatus,
    availability,
    idleSince,
  };
}

describe('PresenceEngine', () => {
  describe('transition table, for every platform (and the iOS alias)', () => {
    for (const { name, platform } of NAMES) {
      const cls = CLASS_OF[platform];
      const mobile = isMobile(platform);

      describe(`${name} (${cls})`, () => {
        it('login → Online, with a Login/Register event', async () => {
          const h = harness();
          const start = h.clock.now();
          const device = await h.connect('u', name, { instanceId: 'd', version: '1.2.3' });
          expect(device.resumed).to.equal(false);
          expect(device.kicked).to.deep.equal([]);
          expect(device.connection).to.include({ userId: 'u', instanceId: 'd', platform, open: true });
          expect(device.connection.sessionId).to.be.a('string').and.not.equal('');
          // The interval told to clients is at most half the class's timeout.
          expect(device.heartbeatInterval).to.equal(Math.min(120 * SECOND, DEFAULT_HEARTBEAT_TIMEOUT[cls] / 2));
          expect(h.takeEvents().map(fields)).to.deep.equal([
            {
              userId: 'u',
              instanceId: 'd',
              platform,
              action: 'Login',
              reason: 'Register',
              instanceStatus: 'Online',
              userStatus: 'Online',
              previousUserStatus: 'Offline',
              kicked: [],
              seq: 1,
              at: start,
              lastSeen: iso(start),
              customStatus: null,
              availability: 'available',
              idleSince: null,
            },
          ]);
          expect(h.events[0]?.version).to.equal('1.2.3');
          expect(await h.user('u')).to.deep.equal({
            userId: 'u',
            status: 'Online',
            lastSeen: iso(start),
            customStatus: null,
            availability: 'available',
            idleSince: null,
            instances: [{ instanceId: 'd', platform, status: 'Online', since: iso(start), version: '1.2.3' }],
          });
          await h.close();
        });

        it('logout → gone at once, session revoked, other connections of the device told', async () => {
          const h = harness();
          const device = await h.connect('u', name, { instanceId: 'd' });
          const tab = await h.reconnect(device);
          h.clock.advance(5 * SECOND);
          h.takeEvents();
          await h.presence.engine.logout(device.connection);
          expect(h.takeEvents().map(fields)).to.deep.equal([
            {
              userId: 'u',
              instanceId: 'd',
              platform,
              action: 'Logout',
              reason: 'Unregister',
              instanceStatus: 'Offline',
              userStatus: 'Offline',
              previousUserStatus: 'Online',
              kicked: [],
              seq: 2,
              at: h.clock.now(),
              lastSeen: iso(h.clock.now()),
              customStatus: null,
              availability: 'available',
              idleSince: null,
            },
          ]);
          expect(await h.user('u')).to.deep.include({ status: 'Offline', lastSeen: iso(h.clock.now()), instances: [] });
          expect(device.notices).to.deep.equal([]);
          expect(tab.notices).to.deep.equal([{ reason: 'Logout' }]);
          expect(device.connection.open).to.equal(false);
          expect(tab.connection.open).to.equal(false);
          const refused = await h.refusal('u', name, { instanceId: 'd', sessionId: device.connection.sessionId });
          expect(refused).to.be.instanceOf(PresenceError);
          expect(refused.code).to.equal('SESSION_REVOKED');
          // Nothing further happens to it.
          h.clock.advance(30 * DAY);
          expect(h.takeEvents()).to.deep.equal([]);
          await h.close();
        });

        it(`connection closed → ${mobile ? 'PushOnline' : 'gone'} at once, no end notice, session not revoked`, async () => {
          const h = harness();
          const device = await h.connect('u', name, { instanceId: 'd' });
          h.clock.advance(7 * SECOND);
          h.takeEvents();
          h.presence.engine.disconnect(device.connection, 'closed');
          const closedAt = h.clock.now();
          expect(h.takeEvents().map(fields)).to.deep.equal([
            {
              userId: 'u',
              instanceId: 'd',
              platform,
              action: 'Disconnect',
              reason: 'LinkClose',
              instanceStatus: mobile ? 'PushOnline' : 'Offline',
              userStatus: mobile ? 'PushOnline' : 'Offline',
              previousUserStatus: 'Online',
              kicked: [],
              seq: 2,
              at: closedAt,
              lastSeen: iso(closedAt),
              customStatus: null,
              availability: 'available',
              idleSince: null,
            },
          ]);
          expect(device.notices).to.deep.equal([]);
          const found = await h.user('u');
          expect(found.status).to.equal(mobile ? 'PushOnline' : 'Offline');
          expect(found.lastSeen).to.equal(iso(closedAt));
          expect(found.instances).to.deep.equal(mobile ? [{ instanceId: 'd', platform, status: 'PushOnline', since: iso(closedAt), version: null }] : []);
          // A second close of the same connection is ignored.
          h.presence.engine.disconnect(device.connection, 'closed');
          expect(h.takeEvents()).to.deep.equal([]);
          h.clock.advance(SECOND);
          const back = await h.reconnect(device);
          if (mobile) {
            expect(back.resumed).to.equal(true);
            expect(back.connection.sessionId).to.equal(device.connection.sessionId);
          } else {
            // Gone, but not revoked: the old session is unknown, so this is a fresh login.
            expect(back.resumed).to.equal(false);
            expect(back.connection.sessionId).to.not.equal(device.connection.sessionId);
          }
          expect(back.kicked).to.deep.equal([]);
          expect(h.takeEvents().map((e) => [e.action, e.reason, e.previousUserStatus, e.userStatus, e.seq - SEQ0])).to.deep.equal([
            ['Login', 'Register', mobile ? 'PushOnline' : 'Offline', 'Online', 3],
          ]);
          await h.close();
        });

        it(`no heartbeat within ${DEFAULT_HEARTBEAT_TIMEOUT[cls] / SECOND} s → ${mobile ? 'PushOnline' : 'gone'}, told TimeOut; heartbeats keep it alive`, async () => {
          const h = harness();
          const timeout = DEFAULT_HEARTBEAT_TIMEOUT[cls];
          const device = await h.connect('u', name, { instanceId: 'd' });
          // Heartbeats at intervals just short of the timeout keep it Online for ten timeouts.
          for (let i = 0; i < 10; i++) {
            h.clock.advance(timeout - 1);
            h.presence.engine.heartbeat(device.connection);
          }
          const lastHeard = h.clock.now();
          expect((await h.user('u')).status).to.equal('Online');
          h.takeEvents();
          // A heartbeat just before the deadline moved it: one ms short of lastHeard + timeout it is still Online.
          h.clock.advance(timeout - 1);
          expect((await h.user('u')).status).to.equal('Online');
          expect(h.takeEvents()).to.deep.equal([]);
          h.clock.advance(1);
          expect(h.takeEvents().map(fields)).to.deep.equal([
            {
              userId: 'u',
              instanceId: 'd',
              platform,
              action: 'Disconnect',
              reason: 'TimeOut',
              instanceStatus: mobile ? 'PushOnline' : 'Offline',
              userStatus: mobile ? 'PushOnline' : 'Offline',
              previousUserStatus: 'Online',
              kicked: [],
              seq: 2,
              at: lastHeard + timeout,
              lastSeen: iso(lastHeard),
              customStatus: null,
              availability: 'available',
              idleSince: null,
            },
          ]);
          expect(device.notices).to.deep.equal([{ reason: 'TimeOut' }]);
          expect(device.connection.open).to.equal(false);
          const found = await h.user('u');
          expect(found.status).to.equal(mobile ? 'PushOnline' : 'Offline');
          // Last seen is the last activity, not the moment the timeout was noticed.
          expect(found.lastSeen).to.equal(iso(lastHeard));
          await h.close();
        });

        it('the transport noticing a dead link first (disconnect "timeout") counts as TimeOut, last seen at the last activity', async () => {
          const h = harness();
          const device = await h.connect('u', name, { instanceId: 'd' });
          h.clock.advance(10 * SECOND);
          h.presence.engine.heartbeat(device.connection);
          const lastHeard = h.clock.now();
          h.clock.advance(20 * SECOND);
          h.takeEvents();
          h.presence.engine.disconnect(device.connection, 'timeout');
          const [event] = h.takeEvents();
          expect(event).to.deep.include({
            action: 'Disconnect',
            reason: 'TimeOut',
            instanceStatus: mobile ? 'PushOnline' : 'Offline',
            lastSeen: iso(lastHeard),
          });
          expect(device.notices).to.deep.equal([]);
          await h.close();
        });

        if (cls === 'miniProgram') {
          it('background → gone after the background timeout (30 s) unless back in foreground; told TimeOut', async () => {
            const h = harness();
            const device = await h.connect('u', name, { instanceId: 'd' });
            // Back in foreground in time: stays.
            h.presence.engine.background(device.connection);
            h.clock.advance(29 * SECOND);
            h.presence.engine.foreground(device.connection);
            for (let i = 0; i < 6; i++) {
              h.clock.advance(20 * SECOND);
              h.presence.engine.heartbeat(device.connection);
            }
            expect((await h.user('u')).status).to.equal('Online');
            h.takeEvents();
            // Left in background (heartbeats still flowing): gone exactly 30 s after it went.
            h.presence.engine.background(device.connection);
            const wentAt = h.clock.now();
            h.clock.advance(10 * SECOND);
            h.presence.engine.heartbeat(device.connection);
            h.presence.engine.background(device.connection); // a repeated background does not restart the timeout
            h.clock.advance(10 * SECOND);
            h.presence.engine.heartbeat(device.connection);
            h.clock.advance(10 * SECOND - 1);
            expect((await h.user('u')).status).to.equal('Online');
            h.clock.advance(1);
            expect(h.takeEvents().map(fields)).to.deep.equal([
              {
                userId: 'u',
                instanceId: 'd',
                platform,
                action: 'Disconnect',
                reason: 'TimeOut',
                instanceStatus: 'Offline',
                userStatus: 'Offline',
                previousUserStatus: 'Online',
                kicked: [],
                seq: 2,
                at: wentAt + 30 * SECOND,
                lastSeen: iso(wentAt),
                customStatus: null,
                availability: 'available',
                idleSince: null,
              },
            ]);
            expect(device.notices).to.deep.equal([{ reason: 'TimeOut' }]);
            expect((await h.user('u')).lastSeen).to.equal(iso(wentAt));
            await h.close();
          });
        } else {
          it('background → stays Online while connected (no background timeout by default)', async () => {
            const h = harness();
            const device = await h.connect('u', name, { instanceId: 'd' });
            h.presence.engine.background(device.connection);
            const step = DEFAULT_HEARTBEAT_TIMEOUT[cls] / 2;
            for (let i = 0; i < 20; i++) {
              h.clock.advance(step);
              h.presence.engine.heartbeat(device.connection);
            }
            expect((await h.user('u')).status).to.equal('Online');
            expect(h.events.map((e) => e.action)).to.deep.equal(['Login']);
            expect(device.notices).to.deep.equal([]);
            await h.close();
          });
        }

        it(`a configured background timeout treats a device left in background as a closed connection (${mobile ? 'PushOnline' : 'gone'})`, async () => {
          const h = harness({ backgroundTimeout: 5 * SECOND });
          const device = await h.connect('u', name, { instanceId: 'd' });
          h.clock.advance(SECOND);
          h.presence.engine.background(device.connection);
          h.clock.advance(5 * SECOND - 1);
          expect((await h.user('u')).status).to.equal('Online');
          h.clock.advance(1);
          expect((await h.user('u')).status).to.equal(mobile ? 'PushOnline' : 'Offline');
          expect(h.events.at(-1)).to.deep.include({ action: 'Disconnect', reason: 'TimeOut' });
          expect(device.notices).to.deep.equal([{ reason: 'TimeOut' }]);
          await h.close();
        });

        if (mobile) {
          it('PushOnline lasts the PushOnline TTL (7 days by default), then the device is gone with Logout/Expired', async () => {
            const h = harness();
            const device = await h.connect('u', name, { instanceId: 'd' });
            h.presence.engine.disconnect(device.connection, 'closed');
            const closedAt = h.clock.now();
            h.takeEvents();
            h.clock.advance(7 * DAY - 1);
            expect((await h.user('u')).status).to.equal('PushOnline');
            expect(h.takeEvents()).to.deep.equal([]);
            h.clock.advance(1);
            expect(h.takeEvents().map(fields)).to.deep.equal([
              {
                userId: 'u',
                instanceId: 'd',
                platform,
                action: 'Logout',
                reason: 'Expired',
                instanceStatus: 'Offline',
                userStatus: 'Offline',
                previousUserStatus: 'PushOnline',
                kicked: [],
                seq: 3,
                at: closedAt + 7 * DAY,
                lastSeen: iso(closedAt),
                customStatus: null,
                availability: 'available',
                idleSince: null,
              },
            ]);
            expect(await h.user('u')).to.deep.include({ status: 'Offline', lastSeen: iso(closedAt), instances: [] });
            // Expired, not revoked: the old session is unknown now, so this is a fresh login.
            const back = await h.reconnect(device);
            expect(back.resumed).to.equal(false);
            await h.close();
          });

          it('a return within the TTL resumes the device; its next PushOnline starts a new TTL', async () => {
            const h = harness({ pushOnlineTtl: 10 * SECOND });
            const device = await h.connect('u', name, { instanceId: 'd' });
            h.presence.engine.disconnect(device.connection, 'closed');
            h.clock.advance(9 * SECOND);
            const back = await h.reconnect(device);
            expect(back.resumed).to.equal(true);
            h.clock.advance(5 * SECOND);
            h.presence.engine.disconnect(back.connection, 'closed');
            h.clock.advance(10 * SECOND - 1);
            expect((await h.user('u')).status).to.equal('PushOnline');
            h.clock.advance(1);
            expect((await h.user('u')).status).to.equal('Offline');
            expect(h.events.map((e) => `${e.action}/${e.reason}`)).to.deep.equal([
              'Login/Register',
              'Disconnect/LinkClose',
              'Login/Register',
              'Disconnect/LinkClose',
              'Logout/Expired',
            ]);
            await h.close();
          });
        }

        it('reconnect grace: a return within the grace changes nothing, sends no event; past the grace the close happens', async () => {
          const h = harness({ reconnectGrace: { [cls]: 5 * SECOND } });
          const device = await h.connect('u', name, { instanceId: 'd' });
          const loginAt = h.clock.now();
          h.takeEvents();
          h.clock.advance(SECOND);
          h.presence.engine.disconnect(device.connection, 'closed');
          h.clock.advance(5 * SECOND - 1);
          expect((await h.user('u')).status).to.equal('Online');
          const back = await h.reconnect(device);
          expect(back.resumed).to.equal(true);
          expect(back.kicked).to.deep.equal([]);
          expect(back.connection.sessionId).to.equal(device.connection.sessionId);
          h.clock.advance(30 * SECOND);
          h.presence.engine.heartbeat(back.connection);
          expect(h.takeEvents()).to.deep.equal([]);
          // Still the same stretch of Online, as if the close never happened.
          expect((await h.user('u')).instances?.[0]?.since).to.equal(iso(loginAt));
          // Closed again and not back in time: the transition happens at the end of the grace, last seen at the close.
          h.presence.engine.disconnect(back.connection, 'closed');
          const closedAt = h.clock.now();
          h.clock.advance(5 * SECOND - 1);
          expect(h.takeEvents()).to.deep.equal([]);
          h.clock.advance(1);
          expect(h.takeEvents().map(fields)).to.deep.equal([
            {
              userId: 'u',
              instanceId: 'd',
              platform,
              action: 'Disconnect',
              reason: 'LinkClose',
              instanceStatus: mobile ? 'PushOnline' : 'Offline',
              userStatus: mobile ? 'PushOnline' : 'Offline',
              previousUserStatus: 'Online',
              kicked: [],
              seq: 2,
              at: closedAt + 5 * SECOND,
              lastSeen: iso(closedAt),
              customStatus: null,
              availability: 'available',
              idleSince: null,
            },
          ]);
          expect((await h.user('u')).lastSeen).to.equal(iso(closedAt));
          // Back after the grace: a login like any other (a resume for mobile, a fresh login otherwise).
          const late = await h.reconnect(back);
          expect(late.resumed).to.equal(mobile);
          expect(h.takeEvents().map((e) => `${e.action}/${e.reason}`)).to.deep.equal(['Login/Register']);
          await h.close();
        });

        it('kicked by the login policy → gone, session revoked, told LoginElsewhere by the new device', async () => {
          const h = harness();
          const first = await h.connect('u', name, { instanceId: 'old' });
          h.clock.advance(SECOND);
          const second = await h.connect('u', name, { instanceId: 'new' });
          expect(second.kicked).to.deep.equal([{ platform, instanceId: 'old' }]);
          expect(first.notices).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform, instanceId: 'new' } }]);
          expect(first.connection.open).to.equal(false);
          expect(h.events.map(fields).at(-1)).to.deep.include({
            action: 'Login',
            reason: 'Register',
            instanceId: 'new',
            previousUserStatus: 'Online',
            userStatus: 'Online',
            kicked: [{ platform, instanceId: 'old' }],
            seq: 2,
          });
          // The kicked device gets no event of its own, and its late close changes nothing.
          expect(h.events).to.have.length(2);
          h.presence.engine.disconnect(first.connection, 'closed');
          expect(h.events).to.have.length(2);
          expect((await h.refusal('u', name, { instanceId: 'old', sessionId: first.connection.sessionId })).code).to.equal('SESSION_REVOKED');
          expect((await h.user('u')).instances?.map((i) => i.instanceId)).to.deep.equal(['new']);
          await h.close();
        });

        it('kicked by an admin → gone, session revoked, told AdminKick, Logout/Kicked event', async () => {
          const h = harness();
          const device = await h.connect('u', name, { instanceId: 'd' });
          h.clock.advance(3 * SECOND);
          h.takeEvents();
          expect(await h.presence.kick('u')).to.deep.equal([{ platform, instanceId: 'd' }]);
          expect(device.notices).to.deep.equal([{ reason: 'AdminKick' }]);
          expect(device.connection.open).to.equal(false);
          expect(h.takeEvents().map(fields)).to.deep.equal([
            {
              userId: 'u',
              instanceId: 'd',
              platform,
              action: 'Logout',
              reason: 'Kicked',
              instanceStatus: 'Offline',
              userStatus: 'Offline',
              previousUserStatus: 'Online',
              kicked: [],
              seq: 2,
              at: h.clock.now(),
              lastSeen: iso(h.clock.now()),
              customStatus: null,
              availability: 'available',
              idleSince: null,
            },
          ]);
          expect((await h.refusal('u', name, { instanceId: 'd', sessionId: device.connection.sessionId })).code).to.equal('SESSION_REVOKED');
          // A later close of the kicked socket is ignored.
          h.presence.engine.disconnect(device.connection, 'closed');
          expect(h.takeEvents()).to.deep.equal([]);
          await h.close();
        });
      });
    }
  });

  describe('admin kick', () => {
    it('kicks one platform (aliases accepted), one instance, or every device; PushOnline devices too; unknown users kick nobody', async () => {
      const h = harness({ loginPolicy: 'multi' });
      const phone = await h.connect('u', 'iPhone', { instanceId: 'p' });
      const web = await h.connect('u', 'Web', { instanceId: 'w' });
      const mac = await h.connect('u', 'Mac', { instanceId: 'm' });
      h.presence.engine.disconnect(phone.connection, 'closed');
      h.takeEvents();
      expect(await h.presence.kick('u', { platform: 'iOS' })).to.deep.equal([{ platform: 'iPhone', instanceId: 'p' }]);
      expect(h.takeEvents().map((e) => [e.instanceId, e.action, e.reason, e.previousUserStatus, e.userStatus])).to.deep.equal([
        ['p', 'Logout', 'Kicked', 'Online', 'Online'],
      ]);
      expect((await h.refusal('u', 'iPhone', { instanceId: 'p', sessionId: phone.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      expect(await h.presence.kick('u', { instanceId: 'w' })).to.deep.equal([{ platform: 'Web', instanceId: 'w' }]);
      expect(web.notices).to.deep.equal([{ reason: 'AdminKick' }]);
      expect(mac.notices).to.deep.equal([]);
      expect(await h.presence.kick('u', { instanceId: 'nope' })).to.deep.equal([]);
      expect(await h.presence.kick('u', { platform: 'Linux' })).to.deep.equal([]);
      expect(await h.presence.kick('nobody')).to.deep.equal([]);
      expect(await h.presence.kick('u')).to.deep.equal([{ platform: 'Mac', instanceId: 'm' }]);
      expect((await h.user('u')).status).to.equal('Offline');
      expect(h.takeEvents().map((e) => e.seq - SEQ0)).to.deep.equal([6, 7]);
      await h.close();
    });

    it('refuses a bad filter with a TypeError naming it', async () => {
      const h = harness();
      await expectRejection(h.presence.kick('u', { platform: 'Symbian' }), TypeError, /platform must be one of/);
      await expectRejection(h.presence.kick('u', { instanceId: '' }), TypeError, /instanceId/);
      await expectRejection(h.presence.kick('', {}), TypeError, /userId/);
      // A misspelt key must not widen a one-device kick to every device.
      const web = await h.connect('u', 'Web', { instanceId: 'w' });
      await expectRejection(h.presence.kick('u', { platfrom: 'Web' } as never), TypeError, /unknown option filter\.platfrom; did you mean filter\.platform\?/);
      expect(web.notices).to.deep.equal([]);
      expect((await h.user('u')).status).to.equal('Online');
      await h.close();
    });
  });

  describe('change events', () => {
    it('number each user’s changes 1, 2, 3… independently of other users, and stamp them with the clock', async () => {
      const h = harness({ loginPolicy: 'multi' });
      const a = await h.connect('alice', 'Android', { instanceId: 'a' });
      h.clock.advance(10);
      await h.connect('bob', 'Web', { instanceId: 'b' });
      h.clock.advance(10);
      const a2 = await h.connect('alice', 'Windows', { instanceId: 'a2' });
      h.clock.advance(10);
      h.presence.engine.disconnect(a.connection, 'closed');
      h.clock.advance(10);
      await h.presence.engine.logout(a2.connection);
      const start = h.clock.now() - 40;
      // Each user's first change is numbered from the clock (bob's 10 ms later), then one more per change.
      const first = { alice: start * 1000 - 1, bob: (start + 10) * 1000 - 1 };
      expect(h.events.map((e) => [e.userId, e.seq - first[e.userId as 'alice' | 'bob'], e.at, e.action, e.previousUserStatus, e.userStatus])).to.deep.equal([
        ['alice', 1, start, 'Login', 'Offline', 'Online'],
        ['bob', 1, start + 10, 'Login', 'Offline', 'Online'],
        ['alice', 2, start + 20, 'Login', 'Online', 'Online'],
        ['alice', 3, start + 30, 'Disconnect', 'Online', 'Online'],
        ['alice', 4, start + 40, 'Logout', 'Online', 'PushOnline'],
      ]);
      expect(h.events[3]).to.include({ instanceStatus: 'PushOnline', userStatus: 'Online' });
      await h.close();
    });

    it('a listener that throws does not stop other listeners or the engine', async () => {
      const errors: unknown[] = [];
      const h = harness({ logger: { warn: () => {}, error: (...args: unknown[]) => errors.push(args) } });
      const seen: string[] = [];
      h.presence.on('change', () => {
        throw new Error('listener bug');
      });
      h.presence.on('change', (e) => seen.push(e.action));
      await h.connect('u', 'Web');
      expect(seen).to.deep.equal(['Login']);
      expect(errors).to.have.length(1);
      await h.close();
    });
  });

  describe('last seen', () => {
    it('is null for a user never seen, now for an Online user, and the last Online moment otherwise', async () => {
      const h = harness();
      expect((await h.user('u')).lastSeen).to.equal(null);
      const device = await h.connect('u', 'Android');
      h.clock.advance(90 * SECOND);
      expect((await h.user('u')).lastSeen).to.equal(iso(h.clock.now()));
      h.presence.engine.heartbeat(device.connection);
      const heard = h.clock.now();
      h.clock.advance(400 * SECOND);
      // PushOnline after the heartbeat timeout: last seen is the last heartbeat and stays there.
      expect(await h.user('u')).to.deep.include({ status: 'PushOnline', lastSeen: iso(heard) });
      h.clock.advance(DAY);
      expect((await h.user('u')).lastSeen).to.equal(iso(heard));
      await h.close();
    });

    it('is remembered for users who went Offline (and for several devices, the latest wins)', async () => {
      const h = harness({ loginPolicy: 'multi' });
      const web = await h.connect('u', 'Web');
      const desktop = await h.connect('u', 'Linux');
      h.clock.advance(5 * SECOND);
      h.presence.engine.disconnect(desktop.connection, 'closed');
      const desktopGone = h.clock.now();
      h.clock.advance(5 * SECOND);
      h.presence.engine.heartbeat(web.connection);
      h.clock.advance(60 * SECOND);
      // The web device timed out 60 s after its last heartbeat, which is later than the desktop's close.
      expect(await h.user('u')).to.deep.include({ status: 'Offline', lastSeen: iso(desktopGone + 5 * SECOND) });
      await h.close();
    });
  });

  describe('custom status', () => {
    it('accepts at most 100 bytes of UTF-8, counting multi-byte characters in bytes; null or "" clears', async () => {
      const h = harness();
      const updates: unknown[] = [];
      h.presence.on('custom-status', (update) => updates.push(update));
      await h.connect('u', 'Web');
      await h.presence.setCustomStatus('u', 'x'.repeat(100));
      expect((await h.user('u')).customStatus).to.equal('x'.repeat(100));
      await expectRejection(h.presence.setCustomStatus('u', 'x'.repeat(101)), TypeError, /customStatus.*100 bytes/);
      // '€' is 3 bytes: 33 of them (99 bytes) fit, 34 (102 bytes, 34 characters) do not.
      await h.presence.setCustomStatus('u', '€'.repeat(33));
      await expectRejection(h.presence.setCustomStatus('u', '€'.repeat(34)), TypeError, /100 bytes/);
      // An emoji is 4 bytes (2 UTF-16 units): 25 fit, 26 do not.
      await h.presence.setCustomStatus('u', '🙂'.repeat(25));
      await expectRejection(h.presence.setCustomStatus('u', '🙂'.repeat(26)), TypeError, /100 bytes/);
      expect((await h.user('u')).customStatus).to.equal('🙂'.repeat(25));
      await expectRejection(h.presence.setCustomStatus('u', 42 as unknown as string), TypeError, /customStatus/);
      await h.presence.setCustomStatus('u', null);
      expect((await h.user('u')).customStatus).to.equal(null);
      await h.presence.setCustomStatus('u', 'busy');
      await h.presence.setCustomStatus('u', '');
      expect((await h.user('u')).customStatus).to.equal(null);
      expect(updates).to.deep.equal([
        { userId: 'u', customStatus: 'x'.repeat(100), userStatus: 'Online', availability: 'available', reason: 'set', expiresAt: null, at: h.clock.now() },
        { userId: 'u', customStatus: '€'.repeat(33), userStatus: 'Online', availability: 'available', reason: 'set', expiresAt: null, at: h.clock.now() },
        { userId: 'u', customStatus: '🙂'.repeat(25), userStatus: 'Online', availability: 'available', reason: 'set', expiresAt: null, at: h.clock.now() },
        { userId: 'u', customStatus: null, userStatus: 'Online', availability: 'available', reason: 'set', expiresAt: null, at: h.clock.now() },
        { userId: 'u', customStatus: 'busy', userStatus: 'Online', availability: 'available', reason: 'set', expiresAt: null, at: h.clock.now() },
        { userId: 'u', customStatus: null, userStatus: 'Online', availability: 'available', reason: 'set', expiresAt: null, at: h.clock.now() },
      ]);
      await h.close();
    });

    it('is kept across logins and shown in change events and for Offline users', async () => {
      const h = harness();
      await h.presence.setCustomStatus('u', 'on holiday');
      expect(await h.user('u')).to.deep.include({ status: 'Offline', customStatus: 'on holiday', lastSeen: null });
      const device = await h.connect('u', 'Web');
      expect(h.events[0]?.customStatus).to.equal('on holiday');
      h.presence.engine.disconnect(device.connection, 'closed');
      expect(await h.user('u')).to.deep.include({ status: 'Offline', customStatus: 'on holiday' });
      await h.close();
    });
  });

  describe('timing', () => {
    it('transitions happen at their due time (well within 100 ms), however many fall due at once', async () => {
      const h = harness({ loginPolicy: 'multi', pushOnlineTtl: 60 * SECOND });
      const count = 2000;
      const devices = [];
      for (let i = 0; i < count; i++) devices.push(await h.connect(`u${i}`, i % 2 ? 'Web' : 'Android'));
      const start = h.clock.now();
      h.takeEvents();
      // Every device times out together: web gone at 60 s; mobile at 400 s, then expire 60 s later.
      h.clock.advance(60 * SECOND);
      const webGone = h.takeEvents();
      expect(webGone).to.have.length(count / 2);
      expect(webGone.every((e) => e.at === start + 60 * SECOND && e.reason === 'TimeOut')).to.equal(true);
      h.clock.advance(340 * SECOND);
      const mobileTimedOut = h.takeEvents();
      expect(mobileTimedOut).to.have.length(count / 2);
      expect(mobileTimedOut.every((e) => e.at === start + 400 * SECOND && e.instanceStatus === 'PushOnline')).to.equal(true);
      h.clock.advance(60 * SECOND - 1);
      expect(h.takeEvents()).to.have.length(0);
      h.clock.advance(1);
      const expired = h.takeEvents();
      expect(expired).to.have.length(count / 2);
      expect(expired.every((e) => e.at === start + 460 * SECOND && e.reason === 'Expired')).to.equal(true);
      const stats = await h.presence.stats();
      expect(stats.instances).to.deep.equal({ Online: 0, PushOnline: 0 });
      await h.close();
    });

    it('timeouts are per class and configurable', async () => {
      const h = harness({ heartbeatTimeout: { web: 2 * SECOND, desktop: 3 * SECOND }, loginPolicy: 'multi' });
      await h.connect('u', 'Web');
      await h.connect('u', 'Mac');
      await h.connect('u', 'iPad');
      h.clock.advance(2 * SECOND);
      expect(h.events.map((e) => `${e.platform}:${e.action}`).slice(3)).to.deep.equal(['Web:Disconnect']);
      h.clock.advance(SECOND);
      expect(h.events.map((e) => `${e.platform}:${e.action}`).slice(3)).to.deep.equal(['Web:Disconnect', 'Mac:Disconnect']);
      h.clock.advance(397 * SECOND - 1);
      expect(h.events).to.have.length(5);
      h.clock.advance(1);
      expect(h.events.at(-1)).to.include({ platform: 'iPad', instanceStatus: 'PushOnline' });
      await h.close();
    });
  });

  describe('several connections of one device (tabs)', () => {
    it('closing one tab keeps the device Online; it leaves when the last one closes', async () => {
      const h = harness();
      const first = await h.connect('u', 'Web', { instanceId: 'tab' });
      const second = await h.reconnect(first);
      expect(second.resumed).to.equal(true);
      expect(second.kicked).to.deep.equal([]);
      expect(second.connection.sessionId).to.equal(first.connection.sessionId);
      expect(h.events).to.have.length(1);
      h.presence.engine.disconnect(first.connection, 'closed');
      expect((await h.user('u')).status).to.equal('Online');
      expect(h.events).to.have.length(1);
      // Traffic on the remaining tab keeps the device alive.
      h.clock.advance(50 * SECOND);
      h.presence.engine.heartbeat(second.connection);
      h.clock.advance(50 * SECOND);
      expect((await h.user('u')).status).to.equal('Online');
      h.presence.engine.disconnect(second.connection, 'closed');
      expect((await h.user('u')).status).to.equal('Offline');
      expect(h.events.map((e) => `${e.action}/${e.reason}`)).to.deep.equal(['Login/Register', 'Disconnect/LinkClose']);
      expect(await h.presence.stats()).to.deep.include({ instances: { Online: 0, PushOnline: 0 } });
      await h.close();
    });

    it('a new connection brings a device left in background back to the foreground, within the reconnect grace too', async () => {
      const h = harness({ reconnectGrace: 5 * SECOND });
      const first = await h.connect('u', 'MiniProgram', { instanceId: 'mp' });
      h.presence.engine.background(first.connection);
      h.presence.engine.disconnect(first.connection, 'closed');
      h.clock.advance(SECOND);
      const back = await h.reconnect(first);
      expect(back.resumed).to.equal(true);
      // Past the 30 s background timeout counted from when it went, heartbeating all along: still Online.
      for (let i = 0; i < 4; i++) {
        h.clock.advance(15 * SECOND);
        h.presence.engine.heartbeat(back.connection);
      }
      expect((await h.user('u')).status).to.equal('Online');
      // A second tab of a device in background does the same.
      h.presence.engine.background(back.connection);
      const tab = await h.reconnect(back);
      for (let i = 0; i < 4; i++) {
        h.clock.advance(15 * SECOND);
        h.presence.engine.heartbeat(tab.connection);
      }
      expect((await h.user('u')).status).to.equal('Online');
      expect(h.events.map((e) => `${e.action}/${e.reason}`)).to.deep.equal(['Login/Register']);
      await h.close();
    });

    it('a kick or timeout tells every tab', async () => {
      const h = harness();
      const first = await h.connect('u', 'Web', { instanceId: 'tab' });
      const second = await h.reconnect(first);
      h.clock.advance(60 * SECOND);
      expect(first.notices).to.deep.equal([{ reason: 'TimeOut' }]);
      expect(second.notices).to.deep.equal([{ reason: 'TimeOut' }]);
      await h.close();
    });
  });

  describe('query', () => {
    it('answers unknown users as Offline with no devices, in request order; detail: false leaves devices out', async () => {
      const h = harness();
      await h.connect('b', 'Mac', { instanceId: 'm', version: 'v9' });
      const start = h.clock.now();
      expect(await h.presence.query(['a', 'b', 'a'])).to.deep.equal([
        { userId: 'a', status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null, instances: [] },
        {
          userId: 'b',
          status: 'Online',
          lastSeen: iso(start),
          customStatus: null,
          availability: 'available',
          idleSince: null,
          instances: [{ instanceId: 'm', platform: 'Mac', status: 'Online', since: iso(start), version: 'v9' }],
        },
        { userId: 'a', status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null, instances: [] },
      ]);
      const brief = await h.presence.query(['a', 'b'], { detail: false });
      expect(brief).to.deep.equal([
        { userId: 'a', status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null },
        { userId: 'b', status: 'Online', lastSeen: iso(start), customStatus: null, availability: 'available', idleSince: null },
      ]);
      expect(brief[1]).to.not.have.property('instances');
      expect(await h.presence.query([])).to.deep.equal([]);
      await h.close();
    });

    it('derives the user status: Online if any device is Online, else PushOnline if any is, else Offline', async () => {
      const h = harness({ loginPolicy: 'multi' });
      const phone = await h.connect('u', 'Android');
      const tablet = await h.connect('u', 'iPad');
      const web = await h.connect('u', 'Web');
      h.presence.engine.disconnect(phone.connection, 'closed');
      expect((await h.user('u')).status).to.equal('Online');
      h.presence.engine.disconnect(web.connection, 'closed');
      expect((await h.user('u')).status).to.equal('Online');
      h.presence.engine.disconnect(tablet.connection, 'closed');
      expect((await h.user('u')).status).to.equal('PushOnline');
      expect((await h.user('u')).instances?.map((i) => i.status)).to.deep.equal(['PushOnline', 'PushOnline']);
      await h.close();
    });

    it('refuses bad input with a TypeError naming it', async () => {
      const h = harness();
      await expectRejection(h.presence.query('u' as unknown as string[]), TypeError, /userIds must be an array/);
      await expectRejection(h.presence.query(['ok', '']), TypeError, /userIds\[1\]/);
      await expectRejection(h.presence.query(['x'.repeat(129)]), TypeError, /userIds\[0\]/);
      await expectRejection(h.presence.query(['u'], { detial: false } as never), TypeError, /unknown option options\.detial; did you mean options\.detail\?/);
      await h.close();
    });
  });

  describe('connect refusals', () => {
    it('refuses unknown platforms, bad ids, and revoked sessions with codes', async () => {
      const h = harness();
      const bad = await h.refusal('u', 'Symbian');
      expect(bad.code).to.equal('BAD_PLATFORM');
      expect(bad.message).to.match(/platform must be one of .*"Android".*"iOS".*got "Symbian"/);
      expect((await h.refusal('u', 42)).code).to.equal('BAD_PLATFORM');
      expect((await h.refusal('u', 'Web', { instanceId: 'x'.repeat(129) })).code).to.equal('BAD_REQUEST');
      expect((await h.refusal('u', 'Web', { instanceId: 7 })).code).to.equal('BAD_REQUEST');
      expect((await h.refusal('u', 'Web', { sessionId: '' })).code).to.equal('BAD_REQUEST');
      await expectRejection(
        h.presence.engine.connect({ userId: '', platform: 'Web' }, () => {}),
        TypeError,
        /userId/,
      );
      expect(h.events).to.deep.equal([]);
      expect((await h.presence.stats()).users).to.deep.equal({ Online: 0, PushOnline: 0, Offline: 0 });
      await h.close();
    });

    it('a sessionId the server never issued is a fresh login', async () => {
      const h = harness();
      const device = await h.connect('u', 'Web', { instanceId: 'w', sessionId: 'made-up' });
      expect(device.resumed).to.equal(false);
      expect(device.connection.sessionId).to.not.equal('made-up');
      await h.close();
    });
  });

  describe('stats', () => {
    it('counts users and devices by status and by platform', async () => {
      const h = harness({ loginPolicy: 'multi' });
      const phone = await h.connect('a', 'Android');
      await h.connect('a', 'Web');
      const pad = await h.connect('b', 'iPad');
      h.presence.engine.disconnect(pad.connection, 'closed');
      const mac = await h.connect('c', 'Mac');
      h.presence.engine.disconnect(mac.connection, 'closed');
      h.presence.engine.disconnect(phone.connection, 'closed');
      const stats = await h.presence.stats();
      expect(stats.users).to.deep.equal({ Online: 1, PushOnline: 1, Offline: 1 });
      expect(stats.instances).to.deep.equal({ Online: 1, PushOnline: 2 });
      expect(stats.platforms.Android).to.deep.equal({ Online: 0, PushOnline: 1 });
      expect(stats.platforms.iPad).to.deep.equal({ Online: 0, PushOnline: 1 });
      expect(stats.platforms.Web).to.deep.equal({ Online: 1, PushOnline: 0 });
      expect(stats.platforms.Mac).to.deep.equal({ Online: 0, PushOnline: 0 });
      expect(Object.keys(stats.platforms).sort()).to.deep.equal([...PLATFORMS].sort());
      await h.close();
    });
  });

  describe('a store that answers logins later (promises)', () => {
    /** A MemoryStore whose login decisions are made at once but answered only when released, like a slow remote store. */
    function deferredStore(): { store: PresenceStore; hold: () => void; releaseAll: () => void } {
      const inner = new MemoryStore({ maxOfflineUsers: 100, maxRevokedSessions: 100 });
      const held: (() => void)[] = [];
      let holding = false;
      const store = new Proxy(inner, {
        get(target, key) {
          if (key === 'login') {
            return async (request: StoreLoginRequest): Promise<StoreLoginResult> => {
              const result = await target.login(request);
              if (!holding) return result;
              holding = false;
              return new Promise((resolve) => held.push(() => resolve(result)));
            };
          }
          const value: unknown = Reflect.get(target, key, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      return { store, hold: () => (holding = true), releaseAll: () => held.splice(0).forEach((release) => release()) };
    }

    it('a device kicked by a newer login before its own login answered is told and ends (no ghost connection)', async () => {
      const { store, hold, releaseAll } = deferredStore();
      const h = harness({ store });
      hold();
      const notices: EndNotice[] = [];
      const slow = h.presence.engine.connect({ userId: 'u', platform: 'Web', instanceId: 'a' }, (notice) => notices.push(notice));
      const fast = await h.connect('u', 'Web', { instanceId: 'b' });
      expect(fast.kicked).to.deep.equal([{ platform: 'Web', instanceId: 'a' }]);
      releaseAll();
      const late = await slow;
      expect(notices).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Web', instanceId: 'b' } }]);
      expect(late.connection.open).to.equal(false);
      expect(h.presence.engine.liveInstances).to.equal(1);
      expect((await h.user('u')).instances?.map((i) => i.instanceId)).to.deep.equal(['b']);
      // Its timers are gone too: nothing happens to it later.
      const before = h.events.length;
      h.clock.advance(30 * SECOND);
      h.presence.engine.heartbeat(fast.connection);
      h.clock.advance(30 * SECOND);
      expect(h.events).to.have.length(before);
      await h.close();
    });

    it('an admin kick while a login is waiting for the store ends that login when it answers', async () => {
      const { store, hold, releaseAll } = deferredStore();
      const h = harness({ store });
      hold();
      const notices: EndNotice[] = [];
      const slow = h.presence.engine.connect({ userId: 'u', platform: 'Android', instanceId: 'a' }, (notice) => notices.push(notice));
      expect(await h.presence.kick('u')).to.deep.equal([{ platform: 'Android', instanceId: 'a' }]);
      releaseAll();
      const late = await slow;
      expect(notices).to.deep.equal([{ reason: 'AdminKick' }]);
      expect(late.connection.open).to.equal(false);
      expect(h.presence.engine.liveInstances).to.equal(0);
      expect((await h.user('u')).status).to.equal('Offline');
      await h.close();
    });
  });

  describe('close', () => {
    it('stops every timer; later calls are refused', async () => {
      const clock = new ManualClock();
      const presence = createPresence({ clock });
      const events: PresenceChange[] = [];
      presence.on('change', (e) => events.push(e));
      const { connection } = await presence.engine.connect({ userId: 'u', platform: 'Android' }, () => {});
      presence.engine.disconnect(connection, 'timeout');
      await presence.close();
      expect(clock.pending).to.equal(0);
      clock.advance(30 * DAY);
      expect(events.map((e) => e.action)).to.deep.equal(['Login', 'Disconnect']);
      await expectRejection(
        presence.engine.connect({ userId: 'u', platform: 'Web' }, () => {}),
        Error,
        /closed/,
      );
      await presence.close();
    });

    it('ends every device live here before it resolves (memory mode): mobile PushOnline, the others gone, one in its grace too', async () => {
      const h = harness({ reconnectGrace: { web: 5 * SECOND } });
      const phone = await h.connect('u', 'Android', { instanceId: 'phone' });
      await h.connect('v', 'Windows', { instanceId: 'pc' });
      const tab = await h.connect('w', 'Web', { instanceId: 'tab' });
      h.clock.advance(SECOND);
      h.presence.engine.disconnect(tab.connection, 'closed');
      h.clock.advance(SECOND);
      h.takeEvents();
      const closedAt = h.clock.now();
      await h.presence.close();
      expect(
        h
          .takeEvents()
          .map((event) => `${event.userId}/${event.instanceId} ${event.action}/${event.reason} ${event.instanceStatus} ${event.userStatus} ${event.lastSeen}`),
      ).to.deep.equal([
        `u/phone Disconnect/LinkClose PushOnline PushOnline ${iso(closedAt)}`,
        `v/pc Disconnect/LinkClose Offline Offline ${iso(closedAt)}`,
        // Last heard when its connection closed, a second before close().
        `w/tab Disconnect/LinkClose Offline Offline ${iso(closedAt - SECOND)}`,
      ]);
      expect(h.presence.engine.liveInstances).to.equal(0);
      expect(phone.connection.open).to.equal(false);
      // The transport closing afterwards (io.close() after presence.close()) changes nothing more.
      h.presence.engine.disconnect(phone.connection, 'closed');
      expect(h.events).to.have.length(6);
    });

    it("a shutdown's disconnects (io.close()) are closes when the store cannot hand over", async () => {
      const h = harness({ handoverGrace: '10s' });
      const phone = await h.connect('u', 'iPhone', { instanceId: 'phone' });
      h.takeEvents();
      h.presence.engine.disconnect(phone.connection, 'shutdown');
      expect(h.takeEvents().map((event) => `${event.action}/${event.reason} ${event.userStatus}`)).to.deep.equal(['Disconnect/LinkClose PushOnline']);
      await h.presence.close();
      expect(h.takeEvents()).to.deep.equal([]);
    });

    /** A MemoryStore whose transport ends answer only once released, like a remote store; `handOver` added when asked. */
    function slowEnds(options: { handOver?: (until: number) => void } = {}): { store: PresenceStore; released: () => number; release: () => void } {
      const inner = new MemoryStore({ maxOfflineUsers: 100, maxRevokedSessions: 100 });
      const held: (() => void)[] = [];
      let released = 0;
      const store = new Proxy(inner, {
        get(target, key) {
          if (key === 'markPushOnline' || key === 'remove') {
            const method = (Reflect.get(target, key, target) as (...args: unknown[]) => unknown).bind(target);
            return (...args: unknown[]) => {
              const result = method(...args);
              return new Promise((resolve) =>
                held.push(() => {
                  released++;
                  resolve(result);
                }),
              );
            };
          }
          if (key === 'handOver') return options.handOver;
          // The multi-process part comes whole: a store that hands over also says when it may miss ends (never, here).
          if (key === 'mayMissEnds') return options.handOver && (() => false);
          const value: unknown = Reflect.get(target, key, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      return { store, released: () => released, release: () => held.splice(0).forEach((release) => release()) };
    }

    it('resolves only once every end it made, and every end under way, is written and emitted', async () => {
      const { store, release, released } = slowEnds();
      const h = harness({ store });
      const a = await h.connect('a', 'Android', { instanceId: 'phone' });
      await h.connect('b', 'Web', { instanceId: 'tab' });
      h.takeEvents();
      // Under way when close() begins: a's close (a shutdown's io.close() before presence.close()).
      h.presence.engine.disconnect(a.connection, 'closed');
      let done = false;
      const closing = h.presence.close().then(() => (done = true));
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(done, 'resolved before its writes answered').to.equal(false);
      expect(h.events.slice(2)).to.deep.equal([]);
      release();
      await closing;
      expect(released()).to.equal(2);
      expect(h.takeEvents().map((event) => `${event.userId} ${event.action}/${event.reason} ${event.userStatus}`)).to.deep.equal([
        'a Disconnect/LinkClose PushOnline',
        'b Disconnect/LinkClose Offline',
      ]);
    });

    it('with a store that hands over, leaves the devices to it (no transition) and passes the grace counted from close()', async () => {
      const until: number[] = [];
      const { store } = slowEnds({ handOver: (at) => void until.push(at) });
      const h = harness({ store, handoverGrace: '10s' });
      const phone = await h.connect('u', 'Android', { instanceId: 'phone' });
      await h.connect('v', 'Web', { instanceId: 'tab' });
      h.takeEvents();
      h.clock.advance(SECOND);
      const closedAt = h.clock.now();
      await h.presence.close();
      expect(until).to.deep.equal([closedAt + 10 * SECOND]);
      expect(h.takeEvents()).to.deep.equal([]);
      expect(h.presence.engine.liveInstances).to.equal(0);
      expect(phone.connection.open).to.equal(false);
    });

    it("with a store that hands over, a shutdown's disconnect waits the handover grace (or the reconnect grace, if longer) for a resume here", async () => {
      const { store, release } = slowEnds({ handOver: () => {} });
      const h = harness({ store, handoverGrace: '3s', reconnectGrace: { web: 5 * SECOND } });
      const phone = await h.connect('u', 'Android', { instanceId: 'phone' });
      const tab = await h.connect('v', 'Web', { instanceId: 'tab' });
      const back = await h.connect('w', 'Windows', { instanceId: 'pc' });
      h.takeEvents();
      for (const device of [phone, tab, back]) h.presence.engine.disconnect(device.connection, 'shutdown');
      h.clock.advance(2 * SECOND);
      await h.reconnect(back);
      h.clock.advance(SECOND - 1);
      release();
      await new Promise((resolve) => setImmediate(resolve));
      expect(h.takeEvents()).to.deep.equal([]);
      h.clock.advance(1);
      release();
      await new Promise((resolve) => setImmediate(resolve));
      expect(h.takeEvents().map((event) => `${event.userId} ${event.action}/${event.reason} ${event.userStatus}`)).to.deep.equal([
        'u Disconnect/LinkClose PushOnline',
      ]);
      h.clock.advance(2 * SECOND);
      release();
      await new Promise((resolve) => setImmediate(resolve));
      expect(h.takeEvents().map((event) => `${event.userId} ${event.action}/${event.reason} ${event.userStatus}`)).to.deep.equal([
        'v Disconnect/LinkClose Offline',
      ]);
      expect(h.presence.engine.liveInstances).to.equal(1);
      await h.presence.close();
    });
  });
});

async function expectRejection(promise: Promise<unknown>, type: new (...args: never[]) => Error, message: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a rejection').to.be.instanceOf(type);
  expect((caught as Error).message).to.match(message);
}
