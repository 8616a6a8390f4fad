// One load process of the store bench's saturation part: login+logout pairs (or a trivial script) from many loops at once,
// started and stopped by the parent (bench/store.part.ts), which reads Redis's CPU around the window.

import { Redis } from 'ioredis';
import { createPresence } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';

const { url, prefix, kind, concurrency, index } = JSON.parse(process.argv[2] as string) as {
  url: string;
  prefix: string;
  kind: 'pairs' | 'trivial';
  concurrency: number;
  index: number;
};
const noop = () => {};
const send = (message: unknown) => process.send?.(message);

const client = new Redis(url);
let work: (i: number) => Promise<unknown>;
let close: () => Promise<void>;
if (kind === 'pairs') {
  const presence = createPresence({ loginPolicy: 'multi', store: new RedisStore({ client, prefix }) });
  await presence.engine.logout((await presence.engine.connect({ userId: `warm${index}`, platform: 'Web', instanceId: 'w' }, noop)).connection);
  work = async (i) => {
    const { connection } = await presence.engine.connect({ userId: `p${index}u${i % 5000}`, platform: 'Web', instanceId: `w${i}` }, noop);
    await presence.engine.logout(connection);
  };
  close = () => presence.close();
} else {
  const sha = (await client.script('LOAD', 'return 1')) as string;
  work = (i) => client.evalsha(sha, 1, `bench:trivial:${index}:${i % 5000}`);
  close = async () => {};
}

let running = false;
let done = 0;
process.on('message', async (message: { go?: boolean; stop?: boolean }) => {
  if (message.go) {
    running = true;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, loop) => {
        for (let i = loop; running; i += concurrency) {
          await work(i);
          done++;
        }
      }),
    );
    send({ done });
  } else if (message.stop) {
    running = false;
  }
});
process.on('disconnect', () => {
  void close().finally(() => {
    client.disconnect();
    process.exit(0);
  });
});
send({ ready: true });
