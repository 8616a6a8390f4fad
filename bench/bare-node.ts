// The rolling-restart baseline's process: the cluster node's Express 5 + Socket.IO 4 + Redis adapter with no presence, driven over IPC.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';

const { redisUrl, prefix } = JSON.parse(process.argv[2] ?? '{}') as { redisUrl: string; prefix: string };
const app = express();
const http = createServer(app);
const io = new Server(http, { transports: ['websocket'] });
const pub = new Redis(redisUrl);
const sub = pub.duplicate();
io.adapter(createAdapter(pub, sub, { key: `${prefix}socket.io` }));
// As an app's own login would, the connection is taken once the handshake says who it is.
io.use((socket, next) => (typeof socket.handshake.auth.token === 'string' ? next() : next(new Error('no token'))));

process.on('message', (message: { type: string }) => {
  if (message.type === 'sockets') {
    const ids = [...io.of('/').sockets.values()].map((socket) => String(socket.handshake.auth.token).slice(4));
    process.send?.({ type: 'sockets', ids });
  } else if (message.type === 'close') {
    io.close();
    pub.disconnect();
    sub.disconnect();
    process.exit(0);
  }
});

process.on('SIGTERM', () => {
  io.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
});

http.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: (http.address() as AddressInfo).port }));
