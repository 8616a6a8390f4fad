// Skipping with a reason: `npm test` (scripts/test.mjs and its reporter) prints it beside the skipped tests.

/**
 * Skips the current test, or every test of the suite when called in a `before` hook, and records
 * why on the test or suite so the reporter can say it (mocha's own `this.skip()` takes no reason).
 */
export function skipBecause(context: Mocha.Context, reason: string): never {
  const runnable = context.test;
  // In a before-all hook (where mocha sets currentTest to the suite's first test) the reason
  // belongs to the suite it skips; in a test or a beforeEach hook, to the current test.
  const wholeSuite = runnable !== undefined && (runnable as { type?: string }).type === 'hook' && runnable.title.startsWith('"before all"');
  const target = wholeSuite ? runnable.parent : (context.currentTest ?? runnable);
  if (target) Object.assign(target, { skipReason: reason });
  context.skip();
}
