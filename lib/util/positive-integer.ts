// The stores' own options (counts, milliseconds): whole numbers from 1 up.

/** `value` if it is an integer of at least 1, `fallback` if absent; otherwise a TypeError naming `owner` and `name`. */
export function positiveInteger(owner: string, name: string, value: unknown, fallback: number, unit?: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    const got = typeof value === 'string' ? JSON.stringify(value) : String(value);
    throw new TypeError(`${owner}: ${name} must be a positive integer${unit ? ` of ${unit}` : ''}; got ${got}`);
  }
  return value;
}
