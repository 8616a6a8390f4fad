// One socket's presence: its engine connection, what it watches, and how the server ends it.

import type { Socket } from 'socket.io';
import type { Connection, PresenceEngine } from '../engine/engine.js';
import type { EndNotice } from '../engine/types.js';
import type { ServerToClientEvents, SessionPayload } from './protocol.js';

/** Client events as the server receives them: anything, in any order, maybe with an acknowledgement last. */
export type LooseClientEvents = Record<string, (...args: unknown[]) => void>;

/** Where a socket keeps its presence; a symbol, so it never collides with the app's `socket.data`. */
export const PRESENCE = Symbol('express-presence');

/** A socket of a presence namespace. */
export type PresenceSocket = Socket<LooseClientEvents, ServerToClientEvents> & { [PRESENCE]?: SocketPresence };

/** Sends the end to the client the way its reason asks for. */
export function deliverEnd(socket: PresenceSocket, notice: EndNotice): void {
  switch (notice.reason) {
    case 'LoginElsewhere':
    case 'AdminKick':
      // The notice and the namespace DISCONNECT travel in order on the same connection, so the
      // client always reads the notice first; socket.io-client does not reconnect after it.
      socket.emit('presence:kicked', notice.by ? { reason: notice.reason, by: notice.by } : { reason: notice.reason });
      socket.disconnect();
      return;
    case 'TimeOut':
      // The engine heard nothing for the heartbeat timeout: the link is dead even if the transport looks open.
      socket.disconnect(true);
      return;
    case 'Logout':
    case 'Expired':
      socket.disconnect();
      return;
    default: {
      const unknownReason: never = notice.reason;
      throw new Error(`unknown end reason ${String(unknownReason)}`);
    }
  }
}

/** The presence state of one socket, from its handshake to its disconnect; kept small, as there is one per connection. */
export class SocketPresence {
  /** Set once the engine logged the device in (in the handshake middleware). */
  connection!: Connection;
  /** What `presence:session` tells the client; dropped once told. */
  session: SessionPayload | undefined;
  /** The users this socket watches; allocated on the first subscribe. */
  watching: Set<string> | undefined;
  /** Before the socket connects: an end that came meanwhile, if any; once connected: CONNECTED. */
  private phase: EndNotice | typeof CONNECTED | undefined;
  /** Watches the transport while a slow middleware after ours holds the socket; dropped once connected. */
  private onEarlyClose: (() => void) | undefined;

  /** Any inbound packet (event, pong) is a heartbeat: one clock read, no allocation. */
  readonly onPacket: () => void;
  /** The engine ends this connection (kick, timeout, logout from another tab). */
  readonly onEnd: (notice: EndNotice) => void;
  /** This socket's `socket.use` middleware, taking the presence events. */
  readonly onEvent: (event: readonly unknown[], next: (error?: Error) => void) => void;

  constructor(
    readonly socket: PresenceSocket,
    engine: PresenceEngine,
    dispatch: (socket: PresenceSocket, event: readonly unknown[], next: (error?: Error) => void) => void,
  ) {
    this.onPacket = () => engine.heartbeat(this.connection);
    this.onEvent = (event, next) => dispatch(socket, event, next);
    this.onEnd = (notice) => {
      if (this.phase === CONNECTED) deliverEnd(this.socket, notice);
      else this.phase = notice;
    };
  }

  /** Logged in: the socket goes on through the middlewares after ours, then connects. */
  loggedIn(connection: Connection, session: SessionPayload): void {
    this.connection = connection;
    this.session = session;
  }

  /**
   * Called on the tick after ours (socket.io connects the socket on the tick after the last
   * middleware). A socket still not connected is waiting on a slower middleware after ours:
   * only then is a transport close watched, since adding and removing a listener on every
   * connection would leave each one a larger listener array.
   */
  watchUntilConnected(engine: PresenceEngine): void {
    if (this.phase === CONNECTED) return;
    const connection = this.connection;
    if (this.socket.conn.readyState !== 'open') {
      engine.disconnect(connection, 'closed');
      return;
    }
    this.onEarlyClose = () => {
      if (this.phase !== CONNECTED) engine.disconnect(connection, 'closed');
    };
    this.socket.conn.on('close', this.onEarlyClose);
  }

  /** The socket is connected: answers an end that came meanwhile; false if it did. */
  markConnected(): boolean {
    const pending = this.phase;
    this.phase = CONNECTED;
    this.session = undefined;
    if (this.onEarlyClose) this.socket.conn.off('close', this.onEarlyClose);
    this.onEarlyClose = undefined;
    if (!pending || pending === CONNECTED) return true;
    deliverEnd(this.socket, pending);
    return false;
  }
}

const CONNECTED = Symbol('connected');
