// Model-based property test: random command sequences against the engine and a reference model of SPEC.md must agree.
//
// Choices where SPEC.md leaves room (the model follows them; see spec/helpers/presence-model.ts):
// - A transport-detected timeout (disconnect 'timeout') is not held back by the reconnect grace; only a closed connection is.
// - Last seen, when an Online device leaves Online, is when it was last heard from: now for a logout, kick or close; the
//   close time after a reconnect grace; the last traffic after a heartbeat timeout; the moment it went to background
//   after a background timeout.
// - A return from PushOnline with the device's session counts as its newest login (for "oldest first" kicks); a second tab
//   or a return within the grace does not.
// - The kicked list of a login is oldest first, the device's own displaced session included.
// - A revoked session is remembered for the PushOnline TTL; after that it is unknown and resuming it is a fresh login.
// - Timers due at the same instant may fire in any order; the model follows the engine's order among them.
// - Idleness (idleTimeout) that falls due at the instant one of the user's devices times out comes after that device's end.
// - Every accepted connection is activity of its device (a login, a second tab, a return within the grace); a choice of
//   availability is activity of the device that made it (of every device here for the server's).

import { expect } from 'chai';
import fc from 'fast-check';
import { createPresence, ManualClock, MemoryStore, PLATFORMS, PresenceError } from '../lib/index.js';
import { inMs } from './helpers/durations.js';
import type { AvailabilityChange, Connection, EndNotice, LoginPolicy, PlatformClass, PresenceChange } from '../lib/index.js';
import type { Availability } from '../lib/core/availability.js';
import { PresenceModel, type ModelAvailabilityEvent, type ModelConfig, type ModelEvent } from './helpers/presence-model.js';

/** Runs per policy (at least 1,000 in CI); MODEL_RUNS and MODEL_COMMANDS raise the effort. */
const RUNS = Number(process.env.MODEL_RUNS ?? 1000);
const MAX_COMMANDS = Number(process.env.MODEL_COMMANDS ?? 25);
const USERS = ['u0', 'u1', 'u2'] as const;
const INSTANCE_POOL = ['i0', 'i1', 'i2'] as const;
const PLATFORM_NAMES = [...PLATFORMS, 'iOS'] as const;

type Command =
  | { kind: 'login'; user: number; platform: string; instanceId: string | null }
  | { kind: 'resume'; pick: number }
  | { kind: 'resume-unknown'; user: number; platform: string; instanceId: string }
  | { kind: 'logout'; pick: number }
  | { kind: 'close'; pick: number; cause: 'closed' | 'timeout' }
  | { kind: 'heartbeat'; pick: number }
  | { kind: 'background'; pick: number }
  | { kind: 'foreground'; pick: number }
  | { kind: 'kick'; user: number; platform?: string; instanceId?: string }
  | { kind: 'activity'; pick: number }
  | { kind: 'set-availability'; user: number; availability: Availability; fromDevice: number | null }
  | { kind: 'advance'; ms: number };

const user = fc.integer({ min: 0, max: USERS.length - 1 });
const platform = fc.constantFrom(...PLATFORM_NAMES);
const pick = fc.nat();

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('login'), user, platform, instanceId: fc.option(fc.constantFrom(...INSTANCE_POOL), { nil: null }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('resume'), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('resume-unknown'), user, platform, instanceId: fc.constantFrom(...INSTANCE_POOL) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('logout'), pick }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('close'), pick, cause: fc.constantFrom('closed' as const, 'timeout' as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('heartbeat'), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('background'), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('foreground'), pick }) },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.record({ kind: fc.constant('kick'), user }),
      fc.record({ kind: fc.constant('kick'), user, platform }),
      fc.record({ kind: fc.constant('kick'), user, instanceId: fc.constantFrom(...INSTANCE_POOL) }),
    ),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('activity'), pick }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('set-availability'),
      user,
      availability: fc.constantFrom('available' as const, 'away' as const, 'dnd' as const, 'invisible' as const),
      fromDevice: fc.option(pick, { nil: null }),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('advance'),
      ms: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.constantFrom(25, 29, 30, 50, 59, 60, 399, 400, 999, 1000), fc.integer({ min: 100, max: 1300 })),
    }),
  },
);

const graceArb = fc.constantFrom(0, 0, 25, 60);
const idleArb = fc.constantFrom(0, 40, 50, 300);
const configArb = (loginPolicy: LoginPolicy): fc.Arbitrary<ModelConfig> =>
  fc.record({
    loginPolicy: fc.constant(loginPolicy),
    maxInstancesPerPlatform: fc.constantFrom(1, 1, 2),
    maxWebInstances: fc.constantFrom(1, 1, 2),
    heartbeatTimeout: fc.constant({ mobile: 400, desktop: 400, web: 60, miniProgram: 60 }),
    backgroundTimeout: fc.record({ mobile: fc.constantFrom(0, 0, 50), desktop: fc.constant(0), web: fc.constant(0), miniProgram: fc.constant(30) }),
    pushOnlineTtl: fc.constant(1000),
    reconnectGrace: fc.record<Record<PlatformClass, number>>({ mobile: graceArb, desktop: graceArb, web: graceArb, miniProgram: graceArb }),
    idleTimeout: fc.record<Record<PlatformClass, number>>({ mobile: idleArb, desktop: idleArb, web: idleArb, miniProgram: idleArb }),
  });

interface IssuedSession {
  userId: string;
  platform: string;
  instanceId: string;
  sessionId: string;
}

/** Deep equality, checked cheaply first (this runs after every step of thousands of runs); chai explains a difference. */
function same(actual: unknown, expected: unknown, what: string): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) expect(actual, what).to.deep.equal(expected);
}

/** Only what the model predicts, so the comparison is exact. */
function eventFields(event: PresenceChange): ModelEvent {
  return {
    userId: event.userId,
    instanceId: event.instanceId,
    platform: event.platform,
    action: event.action,
    reason: event.reason,
    instanceStatus: event.instanceStatus,
    userStatus: event.userStatus,
    previousUserStatus: event.previousUserStatus,
    kicked: event.kicked,
    seq: event.seq,
    at: event.at,
    lastSeen: event.lastSeen,
  };
}

/** The model's timeouts as options: short ones need an explicit unit. */
function explicitTimeouts(config: ModelConfig): {
  heartbeatTimeout: Record<string, string>;
  backgroundTimeout: Record<string, string>;
  idleTimeout?: Record<string, string>;
} {
  return {
    heartbeatTimeout: inMs(config.heartbeatTimeout),
    backgroundTimeout: inMs(config.backgroundTimeout),
    ...(config.idleTimeout ? { idleTimeout: inMs(config.idleTimeout) } : {}),
  };
}

function availabilityFields(event: AvailabilityChange): ModelAvailabilityEvent {
  return {
    userId: event.userId,
    availability: event.availability,
    previousAvailability: event.previousAvailability,
    idleSince: event.idleSince,
    reason: event.reason,
    at: event.at,
  };
}

async function runScenario(config: ModelConfig, commands: readonly Command[]): Promise<void> {
  const clock = new ManualClock();
  // Small caches: a default MemoryStore preallocates room for 100k users, which would dominate the run time; a run never nears 1000.
  const presence = createPresence({
    clock,
    ...config,
    ...explicitTimeouts(config),
    store: new MemoryStore({ maxOfflineUsers: 1000, maxRevokedSessions: 1000 }),
  });
  const model = new PresenceModel(config, clock.now());
  const events: PresenceChange[] = [];
  presence.on('change', (event) => events.push(event));
  const availabilityEvents: AvailabilityChange[] = [];
  presence.on('availability', (event) => availabilityEvents.push(event));
  const connections: Connection[] = [];
  const notices: EndNotice[][] = [];
  const sessions: IssuedSession[] = [];
  const log: string[] = [];

  const check = async (): Promise<void> => {
    same(events.map(eventFields), model.takeEvents(), 'events');
    events.length = 0;
    // Users going idle at one instant may do so in any order.
    const byTimeAndUser = (a: ModelAvailabilityEvent, b: ModelAvailabilityEvent): number =>
      a.at - b.at || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
    same(availabilityEvents.map(availabilityFields).sort(byTimeAndUser), model.takeAvailabilityEvents().sort(byTimeAndUser), 'availability events');
    availabilityEvents.length = 0;
    same(
      notices,
      model.connections.map((connection) => connection.notices),
      'end notices',
    );
    same(
      connections.map((connection) => connection.open),
      model.connections.map((connection) => connection.open),
      'open connections',
    );
    const users = await presence.query(USERS);
    const actual = users.map((found) => ({
      userId: found.userId,
      status: found.status,
      lastSeen: found.lastSeen,
      availability: found.availability,
      idleSince: found.idleSince,
      instances: (found.instances ?? []).map(({ instanceId, platform, status, since }) => ({ instanceId, platform, status, since })),
    }));
    same(actual, model.query(USERS), 'query');
    const stats = await presence.stats();
    const expected = model.stats();
    same(stats.users, expected.users, 'stats.users');
    same(stats.instances, expected.instances, 'stats.instances');
    for (const name of PLATFORMS) same(stats.platforms[name], expected.platforms[name] ?? { Online: 0, PushOnline: 0 }, `stats.platforms.${name}`);
    expect(presence.engine.liveInstances, 'live instances').to.equal(model.onlineDevices);
  };

  const connect = async (userId: string, platformName: string, instanceId: string | undefined, sessionId: string | undefined): Promise<void> => {
    const received: EndNotice[] = [];
    let outcome: { connection: Connection; resumed: boolean; kicked: unknown[] } | PresenceError;
    try {
      outcome = await presence.engine.connect({ userId, platform: platformName, instanceId, sessionId }, (notice) => received.push(notice));
    } catch (error) {
      if (!(error instanceof PresenceError)) throw error;
      outcome = error;
    }
    const issued = outcome instanceof PresenceError ? 'none' : outcome.connection.sessionId;
    const effectiveInstanceId = instanceId ?? (outcome instanceof PresenceError ? 'none' : outcome.connection.instanceId);
    const expected = model.connect({ userId, platform: platformName, instanceId: effectiveInstanceId, sessionId }, issued);
    if (expected.refused) {
      expect(outcome, 'connect refused').to.be.instanceOf(PresenceError);
      expect((outcome as PresenceError).code).to.equal(expected.refused);
      return;
    }
    if (outcome instanceof PresenceError) throw new Error(`engine refused ${outcome.code} where the model accepts`);
    expect({ resumed: outcome.resumed, kicked: outcome.kicked, sessionId: outcome.connection.sessionId }, 'connect result').to.deep.equal({
      resumed: expected.resumed,
      kicked: expected.kicked,
      sessionId: expected.sessionId,
    });
    expect(expected.connectionId).to.equal(connections.length);
    connections.push(outcome.connection);
    notices.push(received);
    if (!sessions.some((known) => known.sessionId === expected.sessionId)) {
      sessions.push({ userId, platform: platformName, instanceId: effectiveInstanceId, sessionId: expected.sessionId });
    }
  };

  /** An open connection, chosen by index among the open ones; undefined when none is open. */
  const openConnection = (index: number): number | undefined => {
    const open = model.openConnections();
    return open.length === 0 ? undefined : open[index % open.length];
  };

  try {
    for (const step of commands) {
      log.push(JSON.stringify(step));
      switch (step.kind) {
        case 'login':
          await connect(USERS[step.user] as string, step.platform, step.instanceId ?? undefined, undefined);
          break;
        case 'resume': {
          const session = sessions[step.pick % Math.max(1, sessions.length)];
          if (session) await connect(session.userId, session.platform, session.instanceId, session.sessionId);
          break;
        }
        case 'resume-unknown':
          await connect(USERS[step.user] as string, step.platform, step.instanceId, `unknown-${log.length}`);
          break;
        case 'logout': {
          const id = openConnection(step.pick);
          if (id === undefined) break;
          await presence.engine.logout(connections[id] as Connection);
          model.logout(id);
          break;
        }
        case 'close': {
          const id = openConnection(step.pick);
          if (id === undefined) break;
          presence.engine.disconnect(connections[id] as Connection, step.cause);
          model.disconnect(id, step.cause);
          break;
        }
        case 'heartbeat':
        case 'background':
        case 'foreground': {
          const id = openConnection(step.pick);
          if (id === undefined) break;
          presence.engine[step.kind](connections[id] as Connection);
          model[step.kind](id);
          break;
        }
        case 'kick': {
          const filter: { platform?: string; instanceId?: string } = {};
          if (step.platform !== undefined) filter.platform = step.platform;
          if (step.instanceId !== undefined) filter.instanceId = step.instanceId;
          const kicked = await presence.kick(USERS[step.user] as string, filter);
          expect(kicked, 'kick result').to.deep.equal(model.kick(USERS[step.user] as string, filter));
          break;
        }
        case 'activity': {
          const id = openConnection(step.pick);
          if (id === undefined) break;
          presence.engine.activity(connections[id] as Connection);
          model.activity(id);
          break;
        }
        case 'set-availability': {
          const userId = USERS[step.user] as string;
          const id = step.fromDevice === null ? undefined : openConnection(step.fromDevice);
          // A device sets its own user's availability.
          const from = id === undefined ? undefined : (connections[id] as Connection);
          const target = from ? from.userId : userId;
          await presence.engine.setAvailability(target, step.availability, from);
          model.setAvailability(target, step.availability, id);
          break;
        }
        case 'advance':
          clock.advance(step.ms);
          await Promise.resolve();
          model.advance(step.ms, events);
          break;
        default: {
          const never: never = step;
          throw new Error(`unknown command ${JSON.stringify(never)}`);
        }
      }
      await check();
    }
  } catch (error) {
    // Say which steps led here; fast-check shrinks the sequence, so this is short by the time it is read.
    if (error instanceof Error) error.message = `${error.message}\nafter:\n  ${log.join('\n  ')}`;
    throw error;
  } finally {
    await presence.close();
  }
}

describe('engine against the reference model (fast-check)', function () {
  this.timeout(Math.max(120_000, RUNS * MAX_COMMANDS * 10));
  for (const loginPolicy of ['single', 'dual', 'triple', 'multi'] as const) {
    it(`agrees with the model under the ${loginPolicy} policy (${RUNS} runs)`, async () => {
      await fc.assert(
        fc.asyncProperty(configArb(loginPolicy), fc.array(command, { minLength: 1, maxLength: MAX_COMMANDS, size: 'max' }), (config, commands) =>
          runScenario(config, commands),
        ),
        // MODEL_SEED (and MODEL_PATH) replay a failure fast-check reported.
        { numRuns: RUNS, ...(process.env.MODEL_SEED ? { seed: Number(process.env.MODEL_SEED), path: process.env.MODEL_PATH } : {}) },
      );
    });
  }

  it('can fail: a model that disagrees is caught', async () => {
    // A sanity check of the harness itself: a model with a different PushOnline TTL must disagree with the engine.
    const config: ModelConfig = {
      loginPolicy: 'single',
      maxInstancesPerPlatform: 1,
      maxWebInstances: 1,
      heartbeatTimeout: { mobile: 400, desktop: 400, web: 60, miniProgram: 60 },
      backgroundTimeout: { mobile: 0, desktop: 0, web: 0, miniProgram: 30 },
      pushOnlineTtl: 1000,
      reconnectGrace: { mobile: 0, desktop: 0, web: 0, miniProgram: 0 },
    };
    const commands: Command[] = [
      { kind: 'login', user: 0, platform: 'Android', instanceId: 'i0' },
      { kind: 'close', pick: 0, cause: 'closed' },
      { kind: 'advance', ms: 1000 },
    ];
    await runScenario(config, commands);
    const clock = new ManualClock();
    const presence = createPresence({ clock, ...config, ...explicitTimeouts(config), pushOnlineTtl: 2000 });
    const model = new PresenceModel(config, clock.now());
    const { connection } = await presence.engine.connect({ userId: 'u0', platform: 'Android', instanceId: 'i0' }, () => {});
    model.connect({ userId: 'u0', platform: 'Android', instanceId: 'i0' }, connection.sessionId);
    presence.engine.disconnect(connection, 'closed');
    model.disconnect(0, 'closed');
    clock.advance(1000);
    model.advance(1000, []);
    const [found] = await presence.query(['u0']);
    expect(found?.status).to.not.equal(model.query(['u0'])[0]?.status);
    await presence.close();
  });
});
