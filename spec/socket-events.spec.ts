// Client events over real Socket.IO connections: answers, custom status limits, and junk of every shape (fast-check).

import { expect } from 'chai';
import fc from 'fast-check';
import { auth, delay, startHarness, type Device, type Harness } from './fixtures/socket-harness.js';

type Loose = { emit(event: string, ...args: unknown[]): unknown; timeout(ms: number): { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> } };

const CODES = ['BAD_REQUEST', 'TOO_MANY_SUBSCRIPTIONS', 'NOT_LOGGED_IN', 'SERVER_ERROR'];
const EVENTS = ['presence:heartbeat', 'presence:background', 'presence:foreground', 'presence:subscribe', 'presence:unsubscribe', 'presence:set-status'];

/** Anything a client could put on the wire: JSON values, odd numbers, binary. */
const junk = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.uint8Array({ maxLength: 16 }),
  fc.record({ userIds: fc.anything({ maxDepth: 2 }) }),
  fc.record({ customStatus: fc.anything({ maxDepth: 2 }) }),
  fc.record({ userIds: fc.array(fc.oneof(fc.string({ maxLength: 140 }), fc.integer(), fc.constant(null)), { maxLength: 5 }) }),
);

describe('socket: client events', () => {
  let harness: Harness;
  let device: Device;
  let socket: Loose;

  beforeEach(async () => {
    // Hundreds of events in a burst: the rate limit is off here (spec/socket-fair-use.spec.ts covers it).
    harness = await startHarness({ maxSubscriptions: 20, eventRateLimit: false });
    device = await harness.connect(auth('zoe', 'Web'));
    socket = device.socket as unknown as Loose;
  });

  afterEach(async () => {
    await harness.close();
  });

  async function ask(event: string, ...args: unknown[]): Promise<Record<string, unknown>> {
    return (await socket.timeout(2000).emitWithAck(event, ...args)) as Record<string, unknown>;
  }

  it('answers heartbeat, background and foreground with ok, whether or not an ack or an empty object is given', async () => {
    const heartbeat = await ask('presence:heartbeat');
    expect(heartbeat.ok).to.equal(true);
    expect(heartbeat.serverTime).to.be.a('number');
    expect(await ask('presence:heartbeat', {})).to.include({ ok: true });
    expect(await ask('presence:background')).to.deep.equal({ ok: true });
    expect(await ask('presence:foreground', null)).to.deep.equal({ ok: true });
    // No acknowledgement: nothing to answer, nothing breaks.
    socket.emit('presence:heartbeat');
    socket.emit('presence:subscribe', { userIds: ['x'] });
    socket.emit('presence:set-status', 'junk');
    expect(await ask('presence:heartbeat')).to.include({ ok: true });
  });

  it('set-status takes at most 100 bytes of UTF-8, clears with null or empty, and answers BAD_REQUEST otherwise', async () => {
    expect(await ask('presence:set-status', { customStatus: 'a'.repeat(100) })).to.deep.equal({ ok: true, customStatus: 'a'.repeat(100) });
    expect(await ask('presence:set-status', { customStatus: '€'.repeat(33) })).to.deep.equal({ ok: true, customStatus: '€'.repeat(33) });
    const tooLong = await ask('presence:set-status', { customStatus: '€'.repeat(34) });
    expect(tooLong).to.include({ ok: false, code: 'BAD_REQUEST' });
    expect(tooLong.message).to.match(/at most 100 bytes of UTF-8; got 102/);
    expect((await harness.presence.query(['zoe']))[0]!.customStatus).to.equal('€'.repeat(33));
    expect(await ask('presence:set-status', { customStatus: 'a'.repeat(101) })).to.include({ ok: false, code: 'BAD_REQUEST' });
    expect(await ask('presence:set-status', { customStatus: 42 })).to.include({ ok: false, code: 'BAD_REQUEST' });
    expect(await ask('presence:set-status', {})).to.include({ ok: false, code: 'BAD_REQUEST' });
    expect(await ask('presence:set-status', 'hello')).to.include({ ok: false, code: 'BAD_REQUEST' });
    expect(await ask('presence:set-status', { customStatus: '' })).to.deep.equal({ ok: true, customStatus: null });
    expect(await ask('presence:set-status', { customStatus: null })).to.deep.equal({ ok: true, customStatus: null });
    expect((await harness.presence.query(['zoe']))[0]!.customStatus).to.equal(null);
  });

  it('subscribe and unsubscribe refuse malformed user id lists, naming the problem', async () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /takes \{ userIds/],
      ['u1', /takes \{ userIds/],
      [{ userIds: 'u1' }, /takes \{ userIds/],
      [{ userIds: ['ok', 7] }, /userIds\[1\] must be a non-empty string/],
      [{ userIds: [''] }, /userIds\[0\] must be a non-empty string/],
      [{ userIds: ['x'.repeat(129)] }, /at most 128 characters/],
    ];
    for (const [payload, message] of cases) {
      for (const event of ['presence:subscribe', 'presence:unsubscribe']) {
        const answer = payload === undefined ? await ask(event) : await ask(event, payload);
        expect(answer, `${event} ${JSON.stringify(payload)}`).to.include({ ok: false, code: 'BAD_REQUEST' });
        expect(answer.message).to.match(message);
      }
    }
  });

  it('a logout with a junk payload is refused and logs nobody out', async () => {
    expect(await ask('presence:logout', 'please')).to.include({ ok: false, code: 'BAD_REQUEST' });
    expect(await ask('presence:logout', [1, 2])).to.include({ ok: false, code: 'BAD_REQUEST' });
    await delay(20);
    expect(device.socket.connected).to.equal(true);
    expect(await harness.status('zoe')).to.equal('Online');
  });

  it('junk of every shape on every event gets a well-formed answer, throws nothing on the server, and leaves the connection healthy', async function () {
    this.timeout(20_000);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...EVENTS), fc.array(junk, { maxLength: 3 }), fc.boolean(), async (event, args, withAck) => {
        if (!withAck) {
          socket.emit(event, ...args);
          return;
        }
        const answer = await ask(event, ...args);
        expect(answer.ok, JSON.stringify(answer)).to.be.a('boolean');
        if (answer.ok === false) {
          expect(CODES).to.include(answer.code);
          expect(answer.message).to.be.a('string').and.not.equal('');
        }
      }),
      { numRuns: 400 },
    );
    // Junk on events presence does not know is ignored.
    socket.emit('presence:unknown', { a: 1 });
    expect(await ask('presence:heartbeat')).to.include({ ok: true });
    expect(device.socket.connected).to.equal(true);
    expect(await harness.status('zoe')).to.equal('Online');
    expect(harness.errors, 'nothing logged as a server failure').to.deep.equal([]);
  });

  it('a forged reserved event or a garbled frame only closes that connection, as a closed connection', async () => {
    const other = await harness.connect(auth('yuri', 'Android'));
    // What socket.io-client refuses to send: an event named "disconnect", then raw garbage.
    device.socket.io.engine.send('42["disconnect","transport close"]');
    await delay(50);
    other.socket.io.engine.send('4{garbage');
    await delay(50);
    expect(await harness.status('zoe')).to.equal('Offline');
    expect(await harness.status('yuri')).to.equal('PushOnline');
    expect(harness.changes.slice(-2).map((c) => `${c.userId}:${c.action}/${c.reason}`)).to.deep.equal([
      'zoe:Disconnect/LinkClose',
      'yuri:Disconnect/LinkClose',
    ]);
    expect(harness.errors).to.deep.equal([]);
    const fresh = await harness.connect(auth('zoe', 'Web'));
    expect(fresh.session.userId).to.equal('zoe');
  });
});
