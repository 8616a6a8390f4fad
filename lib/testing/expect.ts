// The few assertions the conformance kit makes, on node:assert, so the kit needs no assertion library of yours.

import assert from 'node:assert/strict';

function show(value: unknown): string {
  try {
    return typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}

function label(message: string | undefined, text: string): string {
  return message ? `${message}: ${text}` : text;
}

export interface Expectation {
  readonly to: {
    equal(expected: unknown): void;
    readonly not: { equal(expected: unknown): void };
    readonly deep: { equal(expected: unknown): void };
    /** A substring, an array member, or (for an object) a subset of its properties, each strictly equal. */
    include(expected: unknown): void;
    readonly have: { length(expected: number): void };
    readonly be: {
      a(type: 'string' | 'number' | 'boolean' | 'object' | 'function'): void;
      greaterThan(bound: number): void;
      within(low: number, high: number): void;
      instanceOf(type: abstract new (...args: never[]) => unknown): { readonly with: { property(name: string, value: unknown): void } };
    };
  };
}

/** `expect(actual, message?)`, in the style of chai's BDD interface, for the assertions the kit uses. */
export function expect(actual: unknown, message?: string): Expectation {
  return {
    to: {
      equal: (expected) => assert.equal(actual, expected, label(message, `expected ${show(actual)} to equal ${show(expected)}`)),
      not: { equal: (expected) => assert.notEqual(actual, expected, label(message, `expected ${show(actual)} not to equal ${show(expected)}`)) },
      deep: { equal: (expected) => assert.deepEqual(actual, expected, message) },
      include(expected) {
        if (typeof actual === 'string') {
          assert.ok(actual.includes(String(expected)), label(message, `expected ${show(actual)} to include ${show(expected)}`));
        } else if (Array.isArray(actual)) {
          assert.ok(actual.includes(expected), label(message, `expected ${show(actual)} to include ${show(expected)}`));
        } else {
          assert.ok(typeof actual === 'object' && actual !== null, label(message, `expected an object to include ${show(expected)}; got ${show(actual)}`));
          const record = actual as Record<string, unknown>;
          for (const [key, value] of Object.entries(expected as Record<string, unknown>)) {
            assert.deepEqual(record[key], value, label(message, `expected ${show(actual)} to have ${key} = ${show(value)}`));
          }
        }
      },
      have: {
        length(expected) {
          const length = (actual as { length?: unknown } | null | undefined)?.length;
          assert.equal(length, expected, label(message, `expected ${show(actual)} to have length ${expected}`));
        },
      },
      be: {
        a: (type) => assert.equal(typeof actual, type, label(message, `expected ${show(actual)} to be a ${type}`)),
        greaterThan: (bound) => assert.ok((actual as number) > bound, label(message, `expected ${show(actual)} to be greater than ${bound}`)),
        within: (low, high) =>
          assert.ok((actual as number) >= low && (actual as number) <= high, label(message, `expected ${show(actual)} to be within ${low}..${high}`)),
        instanceOf(type) {
          assert.ok(actual instanceof type, label(message, `expected ${show(actual)} to be an instance of ${type.name}`));
          return {
            with: {
              property: (name, value) =>
                assert.deepEqual(
                  (actual as Record<string, unknown>)[name],
                  value,
                  label(message, `expected ${name} = ${show(value)}; got ${show((actual as Record<string, unknown>)[name])}`),
                ),
            },
          };
        },
      },
    },
  };
}
