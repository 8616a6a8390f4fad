// `npm run bench [suite ...] [--runs N]`: runs each benchmark N times and writes BENCHMARKS.md with medians.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Figure } from './report.js';

const SUITES = ['engine', 'http', 'socket', 'cluster', 'rooms'] as const;
type Suite = (typeof SUITES)[number];

const args = process.argv.slice(2);
const runsFlag = args.indexOf('--runs');
const runs = runsFlag >= 0 ? Number(args[runsFlag + 1]) : 3;
if (!Number.isInteger(runs) || runs < 1) throw new TypeError(`--runs must be a positive integer; got ${args[runsFlag + 1]}`);
const named = args.filter((arg, i) => !arg.startsWith('--') && (runsFlag < 0 || i !== runsFlag + 1));
for (const name of named) if (!SUITES.includes(name as Suite)) throw new TypeError(`unknown benchmark ${name}; choose from ${SUITES.join(', ')}`);
const chosen = (named.length > 0 ? named : SUITES) as readonly Suite[];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function format(value: number | undefined, unit = ''): string {
  if (value === undefined) return '–';
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toLocaleString('en-US', { maximumFractionDigits: digits })}${unit ? ` ${unit}` : ''}`;
}

const work = mkdtempSync(join(tmpdir(), 'presence-bench-'));
const sections: string[] = [];
for (const suite of chosen) {
  const results: { suite: string; figures: Figure[] }[] = [];
  for (let run = 1; run <= runs; run++) {
    const file = join(work, `${suite}-${run}.json`);
    console.log(`\n=== ${suite}, run ${run} of ${runs}`);
    const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', `bench/${suite}.bench.ts`], {
      stdio: 'inherit',
      env: { ...process.env, BENCH_JSON: file },
    });
    if (child.status !== 0) throw new Error(`bench/${suite}.bench.ts failed (exit ${child.status})`);
    results.push(JSON.parse(readFileSync(file, 'utf8')));
  }
  const first = results[0] as { suite: string; figures: Figure[] };
  const rows = first.figures.map((figure) => {
    const same = results
      .map((result) => result.figures.find((other) => other.name === figure.name && other.baselineName === figure.baselineName))
      .filter((f): f is Figure => f !== undefined);
    const value = median(same.map((f) => f.value));
    const baselines = same.map((f) => f.baseline).filter((b): b is number => b !== undefined);
    const baseline = baselines.length ? median(baselines) : undefined;
    const ratios = same.filter((f) => f.baseline !== undefined).map((f) => f.value / (f.baseline as number));
    const ratio = ratios.length ? median(ratios) : undefined;
    const spread = same.length > 1 ? `${format(Math.min(...same.map((f) => f.value)))}–${format(Math.max(...same.map((f) => f.value)))}` : '';
    return `| ${figure.name} | ${format(value, figure.unit)} | ${spread} | ${baseline === undefined ? '–' : `${format(baseline, figure.unit)} (${figure.baselineName ?? 'bare'})`} | ${format(ratio)} | ${figure.target ?? '–'} |${figure.note ? ` ${figure.note}` : ''}`;
  });
  sections.push(
    `## ${first.suite}\n\n\`npm run bench:${suite}\`\n\n| figure | median | range over runs | baseline (median) | ratio (median of per-run ratios) | target |\n| --- | --- | --- | --- | --- | --- |\n${rows.join('\n')}\n`,
  );
}
rmSync(work, { recursive: true, force: true });

// Suites not run this time keep their section from the last BENCHMARKS.md.
const previous = existsSync('BENCHMARKS.md') ? readFileSync('BENCHMARKS.md', 'utf8').split('\n## ').slice(1) : [];
for (const section of previous) {
  const suite = /`npm run bench:(\w+)`/.exec(section)?.[1];
  if (suite && !chosen.includes(suite as Suite)) sections.push(`## ${section.trimEnd()}\n`);
}
const order = (section: string) => SUITES.indexOf((/`npm run bench:(\w+)`/.exec(section)?.[1] ?? '') as Suite);
sections.sort((a, b) => order(a) - order(b));

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const markdown = `# Benchmarks

Measured by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${availableParallelism()} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}.
Each suite ran ${runs} times as a separate process; each figure is the median of those runs, and its ratio is the
median of the per-run ratios against a baseline measured in the same run (same process or same script), so that
the noise of a shared machine falls on both sides. Ratios above 1 are better when the figure is a rate, below 1
when it is a time or a size. Rerun with \`npm run bench\` (all) or \`npm run bench -- engine http --runs 5\`.

${sections.join('\n')}`;
writeFileSync('BENCHMARKS.md', markdown);
console.log('\nwrote BENCHMARKS.md');
