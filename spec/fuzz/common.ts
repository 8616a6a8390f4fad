// Shared pieces of the fuzz run: run counts, outcome tallies, a recording logger, process-level fault traps and hostile-input arbitraries.

import fc from 'fast-check';
import { PLATFORMS } from '../../lib/index.js';

/** Inputs per target; FUZZ_RUNS overrides the default of 10,000. */
export const RUNS = positiveInteger('FUZZ_RUNS', process.env.FUZZ_RUNS, 10_000);

function positiveInteger(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`${name} must be a positive integer; got ${JSON.stringify(value)}`);
  return parsed;
}

/**
 * fast-check parameters of one target: FUZZ_SEED (and FUZZ_PATH) replay a reported failure. A
 * property that takes its inputs in batches of `batch` runs RUNS / batch times (rounded up); the
 * failure message names the culprit of a failing batch.
 */
export function fuzzParameters<T>(batch = 1): fc.Parameters<T> {
  const parameters: fc.Parameters<T> = { numRuns: Math.ceil(RUNS / batch), reporter: reportFailure };
  if (process.env.FUZZ_SEED) {
    parameters.seed = Number(process.env.FUZZ_SEED);
    if (process.env.FUZZ_PATH) parameters.path = process.env.FUZZ_PATH;
  }
  return parameters;
}

/** Longest counterexample printed: inputs run to megabytes, and a report must stay readable. */
const MAX_REPORTED = 2000;

function truncated(text: string): string {
  return text.length <= MAX_REPORTED ? text : `${text.slice(0, MAX_REPORTED)}… (${text.length} characters in all)`;
}

/** fast-check's printout of a value, or JSON where that is too deep for fast-check's recursion. */
function printable(value: unknown): string {
  try {
    return fc.stringify(value);
  } catch {
    try {
      return `(JSON) ${JSON.stringify(value)}`;
    } catch {
      return '(too deep to print; replay it with the seed and path)';
    }
  }
}

/** fast-check's report of a failure, with the counterexample cut short; the seed and path replay it whole. */
function reportFailure<T>(details: fc.RunDetails<T>): void {
  if (!details.failed) return;
  const replay = `FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath ?? ''}`;
  const example = details.counterexample === null ? 'none' : truncated(printable(details.counterexample));
  const cause = details.errorInstance instanceof Error ? details.errorInstance : new Error(String(details.errorInstance));
  throw new Error(
    `fuzz failed after ${details.numRuns} inputs (shrunk ${details.numShrinks} times); replay with ${replay}\ncounterexample: ${example}\ncause: ${truncated(cause.message)}\n${cause.stack?.split('\n').slice(1, 8).join('\n') ?? ''}`,
  );
}

/** A cheap assertion for the hot path: the context (a long description of the input) is only built on failure. */
export function must(condition: boolean, what: string, context: () => string): asserts condition {
  if (!condition) throw new Error(`${what}: ${context()}`);
}

/** A mocha timeout that scales with the run count: generous per input, never unbounded. */
export function timeoutFor(runs: number, perInputMs: number): number {
  return Math.max(60_000, runs * perInputMs);
}

// ---------------------------------------------------------------- outcomes

/** How many inputs one target took, and what became of them. */
export class Tally {
  inputs = 0;
  readonly outcomes = new Map<string, number>();
  private readonly started = performance.now();
  /** Wall time from the tally's creation to `finish()`. */
  seconds: number | undefined;
  constructor(
    readonly family: string,
    readonly target: string,
  ) {}

  add(outcome: string): void {
    this.inputs++;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }

  finish(): void {
    this.seconds = (performance.now() - this.started) / 1000;
  }
}

const tallies: Tally[] = [];

/** A fresh tally for one target (a re-run of the same target replaces the earlier one). */
export function tally(family: string, target: string): Tally {
  const fresh = new Tally(family, target);
  const at = tallies.findIndex((known) => known.family === family && known.target === target);
  if (at >= 0) tallies[at] = fresh;
  else tallies.push(fresh);
  return fresh;
}

/** Every target's input count and outcomes, as printed at the end of the run. */
export function summary(): string {
  const lines: string[] = [`fuzz summary: ${RUNS.toLocaleString('en-US')} inputs per target requested`];
  let total = 0;
  for (const entry of tallies) {
    total += entry.inputs;
    const outcomes = [...entry.outcomes.entries()].sort((a, b) => b[1] - a[1]).map(([outcome, count]) => `${outcome}: ${count}`);
    const time = entry.seconds === undefined ? '' : ` in ${entry.seconds.toFixed(1)} s`;
    lines.push(`  ${entry.family} ${entry.target} — ${entry.inputs} inputs${time}`);
    lines.push(`      ${outcomes.join(' | ')}`);
  }
  lines.push(`  total: ${total} inputs over ${tallies.length} targets`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- failures that must not happen

/** A logger that keeps every warning and error instead of printing it: the fuzz requires both lists to stay empty. */
export interface RecordingLogger {
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
  readonly warnings: unknown[][];
  readonly errors: unknown[][];
}

export function recordingLogger(): RecordingLogger {
  const warnings: unknown[][] = [];
  const errors: unknown[][] = [];
  return { warnings, errors, warn: (...args: unknown[]) => warnings.push(args), error: (...args: unknown[]) => errors.push(args) };
}

/** Describes the first logged failure, for an assertion message. */
export function describeLogged(entries: readonly unknown[][]): string {
  const first = entries[0];
  if (!first) return 'nothing logged';
  return first.map((part) => (part instanceof Error ? `${part.name}: ${part.message}\n${part.stack ?? ''}` : String(part))).join(' ');
}

/** Uncaught exceptions and unhandled rejections while a target runs: both count as crashes. */
export class ProcessFaults {
  readonly faults: unknown[] = [];
  private readonly onFault = (error: unknown): void => {
    this.faults.push(error);
  };

  start(): void {
    process.on('unhandledRejection', this.onFault);
    process.on('uncaughtExceptionMonitor', this.onFault);
  }

  stop(): void {
    process.off('unhandledRejection', this.onFault);
    process.off('uncaughtExceptionMonitor', this.onFault);
  }
}

/** What Object.prototype and Array.prototype carry, to show no input polluted them. */
export function prototypeFingerprint(): string {
  return JSON.stringify([Object.getOwnPropertyNames(Object.prototype).sort(), Object.getOwnPropertyNames(Array.prototype).sort()]);
}

// ---------------------------------------------------------------- hostile values

/** Keys that pollute prototypes when a parser or a merge assigns them naively. */
export const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf'] as const;

export const protoKey = fc.constantFrom(...PROTO_KEYS);

/** Platform names and near misses: every real one, aliases, wrong case, prototype keys, blanks. */
export const platformName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...PLATFORMS, 'iOS') },
  { weight: 2, arbitrary: fc.constantFrom('android', 'IOS', 'ios', 'web', 'Web ', ' Web', 'MINIPROGRAM', 'Mac OS', 'iphone', '', 'Unknown', 'Android\u0000') },
  { weight: 2, arbitrary: protoKey },
);

/** Strings of exactly n characters, some with multi-byte and astral characters. */
function sized(n: number, variant: number): string {
  switch (variant % 4) {
    case 0:
      return 'x'.repeat(n);
    case 1:
      return '€'.repeat(n);
    case 2:
      return '😀'.repeat(Math.ceil(n / 2)).slice(0, n);
    default:
      return 'i'.repeat(Math.max(0, n - 1)) + (n > 0 ? '\ud800' : '');
  }
}

/** A string whose length sits around `limit` (in characters, from limit - 3 to limit + 3). */
export function aroundLength(limit: number): fc.Arbitrary<string> {
  return fc.tuple(fc.integer({ min: Math.max(0, limit - 3), max: limit + 3 }), fc.nat(3)).map(([n, variant]) => sized(n, variant));
}

/** Strings of every kind: short, Unicode of every plane, lone surrogates, control characters, very long. */
export const anyString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 24 }) },
  // Any code point, lone surrogates included (fc.string's 'binary' unit costs a second to build).
  { weight: 3, arbitrary: fc.array(fc.integer({ min: 0, max: 0x10ffff }), { maxLength: 24 }).map((codes) => String.fromCodePoint(...codes)) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\u0000', '\ud800', 'a\udfff', '\ufeff', '%', '%zz', '../..', '<script>', '\r\n', 'null', 'undefined') },
  { weight: 1, arbitrary: protoKey },
  { weight: 1, arbitrary: fc.integer({ min: 129, max: 20_000 }).map((n) => 'y'.repeat(n)) },
);

/** An id-like string: mostly valid (1 to 128 characters), often at the limit, sometimes just past it or empty. */
export const idLike = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('u1', 'u2', 'u3', 'u4', 'query', 'stats', 'a b', 'ü', '😀') },
  { weight: 3, arbitrary: aroundLength(128) },
  { weight: 3, arbitrary: anyString },
);

/** Numbers JSON can carry and those it cannot: huge, tiny, negative zero, non-integers, unsafe integers. */
export const oddNumber = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 2, 0.5, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER + 2, -(2 ** 63), 2 ** 64),
  fc.double(),
  fc.integer(),
);

/** A value nested `depth` levels deep, as arrays or objects. */
export function nested(depth: number, asObject: boolean, leaf: unknown = 1): unknown {
  let value: unknown = leaf;
  for (let i = 0; i < depth; i++) value = asObject ? { a: value } : [value];
  return value;
}

/** An object whose own keys include prototype-polluting names (built by JSON.parse so `__proto__` stays an own key). */
export function objectWithKeys(entries: readonly (readonly [string, unknown])[]): Record<string, unknown> {
  return JSON.parse(jsonObjectText(entries)) as Record<string, unknown>;
}

/** The JSON text of an object with exactly these entries, in order, duplicates kept. */
export function jsonObjectText(entries: readonly (readonly [string, unknown])[]): string {
  const parts: string[] = [];
  for (const [key, value] of entries) {
    const text = JSON.stringify(value);
    if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

/** Any JSON value, including prototype keys, huge numbers and moderate nesting. */
export const jsonJunk: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: anyString },
  { weight: 2, arbitrary: oddNumber },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}) },
  { weight: 1, arbitrary: fc.array(fc.tuple(protoKey, fc.jsonValue({ maxDepth: 2 })), { maxLength: 3 }).map(objectWithKeys) },
  // Deeper than this, JSON.stringify itself (in socket.io-client too) runs out of stack; the HTTP fuzz sends deeper JSON as text.
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.boolean()).map(([depth, asObject]) => nested(depth, asObject)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 3000 }).map((n) => Array.from({ length: n }, (_, i) => i)) },
);

/** Arrays of ids whose length sits around `limit`: cheap to build even at thousands. */
export function idListAround(limit: number): fc.Arbitrary<string[]> {
  return fc
    .tuple(fc.integer({ min: Math.max(0, limit - 10), max: limit + 10 }), fc.nat(1_000_000), fc.nat(9))
    .map(([n, base, repeats]) => Array.from({ length: n }, (_, i) => `u${base + (repeats === 0 ? i % 7 : i)}`));
}
