// Attaches a presence mount to a Socket.IO server or namespace: login in the handshake, then per-socket wiring.

import type { DisconnectReason, Namespace, Server } from 'socket.io';
import type { SocketService } from './service.js';
import { presenceEvents } from './events.js';
import { FairUse } from './fair-use.js';
import { presenceMiddleware } from './handshake.js';
import { attachRooms } from './rooms.js';
import { PRESENCE, type PresenceSocket } from './session.js';
import { relayChanges, Subscriptions, type PresenceNamespace } from './subscriptions.js';

/** A namespace carries at most one presence mount: two would log every socket in twice. */
const mounted = new WeakSet<object>();

function toNamespace(target: unknown): PresenceNamespace {
  if (typeof target === 'object' && target !== null) {
    const server = target as Partial<Server>;
    if (typeof server.of === 'function' && typeof server.use === 'function') return server.of('/') as unknown as PresenceNamespace;
    const nsp = target as Partial<Namespace>;
    if (typeof nsp.use === 'function' && typeof nsp.on === 'function' && typeof nsp.to === 'function') return target as PresenceNamespace;
  }
  throw new TypeError('attach() takes a Socket.IO server or namespace, such as io or io.of("/presence")');
}

/**
 * Logs every socket of the namespace in during its handshake (so refusals reach the client as
 * `connect_error`), tells it `presence:session` once connected, counts its traffic as heartbeats,
 * and maps its disconnect to a closed connection or a timeout.
 */
export function attachPresence(presence: SocketService, target: Server | Namespace): void {
  const { engine, config } = presence;
  const authenticate = config.authenticate;
  if (!authenticate) {
    throw new TypeError('attach() needs the authenticate option: createPresence({ authenticate: (handshake) => ({ userId }) | null })');
  }
  const nsp = toNamespace(target);
  if (mounted.has(nsp)) throw new TypeError(`the namespace "${nsp.name}" already has a presence attached; give each createPresence() its own namespace`);
  mounted.add(nsp);

  const fairUse = new FairUse(config);
  const subscriptions = new Subscriptions(engine, config.maxSubscriptions, config.canSee, config.logger, fairUse);
  const rooms = attachRooms(presence, engine, presence.rooms, nsp, config.canJoin);
  const dispatch = presenceEvents(engine, config, subscriptions, rooms.handlers);

  function onDisconnect(this: PresenceSocket, reason: DisconnectReason): void {
    const state = this[PRESENCE];
    if (!state) return;
    state.disconnected();
    // Before the engine hears of it: rooms read whether the connection was still logged in (a close, held for the grace).
    rooms.disconnected(state, reason);
    // The transport's ping timeout is a heartbeat timeout; io.close() is this server shutting down
    // (the client reconnects elsewhere); every other end the client or the link caused is a closed
    // connection. Ends the server made (kick, timeout) already ended it: a no-op.
    engine.disconnect(state.connection, reason === 'ping timeout' ? 'timeout' : reason === 'server shutting down' ? 'shutdown' : 'closed');
  }

  nsp.use(presenceMiddleware({ engine, config, dispatch, fairUse }, authenticate));
  nsp.on('connection', (socket: PresenceSocket) => {
    const state = socket[PRESENCE];
    if (!state) {
      // Only a socket that skipped the middlewares (connectionStateRecovery.skipMiddlewares) gets here.
      config.logger.warn(
        'express-presence: a socket connected without the presence handshake (is connectionStateRecovery.skipMiddlewares on?); disconnecting it',
      );
      socket.disconnect();
      return;
    }
    if (state.session) socket.emit('presence:session', state.session);
    if (!state.markConnected()) return;
    socket.on('disconnect', onDisconnect);
  });
  relayChanges(engine, nsp);
}
