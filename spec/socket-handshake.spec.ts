// The presence handshake over real Socket.IO connections: refusals with codes, identity from authenticate only, attach() errors.

import { expect } from 'chai';
import { Server } from 'socket.io';
import { createPresence } from '../lib/index.js';
import { auth, startHarness, type Harness, type HarnessOptions } from './fixtures/socket-harness.js';

describe('socket: handshake', () => {
  let harness: Harness | undefined;

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    harness = await startHarness(options);
    return harness;
  }

  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it('refuses a handshake authenticate does not accept with UNAUTHENTICATED', async () => {
    const h = await start();
    expect(await h.refused({ platform: 'Web' })).to.deep.equal({
      code: 'UNAUTHENTICATED',
      message: 'authentication refused this handshake',
    });
    expect((await h.refused({ platform: 'Web', token: 'forged' })).code).to.equal('UNAUTHENTICATED');
    // A client naming a user without a credential is not that user.
    expect((await h.refused({ platform: 'Web', userId: 'alice' })).code).to.equal('UNAUTHENTICATED');
    expect(h.errors).to.deep.equal([]);
  });

  it('accepts an async authenticate, and refuses (and logs) one that throws or rejects', async () => {
    let mode: 'ok' | 'throw' | 'reject' = 'ok';
    const h = await start({
      authenticate: (handshake) => {
        if (mode === 'throw') throw new Error('database down');
        return new Promise((resolve, reject) =>
          setTimeout(() => (mode === 'reject' ? reject(new Error('token service down')) : resolve({ userId: String(handshake.auth.token).slice(4) })), 10),
        );
      },
    });
    const device = await h.connect(auth('amy', 'Web'));
    expect(device.session.userId).to.equal('amy');
    mode = 'throw';
    expect(await h.refused(auth('amy', 'Web'))).to.deep.equal({ code: 'UNAUTHENTICATED', message: 'authentication failed' });
    mode = 'reject';
    expect((await h.refused(auth('amy', 'Web'))).code).to.equal('UNAUTHENTICATED');
    expect(h.errors).to.have.length(2);
    expect(String(h.errors[0]?.[0])).to.match(/authenticate threw/);
  });

  it('refuses with SERVER_ERROR (and logs the app bug) when authenticate answers no usable userId', async () => {
    const h = await start({ authenticate: () => ({ userId: 42 as unknown as string }) });
    expect((await h.refused({ platform: 'Web' })).code).to.equal('SERVER_ERROR');
    expect(String(h.errors[0]?.[0])).to.match(/authenticate must answer \{ userId \}/);
  });

  for (const platform of [undefined, 'Symbian', 'web', 42, ['Web'], { name: 'Web' }]) {
    it(`refuses platform ${JSON.stringify(platform)} with BAD_PLATFORM naming the platforms`, async () => {
      const h = await start();
      const refusal = await h.refused({ token: 'tok:bea', platform });
      expect(refusal.code).to.equal('BAD_PLATFORM');
      expect(refusal.message).to.match(/platform must be one of "Android", "iPhone", "iPad", "Windows", "Mac", "Linux", "Web", "MiniProgram", "iOS"/);
    });
  }

  const badFields: [string, unknown][] = [
    ['instanceId', 'x'.repeat(129)],
    ['instanceId', ''],
    ['instanceId', 42],
    ['instanceId', { id: 'x' }],
    ['version', 'v'.repeat(129)],
    ['version', ['1']],
    ['sessionId', 's'.repeat(129)],
    ['sessionId', true],
  ];
  for (const [field, value] of badFields) {
    it(`refuses ${field} ${JSON.stringify(value).slice(0, 30)} with BAD_REQUEST naming the field`, async () => {
      const h = await start();
      const refusal = await h.refused(auth('cy', 'Web', { [field]: value }));
      expect(refusal.code).to.equal('BAD_REQUEST');
      expect(refusal.message).to.contain(field);
      expect(await h.status('cy')).to.equal('Offline');
    });
  }

  it('accepts ids of exactly 128 characters', async () => {
    const h = await start();
    const device = await h.connect(auth('dee', 'Web', { instanceId: 'i'.repeat(128), version: 'v'.repeat(128) }));
    expect(device.session.instanceId).to.have.length(128);
  });

  it("another user's sessionId and instanceId do not let a client act as that user or disturb them", async () => {
    const h = await start({ loginPolicy: 'multi' });
    const alice = await h.connect(auth('alice', 'Android', { instanceId: 'alice-phone' }));
    const mallory = await h.connect(auth('mallory', 'Android', { instanceId: 'alice-phone', sessionId: alice.session.sessionId, userId: 'alice' }));
    expect(mallory.session).to.include({ userId: 'mallory', resumed: false });
    expect(mallory.session.sessionId).to.not.equal(alice.session.sessionId);
    expect(alice.kicks).to.deep.equal([]);
    expect(alice.socket.connected).to.equal(true);
    const [a, m] = await h.presence.query(['alice', 'mallory']);
    expect(a!.instances).to.have.length(1);
    expect(m!.instances).to.have.length(1);
    // Mallory's logout cannot end Alice's session either.
    await mallory.socket.timeout(1000).emitWithAck('presence:logout');
    expect(await h.status('alice')).to.equal('Online');
  });

  it('attach() needs authenticate, a server or namespace, and one presence per namespace', () => {
    const io = new Server();
    try {
      expect(() => createPresence().attach(io)).to.throw(TypeError, /attach\(\) needs the authenticate option/);
      const authenticate = () => null;
      expect(() => createPresence({ authenticate }).attach({} as Server)).to.throw(TypeError, /Socket\.IO server or namespace/);
      createPresence({ authenticate }).attach(io);
      expect(() => createPresence({ authenticate }).attach(io.of('/'))).to.throw(TypeError, /already has a presence attached/);
      createPresence({ authenticate }).attach(io.of('/other'));
    } finally {
      void io.close();
    }
  });
});
