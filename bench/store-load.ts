// One load process of the store bench's saturation part: login+logout pairs (or a trivial script) from many loops at once,
// started and stopped by the parent (bench/store.part.ts), which reads Redis's CPU around the window.

import { Redis } from 'ioredis';
import { pathToFileURL } from 'node:url';
import type * as Library from '../lib/index.js';
import type * as RedisLibrary from '../lib/redis/index.js';

/**
 * lib: the library's directory, this tree's by default, or an earlier version's checkout (BENCH_BASELINE_TREE). rate: pairs per
 * second this process offers (0: as many as its loops can), so that two versions are compared at the same load on Redis.
 */
const { url, prefix, kind, concurrency, index, lib, rate } = JSON.parse(process.argv[2] as string) as {
  url: string;
  prefix: string;
  kind: 'pairs' | 'trivial';
  concurrency: number;
  index: number;
  lib?: string;
  rate?: number;
};
const from = (path: string) => (lib ? pathToFileURL(`${lib}/${path}`).href : new URL(`../lib/${path}`, import.meta.url).href);
const { createPresence } = (await import(from('index.ts'))) as typeof Library;
const { RedisStore } = (await import(from('redis/index.ts'))) as typeof RedisLibrary;
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
    const start = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_, loop) => {
        for (let i = loop, n = 0; running; i += concurrency, n++) {
          // At a fixed rate, each loop starts its n-th pair at its turn (or at once when late).
          const wait = rate ? start + (n * concurrency * 1000) / rate - performance.now() : 0;
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          if (!running) break;
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
