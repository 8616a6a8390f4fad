// The engine's availability: choices, automatic away after idleTimeout, custom status ttl, and their bad input, on a ManualClock.

import { expect } from 'chai';
import { createPresence, type AvailabilityChange, type CustomStatusChange } from '../lib/index.js';
import { harness } from './helpers/engine-harness.js';

const iso = (ms: number): string => new Date(ms).toISOString();

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('engine availability', () => {
  it('goes away after idleTimeout without activity (heartbeats are not activity), and is available on the next activity', async () => {
    const h = harness({ idleTimeout: '10s' });
    const changes: AvailabilityChange[] = [];
    h.presence.on('availability', (change) => changes.push(change));
    const start = h.clock.now();
    const device = await h.connect('u', 'Web');
    h.clock.advance(9_000);
    h.presence.engine.heartbeat(device.connection);
    h.clock.advance(999);
    expect((await h.user('u')).availability).to.equal('available');
    h.clock.advance(1);
    expect(await h.user('u')).to.include({ availability: 'away', idleSince: iso(start) });
    expect(changes).to.deep.equal([
      {
        userId: 'u',
        availability: 'away',
        previousAvailability: 'available',
        idleSince: iso(start),
        reason: 'idle',
        userStatus: 'Online',
        customStatus: null,
        at: start + 10_000,
      },
    ]);
    h.clock.advance(5_000);
    h.presence.engine.activity(device.connection);
    await Promise.resolve();
    expect(await h.user('u')).to.include({ availability: 'available', idleSince: null });
    expect(changes.at(-1)).to.include({ availability: 'available', previousAvailability: 'away', reason: 'active', idleSince: null });
    // Activity moves the deadline: away again 10 s after the last one.
    const last = h.clock.now();
    h.clock.advance(6_000);
    h.presence.engine.activity(device.connection);
    h.clock.advance(9_999);
    expect((await h.user('u')).availability).to.equal('available');
    h.clock.advance(1);
    expect(await h.user('u')).to.include({ availability: 'away', idleSince: iso(last + 6_000) });
    await h.close();
  });

  it('waits for every device: one active device keeps the user available; a class with idleTimeout 0 never goes idle', async () => {
    const h = harness({ loginPolicy: 'multi', idleTimeout: { web: '10s', desktop: '20s', mobile: 0 } });
    const web = await h.connect('u', 'Web');
    const mac = await h.connect('u', 'Mac');
    h.clock.advance(15_000);
    expect((await h.user('u')).availability, 'the Mac has 20 s').to.equal('available');
    h.presence.engine.activity(web.connection);
    h.clock.advance(10_000);
    expect((await h.user('u')).availability, 'the Web device was active 10 s ago, the Mac 25 s ago').to.equal('away');
    h.presence.engine.activity(mac.connection);
    await Promise.resolve();
    expect((await h.user('u')).availability).to.equal('available');
    // A mobile device (idleTimeout 0) keeps the user available however long.
    await h.connect('u', 'Android');
    h.clock.advance(3_600_000);
    expect((await h.user('u')).availability).to.equal('available');
    await h.close();
  });

  it('a login is activity; a device that leaves lets the others go idle on their own time', async () => {
    const h = harness({ loginPolicy: 'multi', idleTimeout: '10s' });
    const start = h.clock.now();
    const web = await h.connect('u', 'Web');
    h.clock.advance(8_000);
    const mac = await h.connect('u', 'Mac');
    h.clock.advance(3_000);
    expect((await h.user('u')).availability, 'the Mac logged in 3 s ago').to.equal('available');
    h.presence.engine.disconnect(mac.connection, 'closed');
    h.clock.advance(0);
    // The user's last activity was the Mac's login: that is idleSince.
    expect(await h.user('u')).to.include({ availability: 'away', idleSince: iso(start + 8_000) });
    await h.reconnect(web);
    await Promise.resolve();
    expect((await h.user('u')).availability, 'a second tab is a login').to.equal('available');
    await h.close();
  });

  it('never overrides a chosen dnd or invisible; a choice is activity and ends idleness', async () => {
    const h = harness({ idleTimeout: '10s' });
    const changes: AvailabilityChange[] = [];
    h.presence.on('availability', (change) => changes.push(change));
    // A Mac: its heartbeat timeout (400 s) outlasts the test.
    const device = await h.connect('u', 'Mac');
    await h.presence.setAvailability('u', 'dnd');
    h.clock.advance(60_000);
    expect(await h.user('u')).to.include({ availability: 'dnd', idleSince: null });
    await h.presence.engine.setAvailability('u', 'invisible', device.connection);
    h.clock.advance(60_000);
    expect((await h.user('u')).availability).to.equal('invisible');
    await h.presence.setAvailability('u', 'available');
    h.clock.advance(9_999);
    expect((await h.user('u')).availability, 'the choice was activity').to.equal('available');
    h.clock.advance(1);
    expect((await h.user('u')).availability).to.equal('away');
    // Choosing away by hand ends automatic idleness (idleSince goes), and is shown away.
    await h.presence.setAvailability('u', 'away');
    expect(await h.user('u')).to.include({ availability: 'away', idleSince: null });
    expect(changes.map((c) => `${c.previousAvailability}>${c.availability}/${c.reason}`)).to.deep.equal([
      'available>dnd/set',
      'dnd>invisible/set',
      'invisible>available/set',
      'available>away/idle',
      'away>away/set',
    ]);
    await h.close();
  });

  it('clears a custom status when its ttl runs out, with an expired event; a newer status is not cleared by the old timer', async () => {
    const h = harness();
    const changes: CustomStatusChange[] = [];
    h.presence.on('custom-status', (change) => changes.push(change));
    await h.connect('u', 'Web');
    const start = h.clock.now();
    await h.presence.setCustomStatus('u', 'lunch', { ttl: '5s' });
    expect(changes.at(-1)).to.include({ customStatus: 'lunch', reason: 'set', expiresAt: iso(start + 5_000) });
    h.clock.advance(4_999);
    expect((await h.user('u')).customStatus).to.equal('lunch');
    h.clock.advance(1);
    await Promise.resolve();
    expect((await h.user('u')).customStatus).to.equal(null);
    expect(changes.at(-1)).to.include({ customStatus: null, reason: 'expired', userStatus: 'Online', at: start + 5_000 });
    await h.presence.setCustomStatus('u', 'short', { ttl: 2_000 });
    h.clock.advance(1_000);
    await h.presence.setCustomStatus('u', 'kept');
    h.clock.advance(5_000);
    expect((await h.user('u')).customStatus).to.equal('kept');
    expect(changes.filter((c) => c.reason === 'expired')).to.have.length(1);
    await h.close();
  });

  it('refuses bad input with errors naming it: unknown availability (did you mean), ttl out of range, misspelt options', async () => {
    const h = harness();
    const unknown = await rejection(h.presence.setAvailability('u', 'invisble' as never));
    expect(unknown).to.be.instanceOf(TypeError);
    expect(unknown.message).to.match(/availability must be one of "available", "away", "dnd", "invisible"; got "invisble"; did you mean "invisible"\?/);
    expect((await rejection(h.presence.setAvailability('u', 42 as never))).message).to.match(/availability must be one of .*got number/);
    expect((await rejection(h.presence.setCustomStatus('u', 'x', { ttl: 500 }))).message).to.match(/ttl must be milliseconds from 1000 to/);
    expect((await rejection(h.presence.setCustomStatus('u', 'x', { ttl: '2y' }))).message).to.match(/ttl .*got "2y"/);
    expect((await rejection(h.presence.setCustomStatus('u', 'x', { ttl: 366 * 86_400_000 }))).message).to.match(/365 days/);
    expect((await rejection(h.presence.setCustomStatus('u', 'x', { tll: 5000 } as never))).message).to.match(
      /unknown option options\.tll; did you mean options\.ttl\?/,
    );
    expect((await h.user('u')).customStatus, 'nothing was set').to.equal(null);
    expect(() => createPresence({ idleTimeout: 300 })).to.throw(TypeError, /idleTimeout .*at least 1000 .*did you mean 300 s/);
    expect(() => createPresence({ idleTimeout: { mobil: 5000 } as never })).to.throw(TypeError, /did you mean idleTimeout\.mobile/);
    expect(() => createPresence({ lastSeenVisibility: 'approximate' as never })).to.throw(TypeError, /lastSeenVisibility must be a function/);
    expect(() => createPresence({ contacts: ['a'] as never })).to.throw(TypeError, /contacts must be a function/);
    await h.close();
  });
});
