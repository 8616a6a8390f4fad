// `npm test`: runs lint, format check, the layer rule, type check, build and the mocha suites in turn (the chaos run twice: on one
// Redis, then on a Redis Cluster), saying each one's result, and ends with one total line.
//
// `node scripts/test.mjs unit pack` runs only the named stages; `--list` names them. Every stage
// runs even after another failed (so the total covers everything), except that the suites are
// not run on a failed build: they import the package from dist/. The exit code is 1 when any
// stage failed.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const bin = {
  eslint: 'node_modules/eslint/bin/eslint.js',
  prettier: 'node_modules/prettier/bin/prettier.cjs',
  tsc: 'node_modules/typescript/bin/tsc',
  mocha: 'node_modules/mocha/bin/mocha.js',
  depcruise: 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs',
};

/** The stages of `npm test`, in order. `suite` stages run mocha with the tally reporter; `needsBuild` ones need dist/. */
const STAGES = [
  { name: 'lint', what: 'eslint .', args: [bin.eslint, '.'] },
  { name: 'format', what: 'prettier --check .', args: [bin.prettier, '--check', '.'] },
  {
    name: 'layers',
    what: 'depcruise lib (the layers of .dependency-cruiser.cjs: no cycle, arrows inward)',
    args: [bin.depcruise, 'lib', '--config', '.dependency-cruiser.cjs'],
  },
  { name: 'typecheck', what: 'tsc -p tsconfig.json', args: [bin.tsc, '-p', 'tsconfig.json'] },
  { name: 'build', what: 'scripts/build.mjs (dist/esm, dist/cjs)', args: ['scripts/build.mjs'] },
  { name: 'unit', what: 'mocha: spec/**/*.spec.ts', suite: [], needsBuild: true },
  { name: 'pack', what: 'mocha: spec/external (the packed tarball in fresh projects)', suite: ['--config', 'spec/external/.mocharc.json'], needsBuild: true },
  { name: 'fuzz', what: 'mocha: spec/fuzz', suite: ['--config', 'spec/fuzz/.mocharc.json'], needsBuild: true },
  { name: 'chaos', what: 'mocha: spec/chaos (three processes on Redis under faults)', suite: ['--config', 'spec/chaos/.mocharc.json'], needsBuild: true },
  // On a private cluster the run starts itself (free ports, no persistence; it restarts masters), not REDIS_CLUSTER_NODES; it
  // fails, never skips, when the cluster cannot be formed.
  {
    name: 'chaos-cluster',
    what: 'mocha: spec/chaos on a private Redis Cluster (3 masters, one restarted empty as the Redis fault)',
    suite: ['--config', 'spec/chaos/.mocharc.json'],
    env: { CHAOS_REDIS: 'cluster' },
    needsBuild: true,
  },
];

const requested = process.argv.slice(2);
if (requested.includes('--list')) {
  for (const stage of STAGES) console.log(`${stage.name.padEnd(14)} ${stage.what}`);
  process.exit(0);
}
const unknown = requested.filter((name) => !STAGES.some((stage) => stage.name === name));
if (unknown.length > 0) {
  console.error(
    `scripts/test.mjs: unknown stage ${unknown.map((name) => JSON.stringify(name)).join(', ')}; the stages are ${STAGES.map((stage) => stage.name).join(', ')}`,
  );
  process.exit(2);
}
const stages = requested.length === 0 ? STAGES : STAGES.filter((stage) => requested.includes(stage.name));

const CI = Boolean(process.env.CI);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function seconds(ms) {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Whether Redis answers PING at REDIS_URL within 2 s. */
function redisAnswers() {
  let url;
  try {
    url = new URL(REDIS_URL);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const socket = createConnection({ host: url.hostname || '127.0.0.1', port: Number(url.port || 6379) });
    let answer = '';
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    // A password-protected Redis answers -NOAUTH: it is there, and the specs use the URL's credentials.
    socket.on('data', (chunk) => {
      answer += chunk.toString();
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG') || answer.startsWith('-NOAUTH'));
    });
  });
}

/** Runs `node ...args`, output straight to ours; resolves with the exit code (a signal counts as 1). */
let current;
function runNode(args, env = {}) {
  return new Promise((resolve) => {
    current = spawn(process.execPath, args, { stdio: 'inherit', env: { ...process.env, ...env } });
    current.once('error', (error) => {
      console.error(error);
      resolve(1);
    });
    current.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

// Stopping `npm test` stops the stage that is running, rather than leaving it behind.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (current && current.exitCode === null) current.kill(signal);
    process.exit(130);
  });
}

// What the machine lacks, said before anything runs rather than discovered in a test's output.
const usesBrowser = stages.some((stage) => stage.name === 'unit');
if (usesBrowser && !existsSync(CHROMIUM)) {
  console.log(
    CI
      ? `note: ${CHROMIUM} is missing; under CI=1 the example's browser tests fail (apt-get update && apt-get install -y chromium)`
      : `note: ${CHROMIUM} is missing, so the example's browser tests will be skipped (apt-get update && apt-get install -y chromium)`,
  );
}
if (stages.some((stage) => stage.name === 'unit' || stage.name === 'chaos') && !(await redisAnswers())) {
  console.log(`note: Redis does not answer at ${REDIS_URL}; the Redis-mode specs need it (start redis-server, or set REDIS_URL)`);
}

const results = [];
let buildFailed = false;
for (const stage of stages) {
  console.log(`\n── ${stage.name}: ${stage.what}`);
  if (stage.needsBuild && buildFailed) {
    const reason = 'not run: the build failed';
    console.log(`- ${stage.name} skipped (${reason})`);
    results.push({ stage, ok: false, skippedBecause: reason });
    continue;
  }
  const started = Date.now();
  if (!stage.suite) {
    const code = await runNode(stage.args);
    const ok = code === 0;
    if (stage.name === 'build' && !ok) buildFailed = true;
    console.log(`${ok ? '✔' : '✖'} ${stage.name} ${ok ? 'passed' : `failed (exit code ${code})`} in ${seconds(Date.now() - started)}`);
    results.push({ stage, ok });
    continue;
  }
  const summaryFile = join(tmpdir(), `express-presence-test-${process.pid}-${stage.name}.json`);
  rmSync(summaryFile, { force: true });
  const code = await runNode([bin.mocha, ...stage.suite, '--reporter', 'scripts/mocha-tally.cjs', '--reporter-option', `summary=${summaryFile}`], stage.env);
  let tally;
  try {
    tally = JSON.parse(readFileSync(summaryFile, 'utf8'));
  } catch {
    tally = undefined;
  }
  rmSync(summaryFile, { force: true });
  const took = seconds(Date.now() - started);
  if (!tally) {
    console.log(`✖ ${stage.name}: mocha ended (exit code ${code}) before reporting its counts, in ${took}`);
    results.push({ stage, ok: false });
    continue;
  }
  // Mocha's exit code is its failure count; a non-zero code with no failure counted is a crash.
  const ok = code === 0 && tally.failures === 0;
  const counts = `${tally.passes} passed, ${tally.failures} failed, ${tally.pending} skipped`;
  console.log(`${ok ? '✔' : '✖'} ${stage.name}: ${counts}${code !== 0 && tally.failures === 0 ? ` (mocha exited with code ${code})` : ''} in ${took}`);
  results.push({ stage, ok, tally });
}

console.log('\n── npm test');
for (const { stage, ok, tally, skippedBecause } of results) {
  const detail = skippedBecause ?? (tally ? `${tally.passes} passed, ${tally.failures} failed, ${tally.pending} skipped` : ok ? 'passed' : 'failed');
  console.log(`${skippedBecause ? '-' : ok ? '✔' : '✖'} ${stage.name.padEnd(14)} ${detail}`);
}
// Skipped tests, grouped by reason, so a skip is never silent.
const reasons = new Map();
for (const { stage, tally } of results) {
  for (const { reason } of tally?.skipped ?? []) {
    const key = `${stage.name}: ${reason}`;
    reasons.set(key, (reasons.get(key) ?? 0) + 1);
  }
}
for (const [reason, count] of reasons) console.log(`  ${count} skipped in ${reason}`);

const suites = results.filter((result) => result.tally);
const total = (key) => suites.reduce((sum, { tally }) => sum + tally[key], 0);
const failedStages = results.filter((result) => !result.ok).map((result) => result.stage.name);
console.log(
  `${total('passes')} passed, ${total('failures')} failed, ${total('pending')} skipped (${suites.length} mocha stage${suites.length === 1 ? '' : 's'}); ` +
    (failedStages.length === 0 ? `all ${results.length} stages passed` : `failed or not run: ${failedStages.join(', ')}`),
);
process.exit(failedStages.length === 0 ? 0 : 1);
