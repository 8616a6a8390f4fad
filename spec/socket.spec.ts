// SPEC.md's state transitions over real Socket.IO connections: login, logout, close, timeouts, background, TTL, grace, resume, tabs.

import { expect } from 'chai';
import { io as ioc } from 'socket.io-client';
import { auth, childDevice, delay, startHarness, waitFor, type ChildDevice, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';

describe('socket: transitions', () => {
  let harness: Harness | undefined;
  const children: ChildDevice[] = [];

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness(options);
    return harness;
  }

  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    await harness?.close();
    harness = undefined;
  });

  it('logs in: presence:session names the user authenticate found, and the device is Online', async () => {
    const h = await start({ heartbeatInterval: 1000, heartbeatTimeout: { web: '600ms' } });
    const device = await h.connect(auth('alice', 'Web', { version: '1.2.3', instanceId: 'tab-1' }));
    expect(device.session).to.deep.include({ userId: 'alice', instanceId: 'tab-1', platform: 'Web', kicked: [], resumed: false });
    expect(device.session.sessionId).to.be.a('string').with.length.greaterThan(8);
    // Capped at half the class's heartbeat timeout.
    expect(device.session.heartbeatInterval).to.equal(300);
    expect(await h.status('alice')).to.equal('Online');
    const [user] = await h.presence.query(['alice']);
    expect(user?.instances).to.have.length(1);
    expect(user?.instances?.[0]).to.include({ instanceId: 'tab-1', platform: 'Web', status: 'Online', version: '1.2.3' });
    expect(h.changes).to.have.length(1);
    expect(h.changes[0]).to.include({ action: 'Login', reason: 'Register', userStatus: 'Online', previousUserStatus: 'Offline', clientIp: '127.0.0.1' });
  });

  it('takes the user id from authenticate only: auth.userId is ignored', async () => {
    const h = await start();
    const device = await h.connect(auth('mallory', 'Web', { userId: 'alice', user: 'alice' }));
    expect(device.session.userId).to.equal('mallory');
    expect(await h.status('alice')).to.equal('Offline');
    expect(await h.status('mallory')).to.equal('Online');
  });

  it('accepts the iOS alias as iPhone', async () => {
    const h = await start();
    const device = await h.connect(auth('ios', 'iOS'));
    expect(device.session.platform).to.equal('iPhone');
  });

  for (const platform of ['Android', 'Windows', 'Web'] as const) {
    it(`logout (${platform}): answered, gone at once, the server disconnects, and the session is revoked`, async () => {
      const h = await start();
      const device = await h.connect(auth('bob', platform));
      const answer = await device.socket.timeout(2000).emitWithAck('presence:logout');
      expect(answer).to.deep.equal({ ok: true });
      await waitFor(() => device.disconnects.length > 0, 'the server to disconnect');
      expect(device.disconnects).to.deep.equal(['io server disconnect']);
      expect(await h.status('bob')).to.equal('Offline');
      expect(h.changes.map((c) => `${c.action}/${c.reason}/${c.userStatus}`)).to.deep.equal(['Login/Register/Online', 'Logout/Unregister/Offline']);
      const refusal = await h.refused(auth('bob', platform, { instanceId: device.session.instanceId, sessionId: device.session.sessionId }));
      expect(refusal.code).to.equal('SESSION_REVOKED');
    });
  }

  const closedTo = { Android: 'PushOnline', iPad: 'PushOnline', Linux: 'Offline', Web: 'Offline', MiniProgram: 'Offline' } as const;
  for (const [platform, expected] of Object.entries(closedTo)) {
    it(`connection closed by the client (${platform}): ${expected} at once`, async () => {
      const h = await start();
      const device = await h.connect(auth('carol', platform));
      device.socket.disconnect();
      await waitFor(() => h.changes.length === 2, 'the close to be recorded', 1000);
      expect(h.changes[1]).to.include({ action: 'Disconnect', reason: 'LinkClose', userStatus: expected });
      expect(await h.status('carol')).to.equal(expected);
    });
  }

  it('a device killed with SIGKILL (FIN from the kernel): mobile PushOnline at once, web gone at once', async () => {
    const h = await start({ serverOptions: { pingInterval: 60_000, pingTimeout: 60_000 } });
    const [phone, web] = await Promise.all([childDevice(h.url, auth('dave', 'Android')), childDevice(h.url, auth('erin', 'Web'))]);
    children.push(phone, web);
    const killedAt = Date.now();
    phone.kill('SIGKILL');
    web.kill('SIGKILL');
    await waitFor(async () => (await h.status('dave')) === 'PushOnline' && (await h.status('erin')) === 'Offline', 'the closes to be seen', 1500);
    expect(Date.now() - killedAt).to.be.below(1000);
    const reasons = h.changes.filter((c) => c.action === 'Disconnect').map((c) => `${c.userId}:${c.reason}`);
    expect(reasons.sort()).to.deep.equal(['dave:LinkClose', 'erin:LinkClose']);
  });

  it('a device frozen with SIGSTOP (no FIN) and a long pingInterval: the engine times it out (mobile PushOnline, web gone)', async function () {
    this.timeout(8000);
    const timeout = 500;
    const h = await start({ heartbeatTimeout: `${timeout}ms`, serverOptions: { pingInterval: 30_000, pingTimeout: 30_000 } });
    const [phone, web] = await Promise.all([childDevice(h.url, auth('frank', 'iPhone')), childDevice(h.url, auth('gina', 'Web'))]);
    children.push(phone, web);
    phone.kill('SIGSTOP');
    web.kill('SIGSTOP');
    await waitFor(async () => (await h.status('frank')) === 'PushOnline' && (await h.status('gina')) === 'Offline', 'the heartbeat timeouts', 3000);
    for (const userId of ['frank', 'gina']) {
      const login = h.changes.find((c) => c.userId === userId && c.action === 'Login')!;
      const timedOut = h.changes.find((c) => c.userId === userId && c.action === 'Disconnect')!;
      expect(timedOut.reason).to.equal('TimeOut');
      // Due at the last traffic (the login) plus the timeout; SPEC.md allows 100 ms, the noisy CI machine a little more.
      expect(timedOut.at - login.at).to.be.within(timeout - 5, timeout + 250);
    }
    // The server also closed the transports it gave up on (they are still frozen).
    await waitFor(() => h.io.of('/').sockets.size === 0, 'the sockets to be dropped', 1000);
  });

  it("a frozen device with a short pingInterval: the transport's ping timeout counts as a heartbeat timeout", async () => {
    const h = await start({ heartbeatTimeout: 60_000, serverOptions: { pingInterval: 150, pingTimeout: 150 } });
    const phone = await childDevice(h.url, auth('hank', 'Android'));
    children.push(phone);
    phone.kill('SIGSTOP');
    await waitFor(async () => (await h.status('hank')) === 'PushOnline', 'the ping timeout', 2000);
    expect(h.changes[1]).to.include({ action: 'Disconnect', reason: 'TimeOut', instanceStatus: 'PushOnline' });
  });

  it('any inbound traffic is a heartbeat: transport pongs, or presence:heartbeat, keep a quiet device Online past the timeout', async () => {
    // Pongs every 100 ms, no events at all.
    const pongs = await startHarness({ heartbeatTimeout: '300ms', serverOptions: { pingInterval: 100, pingTimeout: 1000 } });
    // No pongs within the test; events only.
    const events = await startHarness({ heartbeatTimeout: '300ms', serverOptions: { pingInterval: 30_000, pingTimeout: 30_000 } });
    try {
      await pongs.connect(auth('ivy', 'Web'));
      const device = await events.connect(auth('jack', 'Web'));
      const timer = setInterval(() => device.socket.emit('presence:heartbeat'), device.session.heartbeatInterval);
      await delay(900);
      clearInterval(timer);
      expect(await pongs.status('ivy')).to.equal('Online');
      expect(await events.status('jack')).to.equal('Online');
      const answer = await device.socket.timeout(1000).emitWithAck('presence:heartbeat');
      expect(answer.ok).to.equal(true);
      expect((answer as { serverTime: number }).serverTime).to.be.closeTo(Date.now(), 1000);
      // Once quiet, it times out.
      await waitFor(async () => (await events.status('jack')) === 'Offline', 'the timeout once quiet', 1500);
      expect(events.changes[1]).to.include({ reason: 'TimeOut' });
    } finally {
      await pongs.close();
      await events.close();
    }
  });

  it('background: a miniProgram is gone after its background timeout unless back in foreground; others stay Online', async () => {
    const h = await start({ backgroundTimeout: { miniProgram: '300ms' }, heartbeatTimeout: 5000 });
    const mini = await h.connect(auth('kim', 'MiniProgram'));
    const back = await h.connect(auth('lee', 'MiniProgram'));
    const phone = await h.connect(auth('max', 'Android'));
    expect(await mini.socket.timeout(1000).emitWithAck('presence:background')).to.deep.equal({ ok: true });
    expect(await back.socket.timeout(1000).emitWithAck('presence:background')).to.deep.equal({ ok: true });
    expect(await phone.socket.timeout(1000).emitWithAck('presence:background')).to.deep.equal({ ok: true });
    await delay(150);
    expect(await back.socket.timeout(1000).emitWithAck('presence:foreground')).to.deep.equal({ ok: true });
    await waitFor(async () => (await h.status('kim')) === 'Offline', 'the background timeout', 1500);
    const gone = h.changes.find((c) => c.userId === 'kim' && c.action === 'Disconnect');
    expect(gone).to.include({ reason: 'TimeOut' });
    await delay(300);
    expect(await h.status('lee')).to.equal('Online');
    expect(await h.status('max')).to.equal('Online');
    await waitFor(() => mini.disconnects.length > 0, 'the server to drop the backgrounded socket');
  });

  it('PushOnline lasts the PushOnline TTL, then the device is gone (Logout/Expired)', async () => {
    const h = await start({ pushOnlineTtl: 300 });
    const phone = await h.connect(auth('nina', 'Android'));
    phone.socket.disconnect();
    await waitFor(async () => (await h.status('nina')) === 'PushOnline', 'PushOnline');
    await waitFor(async () => (await h.status('nina')) === 'Offline', 'the TTL', 1500);
    const expired = h.changes.at(-1)!;
    expect(expired).to.include({ action: 'Logout', reason: 'Expired', userStatus: 'Offline' });
    expect(expired.at - h.changes[1]!.at).to.be.within(295, 550);
  });

  it('reconnect grace: a close followed by a reconnect within the grace changes nothing; past it, the close happens', async () => {
    const h = await start({ reconnectGrace: { web: 400 } });
    const first = await h.connect(auth('olga', 'Web'));
    const resumeAuth = auth('olga', 'Web', { instanceId: first.session.instanceId, sessionId: first.session.sessionId });
    first.socket.disconnect();
    await delay(100);
    expect(await h.status('olga')).to.equal('Online');
    const again = await h.connect(resumeAuth);
    expect(again.session).to.include({ sessionId: first.session.sessionId, resumed: true });
    await delay(500);
    expect(h.changes).to.have.length(1); // the login only
    const closedAt = Date.now();
    again.socket.disconnect();
    await waitFor(async () => (await h.status('olga')) === 'Offline', 'the grace to run out', 1500);
    expect(h.changes[1]).to.include({ action: 'Disconnect', reason: 'LinkClose' });
    expect(h.changes[1]!.at - closedAt).to.be.within(395, 700);
  });

  it('resume: a PushOnline device reconnecting with its session is Online again and kicks nobody', async () => {
    const h = await start({ loginPolicy: 'dual' });
    const web = await h.connect(auth('pat', 'Web'));
    const phone = await h.connect(auth('pat', 'Android'));
    phone.socket.disconnect();
    await waitFor(async () => (await h.presence.query(['pat']))[0]!.instances!.some((i) => i.status === 'PushOnline'), 'PushOnline');
    const back = await h.connect(auth('pat', 'Android', { instanceId: phone.session.instanceId, sessionId: phone.session.sessionId }));
    expect(back.session).to.deep.include({ sessionId: phone.session.sessionId, instanceId: phone.session.instanceId, resumed: true, kicked: [] });
    const [user] = await h.presence.query(['pat']);
    expect(user!.instances!.map((i) => `${i.platform}:${i.status}`).sort()).to.deep.equal(['Android:Online', 'Web:Online']);
    expect(web.kicks).to.deep.equal([]);
    expect(web.socket.connected).to.equal(true);
    // A resumed session is a login for the callback.
    expect(h.changes.at(-1)).to.include({ action: 'Login', reason: 'Register', userId: 'pat', platform: 'Android' });
    expect(h.changes.at(-1)!.kicked).to.deep.equal([]);
  });

  it('a sessionId the server does not know is a fresh login', async () => {
    const h = await start();
    const device = await h.connect(auth('quinn', 'Web', { sessionId: 'never-issued' }));
    expect(device.session.resumed).to.equal(false);
    expect(device.session.sessionId).to.not.equal('never-issued');
  });

  it("one device's several sockets (tabs sharing instanceId and sessionId): it stays Online until the last one closes", async () => {
    const h = await start();
    const tab1 = await h.connect(auth('ruth', 'Web'));
    const shared = { instanceId: tab1.session.instanceId, sessionId: tab1.session.sessionId };
    const tab2 = await h.connect(auth('ruth', 'Web', shared));
    const tab3 = await h.connect(auth('ruth', 'Web', shared));
    expect(tab2.session).to.include({ ...shared, resumed: true });
    expect(tab3.session.kicked).to.deep.equal([]);
    tab1.socket.disconnect();
    tab2.socket.disconnect();
    await delay(100);
    expect(await h.status('ruth')).to.equal('Online');
    expect(h.changes).to.have.length(1);
    tab3.socket.disconnect();
    await waitFor(async () => (await h.status('ruth')) === 'Offline', 'the last tab to close');
    // A logout from one tab ends the others too.
    const a = await h.connect(auth('sam', 'Web'));
    const b = await h.connect(auth('sam', 'Web', { instanceId: a.session.instanceId, sessionId: a.session.sessionId }));
    await a.socket.timeout(1000).emitWithAck('presence:logout');
    await waitFor(() => b.disconnects.length > 0, 'the other tab to be disconnected');
    expect(b.disconnects).to.deep.equal(['io server disconnect']);
    expect(await h.status('sam')).to.equal('Offline');
  });

  it('a connection that closes during its login is released (no ghost Online)', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const h = await start({
      authenticate: async (handshake) => {
        await gate;
        return { userId: String(handshake.auth.token).slice(4) };
      },
    });
    const socket = ioc(h.url, { forceNew: true, transports: ['websocket'], auth: auth('tess', 'Web') });
    h.sockets.push(socket);
    await waitFor(() => h.io.engine.clientsCount === 1, 'the transport to open');
    socket.disconnect();
    await waitFor(() => h.io.engine.clientsCount === 0, 'the transport to close');
    release();
    await delay(50);
    expect(await h.status('tess')).to.equal('Offline');
    expect(h.presence.engine.liveInstances).to.equal(0);
  });

  it("a slow app middleware after presence's: a close meanwhile releases the login; a kick meanwhile is told once connected", async () => {
    const h = await start({ loginPolicy: 'single' });
    const gates: (() => void)[] = [];
    h.io.use((_socket, next) => {
      gates.push(() => next());
    });
    // Closed while held: PushOnline at once for a phone.
    const held = ioc(h.url, { forceNew: true, transports: ['websocket'], reconnection: false, auth: auth('uri', 'Android') });
    h.sockets.push(held);
    await waitFor(() => gates.length === 1, 'the login to reach the slow middleware');
    expect(await h.status('uri')).to.equal('Online');
    await delay(20);
    held.disconnect();
    await waitFor(async () => (await h.status('uri')) === 'PushOnline', 'the held login to be released', 1000);
    gates.shift()!();
    expect(h.presence.engine.liveInstances).to.equal(0);
    // Kicked while held: once connected it gets the session, then the kick.
    const first = h.connect(auth('val', 'Web'));
    await waitFor(() => gates.length === 1, 'the first login to be held');
    await delay(20);
    const second = h.connect(auth('val', 'Mac'));
    await waitFor(() => gates.length === 2, 'the second login to be held');
    gates.shift()!();
    gates.shift()!();
    const [kicked, winner] = await Promise.all([first, second]);
    await waitFor(() => kicked.disconnects.length > 0, 'the held kick to be delivered');
    expect(kicked.kicks).to.deep.equal([{ reason: 'LoginElsewhere', by: { platform: 'Mac', instanceId: winner.session.instanceId } }]);
    expect(winner.socket.connected).to.equal(true);
  });
});
