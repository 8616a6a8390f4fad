// Test harness for the engine: a presence on a ManualClock that records change events and end notices.

import { createPresence, ManualClock, MemoryStore, PresenceError } from '../../lib/index.js';
import type { Connection, ConnectResult, EndNotice, PresenceChange, PresenceOptions, Presence, UserPresence } from '../../lib/index.js';

export interface TestDevice extends ConnectResult {
  /** What the server told this connection when it ended the device (kick, timeout, logout elsewhere). */
  readonly notices: EndNotice[];
}

export interface Harness {
  readonly clock: ManualClock;
  readonly presence: Presence;
  /** Every change event so far. */
  readonly events: PresenceChange[];
  /** The change events since the last call. */
  takeEvents(): PresenceChange[];
  connect(userId: string, platform: string, extra?: { instanceId?: string; sessionId?: string; version?: string }): Promise<TestDevice>;
  /** A second connection of the same device (a tab), or its return, with the device's session. */
  reconnect(device: { connection: Connection }): Promise<TestDevice>;
  /** The error a connect is refused with. */
  refusal(userId: string, platform: unknown, extra?: { instanceId?: unknown; sessionId?: unknown }): Promise<PresenceError>;
  user(userId: string): Promise<UserPresence>;
  close(): Promise<void>;
}

/**
 * A presence with a ManualClock. Unless options say otherwise it uses a MemoryStore with small
 * caches, because the default one preallocates room for 100k users (slow to create per test).
 */
export function harness(options: PresenceOptions = {}): Harness {
  const clock = new ManualClock();
  const presence = createPresence({ clock, store: new MemoryStore({ maxOfflineUsers: 1000, maxRevokedSessions: 1000 }), ...options });
  const events: PresenceChange[] = [];
  let taken = 0;
  presence.on('change', (event) => events.push(event));
  const self: Harness = {
    clock,
    presence,
    events,
    takeEvents() {
      const fresh = events.slice(taken);
      taken = events.length;
      return fresh;
    },
    async connect(userId, platform, extra = {}) {
      const notices: EndNotice[] = [];
      const result = await presence.engine.connect({ userId, platform, ...extra }, (notice) => notices.push(notice));
      return { ...result, notices };
    },
    reconnect(device) {
      const { userId, platform, instanceId, sessionId } = device.connection;
      return self.connect(userId, platform, { instanceId, sessionId });
    },
    async refusal(userId, platform, extra = {}) {
      try {
        await presence.engine.connect({ userId, platform, ...extra }, () => {});
      } catch (error) {
        if (error instanceof PresenceError) return error;
        throw error;
      }
      throw new Error('the connection was accepted');
    },
    async user(userId) {
      const [found] = await presence.query([userId]);
      if (!found) throw new Error('query answered nothing');
      return found;
    },
    close: () => presence.close(),
  };
  return self;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
