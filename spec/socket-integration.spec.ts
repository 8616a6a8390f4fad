// Presence inside an app's own Socket.IO code: the app's io.use() before presence's, authenticate reusing socket.data, handlers reading socket.data.presence.

import { expect } from 'chai';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { io as ioc, type Socket as ClientSocket } from 'socket.io-client';
import { createPresence, type Presence, type PresenceSocketData, type SessionPayload } from '../lib/index.js';
import { next } from './fixtures/socket-harness.js';

interface AppUser {
  id: string;
  name: string;
}

/** The app's data on its sockets: its own user, and what presence adds. */
interface AppSocketData {
  user?: AppUser;
  presence?: PresenceSocketData;
}

describe('presence inside an app’s own Socket.IO code', () => {
  let http: HttpServer;
  let io: Server;
  let presence: Presence;
  let url: string;
  const clients: ClientSocket[] = [];
  /** Token checks the app made (its own io.use()); authenticate must not add any. */
  let tokenChecks = 0;
  /** What presence's authenticate was given, per call. */
  const seen: { handshakeIsSocketHandshake: boolean; user: AppUser | undefined; socketId: string }[] = [];
  /** What an app middleware registered after attach() found on socket.data. */
  const afterPresence: (PresenceSocketData | undefined)[] = [];

  beforeEach(async () => {
    tokenChecks = 0;
    seen.length = 0;
    afterPresence.length = 0;
    http = createServer();
    io = new Server(http, { transports: ['websocket'] });
    // The app's own bearer check, registered first as README says: it refuses bad tokens itself.
    io.use((socket: Socket, nextMiddleware) => {
      tokenChecks++;
      const token: unknown = socket.handshake.auth.token;
      if (typeof token !== 'string' || !token.startsWith('jwt:')) return nextMiddleware(new Error('bad token'));
      (socket.data as AppSocketData).user = { id: token.slice(4), name: `User ${token.slice(4)}` };
      nextMiddleware();
    });
    presence = createPresence({
      loginPolicy: 'multi',
      authenticate: (handshake, socket) => {
        const user = (socket.data as AppSocketData).user;
        seen.push({ handshakeIsSocketHandshake: handshake === socket.handshake, user, socketId: socket.id });
        return user ? { userId: user.id } : null;
      },
      logger: { warn: () => {}, error: () => {} },
    });
    presence.attach(io);
    // A middleware after presence's: the device is already known.
    io.use((socket, nextMiddleware) => {
      afterPresence.push((socket.data as AppSocketData).presence);
      nextMiddleware();
    });
    // The app's own event, answering which device and session this socket is.
    io.on('connection', (socket) => {
      socket.on('app:whoami', (ack: (answer: AppSocketData) => void) => ack(socket.data as AppSocketData));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.disconnect();
    await presence.close();
    await new Promise<void>((resolve) => io.close(() => resolve()));
  });

  function open(auth: Record<string, unknown>): ClientSocket {
    const socket = ioc(url, { forceNew: true, transports: ['websocket'], reconnection: false, auth });
    clients.push(socket);
    return socket;
  }

  it('authenticate gets the socket, with the user the app’s io.use() put on socket.data: the token is checked once', async () => {
    const socket = open({ token: 'jwt:ann', platform: 'Web', instanceId: 'tab-1' });
    const session = await next<SessionPayload>(socket, 'presence:session');
    expect(session.userId).to.equal('ann');
    expect(tokenChecks).to.equal(1);
    expect(seen).to.deep.equal([{ handshakeIsSocketHandshake: true, user: { id: 'ann', name: 'User ann' }, socketId: seen[0]?.socketId }]);
    expect(seen[0]?.socketId).to.be.a('string').and.not.equal('');
  });

  it('puts { userId, instanceId, sessionId, platform } on socket.data.presence, for later middlewares and the app’s handlers, keeping the app’s own data', async () => {
    const socket = open({ token: 'jwt:bob', platform: 'iOS', instanceId: 'phone-1' });
    const session = await next<SessionPayload>(socket, 'presence:session');
    const expected: PresenceSocketData = { userId: 'bob', instanceId: 'phone-1', sessionId: session.sessionId, platform: 'iPhone' };
    expect(afterPresence).to.deep.equal([expected]);
    const data = await socket.emitWithAck('app:whoami');
    expect(data).to.deep.equal({ user: { id: 'bob', name: 'User bob' }, presence: expected });

    // A resume on a new socket carries the same session; a second device of the user its own.
    socket.disconnect();
    const again = open({ token: 'jwt:bob', platform: 'iPhone', instanceId: 'phone-1', sessionId: session.sessionId });
    const resumed = await next<SessionPayload>(again, 'presence:session');
    expect(resumed.resumed).to.equal(true);
    expect((await again.emitWithAck('app:whoami')).presence).to.deep.equal(expected);
    const desktop = open({ token: 'jwt:bob', platform: 'Mac' });
    const other = await next<SessionPayload>(desktop, 'presence:session');
    expect((await desktop.emitWithAck('app:whoami')).presence).to.deep.equal({
      userId: 'bob',
      instanceId: other.instanceId,
      sessionId: other.sessionId,
      platform: 'Mac',
    });
  });

  it('a handshake the app refuses never reaches authenticate, and gets the app’s own error', async () => {
    const socket = open({ token: 'forged', platform: 'Web' });
    const error = await next<Error & { data?: unknown }>(socket, 'connect_error');
    expect(error.message).to.equal('bad token');
    expect(error.data).to.equal(undefined);
    expect(seen).to.deep.equal([]);
    expect(afterPresence).to.deep.equal([]);
  });
});
