// HTTP benchmark: querystate of 500 accounts with detail through our router, against a bare Express route answering the same JSON from a Map.

import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { deepStrictEqual } from 'node:assert';
import express from 'express';
import { createPresence, type InstancePresence, type Presence, type Platform, type UserPresence } from '../lib/index.js';
import { deriveUserStatus } from '../lib/core/store.js';
import { report, type Figure } from './report.js';
import { devicesOf } from './fixtures.js';

/**
 * Each app is measured for ROUNDS x DURATION_S seconds (10 s by default), in short alternating
 * slices so that the load of a shared machine falls on every app alike. Overridable.
 */
const DURATION_S = Number(process.env.BENCH_DURATION ?? 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const WARMUP_S = 3;
const CONNECTIONS = 16;
const USERS = 600;
const ACCOUNTS = 500;

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p99: number; average: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  duration: number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const AUTHORIZATION = 'Bearer bench';

/**
 * NOT shipped, only measured with BENCH_PROJECTED=1: the engine's query as it would be with the fix
 * proposed for it (format "now" once per call; memoise each device's `since` text), to show what
 * the router reaches once the engine stops formatting ~1 500 dates per 500-user query.
 */
function projectEngineFix(presence: Presence): void {
  const store = presence.config.store;
  const clock = presence.config.clock;
  const sinceText = new WeakMap<object, { since: number; text: string }>();
  const iso = (instance: { since: number }): string => {
    let memo = sinceText.get(instance);
    if (memo?.since !== instance.since) sinceText.set(instance, (memo = { since: instance.since, text: new Date(instance.since).toISOString() }));
    return memo.text;
  };
  presence.engine.query = async (userIds, options = {}) => {
    for (let i = 0; i < userIds.length; i++) if (typeof userIds[i] !== 'string') throw new TypeError('userIds');
    const detail = options.detail !== false;
    const users = await store.get(userIds);
    const now = new Date(clock.now()).toISOString();
    return userIds.map((userId, i): UserPresence => {
      const user = users[i];
      if (!user) return { userId, status: 'Offline', lastSeen: null, customStatus: null, availability: 'available', idleSince: null, instances: [] };
      const status = deriveUserStatus(user.instances);
      const lastSeen = status === 'Online' ? now : user.lastSeen === null ? null : new Date(user.lastSeen).toISOString();
      if (!detail) return { userId, status, lastSeen, customStatus: user.customStatus, availability: 'available', idleSince: null };
      const instances = user.instances.map((instance): InstancePresence => ({
        instanceId: instance.instanceId,
        platform: instance.platform,
        status: instance.status,
        since: iso(instance),
        version: instance.version ?? null,
      }));
      return { userId, status, lastSeen, customStatus: user.customStatus, availability: 'available', idleSince: null, instances };
    });
  };
}

async function presenceServer(projected: boolean): Promise<express.Express> {
  const presence = createPresence({ loginPolicy: 'multi', authorize: (req) => req.headers.authorization === AUTHORIZATION });
  for (let i = 0; i < USERS; i++) {
    for (const device of devicesOf(i)) {
      const { connection } = await presence.engine.connect({ userId: `user${i}`, platform: device.platform, instanceId: device.instanceId }, () => {});
      if (device.pushOnline) presence.engine.disconnect(connection, 'closed');
    }
  }
  if (projected) projectEngineFix(presence);
  const app = express();
  app.use('/im', presence.router());
  return app;
}

interface Entry {
  To_Account: string;
  Status: 'Online' | 'PushOnline' | 'Offline';
  Detail: { Platform: Platform; Status: 'Online' | 'PushOnline' }[];
}

/** The bare route: what an app would write by hand with express.json() and a Map; `lean` skips res.json's ETag. */
function bareServer(lean: boolean): express.Express {
  const map = new Map<string, Entry>();
  for (let i = 0; i < USERS; i++) {
    const devices = devicesOf(i);
    if (devices.length === 0) continue;
    // The engine lists a user's devices in login order, which is this order.
    const Detail = devices.map((d) => ({ Platform: d.platform, Status: d.pushOnline ? ('PushOnline' as const) : ('Online' as const) }));
    const Status = Detail.some((d) => d.Status === 'Online') ? 'Online' : 'PushOnline';
    map.set(`user${i}`, { To_Account: `user${i}`, Status, Detail });
  }
  const app = express();
  app.post('/im/v4/openim/querystate', express.json({ limit: '1mb' }), (req, res) => {
    if (req.headers.authorization !== AUTHORIZATION) {
      res.status(403).json({ ActionStatus: 'FAIL', ErrorCode: 90009, ErrorInfo: 'not authorised' });
      return;
    }
    const accounts = (req.body as { To_Account: string[] }).To_Account;
    const QueryResult = accounts.map((id) => map.get(id) ?? { To_Account: id, Status: 'Offline', Detail: [] });
    const answer = { ActionStatus: 'OK', ErrorCode: 0, ErrorInfo: '', QueryResult };
    if (lean) res.type('json').end(JSON.stringify(answer));
    else res.json(answer);
  });
  return app;
}

/** Child process: serve one app and report its port. */
async function serve(kind: string): Promise<void> {
  const app = kind.startsWith('presence') ? await presenceServer(kind === 'presence-projected') : bareServer(kind === 'bare-lean');
  const server = app.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
}

function start(kind: string): Promise<{ child: ChildProcess; url: string }> {
  const child = fork(fileURLToPath(import.meta.url), ['serve', kind], { execArgv: ['--import', 'tsx'] });
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve({ child, url: `http://127.0.0.1:${(message as { port: number }).port}/im/v4/openim/querystate` }));
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
}

const body = JSON.stringify({ To_Account: Array.from({ length: ACCOUNTS }, (_, i) => `user${i}`), IsNeedDetail: 1 });
const headers = { 'content-type': 'application/json', authorization: AUTHORIZATION };

async function drive(url: string, seconds: number): Promise<AutocannonResult> {
  const result = await autocannon({ url, method: 'POST', body, headers, connections: CONNECTIONS, duration: seconds });
  if (result.errors || result.timeouts || result.non2xx)
    throw new Error(`${url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx`);
  return result;
}

async function main(): Promise<void> {
  const kinds = ['presence', 'bare', 'bare-lean', ...(process.env.BENCH_PROJECTED ? ['presence-projected'] : [])];
  const servers = await Promise.all(kinds.map(start));
  try {
    // The same request must get the same answer from each, or the comparison means nothing.
    const answers = await Promise.all(servers.map(({ url }) => fetch(url, { method: 'POST', body, headers }).then((r) => r.json())));
    for (const answer of answers.slice(1)) deepStrictEqual(answer, answers[0]);
    console.log(`same answer from all ${kinds.length} (${JSON.stringify(answers[0]).length} bytes); warming up ${WARMUP_S} s each`);
    for (const { url } of servers) await drive(url, WARMUP_S);

    const totals = kinds.map(() => ({ requests: 0, seconds: 0, p99: [] as number[] }));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < kinds.length; k++) {
        const result = await drive(servers[k]!.url, DURATION_S);
        const total = totals[k]!;
        total.requests += result.requests.total;
        total.seconds += result.duration;
        total.p99.push(result.latency.p99);
        console.log(`  round ${round + 1} ${kinds[k]}: ${result.requests.average.toFixed(0)} req/s, p99 ${result.latency.p99} ms`);
      }
    }
    const rate = (k: number): number => totals[k]!.requests / totals[k]!.seconds;
    const p99 = (k: number): number => {
      const sorted = [...totals[k]!.p99].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)] ?? NaN;
    };
    const figures: Figure[] = [
      {
        name: `querystate ${ACCOUNTS} accounts + detail`,
        value: rate(0),
        unit: 'req/s',
        higherIsBetter: true,
        baseline: rate(1),
        baselineName: 'express.json() + Map + res.json',
        target: '>= 0.85',
      },
      { name: 'querystate p99 (median of rounds)', value: p99(0), unit: 'ms', higherIsBetter: false, baseline: p99(1), baselineName: 'bare' },
      {
        name: `querystate ${ACCOUNTS} accounts + detail, vs a leaner bare route`,
        value: rate(0),
        unit: 'req/s',
        higherIsBetter: true,
        baseline: rate(2),
        baselineName: 'express.json() + Map + res.end(JSON.stringify)',
      },
      { name: 'querystate p99 vs leaner bare', value: p99(0), unit: 'ms', higherIsBetter: false, baseline: p99(2), baselineName: 'bare-lean' },
    ];
    if (kinds.length > 3) {
      figures.push({
        name: 'PROJECTED, engine query fix emulated (not shipped)',
        value: rate(3),
        unit: 'req/s',
        higherIsBetter: true,
        baseline: rate(1),
        baselineName: 'express.json() + Map + res.json',
        target: '>= 0.85',
      });
      figures.push({ name: 'PROJECTED p99', value: p99(3), unit: 'ms', higherIsBetter: false, baseline: p99(1), baselineName: 'bare' });
    }
    report(`bench:http (${CONNECTIONS} connections, ${ROUNDS} x ${DURATION_S} s each, alternating)`, figures);
  } finally {
    for (const { child } of servers) child.kill();
  }
}

if (process.argv[2] === 'serve') await serve(process.argv[3] ?? 'bare');
else await main();
