// Kicks over real Socket.IO connections: every login policy, PushOnline devices, revoked sessions, admin kicks.

import { expect } from 'chai';
import type { LoginPolicy } from '../lib/index.js';
import { auth, delay, next, startHarness, waitFor, type Device, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';

interface Scenario {
  policy: LoginPolicy;
  options?: HarnessOptions;
  before: string[];
  login: string;
  /** Indexes into `before` of the devices the login displaces. */
  kicked: number[];
}

const scenarios: Scenario[] = [
  { policy: 'single', before: ['Android'], login: 'Windows', kicked: [0] },
  { policy: 'single', before: ['Mac'], login: 'Web', kicked: [0] },
  { policy: 'single', before: ['Android'], login: 'Android', kicked: [0] },
  { policy: 'single', before: ['Web'], login: 'MiniProgram', kicked: [0] },
  { policy: 'dual', before: ['Mac'], login: 'Web', kicked: [] },
  { policy: 'dual', before: ['Android', 'Web'], login: 'Windows', kicked: [0] },
  { policy: 'dual', before: ['Android', 'Web'], login: 'MiniProgram', kicked: [1] },
  { policy: 'triple', before: ['Android', 'Windows'], login: 'Web', kicked: [] },
  { policy: 'triple', before: ['Android', 'Windows', 'Web'], login: 'iPad', kicked: [0] },
  { policy: 'triple', before: ['Android', 'Windows', 'Web'], login: 'Linux', kicked: [1] },
  { policy: 'multi', before: ['Android', 'iPhone', 'Windows', 'Mac', 'Web'], login: 'Linux', kicked: [] },
  { policy: 'multi', before: ['Android', 'Web'], login: 'Android', kicked: [0] },
  { policy: 'multi', options: { maxInstancesPerPlatform: 2 }, before: ['Android', 'Android'], login: 'Android', kicked: [0] },
  { policy: 'multi', options: { maxWebInstances: 2 }, before: ['Web', 'MiniProgram'], login: 'Web', kicked: [0] },
];

describe('socket: kicks', () => {
  let harness: Harness | undefined;

  async function start(options: HarnessOptions): Promise<Harness> {
    harness = await startHarness(options);
    return harness;
  }

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  for (const scenario of scenarios) {
    const extra = scenario.options ? ` ${JSON.stringify(scenario.options)}` : '';
    it(`${scenario.policy}${extra}: [${scenario.before.join(', ')}] then ${scenario.login} kicks [${scenario.kicked.map((i) => scenario.before[i]).join(', ')}]`, async () => {
      const h = await start({ loginPolicy: scenario.policy, ...scenario.options });
      const before: Device[] = [];
      for (const [i, platform] of scenario.before.entries()) before.push(await h.connect(auth('uma', platform, { instanceId: `old-${i}` })));
      const order: string[] = [];
      for (const device of before) {
        device.socket.on('presence:kicked', () => order.push(`${device.session.instanceId}:kicked`));
        device.socket.on('disconnect', () => order.push(`${device.session.instanceId}:disconnect`));
      }
      const newcomer = await h.connect(auth('uma', scenario.login, { instanceId: 'new' }));
      const by = { platform: newcomer.session.platform, instanceId: 'new' };
      const expectedKicked = scenario.kicked.map((i) => ({ platform: before[i]!.session.platform, instanceId: `old-${i}` }));
      expect(newcomer.session.kicked).to.deep.equal(expectedKicked);
      await waitFor(() => scenario.kicked.every((i) => before[i]!.disconnects.length > 0), 'the kicked devices to be disconnected');
      for (const [i, device] of before.entries()) {
        if (scenario.kicked.includes(i)) {
          expect(device.kicks).to.deep.equal([{ reason: 'LoginElsewhere', by }]);
          expect(device.disconnects).to.deep.equal(['io server disconnect']);
          // The notice always comes before the disconnect.
          expect(order.filter((e) => e.startsWith(`old-${i}:`))).to.deep.equal([`old-${i}:kicked`, `old-${i}:disconnect`]);
        } else {
          expect(device.kicks).to.deep.equal([]);
          expect(device.socket.connected).to.equal(true);
        }
      }
      const [user] = await h.presence.query(['uma']);
      const expectedLeft = [...before.filter((_, i) => !scenario.kicked.includes(i)).map((d) => d.session.instanceId), 'new'];
      expect(user!.instances!.map((i) => i.instanceId).sort()).to.deep.equal(expectedLeft.sort());
      // The kicked devices are listed on the Login that kicked them, with no change of their own.
      const last = h.changes.at(-1)!;
      expect(last).to.include({ action: 'Login', instanceId: 'new' });
      expect(last.kicked).to.deep.equal(expectedKicked);
      expect(h.changes).to.have.length(scenario.before.length + 1);
    });
  }

  it("a kicked device's reconnect with its session is refused (SESSION_REVOKED) and the newer device is untouched", async () => {
    const h = await start({ loginPolicy: 'single' });
    const old = await h.connect(auth('vera', 'Android', { instanceId: 'phone' }));
    const newer = await h.connect(auth('vera', 'iPhone', { instanceId: 'other-phone' }));
    await waitFor(() => old.disconnects.length > 0, 'the kick');
    // A client that ignores the notice and connects again with the session it was given.
    old.socket.auth = auth('vera', 'Android', { instanceId: 'phone', sessionId: old.session.sessionId });
    const refused = next<Error & { data: { code: string } }>(old.socket, 'connect_error');
    old.socket.connect();
    expect((await refused).data.code).to.equal('SESSION_REVOKED');
    await delay(50);
    expect(newer.socket.connected).to.equal(true);
    expect(newer.kicks).to.deep.equal([]);
    const [user] = await h.presence.query(['vera']);
    expect(user!.instances!.map((i) => i.instanceId)).to.deep.equal(['other-phone']);
  });

  it('a PushOnline device is kicked like any other, and its automatic reconnect is refused', async () => {
    const h = await start({ loginPolicy: 'single' });
    const phone = await h.connect(auth('wade', 'Android', { instanceId: 'phone' }), { reconnection: true, reconnectionDelay: 300, reconnectionDelayMax: 300 });
    // The auth of a client that kept its session (as the client helper does).
    phone.socket.auth = auth('wade', 'Android', { instanceId: 'phone', sessionId: phone.session.sessionId });
    const refused = next<Error & { data: { code: string } }>(phone.socket, 'connect_error', 3000);
    // The network drops (no kick notice can reach it); socket.io-client will reconnect by itself.
    phone.socket.io.engine.close();
    await waitFor(async () => (await h.status('wade')) === 'PushOnline', 'PushOnline');
    const desktop = await h.connect(auth('wade', 'Windows', { instanceId: 'desk' }));
    expect(desktop.session.kicked).to.deep.equal([{ platform: 'Android', instanceId: 'phone' }]);
    expect((await refused).data.code).to.equal('SESSION_REVOKED');
    expect(desktop.socket.connected).to.equal(true);
    expect(desktop.kicks).to.deep.equal([]);
    expect(await h.status('wade')).to.equal('Online');
  });

  it('resume kicks nobody, even when other devices logged in meanwhile under the policy', async () => {
    const h = await start({ loginPolicy: 'triple' });
    const phone = await h.connect(auth('xena', 'Android', { instanceId: 'phone' }));
    phone.socket.disconnect();
    await waitFor(async () => (await h.status('xena')) === 'PushOnline', 'PushOnline');
    const desk = await h.connect(auth('xena', 'Mac', { instanceId: 'desk' }));
    const web = await h.connect(auth('xena', 'Web', { instanceId: 'tab' }));
    const back = await h.connect(auth('xena', 'Android', { instanceId: 'phone', sessionId: phone.session.sessionId }));
    expect(back.session).to.deep.include({ resumed: true, kicked: [] });
    await delay(50);
    expect(desk.kicks).to.deep.equal([]);
    expect(web.kicks).to.deep.equal([]);
    expect(desk.socket.connected && web.socket.connected).to.equal(true);
  });

  it('an admin kick sends presence:kicked { reason: AdminKick } without `by`, to the devices it names only', async () => {
    const h = await start({ loginPolicy: 'dual' });
    const phone = await h.connect(auth('yann', 'Android'));
    const web = await h.connect(auth('yann', 'Web'));
    const kicked = await h.presence.kick('yann', { platform: 'Web' });
    expect(kicked).to.deep.equal([{ platform: 'Web', instanceId: web.session.instanceId }]);
    await waitFor(() => web.disconnects.length > 0, 'the kicked web socket to be disconnected');
    expect(web.kicks).to.deep.equal([{ reason: 'AdminKick' }]);
    expect(phone.kicks).to.deep.equal([]);
    expect(phone.socket.connected).to.equal(true);
    expect((await h.refused(auth('yann', 'Web', { instanceId: web.session.instanceId, sessionId: web.session.sessionId }))).code).to.equal('SESSION_REVOKED');
    await h.presence.kick('yann');
    await waitFor(() => phone.disconnects.length > 0, 'the phone to be disconnected');
    expect(phone.kicks).to.deep.equal([{ reason: 'AdminKick' }]);
    expect(await h.status('yann')).to.equal('Offline');
  });
});
