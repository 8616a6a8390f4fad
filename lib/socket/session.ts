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

/** The presence state of one socket, from its handshake to its disconnect. */
export class SocketPresence {
  /** Set once the engine logged the device in (in the handshake middleware). */
  connection!: Connection;
  session!: SessionPayload;
  /** The users this socket watches; allocated on the first subscribe. */
  watching: Set<string> | undefined;
  /** An end that came before the socket finished connecting, delivered once it has. */
  private pendingEnd: EndNotice | undefined;
  private connected = false;

  /** Any inbound packet (event, pong) is a heartbeat: one clock read, no allocation. */
  readonly onPacket: () => void;
  /** The engine ends this connection (kick, timeout, logout from another tab). */
  readonly onEnd: (notice: EndNotice) => void;
  /** The transport closed while the socket was still in the middlewares after ours. */
  readonly onEarlyClose: () => void;

  constructor(
    readonly socket: PresenceSocket,
    engine: PresenceEngine,
  ) {
    this.onPacket = () => engine.heartbeat(this.connection);
    this.onEnd = (notice) => {
      if (this.connected) deliverEnd(this.socket, notice);
      else this.pendingEnd = notice;
    };
    this.onEarlyClose = () => {
      if (!this.connected && this.connection) engine.disconnect(this.connection, 'closed');
    };
  }

  /** The socket is connected: answers an end that came meanwhile; false if it did. */
  markConnected(): boolean {
    this.connected = true;
    this.socket.conn.off('close', this.onEarlyClose);
    if (!this.pendingEnd) return true;
    deliverEnd(this.socket, this.pendingEnd);
    this.pendingEnd = undefined;
    return false;
  }
}
