// An existing Express + Socket.IO app adopting express-presence the way a trial user did: its own parser, bearer auth, io.use() and events.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Server } from 'socket.io';
import { createPresence, type Presence } from 'express-presence';

/** The app's own users, found by the bearer token it already hands out. */
export interface AppUser {
  userId: string;
  admin: boolean;
}

const TOKENS: Record<string, AppUser> = {
  'alice-token': { userId: 'alice', admin: false },
  'ops-token': { userId: 'ops', admin: true },
};

export function userFromToken(token: unknown): AppUser | undefined {
  return typeof token === 'string' ? TOKENS[token] : undefined;
}

export function userFromBearer(header: string | undefined): AppUser | undefined {
  const match = /^Bearer (\S+)$/.exec(header ?? '');
  return match ? userFromToken(match[1]) : undefined;
}

/** What the app's own io.use() puts on each socket (typed, as a strict TypeScript app does). */
export interface SocketData {
  user: AppUser;
}

/** The app's own Socket.IO events. */
export interface AppClientEvents {
  'chat:ping': (text: string, ack: (reply: string) => void) => void;
}

export type AppServer = Server<AppClientEvents, Record<string, never>, Record<string, never>, SocketData>;

export interface RunningApp {
  url: string;
  presence: Presence;
  io: AppServer;
  close(): Promise<void>;
}

export type PresenceFactory = (io: AppServer) => Presence;

/** The mount as README shows it, with the app's own checks in authenticate and authorize. */
export const defaultPresence: PresenceFactory = () =>
  createPresence({
    authenticate: (handshake) => {
      const user = userFromToken(handshake.auth.token);
      return user ? { userId: user.userId } : null;
    },
    authorize: (req) => userFromBearer(req.get('authorization'))?.admin === true,
  });

export async function startApp(makePresence: PresenceFactory = defaultPresence): Promise<RunningApp> {
  const app = express();
  // The app parses JSON for its own routes, globally, before anything else is mounted.
  app.use(express.json());

  const requireUser: express.RequestHandler = (req, res, next) => {
    const user = userFromBearer(req.get('authorization'));
    if (!user) {
      res.status(401).json({ error: 'a bearer token is needed' });
      return;
    }
    res.locals.user = user;
    next();
  };
  app.get('/api/me', requireUser, (_req, res) => {
    res.json({ userId: (res.locals.user as AppUser).userId });
  });

  const httpServer = createServer(app);
  const io: AppServer = new Server(httpServer);
  // The app's own handshake check, registered before presence is attached.
  io.use((socket, next) => {
    const user = userFromToken(socket.handshake.auth.token);
    if (!user) {
      next(new Error('bad token'));
      return;
    }
    socket.data.user = user;
    next();
  });

  const presence = makePresence(io);
  app.use('/presence', presence.router());
  presence.attach(io);

  // The app's own events, on the same sockets.
  io.on('connection', (socket) => {
    socket.on('chat:ping', (text, ack) => ack(`pong ${text} for ${socket.data.user.userId}`));
  });

  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const { port } = httpServer.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    presence,
    io,
    async close() {
      await presence.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}

/** POSTs JSON (or raw text) with a bearer token; answers status, content type and the parsed or raw body. */
export async function post(url: string, body: string, token?: string): Promise<{ status: number; type: string; body: unknown }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  });
  const type = response.headers.get('content-type') ?? '';
  const text = await response.text();
  return { status: response.status, type, body: /json/.test(type) ? (JSON.parse(text) as unknown) : text };
}
