// Compares V8 heap snapshots (.heapsnapshot) by constructor: what grew between them, in count and self size.
//   node --import tsx bench/heap-diff.ts a.heapsnapshot b.heapsnapshot [c.heapsnapshot ...] [--top 40] [--strings]
// --strings groups strings by value (digits and 16-character ids masked), to see which kind grows.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

interface Group {
  count: number;
  size: number;
}

/** Counts and self sizes by `type:name` (objects by constructor, arrays, closures, strings, code...). */
export function summarize(file: string, strings = false): Map<string, Group> {
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const groups = new Map<string, Group>();
  const nodes = snapshot.nodes;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt] as number] as string;
    // Strings and numbers are grouped by type only (their names are their values); with --strings,
    // strings are grouped by value instead, digits and 16-character ids masked.
    const isString = type === 'string' || type === 'concatenated string' || type === 'sliced string';
    const value = snapshot.strings[nodes[i + nameAt] as number] as string;
    const name = isString && strings ? value.replace(/[A-Za-z0-9_-]{16}/g, '<id>').replace(/[0-9]+/g, '#') : isString || type === 'number' ? '' : value;
    const key = `${type}:${name.length > 80 ? `${name.slice(0, 77)}...` : name}`;
    const group = groups.get(key);
    if (group) {
      group.count++;
      group.size += nodes[i + sizeAt] as number;
    } else groups.set(key, { count: 1, size: nodes[i + sizeAt] as number });
  }
  return groups;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '40' }, strings: { type: 'boolean', default: false } },
  });
  if (positionals.length < 2) throw new Error('usage: heap-diff.ts a.heapsnapshot b.heapsnapshot [more...]');
  const summaries = positionals.map((file) => summarize(file, values.strings));
  const first = summaries[0] as Map<string, Group>;
  const last = summaries.at(-1) as Map<string, Group>;
  const keys = new Set([...first.keys(), ...last.keys()]);
  const rows = [...keys].map((key) => {
    const series = summaries.map((summary) => summary.get(key) ?? { count: 0, size: 0 });
    return { key, series, dSize: (last.get(key)?.size ?? 0) - (first.get(key)?.size ?? 0), dCount: (last.get(key)?.count ?? 0) - (first.get(key)?.count ?? 0) };
  });
  const total = (summary: Map<string, Group>): number => [...summary.values()].reduce((sum, group) => sum + group.size, 0);
  console.log(`total self size: ${summaries.map((summary) => total(summary).toLocaleString('en-US')).join(' → ')} bytes`);
  rows.sort((a, b) => Math.abs(b.dSize) - Math.abs(a.dSize));
  console.log(
    `| type:name | ${positionals.map((_, i) => `count ${i + 1}`).join(' | ')} | Δ count | ${positionals.map((_, i) => `size ${i + 1}`).join(' | ')} | Δ size |`,
  );
  for (const row of rows.slice(0, Number(values.top))) {
    console.log(
      `| ${row.key} | ${row.series.map((group) => group.count).join(' | ')} | ${row.dCount >= 0 ? '+' : ''}${row.dCount} | ${row.series.map((group) => group.size).join(' | ')} | ${row.dSize >= 0 ? '+' : ''}${row.dSize} |`,
    );
  }
}

main();
