// One socket's presence: its engine connection, what it watches, and how the server ends it.

import type { Socket } from 'socket.io';
import type { Connection, PresenceEngine } from '../engine/engine.js';
import type { EndNotice } from '../core/types.js';
import type { PresenceSocketData, ResolvedConfig } from '../options.js';
import type { FairUse, TokenBucket, UserBudget } from './fair-use.js';
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

/** What the sockets of one mount share: their state keeps one reference to it rather than one closure per use. */
export interface PresenceMount {
  readonly engine: PresenceEngine;
  /** The mount's resolved options (the adapters' settings; the engine reads its own part). */
  readonly config: ResolvedConfig;
  readonly dispatch: (socket: PresenceSocket, event: readonly unknown[], next: (error?: Error) => void) => void;
  readonly fairUse: FairUse;
}

/** What a socket holds between its login and its connect only. */
interface Handshake {
  /** What `presence:session` tells the client. */
  session: SessionPayload | undefined;
  /** An end the engine sent meanwhile, answered once the socket connects. */
  ended: EndNotice | undefined;
  /** Watches the transport while a slow middleware after ours holds the socket. */
  onEarlyClose: (() => void) | undefined;
}

/**
 * The presence state of one socket, from its handshake to its disconnect; kept small, as there is
 * one per connection: its callbacks are bound methods (no closure context), and what only the
 * handshake needs goes once the socket connects.
 */
export class SocketPresence implements TokenBucket {
  /** Set once the engine logged the device in (in the handshake middleware). */
  connection!: Connection;
  /** The users this socket watches; allocated on the first subscribe. */
  watching: Set<string> | undefined = undefined;
  /** The user's share of this mount's fair-use budgets this connection holds; undefined once given back. */
  budget: UserBudget | undefined;
  /** `eventRateLimit`'s bucket: tokens left, and when they were counted. */
  tokens: number;
  tokensAt: number;
  /** Any inbound packet (event, pong) is a heartbeat; set once connected, to be removed at disconnect. */
  onPacket: (() => void) | undefined = undefined;
  /** Until the socket connects; undefined once connected. */
  private handshake: Handshake | undefined = { session: undefined, ended: undefined, onEarlyClose: undefined };

  constructor(
    readonly socket: PresenceSocket,
    private readonly mount: PresenceMount,
    budget: UserBudget,
  ) {
    this.budget = budget;
    const limit = mount.config.eventRateLimit;
    this.tokens = limit ? limit.burst : 0;
    this.tokensAt = mount.engine.config.clock.now();
  }

  /** Gives back this connection's share of the user's budgets (its connection and watched users), once. */
  releaseBudget(): void {
    const budget = this.budget;
    if (!budget) return;
    this.budget = undefined;
    this.mount.fairUse.releaseConnection(budget, this.watching?.size ?? 0);
  }

  /** What `presence:session` tells the client; undefined once told. */
  get session(): SessionPayload | undefined {
    return this.handshake?.session;
  }

  /** The engine's end listener of this connection (kick, timeout, logout from another tab). */
  endListener(): (notice: EndNotice) => void {
    return this.end.bind(this);
  }

  private end(notice: EndNotice): void {
    const handshake = this.handshake;
    if (handshake) handshake.ended = notice;
    else deliverEnd(this.socket, notice);
  }

  /** Logged in: the device is told to the app's own middlewares and handlers; the socket goes on through them, then connects. */
  loggedIn(connection: Connection, session: SessionPayload): void {
    this.connection = connection;
    if (this.handshake) this.handshake.session = session;
    const presence: PresenceSocketData = { userId: session.userId, instanceId: session.instanceId, sessionId: session.sessionId, platform: session.platform };
    const data: unknown = this.socket.data;
    if (typeof data === 'object' && data !== null) (data as { presence?: PresenceSocketData }).presence = presence;
    else this.socket.data = { presence };
  }

  /**
   * Called on the tick after ours (socket.io connects the socket on the tick after the last
   * middleware). A socket still not connected is waiting on a slower middleware after ours:
   * only then is a transport close watched, since adding and removing a listener on every
   * connection would leave each one a larger listener array.
   */
  watchUntilConnected(): void {
    const handshake = this.handshake;
    if (!handshake) return;
    const { engine } = this.mount;
    const connection = this.connection;
    if (this.socket.conn.readyState !== 'open') {
      this.releaseBudget();
      engine.disconnect(connection, 'closed');
      return;
    }
    handshake.onEarlyClose = () => {
      if (!this.handshake) return;
      this.releaseBudget();
      engine.disconnect(connection, 'closed');
    };
    this.socket.conn.on('close', handshake.onEarlyClose);
  }

  /**
   * The socket is connected: answers an end that came meanwhile (false if one did), or starts
   * counting its packets as heartbeats and taking its presence events.
   */
  markConnected(): boolean {
    const handshake = this.handshake;
    this.handshake = undefined;
    if (handshake?.onEarlyClose) this.socket.conn.off('close', handshake.onEarlyClose);
    if (handshake?.ended) {
      this.releaseBudget();
      deliverEnd(this.socket, handshake.ended);
      return false;
    }
    this.onPacket = this.heartbeat.bind(this);
    this.socket.conn.on('packet', this.onPacket);
    this.socket.use(this.onEvent.bind(this));
    return true;
  }

  /** Stops counting packets and gives back its budget: the socket disconnected. */
  disconnected(): void {
    this.releaseBudget();
    if (this.onPacket) this.socket.conn.off('packet', this.onPacket);
    this.onPacket = undefined;
  }

  /** One clock read, no allocation. */
  private heartbeat(): void {
    this.mount.engine.heartbeat(this.connection);
  }

  /** This socket's `socket.use` middleware, taking the presence events. */
  private onEvent(event: readonly unknown[], next: (error?: Error) => void): void {
    this.mount.dispatch(this.socket, event, next);
  }
}
