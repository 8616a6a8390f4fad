// What the HTTP routes need of a presence: the narrow service the router is given (a Presence is one), not the facade module.

import type { InstanceRef, PresenceStats, UserPresence } from '../core/types.js';
import type { PresenceEngine } from '../engine/engine.js';
import type { ResolvedConfig } from '../options.js';
import type { RoomView } from '../rooms/types.js';
import type { PresenceMetrics } from './metrics.js';

export interface HttpService {
  readonly config: ResolvedConfig;
  readonly engine: PresenceEngine;
  readonly metrics: PresenceMetrics;
  query(userIds: readonly string[], options?: { detail?: boolean }): Promise<UserPresence[]>;
  kick(userId: string, filter?: { platform?: string; instanceId?: string }): Promise<InstanceRef[]>;
  stats(): Promise<PresenceStats>;
  room(name: string): RoomView;
}
