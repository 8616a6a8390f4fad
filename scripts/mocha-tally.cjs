// Mocha reporter for scripts/test.mjs: mocha's spec output, the reason of every skipped test, and the run's counts as JSON.
'use strict';

const { writeFileSync } = require('node:fs');
const Mocha = require('mocha');

const { EVENT_SUITE_BEGIN, EVENT_SUITE_END, EVENT_TEST_PENDING, EVENT_RUN_END } = Mocha.Runner.constants;

/** The reason a spec gave through spec/helpers/skip.ts, on the test or on a suite above it. */
function reasonOf(runnable) {
  for (let node = runnable; node; node = node.parent) if (typeof node.skipReason === 'string') return node.skipReason;
  return undefined;
}

class Tally extends Mocha.reporters.Spec {
  constructor(runner, options = {}) {
    super(runner, options);
    const reporterOptions = options.reporterOption ?? options.reporterOptions ?? {};
    const skipped = [];
    const said = new Set();
    // The spec reporter indents by suite depth; its counter is private, so keep our own.
    let depth = 0;
    runner.on(EVENT_SUITE_BEGIN, () => depth++);
    runner.on(EVENT_SUITE_END, () => depth--);
    runner.on(EVENT_TEST_PENDING, (test) => {
      const reason = reasonOf(test) ?? (test.isPending() && !test.fn ? 'written without a body (pending)' : 'skipped without a reason');
      skipped.push({ title: test.fullTitle(), reason });
      // The spec reporter has just printed the test as "- title"; say why once per suite and reason.
      const key = `${test.parent?.fullTitle()}\n${reason}`;
      if (!said.has(key)) {
        said.add(key);
        Mocha.reporters.Base.consoleLog(`${'  '.repeat(depth)}  (skipped: ${reason})`);
      }
    });
    // Registered after the spec reporter's own handler, so the JSON carries the counts its epilogue printed.
    runner.once(EVENT_RUN_END, () => {
      if (!reporterOptions.summary) return;
      const { passes, failures, pending, tests, duration } = runner.stats;
      writeFileSync(reporterOptions.summary, JSON.stringify({ passes, failures, pending, tests, duration, skipped }));
    });
  }
}

module.exports = Tally;
