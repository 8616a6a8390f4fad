// Prints benchmark figures as a table, with each figure's baseline and ratio, and emits them as JSON for bench/run.ts.

import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export interface Figure {
  name: string;
  value: number;
  unit: string;
  higherIsBetter: boolean;
  baseline?: number;
  baselineName?: string;
  target?: string | undefined;
  note?: string;
}

function format(value: number, unit: string): string {
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 })} ${unit}`;
}

/** Prints the figures; when BENCH_JSON is set, also writes them to that file for the suite runner. */
export function report(suite: string, figures: readonly Figure[]): void {
  console.log(`\n${suite} — node ${process.version}, ${availableParallelism()} cores`);
  for (const figure of figures) {
    let line = `  ${figure.name}: ${format(figure.value, figure.unit)}`;
    if (figure.baseline !== undefined) {
      line += ` | baseline (${figure.baselineName ?? 'bare'}): ${format(figure.baseline, figure.unit)} | ratio ${(figure.value / figure.baseline).toFixed(2)}`;
    }
    if (figure.target) line += ` | target ${figure.target}`;
    if (figure.note) line += ` (${figure.note})`;
    console.log(line);
  }
  const file = process.env.BENCH_JSON;
  if (file) writeFileSync(file, JSON.stringify({ suite, figures }, null, 2));
}

/** The middle value (the upper one of an even count): the figure of several rounds on a noisy machine. */
export function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
}
