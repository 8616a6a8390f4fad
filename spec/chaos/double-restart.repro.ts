// Reproduces the kick the chaos run found lost: a kick missed by the holder's subscriber, then a second empty Redis restart; exits 1 if one is lost.
//
//   node --import tsx spec/chaos/double-restart.repro.ts        (ROUNDS=20 for more rounds)
//
// Fixed since: the kicking process applies its recent ends again after each reconnection (lib/redis/redis-store.ts,
// reapplyEnds), so this exits 0; spec/redis-ends.spec.ts runs it as a regression test.
//
// Each round: a MiniProgram logs in on process A; Redis restarts empty; once A has re-asserted it, a
// Web login on B kicks it (same limit group) while A's subscriber may still be reconnecting, so A can
// miss the `ended` message; the Web logs out and Redis restarts empty again at once. A kick that A
// missed was only to be found by A's next reconcile; the second wipe erased the revocation first, so
// A re-asserts the kicked MiniProgram: it stays connected, was never told, and is Online again.

import { fork } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { UserPresence } from '../../lib/index.js';
import { ClusterNode, connectDevice, delay, PrivateRedis, waitFor } from '../fixtures/cluster-harness.js';
import type { ClusterNodeConfig } from '../fixtures/cluster-protocol.js';
import { TIMINGS } from './run.js';

const NODE_SCRIPT = fileURLToPath(new URL('../fixtures/cluster-node.ts', import.meta.url));

async function startNode(name: string, redis: PrivateRedis): Promise<ClusterNode> {
  const config: ClusterNodeConfig = {
    name,
    redisUrl: redis.url,
    prefix: 'repro:',
    loginPolicy: 'multi',
    ...TIMINGS,
    heartbeatTimeout: { ...TIMINGS.heartbeatTimeout },
  };
  const child = fork(NODE_SCRIPT, [JSON.stringify(config)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const node = new ClusterNode(config, child);
  await node.ready();
  return node;
}

async function restartEmpty(redis: PrivateRedis): Promise<void> {
  await redis.kill();
  await delay(300);
  await redis.start();
}

export interface ReproResult {
  rounds: number;
  /** Kicks lost: the kicked MiniProgram still connected at the end of its round. */
  lost: number;
  /** What each round's MiniProgram was told, as `reason by platform/instanceId`, or 'nothing'. */
  told: string[];
  lines: string[];
}

export async function reproduce(rounds: number, log: (line: string) => void = console.log): Promise<ReproResult> {
  const redis = await PrivateRedis.start();
  const [a, b] = (await Promise.all([startNode('A', redis), startNode('B', redis)])) as [ClusterNode, ClusterNode];
  const result: ReproResult = { rounds, lost: 0, told: [], lines: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      const userId = `u${round}`;
      const mini = await connectDevice(a.url, userId, 'MiniProgram', { instanceId: 'mini' });
      await restartEmpty(redis);
      await waitFor(async () => (await b.http<UserPresence>(`/users/${userId}`)).body.status === 'Online', `${userId} re-asserted by A`, 10_000);
      const web = await connectDevice(b.url, userId, 'Web', { instanceId: 'web' });
      await web.socket.timeout(5000).emitWithAck('presence:logout');
      await restartEmpty(redis);
      await delay(3000);
      const stored = (await b.http<UserPresence>(`/users/${userId}`)).body.instances?.map((instance) => `${instance.instanceId}/${instance.status}`) ?? [];
      const kept = mini.socket.connected;
      if (kept) result.lost++;
      result.told.push(mini.kicks.map((kick) => `${kick.reason}${kick.by ? ` by ${kick.by.platform}/${kick.by.instanceId}` : ''}`).join('; ') || 'nothing');
      const line = `round ${round}: the Web login kicked ${JSON.stringify(web.session.kicked)}; the MiniProgram was ${kept ? 'NEVER TOLD and is still connected' : `told ${JSON.stringify(mini.kicks)}`}; stored now: [${stored.join(', ')}]`;
      result.lines.push(line);
      log(line);
      mini.socket.disconnect();
      web.socket.disconnect();
    }
    log(`${result.lost} of ${rounds} kicks lost`);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await redis.kill();
  }
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { lost } = await reproduce(Number(process.env.ROUNDS ?? 8));
  process.exit(lost > 0 ? 1 : 0);
}
