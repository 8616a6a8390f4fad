// Fuzz of the Socket.IO handshake: hostile `auth` payloads over one reused connection, each login or refusal checked against a model of sessions, kicks and revocations.

import { expect } from 'chai';
import fc from 'fast-check';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { PLATFORMS, type KickedPayload, type SessionPayload } from '../../lib/index.js';
import { startHarness, waitFor, type Harness } from '../fixtures/socket-harness.js';
import {
  aroundLength,
  describeLogged,
  fuzzParameters,
  idLike,
  jsonJunk,
  must,
  objectWithKeys,
  platformName,
  ProcessFaults,
  protoKey,
  anyString,
  prototypeFingerprint,
  RUNS,
  tally,
  timeoutFor,
  type Tally,
} from './common.js';
import { deliver, fuzzAuthenticate, Line, serveKeepalive, type Login } from './socket-line.js';

const MAX_ID_LENGTH = 128;
const MAX_MESSAGE = 1e6;
const USERS = ['h1', 'h2', 'h3', 'victim'];
const INSTANCES = ['i1', 'i2', 'i3'];
const MOBILE = ['Android', 'iPhone', 'iPad'];
/** The documented refusal codes of a handshake. */
const HANDSHAKE_CODES = ['UNAUTHENTICATED', 'BAD_PLATFORM', 'BAD_REQUEST', 'SESSION_REVOKED'];
/** Devices left connected at once (each on its own connection), to be kicked by later logins. */
const MAX_STAYING = 12;

/** A field of the generated auth: absent, or a value. */
const ABSENT = Symbol('absent');
type Field = unknown;

interface HandshakeCase {
  token: Field;
  platform: Field;
  instanceId: Field;
  version: Field;
  /** A session id; a `{ known: n }` picks the n-th session the run has seen. */
  sessionId: Field;
  /** Aligns token, platform and instance id with the picked session, so it can be resumed. */
  resumeAligned: boolean;
  /** A spoofed user id, which the server must ignore. */
  userId: Field;
  extras: [string, unknown][];
  /** Stay connected (on a connection of its own) after logging in. */
  stay: boolean;
}

// ---------------------------------------------------------------- generators

const absent = fc.constant<Field>(ABSENT);

function field(valid: fc.Arbitrary<unknown>, validWeight: number, absentWeight: number): fc.Arbitrary<Field> {
  return fc.oneof(
    { weight: absentWeight, arbitrary: absent },
    { weight: validWeight, arbitrary: valid },
    { weight: 1, arbitrary: fc.oneof(idLike, aroundLength(MAX_ID_LENGTH)) },
    { weight: 1, arbitrary: jsonJunk },
  );
}

const handshakeCase: fc.Arbitrary<HandshakeCase> = fc.record({
  token: fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...USERS).map((user) => `tok:${user}`) },
    { weight: 1, arbitrary: fc.oneof(idLike, protoKey).map((id) => `tok:${id}`) },
    { weight: 1, arbitrary: fc.constantFrom('tok:', `tok:${'x'.repeat(129)}`, 'Bearer h1', 'h1', 'TOK:h1') },
    { weight: 1, arbitrary: fc.oneof(absent, jsonJunk) },
  ),
  platform: fc.oneof(
    { weight: 24, arbitrary: fc.constantFrom(...PLATFORMS, 'iOS') },
    { weight: 6, arbitrary: platformName },
    { weight: 1, arbitrary: absent },
    { weight: 1, arbitrary: jsonJunk },
  ),
  instanceId: field(fc.constantFrom(...INSTANCES), 4, 3),
  version: field(fc.constantFrom('1.0.0', '2.3.4-beta'), 3, 4),
  sessionId: field(
    fc.nat().map((n) => ({ known: n })),
    5,
    4,
  ),
  resumeAligned: fc.boolean(),
  userId: fc.oneof({ weight: 4, arbitrary: absent }, { weight: 1, arbitrary: fc.constantFrom('victim', 'h1', 'admin') }, { weight: 1, arbitrary: jsonJunk }),
  extras: fc.oneof(
    { weight: 80, arbitrary: fc.constant<[string, unknown][]>([]) },
    { weight: 30, arbitrary: fc.array(fc.tuple(fc.oneof(protoKey, anyString, fc.constantFrom('pid', 'offset', 'user', 'uid')), jsonJunk), { maxLength: 3 }) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constant('padding'),
          fc.integer({ min: 1_100_000, max: 1_200_000 }).map((n) => 'p'.repeat(n)),
        )
        .map((entry) => [entry]),
    },
  ),
  stay: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

// ---------------------------------------------------------------- the model of sessions

type SessionState = 'live' | 'removed' | 'revoked';

interface KnownSession {
  sessionId: string;
  userId: string;
  instanceId: string;
  platform: string;
  state: SessionState;
  /** The connections that keep it Online, when it stayed. */
  readonly stays: Set<Staying>;
}

interface Staying {
  socket: ClientSocket;
  session: KnownSession;
  kicks: KickedPayload[];
  closed: Promise<void>;
}

type Expected =
  { kind: 'refused'; codes: string[] } | { kind: 'session'; userId: string; platform: string; resume: KnownSession | undefined } | { kind: 'closed' };

function own(value: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(value, key) ? value[key] : undefined;
}

function canonicalPlatform(value: unknown): string | undefined {
  if (value === 'iOS') return 'iPhone';
  return typeof value === 'string' && (PLATFORMS as readonly string[]).includes(value) ? value : undefined;
}

function badOptionalId(value: unknown): boolean {
  return value !== undefined && value !== null && !(typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH);
}

class SessionModel {
  readonly sessions: KnownSession[] = [];
  private readonly byId = new Map<string, KnownSession>();

  /** One of the last few sessions seen (older ones are mostly revoked by now), or now and then any of them. */
  pick(index: number): KnownSession | undefined {
    const count = this.sessions.length;
    if (count === 0) return undefined;
    return index % 4 === 0 ? this.sessions[index % count] : this.sessions[count - 1 - (index % Math.min(count, 6))];
  }

  get(sessionId: unknown): KnownSession | undefined {
    return typeof sessionId === 'string' ? this.byId.get(sessionId) : undefined;
  }

  /** What the server owes a handshake carrying `auth` (as the server receives it). */
  expect(auth: Record<string, unknown>): Expected {
    const identity = fuzzAuthenticate({ auth });
    if (!identity) return { kind: 'refused', codes: ['UNAUTHENTICATED'] };
    const platform = canonicalPlatform(own(auth, 'platform'));
    if (!platform) return { kind: 'refused', codes: ['BAD_PLATFORM'] };
    if (['instanceId', 'sessionId', 'version'].some((name) => badOptionalId(own(auth, name)))) return { kind: 'refused', codes: ['BAD_REQUEST'] };
    const sessionId = own(auth, 'sessionId');
    const known = this.get(sessionId);
    if (known?.state === 'revoked') return { kind: 'refused', codes: ['SESSION_REVOKED'] };
    const instanceId = own(auth, 'instanceId');
    const resumes = known?.state === 'live' && known.userId === identity.userId && known.instanceId === instanceId && known.platform === platform;
    return { kind: 'session', userId: identity.userId, platform, resume: resumes ? known : undefined };
  }

  /** The user's live sessions, which a fresh login displaces (the `single` policy: one device at a time). */
  liveOf(userId: string): KnownSession[] {
    return this.sessions.filter((session) => session.userId === userId && session.state === 'live');
  }

  /** A fresh login: every other live session of the user is kicked and revoked. */
  loggedIn(session: SessionPayload): KnownSession[] {
    const displaced = this.liveOf(session.userId);
    for (const old of displaced) old.state = 'revoked';
    const known: KnownSession = {
      sessionId: session.sessionId,
      userId: session.userId,
      instanceId: session.instanceId,
      platform: session.platform,
      state: 'live',
      stays: new Set(),
    };
    this.sessions.push(known);
    this.byId.set(known.sessionId, known);
    return displaced;
  }

  /** One of its connections closed; once the last one has, a mobile device stays (PushOnline) and the others are gone without being revoked. */
  closed(session: KnownSession): void {
    if (session.state === 'live' && session.stays.size === 0 && !MOBILE.includes(session.platform)) session.state = 'removed';
  }
}

// ---------------------------------------------------------------- the run

function buildAuth(request: HandshakeCase, model: SessionModel): Record<string, unknown> {
  const entries: [string, unknown][] = [];
  const put = (name: string, value: Field): void => {
    if (value !== ABSENT) entries.push([name, value]);
  };
  let { token, platform, instanceId } = request;
  let sessionId = request.sessionId;
  const known = typeof sessionId === 'object' && sessionId !== null && 'known' in sessionId ? model.pick((sessionId as { known: number }).known) : undefined;
  if (typeof sessionId === 'object' && sessionId !== null && 'known' in sessionId) {
    sessionId = known ? known.sessionId : ABSENT;
    if (known && request.resumeAligned) {
      token = `tok:${known.userId}`;
      platform = known.platform;
      instanceId = known.instanceId;
    }
  }
  put('token', token);
  put('platform', platform);
  put('instanceId', instanceId);
  put('version', request.version);
  put('sessionId', sessionId);
  put('userId', request.userId);
  entries.push(...request.extras);
  return objectWithKeys(entries);
}

function sortedRefs(refs: readonly { platform: string; instanceId: string }[]): string[] {
  return refs.map((ref) => `${ref.platform}/${ref.instanceId}`).sort();
}

describe(`fuzz: Socket.IO handshake (${RUNS} inputs)`, () => {
  let harness: Harness;
  const faults = new ProcessFaults();
  let fingerprint: string;

  before(async () => {
    harness = await startHarness({ authenticate: fuzzAuthenticate });
    serveKeepalive(harness.io);
    fingerprint = prototypeFingerprint();
    faults.start();
  });

  after(async () => {
    faults.stop();
    await harness.close();
  });

  it('auth of every shape: each login or refusal as modelled, refusals coded, kicks told, nothing logged', async function () {
    this.timeout(timeoutFor(RUNS, 40));
    const counts: Tally = tally('handshake', 'auth');
    const model = new SessionModel();
    const staying: Staying[] = [];
    const pendingKicks: Promise<void>[] = [];
    let line = await Line.open(harness.url);

    /** Expects a staying device to be told it was displaced by `by`, then disconnected. */
    const expectKicked = (stay: Staying, by: SessionPayload): void => {
      pendingKicks.push(
        Promise.race([
          stay.closed,
          new Promise<void>((_, reject) => setTimeout(() => reject(new Error('a displaced device was not disconnected within 5 s')), 5000)),
        ]).then(() => {
          const notice = stay.kicks[0];
          must(notice !== undefined, 'a displaced device got no presence:kicked', () => stay.session.sessionId);
          must(
            notice.reason === 'LoginElsewhere' && notice.by?.platform === by.platform && notice.by.instanceId === by.instanceId,
            'a kick notice not naming its displacer',
            () => `${JSON.stringify(notice)} by ${by.platform}/${by.instanceId}`,
          );
        }),
      );
    };

    /** A device that stays logged in on a connection of its own. */
    const openStaying = async (auth: Record<string, unknown>): Promise<{ login: Login; stay?: Staying }> => {
      const socket = ioc(harness.url, { forceNew: true, transports: ['websocket'], reconnection: false, auth });
      const kicks: KickedPayload[] = [];
      socket.on('presence:kicked', (notice: KickedPayload) => kicks.push(notice));
      const login = await new Promise<Login>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer to a staying login within 5 s')), 5000);
        socket.once('presence:session', (session: SessionPayload) => {
          clearTimeout(timer);
          resolve({ kind: 'session', session });
        });
        socket.once('connect_error', (error: Error & { data?: { code: string; message: string } }) => {
          clearTimeout(timer);
          resolve({ kind: 'refused', data: error.data as never, message: error.message });
        });
      });
      if (login.kind !== 'session') {
        socket.close();
        return { login };
      }
      const closed = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
      return { login, stay: { socket, session: undefined as unknown as KnownSession, kicks, closed } };
    };

    await fc.assert(
      fc.asyncProperty(handshakeCase, async (request) => {
        harness.errors.length = 0;
        if (!line.alive) {
          line.close();
          line = await Line.open(harness.url);
        }
        const auth = buildAuth(request, model);
        const delivery = deliver([auth], MAX_MESSAGE);
        const oversized = delivery.values === undefined;
        const delivered = (delivery.values?.[0] ?? {}) as Record<string, unknown>;
        const expected: Expected = oversized ? { kind: 'closed' } : model.expect(delivered);
        const context = (): string =>
          `auth ${JSON.stringify(auth)?.slice(0, 400)}; model ${JSON.stringify(expected, (key, value: unknown) => (key === 'stays' ? undefined : value))}`;

        let login: Login;
        let stay: Staying | undefined;
        if (oversized) {
          const dropped = new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('a handshake over maxHttpBufferSize did not close the connection')), 5000);
            line.keep.once('disconnect', () => {
              clearTimeout(timer);
              resolve();
            });
          });
          line.presence.auth = auth;
          line.presence.connect();
          await dropped;
          counts.add('closed (over maxHttpBufferSize)');
          return;
        }
        if (request.stay && expected.kind === 'session') {
          // Everything the line sent (a close, say) must reach the server before another connection logs in.
          await line.sync();
          ({ login, stay } = await openStaying(auth));
        } else {
          login = await line.login(auth);
        }

        if (login.kind === 'refused') {
          const code = login.data?.code ?? '(no data)';
          must(HANDSHAKE_CODES.includes(code), `an undocumented connect_error code ${code}`, context);
          must(typeof login.data?.message === 'string' && login.data.message !== '', 'a connect_error without a message', context);
          must(expected.kind === 'refused' && expected.codes.includes(code), `refused with ${code}`, context);
          counts.add(`refused ${code}`);
        } else {
          const session = login.session;
          must(expected.kind === 'session', `logged in (${JSON.stringify(session)})`, context);
          if (expected.kind !== 'session') return;
          must(session.userId === expected.userId, `logged in as ${session.userId}, not the authenticated user`, context);
          must(session.platform === expected.platform, `platform ${session.platform}`, context);
          must(typeof session.heartbeatInterval === 'number' && session.heartbeatInterval > 0, 'no heartbeat interval', context);
          const givenInstance = own(delivered, 'instanceId');
          if (typeof givenInstance === 'string') must(session.instanceId === givenInstance, 'another instance id than given', context);
          else must(typeof session.instanceId === 'string' && session.instanceId !== '', 'no instance id made up', context);
          let known: KnownSession;
          if (expected.resume) {
            must(session.resumed && session.sessionId === expected.resume.sessionId && session.kicked.length === 0, 'not resumed', context);
            known = expected.resume;
            counts.add('accepted (resumed)');
          } else {
            must(!session.resumed, 'resumed where the model logs in afresh', context);
            const displaced = model.loggedIn(session);
            must(
              JSON.stringify(sortedRefs(session.kicked)) === JSON.stringify(sortedRefs(displaced)),
              `kicked ${JSON.stringify(session.kicked)}, the model says ${JSON.stringify(sortedRefs(displaced))}`,
              context,
            );
            for (const old of displaced) {
              for (const displacedStay of old.stays) expectKicked(displacedStay, session);
              old.stays.clear();
            }
            known = model.get(session.sessionId) as KnownSession;
            counts.add(own(delivered, 'userId') !== undefined ? 'accepted (fresh; spoofed userId ignored)' : 'accepted (fresh)');
          }
          if (stay) {
            stay.session = known;
            known.stays.add(stay);
            staying.push(stay);
            if (staying.length > MAX_STAYING) {
              const oldest = staying.shift() as Staying;
              if (oldest.session.stays.delete(oldest)) {
                oldest.socket.disconnect();
                model.closed(oldest.session);
              }
            }
          } else {
            await line.closePresence();
            model.closed(known);
          }
        }
        must(harness.errors.length === 0, `logged: ${describeLogged(harness.errors)}`, context);
        if (pendingKicks.length >= 50) await Promise.all(pendingKicks.splice(0));
      }),
      fuzzParameters(),
    );
    await Promise.all(pendingKicks.splice(0));
    counts.finish();
    expect(counts.inputs).to.equal(RUNS);

    // The sentinel: a plain login still works, and so does a resume of a mobile device.
    const fresh = await harness.connect({ token: 'tok:sentinel', platform: 'Android', instanceId: 'sentinel-phone' });
    expect(fresh.session.userId).to.equal('sentinel');
    fresh.socket.disconnect();
    await waitFor(async () => (await harness.status('sentinel')) === 'PushOnline', 'the sentinel phone PushOnline');
    const back = await harness.connect({ token: 'tok:sentinel', platform: 'Android', instanceId: 'sentinel-phone', sessionId: fresh.session.sessionId });
    expect(back.session.resumed).to.equal(true);
    back.socket.disconnect();
    for (const stay of staying) stay.socket.disconnect();
    line.close();
    expect(harness.errors, `logged: ${describeLogged(harness.errors)}`).to.deep.equal([]);
    expect(faults.faults, 'uncaught exceptions or unhandled rejections').to.deep.equal([]);
    expect(prototypeFingerprint(), 'Object.prototype and Array.prototype untouched').to.equal(fingerprint);
  });
});
