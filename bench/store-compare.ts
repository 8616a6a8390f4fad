// `npm run bench:compare`: Redis's cost per login+logout pair of this tree against an earlier version's checkout, in one
// process, at the same offered rate, in alternating rounds. Redis CPU per pair moves by 2x from minute to minute on a shared
// machine; two versions measured in turn, at one load, can still be compared.
//
//   git worktree add /tmp/v01 3dd00b3 && ln -s "$PWD/node_modules" /tmp/v01/node_modules
//   BENCH_BASELINE_TREE=/tmp/v01 REDIS_URL=redis://127.0.0.1:6379 npm run bench:compare
//
// BENCH_COMPARE_RATE pairs/s (default 6000), BENCH_COMPARE_ROUNDS (3), BENCH_PAIR_MS per round (3000), 32 loops in flight.

import { Redis } from 'ioredis';
import { pathToFileURL } from 'node:url';
import type * as Library from '../lib/index.js';
import type * as RedisLibrary from '../lib/redis/index.js';
import { deleteKeys } from '../spec/helpers/redis.js';
import { median } from './report.js';
import { cpu } from './store.part.js';

const REDIS = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const BASELINE = process.env.BENCH_BASELINE_TREE;
const RATE = Number(process.env.BENCH_COMPARE_RATE ?? 6000);
const ROUNDS = Number(process.env.BENCH_COMPARE_ROUNDS ?? 3);
const MS = Number(process.env.BENCH_PAIR_MS ?? 3000);
const LOOPS = 32;
const noop = () => {};

if (!BASELINE) {
  console.error('bench:compare: set BENCH_BASELINE_TREE to a checkout of the version to compare with (see bench/store-compare.ts)');
  process.exit(2);
}

type Versions = typeof Library & typeof RedisLibrary;
async function load(lib: string): Promise<Versions> {
  const from = (path: string) => pathToFileURL(`${lib}/${path}`).href;
  return { ...((await import(from('index.ts'))) as typeof Library), ...((await import(from('redis/index.ts'))) as typeof RedisLibrary) };
}

const admin = new Redis(REDIS);

/** Redis CPU (µs, user + sys), time in scripts (µs, commandstats of FCALL / EVALSHA) and calls per command. */
async function reading(): Promise<{ cpu: number; scripts: number; calls: Map<string, number> }> {
  const info = await admin.info('commandstats');
  const calls = new Map<string, number>();
  let scripts = 0;
  for (const match of info.matchAll(/cmdstat_([a-z|_]+):calls=(\d+),usec=(\d+)/g)) {
    calls.set(match[1] as string, Number(match[2]));
    if (/^(fcall|fcall_ro|evalsha|eval)$/.test(match[1] as string)) scripts += Number(match[3]);
  }
  return { cpu: (await cpu([admin]))[0] as number, scripts, calls };
}

interface Round {
  perSecond: number;
  cpu: number;
  scripts: number;
  client: number;
  calls: string;
}

/** One round of one version: a second's warm-up, then MS of pairs at RATE. */
async function round(version: Versions, label: string): Promise<Round> {
  const client = new Redis(REDIS);
  const prefix = `bench:compare:${label}:${Date.now()}:`;
  const presence = version.createPresence({ loginPolicy: 'multi', store: new version.RedisStore({ client, prefix }) });
  const run = async (ms: number) => {
    const start = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: LOOPS }, async (_, loop) => {
        for (let i = loop, n = 0; performance.now() - start < ms; i += LOOPS, n++) {
          const wait = start + (n * LOOPS * 1000) / RATE - performance.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          const { connection } = await presence.engine.connect({ userId: `u${i % 5000}`, platform: 'Web', instanceId: `w${i}` }, noop);
          await presence.engine.logout(connection);
          done++;
        }
      }),
    );
    return { done, seconds: (performance.now() - start) / 1000 };
  };
  await run(1000);
  const before = await reading();
  const usage = process.cpuUsage();
  const { done, seconds } = await run(MS);
  const after = await reading();
  const used = process.cpuUsage(usage);
  await presence.close();
  await deleteKeys(client, prefix);
  client.disconnect();
  const calls = [...after.calls]
    .map(([name, count]) => [name, (count - (before.calls.get(name) ?? 0)) / done] as const)
    .filter(([, perPair]) => perPair >= 0.05)
    .map(([name, perPair]) => `${name} ${perPair.toFixed(1)}`)
    .join(', ');
  return {
    perSecond: done / seconds,
    cpu: (after.cpu - before.cpu) / done,
    scripts: (after.scripts - before.scripts) / done,
    client: (used.user + used.system) / done,
    calls,
  };
}

const versions = { 'this tree': await load(new URL('../lib', import.meta.url).pathname), [BASELINE]: await load(`${BASELINE}/lib`) };
const rounds = new Map<string, Round[]>(Object.keys(versions).map((label) => [label, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const [label, version] of Object.entries(versions)) rounds.get(label)?.push(await round(version, label === 'this tree' ? 'this' : 'baseline'));
}
console.log(`\nRedis per login+logout pair at ${RATE.toLocaleString('en-US')} pairs/s offered, ${LOOPS} in flight, median of ${ROUNDS} alternating rounds`);
const medians = new Map<string, { cpu: number; scripts: number }>();
for (const [label, list] of rounds) {
  const m = { cpu: median(list.map((x) => x.cpu)), scripts: median(list.map((x) => x.scripts)) };
  medians.set(label, m);
  console.log(
    `  ${label}: Redis CPU ${m.cpu.toFixed(1)} µs, in scripts ${m.scripts.toFixed(1)} µs, client CPU ${median(list.map((x) => x.client)).toFixed(0)} µs` +
      ` (rounds: ${list.map((x) => `${Math.round(x.perSecond)}/s ${x.cpu.toFixed(1)}/${x.scripts.toFixed(1)}`).join('; ')})`,
  );
  console.log(`    calls per pair: ${list[0]?.calls}`);
}
const ours = medians.get('this tree') as { cpu: number; scripts: number };
const theirs = medians.get(BASELINE) as { cpu: number; scripts: number };
console.log(`  ratio: Redis CPU ${(ours.cpu / theirs.cpu).toFixed(2)}x, in scripts ${(ours.scripts / theirs.scripts).toFixed(2)}x`);
admin.disconnect();
