// A child process of bench/rooms.bench.ts holding the room's client sockets, so the server's process keeps its file descriptors (10,000 members are 20,000 in one process).

import { io as ioc, type Socket } from 'socket.io-client';

const url = process.argv[2] as string;
const members = Number(process.argv[3]);
const prefix = process.argv[4] ?? 'member-';
const CONCURRENCY = 50;

let received = 0;
const clients: Socket[] = [];
/** Per client, for the join burst: presence:room messages since its join answer, and the count it holds (answer, then messages). */
const burstMessages: number[] = [];
const burstCounts: number[] = [];

function open(userId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = ioc(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 60_000, auth: { token: userId, platform: 'Web' } });
    const index = clients.length;
    burstMessages.push(0);
    burstCounts.push(-1);
    socket.on('presence:room', (message: { count: number }) => {
      received++;
      burstMessages[index]!++;
      burstCounts[index] = message.count;
    });
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
  } else if (message.type === 'join-spread') {
    // Every client joins the room once, the joins spread evenly over `ms`; answered once every join was answered.
    const { room, ms } = message as unknown as { room: string; ms: number };
    let answered = 0;
    let refused = 0;
    let first = 0;
    let last = 0;
    clients.forEach((client, index) => {
      setTimeout(
        () => {
          last = performance.now();
          if (index === 0) first = last;
          client.emit('presence:join', { room }, (answer: { ok: boolean; count?: number }) => {
            if (!answer.ok) refused++;
            // The answer comes before any message about later joins (one socket keeps order).
            else if (burstMessages[index] === 0) burstCounts[index] = answer.count!;
            if (++answered === clients.length) process.send!({ type: 'joined', refused, emitted: last - first });
          });
        },
        (index * ms) / clients.length,
      );
    });
  } else if (message.type === 'burst-stats') {
    process.send!({ type: 'burst-stats', messages: burstMessages, counts: burstCounts });
  } else if (message.type === 'close') {
    for (const client of clients) client.disconnect();
    process.exit(0);
  }
});

for (let from = 0; from < members; from += CONCURRENCY) {
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, members - from) }, (_, i) => open(`${prefix}${from + i}`)));
}
process.send!({ type: 'ready' });
