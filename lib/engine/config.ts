// What the engine reads of a mount's configuration: its timers, its store, its clock and where it logs; nothing of the adapters.

import type { Clock } from '../core/clock.js';
import type { PlatformClass } from '../core/platforms.js';
import type { PolicyLimits } from '../core/policy.js';
import type { PresenceStore } from '../core/store.js';
import type { Logger } from '../core/types.js';

/** Durations in ms, already validated (lib/options.ts resolves a mount's options into one of these and more). */
export interface EngineConfig extends PolicyLimits {
  readonly heartbeatInterval: number;
  readonly heartbeatTimeout: Readonly<Record<PlatformClass, number>>;
  readonly backgroundTimeout: Readonly<Record<PlatformClass, number>>;
  readonly pushOnlineTtl: number;
  readonly reconnectGrace: Readonly<Record<PlatformClass, number>>;
  /** Automatic away after this long without activity, per class (0: off). */
  readonly idleTimeout: Readonly<Record<PlatformClass, number>>;
  readonly handoverGrace: number;
  readonly storeTimeout: number;
  readonly store: PresenceStore;
  readonly logger: Logger;
  readonly clock: Clock;
}
