// npm run test:chaos: a bounded chaos run over three processes on one Redis (CHAOS_REDIS=cluster: on a Redis Cluster of three
// masters); CHAOS_MINUTES (default 2) bounds it, CHAOS_SEED replays one.

import { mkdirSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { expect } from 'chai';
import type { Policy } from './model.js';
import { ChaosRun, FAULT_KINDS, type ChaosReport } from './run.js';

const minutes = Number(process.env.CHAOS_MINUTES ?? 2);
const seed = process.env.CHAOS_SEED === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.CHAOS_SEED);
const policy = process.env.CHAOS_POLICY as Policy | undefined;
const users = Number(process.env.CHAOS_USERS ?? 8);
const slack = Number(process.env.CHAOS_SLACK_MS ?? 5000);
// Least time between an empty Redis restart and the next: none by default (3 s was the workaround for a kick lost across two close restarts, fixed).
const redisSpacing = Number(process.env.CHAOS_REDIS_SPACING_MS ?? 0);
const redis = process.env.CHAOS_REDIS === 'cluster' ? 'cluster' : 'single';
if (process.env.CHAOS_REDIS !== undefined && process.env.CHAOS_REDIS !== 'cluster' && process.env.CHAOS_REDIS !== 'single')
  throw new Error(`CHAOS_REDIS=${process.env.CHAOS_REDIS}: expected single or cluster`);
const where = redis === 'cluster' ? 'a private Redis Cluster (3 masters; a master restarted empty)' : 'a private Redis';

function table(values: Record<string, number>): string {
  return Object.entries(values)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => `${key} ${value}`)
    .join(', ');
}

/** The graceful restarts, in one line. */
function gracefulLine(report: ChaosReport): string {
  const { graceful } = report;
  return (
    `${graceful.restarts} processes stopped (${graceful.rolling} rolling restarts of all three), ${graceful.handedOver} devices handed over: ` +
    `${graceful.resumed} resumed within the grace (${graceful.resumedOnRestarted} on the restarted process), ${graceful.notBack} not back ` +
    `(${graceful.endedOnce} ended once, as a closed connection, after the grace), ${graceful.touchedByStep} changed by a step during the grace; flaps seen by the watchers ${graceful.flaps}, ` +
    `callbacks for resumed devices ${graceful.callbacksForResumed}, presence:changed for users all back ${graceful.changedEvents}${graceful.changedEventsSeen.length > 0 ? ` [${graceful.changedEventsSeen.join('; ')}]` : ''} ` +
    `(and ${graceful.changesForEnded} for users with a device not back); ` +
    `longest SIGTERM to restarted process listening ${graceful.longestRestart} ms`
  );
}

function print(report: ChaosReport, lagMax: number): void {
  const lines = [
    `seed ${report.seed} (replay: CHAOS_SEED=${report.seed}${report.redis === 'cluster' ? ' CHAOS_REDIS=cluster' : ''}), on ${where}, policy ${report.policy}, ${report.users} users / ${report.devices} devices (${table(report.platforms)})`,
    `steps: ${report.stepsTotal} (${table(report.steps)})`,
    `faults: ${report.faultsTotal} (${table(report.faults)}); of which ${table(report.faultVariants)}`,
    `admin kicks made while Redis was away: ${report.outageKicks.total} (${report.outageKicks.refused} refused after storeTimeout), ending ${report.outageKicks.listedDevices} devices listed in their answer and ${report.outageKicks.endedOnReassertion} more as their process re-asserted them`,
    `callbacks: ${report.callbacks.received} received, ${report.callbacks.orderedPairs} pairs of known order checked for increasing Seq, ${report.callbacks.quietWindows} empty restarts with no callback allowed for re-asserted users`,
    `quiet checks: ${report.quietChecks}, divergences: ${report.divergences}`,
    `longest reconvergence (fault end to every node agreeing): ${table(report.longestReconvergence)} ms; bounds ${table(report.bounds)} ms; beyond bound: ${table(report.beyondBound) || 'none'}`,
    `longest device end seen on every node, from the fault: ${table(report.longestDeviceEnd)} ms`,
    `graceful restarts (SIGTERM, handoverGrace ${report.graceful.handoverGrace} ms): ${gracefulLine(report)}`,
    `errors logged by the nodes: ${table(report.nodeErrors) || 'none'}`,
    `runner event-loop delay max ${lagMax.toFixed(0)} ms; runtime ${report.runtimeSeconds} s`,
  ];
  console.log(`\n  chaos run\n${lines.map((line) => `    ${line}`).join('\n')}\n`);
}

describe(`chaos: three processes on ${where}, ${minutes} min, seed ${seed}`, function () {
  this.timeout(minutes * 60_000 + 120_000);
  let run: ChaosRun;

  before(async function () {
    run = new ChaosRun({ seed, minutes, policy, users, slack, redisSpacing, redis, log: (line) => console.log(`    ${line}`) });
    await run.start();
  });

  after(async function () {
    await run?.stop();
  });

  it('after every quiet period, every live process answers what really happened (zero divergences)', async function () {
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    console.log(
      `    seed ${seed}, policy ${run.policy}: replay with CHAOS_SEED=${seed}${policy ? '' : ` CHAOS_POLICY=${run.policy}`}${redis === 'cluster' ? ' CHAOS_REDIS=cluster' : ''}`,
    );
    let report: ChaosReport;
    try {
      report = await run.run();
    } finally {
      lag.disable();
    }
    print(report, lag.max / 1e6);
    if (process.env.CHAOS_REPORT) {
      mkdirSync(new URL('.', `file://${process.env.CHAOS_REPORT}`).pathname, { recursive: true });
      writeFileSync(process.env.CHAOS_REPORT, JSON.stringify({ ...report, runnerEventLoopDelayMaxMs: Math.round(lag.max / 1e6) }, null, 2));
    }
    if (report.divergence) console.log(`\n  DIVERGENCE\n${report.divergence}\n`);
    expect(report.divergences, `divergences (seed ${seed})`).to.equal(0);
    expect(report.stepsTotal, 'steps run').to.be.greaterThan(0);
    for (const kind of FAULT_KINDS) expect(report.faults[kind] ?? 0, `${kind} faults injected`).to.be.greaterThan(0);
    // README "Deploying": a device back within the handover grace shows nothing to anyone.
    expect(report.graceful.handedOver, 'devices handed over by graceful restarts').to.be.greaterThan(0);
    expect(report.graceful.flaps, 'flaps seen by the watchers during graceful restarts').to.equal(0);
    expect(report.graceful.callbacksForResumed, 'callbacks for devices resumed within the handover grace').to.equal(0);
    expect(report.graceful.resumed, 'devices resumed within the handover grace').to.be.greaterThan(0);
  });
});
