// A child process of bench/rooms.bench.ts holding the room's client sockets, so the server's process keeps its file descriptors (10,000 members are 20,000 in one process).

import { io as ioc, type Socket } from 'socket.io-client';

const url = process.argv[2] as string;
const members = Number(process.argv[3]);
const prefix = process.argv[4] ?? 'member-';
const CONCURRENCY = 50;

let received = 0;
const clients: Socket[] = [];

function open(userId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = ioc(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 60_000, auth: { token: userId, platform: 'Web' } });
    socket.on('presence:room', () => received++);
    socket.once('presence:session', () => resolve());
    socket.once('connect_error', reject);
    clients.push(socket);
  });
}

process.on('message', (message: { type: string }) => {
  if (message.type === 'count') process.send!({ type: 'count', received });
  else if (message.type === 'reset') {
    received = 0;
    process.send!({ type: 'reset' });
  } else if (message.type === 'close') {
    for (const client of clients) client.disconnect();
    process.exit(0);
  }
});

for (let from = 0; from < members; from += CONCURRENCY) {
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, members - from) }, (_, i) => open(`${prefix}${from + i}`)));
}
process.send!({ type: 'ready' });
