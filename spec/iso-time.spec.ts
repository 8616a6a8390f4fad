// isoTime formats exactly as Date.prototype.toISOString.

import { expect } from 'chai';
import fc from 'fast-check';
import { isoTime } from '../lib/util/iso-time.js';

describe('isoTime', function () {
  it('agrees with toISOString for any time, edge cases included', function () {
    for (const ms of [
      0,
      1,
      999,
      86_399_999,
      86_400_000,
      Date.UTC(2024, 1, 29, 23, 59, 59, 999),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      -1,
      1.5,
      253_402_300_800_000,
    ]) {
      expect(isoTime(ms), String(ms)).to.equal(new Date(ms).toISOString());
    }
    fc.assert(
      fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (ms) => isoTime(ms) === new Date(ms).toISOString()),
      { numRuns: 20_000 },
    );
  });
});
