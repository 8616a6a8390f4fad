// Login policy: who a new login kicks, as tables written from SPEC.md's wording, for the pure function and through the engine.

import { expect } from 'chai';
import fc from 'fast-check';
import { kickOldestBeyondLimit, type PolicyInstance, type PolicyLimits } from '../lib/core/policy.js';
import { PLATFORMS } from '../lib/index.js';
import type { LoginPolicy, Platform } from '../lib/index.js';
import { harness, type TestDevice } from './helpers/engine-harness.js';

/*
 * Rows: a device already logged in on that platform; columns: a new login on that platform.
 * K = the existing device is kicked, . = it stays. Written by hand from SPEC.md:
 * - single: "logged in on one platform only"; dual: "one native platform plus Web (Web and MiniProgram)";
 *   triple: "one mobile platform, one desktop platform and Web"; multi: "every platform at the same time";
 * - "Web and MiniProgram count as one platform" for every policy, limited by maxWebInstances;
 * - with the default limits of 1, a second login on the same platform kicks the first;
 *   with limits of 2 the same platform (or the Web family) has room for both.
 */
const TABLES: Record<'1' | '2', Record<LoginPolicy, string>> = {
  '1': {
    single: `
          And iPh iPd Win Mac Lnx Web Min
      And  K   K   K   K   K   K   K   K
      iPh  K   K   K   K   K   K   K   K
      iPd  K   K   K   K   K   K   K   K
      Win  K   K   K   K   K   K   K   K
      Mac  K   K   K   K   K   K   K   K
      Lnx  K   K   K   K   K   K   K   K
      Web  K   K   K   K   K   K   K   K
      Min  K   K   K   K   K   K   K   K`,
    dual: `
          And iPh iPd Win Mac Lnx Web Min
      And  K   K   K   K   K   K   .   .
      iPh  K   K   K   K   K   K   .   .
      iPd  K   K   K   K   K   K   .   .
      Win  K   K   K   K   K   K   .   .
      Mac  K   K   K   K   K   K   .   .
      Lnx  K   K   K   K   K   K   .   .
      Web  .   .   .   .   .   .   K   K
      Min  .   .   .   .   .   .   K   K`,
    triple: `
          And iPh iPd Win Mac Lnx Web Min
      And  K   K   K   .   .   .   .   .
      iPh  K   K   K   .   .   .   .   .
      iPd  K   K   K   .   .   .   .   .
      Win  .   .   .   K   K   K   .   .
      Mac  .   .   .   K   K   K   .   .
      Lnx  .   .   .   K   K   K   .   .
      Web  .   .   .   .   .   .   K   K
      Min  .   .   .   .   .   .   K   K`,
    multi: `
          And iPh iPd Win Mac Lnx Web Min
      And  K   .   .   .   .   .   .   .
      iPh  .   K   .   .   .   .   .   .
      iPd  .   .   K   .   .   .   .   .
      Win  .   .   .   K   .   .   .   .
      Mac  .   .   .   .   K   .   .   .
      Lnx  .   .   .   .   .   K   .   .
      Web  .   .   .   .   .   .   K   K
      Min  .   .   .   .   .   .   K   K`,
  },
  '2': {
    single: `
          And iPh iPd Win Mac Lnx Web Min
      And  .   K   K   K   K   K   K   K
      iPh  K   .   K   K   K   K   K   K
      iPd  K   K   .   K   K   K   K   K
      Win  K   K   K   .   K   K   K   K
      Mac  K   K   K   K   .   K   K   K
      Lnx  K   K   K   K   K   .   K   K
      Web  K   K   K   K   K   K   .   .
      Min  K   K   K   K   K   K   .   .`,
    dual: `
          And iPh iPd Win Mac Lnx Web Min
      And  .   K   K   K   K   K   .   .
      iPh  K   .   K   K   K   K   .   .
      iPd  K   K   .   K   K   K   .   .
      Win  K   K   K   .   K   K   .   .
      Mac  K   K   K   K   .   K   .   .
      Lnx  K   K   K   K   K   .   .   .
      Web  .   .   .   .   .   .   .   .
      Min  .   .   .   .   .   .   .   .`,
    triple: `
          And iPh iPd Win Mac Lnx Web Min
      And  .   K   K   .   .   .   .   .
      iPh  K   .   K   .   .   .   .   .
      iPd  K   K   .   .   .   .   .   .
      Win  .   .   .   .   K   K   .   .
      Mac  .   .   .   K   .   K   .   .
      Lnx  .   .   .   K   K   .   .   .
      Web  .   .   .   .   .   .   .   .
      Min  .   .   .   .   .   .   .   .`,
    multi: `
          And iPh iPd Win Mac Lnx Web Min
      And  .   .   .   .   .   .   .   .
      iPh  .   .   .   .   .   .   .   .
      iPd  .   .   .   .   .   .   .   .
      Win  .   .   .   .   .   .   .   .
      Mac  .   .   .   .   .   .   .   .
      Lnx  .   .   .   .   .   .   .   .
      Web  .   .   .   .   .   .   .   .
      Min  .   .   .   .   .   .   .   .`,
  },
};

const ABBREVIATION: Record<string, Platform> = {
  And: 'Android',
  iPh: 'iPhone',
  iPd: 'iPad',
  Win: 'Windows',
  Mac: 'Mac',
  Lnx: 'Linux',
  Web: 'Web',
  Min: 'MiniProgram',
};

interface Cell {
  existing: Platform;
  incoming: Platform;
  kicked: boolean;
}

function parseTable(table: string): Cell[] {
  const [header, ...rows] = table
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/));
  const columns = (header ?? []).map((name) => ABBREVIATION[name] as Platform);
  expect(columns).to.have.length(8);
  expect(rows).to.have.length(8);
  const cells: Cell[] = [];
  for (const [name, ...marks] of rows) {
    expect(marks).to.have.length(8);
    marks.forEach((mark, column) => {
      expect(mark).to.be.oneOf(['K', '.']);
      cells.push({ existing: ABBREVIATION[name as string] as Platform, incoming: columns[column] as Platform, kicked: mark === 'K' });
    });
  }
  return cells;
}

function limits(loginPolicy: LoginPolicy, limit: number): PolicyLimits {
  return { loginPolicy, maxInstancesPerPlatform: limit, maxWebInstances: limit };
}

const POLICIES = ['single', 'dual', 'triple', 'multi'] as const;

describe('login policy', () => {
  it('the tables cover every ordered pair of the eight platforms', () => {
    for (const limit of ['1', '2'] as const) {
      for (const policy of POLICIES) {
        const pairs = parseTable(TABLES[limit][policy]).map((cell) => `${cell.existing}>${cell.incoming}`);
        expect(new Set(pairs).size).to.equal(64);
        expect(PLATFORMS.every((a) => PLATFORMS.every((b) => pairs.includes(`${a}>${b}`)))).to.equal(true);
      }
    }
  });

  for (const limit of ['1', '2'] as const) {
    for (const policy of POLICIES) {
      describe(`${policy}, limits ${limit}`, () => {
        const cells = parseTable(TABLES[limit][policy]);

        it('kickOldestBeyondLimit follows the table for every ordered pair', () => {
          for (const cell of cells) {
            const existing: PolicyInstance = { platform: cell.existing, instanceId: 'a', order: 1 };
            const kicked = kickOldestBeyondLimit([existing], cell.incoming, limits(policy, Number(limit)));
            expect(kicked, `${cell.existing} then ${cell.incoming}`).to.deep.equal(cell.kicked ? [existing] : []);
          }
        });

        it('the engine follows the table for every ordered pair (Online existing device)', async () => {
          const h = harness({ loginPolicy: policy, maxInstancesPerPlatform: Number(limit), maxWebInstances: Number(limit) });
          for (const cell of cells) {
            const userId = `${cell.existing}-${cell.incoming}`;
            const first = await h.connect(userId, cell.existing, { instanceId: 'a' });
            const second = await h.connect(userId, cell.incoming, { instanceId: 'b' });
            await expectOutcome(h, userId, cell, first, second);
          }
          await h.close();
        });

        it('the engine follows the table when the existing device is PushOnline (mobile) or was closed', async () => {
          const h = harness({ loginPolicy: policy, maxInstancesPerPlatform: Number(limit), maxWebInstances: Number(limit) });
          for (const cell of cells.filter((c) => ['Android', 'iPhone', 'iPad'].includes(c.existing))) {
            const userId = `${cell.existing}-${cell.incoming}`;
            const first = await h.connect(userId, cell.existing, { instanceId: 'a' });
            h.presence.engine.disconnect(first.connection, 'closed');
            expect((await h.user(userId)).status).to.equal('PushOnline');
            const second = await h.connect(userId, cell.incoming, { instanceId: 'b' });
            await expectOutcome(h, userId, cell, first, second, 'PushOnline');
          }
          await h.close();
        });
      });
    }
  }

  async function expectOutcome(
    h: ReturnType<typeof harness>,
    userId: string,
    cell: Cell,
    first: TestDevice,
    second: TestDevice,
    firstStatus: 'Online' | 'PushOnline' = 'Online',
  ): Promise<void> {
    const where = `${cell.existing} then ${cell.incoming}`;
    expect(second.kicked, where).to.deep.equal(cell.kicked ? [{ platform: cell.existing, instanceId: 'a' }] : []);
    const found = await h.user(userId);
    const devices = (found.instances ?? []).map((instance) => `${instance.platform}/${instance.instanceId}/${instance.status}`).sort();
    const expected = [`${cell.incoming}/b/Online`];
    if (!cell.kicked) expected.push(`${cell.existing}/a/${firstStatus}`);
    expect(devices, where).to.deep.equal(expected.sort());
    const login = h.events.filter((event) => event.userId === userId).at(-1);
    expect(login?.action, where).to.equal('Login');
    expect(login?.kicked, where).to.deep.equal(second.kicked);
    if (cell.kicked) {
      // A PushOnline device has no connection to tell.
      expect(first.notices, where).to.deep.equal(
        firstStatus === 'Online' ? [{ reason: 'LoginElsewhere', by: { platform: cell.incoming, instanceId: 'b' } }] : [],
      );
      expect(first.connection.open, where).to.equal(false);
      expect((await h.refusal(userId, cell.existing, { instanceId: 'a', sessionId: first.connection.sessionId })).code, where).to.equal('SESSION_REVOKED');
    } else {
      expect(first.notices, where).to.deep.equal([]);
      expect(first.connection.open, where).to.equal(firstStatus === 'Online');
    }
  }

  describe('limits', () => {
    async function devicesOf(h: ReturnType<typeof harness>, userId: string): Promise<string[]> {
      return ((await h.user(userId)).instances ?? []).map((instance) => instance.instanceId).sort();
    }

    for (const max of [2, 3]) {
      it(`maxInstancesPerPlatform ${max}: the login beyond the limit kicks the oldest on that platform, one at a time`, async () => {
        const h = harness({ loginPolicy: 'multi', maxInstancesPerPlatform: max });
        const devices: TestDevice[] = [];
        for (let i = 1; i <= max; i++) {
          devices.push(await h.connect('u', 'Android', { instanceId: `a${i}` }));
          expect(devices.at(-1)?.kicked).to.deep.equal([]);
        }
        await h.connect('u', 'iPhone', { instanceId: 'p1' }); // another platform: its own limit
        expect(await devicesOf(h, 'u')).to.have.length(max + 1);
        const next = await h.connect('u', 'Android', { instanceId: `a${max + 1}` });
        expect(next.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'a1' }]);
        const after = await h.connect('u', 'Android', { instanceId: `a${max + 2}` });
        expect(after.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'a2' }]);
        const expected = ['p1'];
        for (let i = 3; i <= max + 2; i++) expected.push(`a${i}`);
        expect(await devicesOf(h, 'u')).to.deep.equal(expected.sort());
        expect(devices[0]?.notices).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Android', instanceId: `a${max + 1}` } }]);
        await h.close();
      });
    }

    it('maxWebInstances counts Web and MiniProgram together, oldest first', async () => {
      const h = harness({ loginPolicy: 'multi', maxWebInstances: 2, maxInstancesPerPlatform: 3 });
      await h.connect('u', 'Web', { instanceId: 'w1' });
      await h.connect('u', 'MiniProgram', { instanceId: 'm1' });
      expect(await devicesOf(h, 'u')).to.deep.equal(['m1', 'w1']);
      expect((await h.connect('u', 'Web', { instanceId: 'w2' })).kicked).to.deep.equal([{ platform: 'Web', instanceId: 'w1' }]);
      expect((await h.connect('u', 'MiniProgram', { instanceId: 'm2' })).kicked).to.deep.equal([{ platform: 'MiniProgram', instanceId: 'm1' }]);
      expect(await devicesOf(h, 'u')).to.deep.equal(['m2', 'w2']);
      await h.close();
    });

    it('maxInstancesPerPlatform does not limit the Web family, and maxWebInstances does not limit native platforms', async () => {
      const h = harness({ loginPolicy: 'multi', maxWebInstances: 3, maxInstancesPerPlatform: 1 });
      for (const id of ['w1', 'w2', 'w3']) expect((await h.connect('u', 'Web', { instanceId: id })).kicked).to.deep.equal([]);
      expect((await h.connect('u', 'Web', { instanceId: 'w4' })).kicked).to.deep.equal([{ platform: 'Web', instanceId: 'w1' }]);
      const h2 = harness({ loginPolicy: 'multi', maxWebInstances: 1, maxInstancesPerPlatform: 2 });
      for (const id of ['a1', 'a2']) expect((await h2.connect('u', 'Android', { instanceId: id })).kicked).to.deep.equal([]);
      await h.close();
      await h2.close();
    });

    it('PushOnline devices count toward the limit and are kicked (and revoked) like Online ones', async () => {
      const h = harness({ loginPolicy: 'dual' });
      const phone = await h.connect('u', 'iPhone', { instanceId: 'p' });
      h.presence.engine.disconnect(phone.connection, 'closed');
      const web = await h.connect('u', 'Web', { instanceId: 'w' });
      expect(web.kicked).to.deep.equal([]);
      expect((await h.user('u')).status).to.equal('Online');
      const desktop = await h.connect('u', 'Mac', { instanceId: 'm' });
      expect(desktop.kicked).to.deep.equal([{ platform: 'iPhone', instanceId: 'p' }]);
      expect(await devicesOf(h, 'u')).to.deep.equal(['m', 'w']);
      expect((await h.refusal('u', 'iPhone', { instanceId: 'p', sessionId: phone.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      await h.close();
    });

    it('one login kicking several devices lists them oldest first', async () => {
      const h = harness({ loginPolicy: 'single', maxInstancesPerPlatform: 3, maxWebInstances: 2 });
      // Three logins on Android, then an iPad login: all three go, oldest first.
      for (const id of ['a1', 'a2', 'a3']) await h.connect('u', 'Android', { instanceId: id });
      const ipad = await h.connect('u', 'iPad', { instanceId: 'p1' });
      expect(ipad.kicked.map((ref) => ref.instanceId)).to.deep.equal(['a1', 'a2', 'a3']);
      // Under triple, a desktop and a mobile device stay beside Web; a new iPhone login kicks only the mobile ones, oldest first.
      const t = harness({ loginPolicy: 'triple', maxInstancesPerPlatform: 2 });
      await t.connect('v', 'iPad', { instanceId: 'x1' });
      await t.connect('v', 'Windows', { instanceId: 'd1' });
      await t.connect('v', 'Android', { instanceId: 'x2' }); // kicks x1 (one mobile platform at a time)
      await t.connect('v', 'Android', { instanceId: 'x3' });
      await t.connect('v', 'Web', { instanceId: 'w1' });
      const iphone = await t.connect('v', 'iPhone', { instanceId: 'x4' });
      expect(iphone.kicked).to.deep.equal([
        { platform: 'Android', instanceId: 'x2' },
        { platform: 'Android', instanceId: 'x3' },
      ]);
      expect(await devicesOf(t, 'v')).to.deep.equal(['d1', 'w1', 'x4']);
      await h.close();
      await t.close();
    });

    it('the oldest is by login time: a device back from PushOnline with its session counts as a new login', async () => {
      const h = harness({ loginPolicy: 'multi', maxInstancesPerPlatform: 2 });
      const a1 = await h.connect('u', 'Android', { instanceId: 'a1' });
      await h.connect('u', 'Android', { instanceId: 'a2' });
      h.presence.engine.disconnect(a1.connection, 'closed');
      h.clock.advance(1000);
      const back = await h.reconnect(a1);
      expect(back.resumed).to.equal(true);
      expect(back.kicked).to.deep.equal([]);
      const a3 = await h.connect('u', 'Android', { instanceId: 'a3' });
      expect(a3.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'a2' }]);
      await h.close();
    });

    it('the same instanceId logging in afresh (without its session) displaces its old session', async () => {
      const h = harness({ loginPolicy: 'multi' });
      const old = await h.connect('u', 'Windows', { instanceId: 'x' });
      h.takeEvents();
      const fresh = await h.connect('u', 'Windows', { instanceId: 'x' });
      expect(fresh.resumed).to.equal(false);
      expect(fresh.connection.sessionId).to.not.equal(old.connection.sessionId);
      expect(fresh.kicked).to.deep.equal([{ platform: 'Windows', instanceId: 'x' }]);
      expect(old.notices).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Windows', instanceId: 'x' } }]);
      expect(old.connection.open).to.equal(false);
      expect((await h.user('u')).instances?.map((i) => i.instanceId)).to.deep.equal(['x']);
      expect((await h.refusal('u', 'Windows', { instanceId: 'x', sessionId: old.connection.sessionId })).code).to.equal('SESSION_REVOKED');
      const [login] = h.takeEvents();
      // The user's second change: one more than the first, which is numbered from the clock (ms × 1000).
      expect(login).to.include({ action: 'Login', reason: 'Register', previousUserStatus: 'Online', userStatus: 'Online', seq: h.clock.now() * 1000 + 1 });
      // Also across platforms: the instance id names the device.
      const web = await h.connect('u', 'Web', { instanceId: 'x' });
      expect(web.kicked).to.deep.equal([{ platform: 'Windows', instanceId: 'x' }]);
      await h.close();
    });

    it('a reconnect with the instance and its session resumes it and kicks nobody', async () => {
      const h = harness({ loginPolicy: 'single' });
      const phone = await h.connect('u', 'Android', { instanceId: 'a' });
      h.presence.engine.disconnect(phone.connection, 'closed');
      const back = await h.reconnect(phone);
      expect(back).to.deep.include({ resumed: true, kicked: [] });
      expect(back.connection.sessionId).to.equal(phone.connection.sessionId);
      await h.close();
    });
  });

  describe('kickOldestBeyondLimit (pure)', () => {
    it('answers the kicked devices oldest first, whatever order they are given in', () => {
      const existing: PolicyInstance[] = [
        { platform: 'Mac', instanceId: 'm', order: 5 },
        { platform: 'Android', instanceId: 'a2', order: 2 },
        { platform: 'Android', instanceId: 'a9', order: 9 },
        { platform: 'Web', instanceId: 'w', order: 1 },
      ];
      expect(kickOldestBeyondLimit(existing, 'Linux', limits('single', 1)).map((i) => i.instanceId)).to.deep.equal(['w', 'a2', 'm', 'a9']);
      expect(kickOldestBeyondLimit(existing, 'Android', { loginPolicy: 'multi', maxInstancesPerPlatform: 2, maxWebInstances: 1 })).to.deep.equal([
        { platform: 'Android', instanceId: 'a2', order: 2 },
      ]);
      expect(
        kickOldestBeyondLimit(existing, 'Android', { loginPolicy: 'multi', maxInstancesPerPlatform: 1, maxWebInstances: 1 }).map((i) => i.instanceId),
      ).to.deep.equal(['a2', 'a9']);
    });

    it('property: the survivors plus the new login always obey the policy and limits, and only the oldest of a platform are kicked', () => {
      const platform = fc.constantFrom(...PLATFORMS);
      fc.assert(
        fc.property(
          fc.constantFrom(...POLICIES),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 3 }),
          fc.array(platform, { maxLength: 12 }),
          platform,
          (loginPolicy, maxInstancesPerPlatform, maxWebInstances, logins, incoming) => {
            const rules: PolicyLimits = { loginPolicy, maxInstancesPerPlatform, maxWebInstances };
            // Build a legal state by logging in one by one, then check the last login.
            let state: PolicyInstance[] = [];
            let order = 0;
            for (const next of [...logins, incoming]) {
              const kicked = kickOldestBeyondLimit(state, next, rules);
              expect(kicked.map((i) => i.order)).to.deep.equal([...kicked.map((i) => i.order)].sort((a, b) => a - b));
              const survivors = state.filter((i) => !kicked.includes(i));
              for (const gone of kicked) {
                // A kicked device either may not stand beside the new one, or is older than every survivor of its platform.
                const samePlatform = gone.platform === next || (isWeb(gone.platform) && isWeb(next));
                if (samePlatform) {
                  expect(
                    survivors.filter((s) => s.platform === gone.platform || (isWeb(s.platform) && isWeb(gone.platform))).every((s) => s.order > gone.order),
                  ).to.equal(true);
                }
              }
              state = [...survivors, { platform: next, instanceId: `i${order}`, order: ++order }];
              expect(legal(state, rules), JSON.stringify(state)).to.equal(true);
            }
          },
        ),
        { numRuns: 2000 },
      );
    });
  });
});

function isWeb(platform: Platform): boolean {
  return platform === 'Web' || platform === 'MiniProgram';
}

const CLASS: Record<Platform, string> = {
  Android: 'mobile',
  iPhone: 'mobile',
  iPad: 'mobile',
  Windows: 'desktop',
  Mac: 'desktop',
  Linux: 'desktop',
  Web: 'web',
  MiniProgram: 'web',
};

/** Does a set of devices obey SPEC.md's policy and limits? */
function legal(devices: readonly PolicyInstance[], rules: PolicyLimits): boolean {
  const group = (p: Platform): string => (isWeb(p) ? 'Web' : p);
  const counts = new Map<string, number>();
  for (const device of devices) counts.set(group(device.platform), (counts.get(group(device.platform)) ?? 0) + 1);
  for (const [name, count] of counts) if (count > (name === 'Web' ? rules.maxWebInstances : rules.maxInstancesPerPlatform)) return false;
  const groups = [...counts.keys()];
  const natives = groups.filter((g) => g !== 'Web');
  switch (rules.loginPolicy) {
    case 'single':
      return groups.length <= 1;
    case 'dual':
      return natives.length <= 1;
    case 'triple':
      return natives.filter((g) => CLASS[g as Platform] === 'mobile').length <= 1 && natives.filter((g) => CLASS[g as Platform] === 'desktop').length <= 1;
    case 'multi':
      return true;
  }
}
