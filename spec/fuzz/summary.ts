// Mocha root hooks of the fuzz run: prints every target's input count and outcomes, and the run's wall time, at the end.

import { summary } from './common.js';

const started = performance.now();

export const mochaHooks = {
  afterAll(): void {
    console.log(`\n${summary()}\n  wall time: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  },
};
