// Data the benchmarks share: the same mix of users and devices in every suite.

import type { Platform } from '../lib/index.js';

/** The devices of user `i`: a deterministic mix of Online, PushOnline and no devices at all. */
export function devicesOf(i: number): { platform: Platform; instanceId: string; pushOnline: boolean }[] {
  switch (i % 5) {
    case 0:
      return [];
    case 1:
      return [{ platform: 'Android', instanceId: `a${i}`, pushOnline: true }];
    case 2:
      return [
        { platform: 'iPhone', instanceId: `i${i}`, pushOnline: false },
        { platform: 'Web', instanceId: `w${i}`, pushOnline: false },
      ];
    case 3:
      return [
        { platform: 'Android', instanceId: `a${i}`, pushOnline: true },
        { platform: 'Windows', instanceId: `d${i}`, pushOnline: false },
        { platform: 'Web', instanceId: `w${i}`, pushOnline: false },
      ];
    default:
      return [{ platform: 'Mac', instanceId: `m${i}`, pushOnline: false }];
  }
}
