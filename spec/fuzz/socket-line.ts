// Socket.IO plumbing of the fuzz run: one reused connection per target, logins over it, acknowledged emits that notice a close, and what the server receives.

import type { Server } from 'socket.io';
import { Manager, type Socket as ClientSocket } from 'socket.io-client';
import type { HandshakeErrorData, SessionPayload } from '../../lib/index.js';

/** The namespace that holds each line's connection open while the presence namespace logs in and out over it. */
export const KEEPALIVE_NAMESPACE = '/keepalive';

/** Serves the keepalive namespace: an acknowledged `sync`, answered once the server has read everything sent before it. */
export function serveKeepalive(io: Server): void {
  io.of(KEEPALIVE_NAMESPACE).on('connection', (socket) => socket.on('sync', (ack: () => void) => ack()));
}

/** The fuzz's `authenticate`: `auth.token` of `tok:<userId>` with a user id of 1 to 128 characters; anything else is refused. */
export function fuzzAuthenticate(handshake: { auth: Record<string, unknown> }): { userId: string } | null {
  const token = handshake.auth.token;
  if (typeof token !== 'string' || !token.startsWith('tok:')) return null;
  const userId = token.slice(4);
  return userId.length >= 1 && userId.length <= 128 ? { userId } : null;
}

export type Login = { kind: 'session'; session: SessionPayload } | { kind: 'refused'; data: HandshakeErrorData | undefined; message: string };

/**
 * One engine.io connection to the server. Socket.IO multiplexes namespaces over it: a socket on the
 * keepalive namespace stays connected, so the presence socket can be refused, log out, be kicked
 * and log in again many times without a new WebSocket handshake each time.
 */
export class Line {
  private constructor(
    readonly manager: Manager,
    readonly keep: ClientSocket,
    readonly presence: ClientSocket,
  ) {}

  static async open(url: string): Promise<Line> {
    const manager = new Manager(url, { transports: ['websocket'], reconnection: false, autoConnect: false });
    const keep = manager.socket(KEEPALIVE_NAMESPACE);
    const presence = manager.socket('/');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the keepalive namespace did not connect within 5 s')), 5000);
      keep.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      keep.once('connect_error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      keep.connect();
    });
    return new Line(manager, keep, presence);
  }

  /** The engine.io connection still stands. */
  get alive(): boolean {
    return this.keep.connected;
  }

  /** Logs the presence socket in with `auth` (it must not be connected): the session, or the refusal. */
  login(auth: Record<string, unknown>, timeout = 5000): Promise<Login> {
    const socket = this.presence;
    socket.auth = auth;
    return new Promise<Login>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        socket.off('presence:session', onSession);
        socket.off('connect_error', onError);
      };
      const onSession = (session: SessionPayload): void => {
        done();
        resolve({ kind: 'session', session });
      };
      const onError = (error: Error & { data?: HandshakeErrorData }): void => {
        done();
        resolve({ kind: 'refused', data: error.data, message: error.message });
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no presence:session nor connect_error within ${timeout} ms`));
      }, timeout);
      socket.on('presence:session', onSession);
      socket.on('connect_error', onError);
      socket.connect();
    });
  }

  /** One round trip on the keepalive namespace: the server has then handled everything sent before. */
  async sync(): Promise<void> {
    if (this.alive) await this.keep.timeout(5000).emitWithAck('sync');
  }

  /**
   * Disconnects the presence socket from the client side (the line stays open), and waits until the
   * server has handled it: socket.io handles a namespace DISCONNECT a tick late, and a CONNECT that
   * overtakes it is "invalid state", which closes the whole connection.
   */
  async closePresence(): Promise<void> {
    if (!this.presence.connected && !this.presence.active) return;
    this.presence.disconnect();
    await this.sync();
  }

  close(): void {
    this.presence.disconnect();
    this.keep.disconnect();
    this.manager.engine?.close();
  }
}

export type Reply = { kind: 'answer'; answer: Record<string, unknown> } | { kind: 'closed'; reason: string } | { kind: 'timeout' };

/** Emits an event with an acknowledgement: the answer, or the close that came first, or a timeout. */
export function ask(socket: ClientSocket, event: string, args: readonly unknown[], timeout = 5000): Promise<Reply> {
  return new Promise<Reply>((resolve) => {
    let settled = false;
    const settle = (reply: Reply): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('disconnect', onDisconnect);
      resolve(reply);
    };
    const onDisconnect = (reason: string): void => settle({ kind: 'closed', reason });
    const timer = setTimeout(() => settle({ kind: 'timeout' }), timeout);
    socket.on('disconnect', onDisconnect);
    socket.emit(event, ...args, (answer: Record<string, unknown>) => settle({ kind: 'answer', answer }));
  });
}

/** Resolves once the socket disconnects (at once if it already has), with the reason; rejects after `timeout`. */
export function disconnection(socket: ClientSocket, timeout = 5000): Promise<string> {
  if (!socket.connected) return Promise.resolve('already disconnected');
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no disconnect within ${timeout} ms`)), timeout);
    socket.once('disconnect', (reason: string) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

const BINARY_MARK = '\u0000binary';

/** What the server receives for values a client emitted, and the size of the text frame carrying them. */
export interface Delivery {
  /** Bytes of the JSON text (binary attachments travel apart and are small here). */
  bytes: number;
  /** The values as the server's handler receives them; undefined past `limit` bytes, which never arrive. */
  values: unknown[] | undefined;
}

/**
 * What the server's handler receives for values a client emitted: JSON's rules (undefined,
 * functions and non-finite numbers dropped or nulled, own enumerable keys only, `__proto__` kept
 * as an own key) with binary kept as Buffers, which is how socket.io-parser carries them. Done by
 * JSON itself, so values nested a thousand deep need no recursion here. A message carrying binary
 * loses every own `__proto__` key on the way: socket.io-parser copies it by assignment before
 * encoding (deconstructPacket), which sets the copy's prototype instead.
 */
export function deliver(values: readonly unknown[], limit: number): Delivery {
  const binaries: Buffer[] = [];
  const text = JSON.stringify(values, (_key, item: unknown) => {
    if (item instanceof Uint8Array || item instanceof ArrayBuffer) {
      binaries.push(Buffer.from(item as Uint8Array));
      return { [BINARY_MARK]: binaries.length - 1 };
    }
    return item;
  });
  const bytes = Buffer.byteLength(text);
  if (bytes > limit) return { bytes, values: undefined };
  const parsed = JSON.parse(text, (key, item: unknown) => {
    if (binaries.length > 0 && key === '__proto__') return undefined;
    if (binaries.length > 0 && typeof item === 'object' && item !== null && Object.prototype.hasOwnProperty.call(item, BINARY_MARK)) {
      return binaries[(item as Record<string, number>)[BINARY_MARK] as number];
    }
    return item;
  }) as unknown[];
  return { bytes, values: parsed };
}
