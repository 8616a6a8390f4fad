// One process of the chaos run: Express 5 + Socket.IO 4 + the Redis adapter + RedisStore with short heartbeat timeouts, driven over IPC.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createPresence, type LoginPolicy } from '../../lib/index.js';
import { RedisStore } from '../../lib/redis/index.js';
import type { ChildMessage, ClusterNodeConfig, ParentMessage } from '../fixtures/cluster-protocol.js';

/** A cluster node's configuration plus the timings the chaos run shortens (cluster-node.ts keeps the defaults). */
export interface ChaosNodeConfig extends ClusterNodeConfig {
  heartbeatTimeout: { mobile: number; desktop: number; web: number; miniProgram: number };
  /** Socket.IO's transport ping: every client answers it, so a healthy device never times out. */
  pingInterval: number;
  pingTimeout: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChaosNodeConfig;
const send = (message: ChildMessage): void => {
  if (process.connected) process.send?.(message);
};

/** Every Redis client this process made, closed on exit. */
const clients: Redis[] = [];
function redis(): Redis {
  // What a user would write: a plain ioredis client, default retries and offline queue.
  const client = new Redis(config.redisUrl);
  clients.push(client);
  return client;
}

const app = express();
const http = createServer(app);
const io = new Server(http, { transports: ['websocket'], pingInterval: config.pingInterval, pingTimeout: config.pingTimeout });
const adapterPub = redis();
const adapterSub = adapterPub.duplicate();
clients.push(adapterSub);
// The adapter's clients report every failed reconnection while Redis restarts; presence reports its own, once per outage.
adapterPub.on('error', () => {});
adapterSub.on('error', () => {});
io.adapter(createAdapter(adapterPub, adapterSub, { key: `${config.prefix}socket.io` }));

const forward =
  (level: 'warn' | 'error') =>
  (message: string, ...details: unknown[]) =>
    send({
      type: 'log',
      engine: 'main',
      level,
      message,
      detail: details.map((detail) => (detail instanceof Error ? detail.message : String(detail))).join(' '),
    });

const presence = createPresence({
  loginPolicy: config.loginPolicy as LoginPolicy,
  maxInstancesPerPlatform: config.maxInstancesPerPlatform ?? 1,
  heartbeatTimeout: config.heartbeatTimeout,
  ...(config.pushOnlineTtl ? { pushOnlineTtl: config.pushOnlineTtl } : {}),
  store: new RedisStore({ client: redis(), prefix: config.prefix, leaseTtl: config.leaseTtl, sweepInterval: config.sweepInterval }),
  logger: { warn: forward('warn'), error: forward('error') },
  authenticate: (handshake) => {
    const token = handshake.auth.token;
    return typeof token === 'string' && token.startsWith('tok:') ? { userId: token.slice(4) } : null;
  },
  authorize: (req) => req.headers.authorization === 'Bearer admin',
});
app.use('/presence', presence.router());
presence.attach(io);

const handlers: Record<string, () => unknown> = {
  /** Devices with a live connection to this process, as its engine counts them. */
  live: () => presence.engine.liveInstances,
};

process.on('message', (raw: unknown) => {
  const message = raw as ParentMessage;
  if (message.type === 'close') {
    void shutdown();
    return;
  }
  const handler = handlers[message.method];
  if (!handler) send({ type: 'reply', id: message.id, ok: false, error: `unknown method ${message.method}` });
  else send({ type: 'reply', id: message.id, ok: true, value: handler() });
});

let closing = false;
async function shutdown(): Promise<void> {
  if (closing) return;
  closing = true;
  io.close();
  await presence.close().catch(() => undefined);
  for (const client of clients) client.disconnect();
  process.exit(0);
}
// The parent went away (a failed run, ^C): never outlive it.
process.on('disconnect', () => void shutdown());

http.listen(0, '127.0.0.1', () => {
  send({ type: 'ready', port: (http.address() as AddressInfo).port, owner: presence.engine.owner, pid: process.pid });
});
