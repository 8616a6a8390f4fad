// The handshake middleware: authenticates, logs the device in through the engine, or refuses with a coded connect_error.

import createDebug from 'debug';
import { MAX_ID_LENGTH, PresenceError, type PresenceEngine } from '../engine/engine.js';
import type { Authenticate, ResolvedConfig } from '../options.js';
import { isPromiseLike } from '../core/store.js';
import { isStoreUnavailable } from '../core/errors.js';
import type { HandshakeErrorCode, HandshakeErrorData } from './protocol.js';
import { PRESENCE, SocketPresence, type PresenceMount, type PresenceSocket } from './session.js';

const debug = createDebug('express-presence:socket');

/** What socket.io sends the client as `connect_error`: `err.data` is `{ code, message }`. */
export class HandshakeRefusal extends Error {
  readonly data: HandshakeErrorData;
  constructor(code: HandshakeErrorCode, message: string) {
    super(message);
    this.name = 'HandshakeRefusal';
    this.data = { code, message };
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function refuseThrown(error: unknown, config: ResolvedConfig): never {
  // Refusing a bad credential is authenticate's job (answer null); a throw is a failure worth logging.
  config.logger.error('express-presence: authenticate threw; the handshake is refused as UNAUTHENTICATED', error);
  throw new HandshakeRefusal('UNAUTHENTICATED', 'authentication failed');
}

function userIdOf(identity: Awaited<ReturnType<Authenticate>>, config: ResolvedConfig): string {
  if (!identity) throw new HandshakeRefusal('UNAUTHENTICATED', 'authentication refused this handshake');
  const userId: unknown = (identity as { userId?: unknown }).userId;
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_ID_LENGTH) {
    config.logger.error(
      `express-presence: authenticate must answer { userId } with a non-empty string of at most ${MAX_ID_LENGTH} characters; got ${typeof userId}`,
    );
    throw new HandshakeRefusal('SERVER_ERROR', 'the server could not identify this handshake');
  }
  return userId;
}

/** The user id authenticate found: at once when it answers synchronously, as most token checks do. */
function identify(authenticate: Authenticate, socket: PresenceSocket, config: ResolvedConfig): string | Promise<string> {
  let identity: ReturnType<Authenticate>;
  try {
    identity = authenticate(socket.handshake, socket);
  } catch (error) {
    refuseThrown(error, config);
  }
  if (!isPromiseLike(identity)) return userIdOf(identity, config);
  return identity.then(
    (answer) => userIdOf(answer, config),
    (error: unknown) => refuseThrown(error, config),
  );
}

/** Authenticates the handshake and logs the device in; the socket keeps the result under PRESENCE. */
async function admit(socket: PresenceSocket, mount: PresenceMount, authenticate: Authenticate): Promise<SocketPresence> {
  const engine = mount.engine;
  const auth: unknown = socket.handshake.auth;
  if (!isObject(auth)) throw new HandshakeRefusal('BAD_REQUEST', 'auth must be an object { platform, instanceId?, version?, sessionId? }');
  // Only authenticate says who this is: an `auth.userId` the client sent is never read.
  const identified = identify(authenticate, socket, mount.config);
  const userId = typeof identified === 'string' ? identified : await identified;
  // Counted before the login, so a refused connection kicks nobody; given back by whatever ends it.
  const budget = mount.fairUse.takeConnection(userId);
  if (!budget) {
    throw new HandshakeRefusal(
      'TOO_MANY_CONNECTIONS',
      `this user already holds ${mount.fairUse.maxConnectionsPerUser} connections to this server (maxConnectionsPerUser); close one first`,
    );
  }
  const state = new SocketPresence(socket, mount, budget);
  try {
    return await logIn(socket, engine, state, userId, auth);
  } catch (error) {
    state.releaseBudget();
    throw error;
  }
}

async function logIn(
  socket: PresenceSocket,
  engine: PresenceEngine,
  state: SocketPresence,
  userId: string,
  auth: Record<string, unknown>,
): Promise<SocketPresence> {
  const result = await engine.connect(
    { userId, platform: auth.platform, instanceId: auth.instanceId, sessionId: auth.sessionId, version: auth.version, clientIp: socket.handshake.address },
    state.endListener(),
  );
  const connection = result.connection;
  if (socket.conn.readyState !== 'open') {
    // The client left during the login: its connection is closed like any other.
    engine.disconnect(connection, 'closed');
    throw new HandshakeRefusal('BAD_REQUEST', 'the connection closed during the handshake');
  }
  state.loggedIn(connection, {
    userId,
    instanceId: connection.instanceId,
    sessionId: connection.sessionId,
    platform: connection.platform,
    heartbeatInterval: result.heartbeatInterval,
    kicked: result.kicked,
    resumed: result.resumed,
  });
  socket[PRESENCE] = state;
  return state;
}

/** Login faults of one mount are logged once per episode (e.g. a store outage), not once per device. */
const failingEpisode = new WeakSet<PresenceEngine>();

function toRefusal(error: unknown, engine: PresenceEngine): HandshakeRefusal {
  if (error instanceof HandshakeRefusal) return error;
  if (error instanceof PresenceError) return new HandshakeRefusal(error.code, error.message);
  // The store is down or stalled (storeTimeout): refused at once, logged by the store (or the engine), not per device.
  if (isStoreUnavailable(error)) return new HandshakeRefusal('SERVER_ERROR', 'the presence store is unavailable; try again shortly');
  if (!failingEpisode.has(engine)) {
    failingEpisode.add(engine);
    engine.config.logger.error('express-presence: a Socket.IO login failed (further failures are quiet until a login succeeds)', error);
  }
  return new HandshakeRefusal('SERVER_ERROR', 'the server failed to log this device in; try again');
}

/** The `nsp.use` middleware of a presence mount. */
export function presenceMiddleware(mount: PresenceMount, authenticate: Authenticate): (socket: PresenceSocket, next: (error?: Error) => void) => void {
  const engine = mount.engine;
  return (socket, next) => {
    admit(socket, mount, authenticate).then(
      (state) => {
        failingEpisode.delete(engine);
        next();
        // Queued after socket.io's own connect step (which next() queues when ours is the last middleware).
        process.nextTick(() => state.watchUntilConnected());
      },
      (error: unknown) => {
        const refusal = toRefusal(error, engine);
        debug('handshake refused: %s %s', refusal.data.code, refusal.message);
        next(refusal);
      },
    );
  };
}
