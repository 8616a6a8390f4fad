// Test timings written with an explicit unit: the options refuse a bare timeout below 1 s (seconds meant as ms).

/** `{ web: 60 }` → `{ web: '60ms' }`, so a short timeout in a fake-clock test is taken as meant. */
export function inMs<K extends string>(perClass: Readonly<Record<K, number>>): Record<K, string> {
  return Object.fromEntries(Object.entries<number>(perClass).map(([cls, ms]) => [cls, `${ms}ms`])) as Record<K, string>;
}
