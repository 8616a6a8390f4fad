// Attaches a presence mount to a Socket.IO server or namespace: login in the handshake, then per-socket wiring.

import type { DisconnectReason, Namespace, Server } from 'socket.io';
import type { SocketService } from './service.js';
import { presenceEvents } from './events.js';
import { FairUse } from './fair-use.js';
import { presenceMiddleware } from './handshake.js';
import { attachRooms } from './rooms.js';
import { PRESENCE, type PresenceSocket } from './session.js';
import { relayChanges, Subscriptions, type PresenceNamespace } from './subscriptions.js';
import { Viewing } from './viewing.js';

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
  const viewing = new Viewing(config.lastSeenVisibility, config.logger, config.clock);
  const subscriptions = new Subscriptions(engine, config.maxSubscriptions, config.canSee, config.logger, fairUse, viewing);
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
    const session = state.session;
    if (!config.contacts || !session) {
      if (session) socket.emit('presence:session', session);
      if (!state.markConnected()) return;
      socket.on('disconnect', onDisconnect);
      return;
    }
    if (!state.markConnected()) return;
    socket.on('disconnect', onDisconnect);
    // The contacts are watched before the session is told, so its snapshot misses no change.
    const contactsOf = config.contacts;
    const snapshot = (async () => {
      const contacts = await contactsOf(session.userId);
      if (!Array.isArray(contacts)) throw new TypeError(`contacts must answer an array of user ids; got ${typeof contacts}`);
      return subscriptions.subscribeContacts(socket, state, contacts);
    })();
    snapshot.then(
      (users) => {
        if (socket.connected) socket.emit('presence:session', { ...session, contacts: users });
      },
      (error: unknown) => {
        config.logger.error(`express-presence: contacts(${JSON.stringify(session.userId)}) failed; the session is told without them`, error);
        if (socket.connected) socket.emit('presence:session', { ...session, contacts: [] });
      },
    );
  });
  relayChanges(engine, nsp, viewing);
}
