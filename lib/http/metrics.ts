// Counters of one presence mount, and their Prometheus exposition through prom-client, an optional peer loaded on first scrape.

import type { PresenceEngine } from '../engine/engine.js';
import { PLATFORMS } from '../core/platforms.js';
import type { ChangeAction, ChangeReason, PresenceChange, PresenceStats } from '../core/types.js';
import type { CallbackDeliveryStats } from '../callback/delivery.js';
// Types only: erased from the output, and kept out of our public declarations (private members).
import type * as PromClient from 'prom-client';

/** Every action/reason pair the engine emits, so each series exists (at 0) from the start. */
const TRANSITIONS: readonly (readonly [ChangeAction, ChangeReason])[] = [
  ['Login', 'Register'],
  ['Logout', 'Unregister'],
  ['Logout', 'Kicked'],
  ['Logout', 'Expired'],
  ['Disconnect', 'LinkClose'],
  ['Disconnect', 'TimeOut'],
];

/** The `"Action/Reason"` key of each pair above, made once: a mass expiry counts 100,000 changes in a burst. */
const TRANSITION_KEYS = new Map<ChangeAction, Map<ChangeReason, string>>();
for (const [action, reason] of TRANSITIONS) {
  let reasons = TRANSITION_KEYS.get(action);
  if (!reasons) TRANSITION_KEYS.set(action, (reasons = new Map()));
  reasons.set(reason, `${action}/${reason}`);
}

/** What `presence.metrics.snapshot()` answers; also what `GET /metrics` exposes. */
export interface MetricsSnapshot {
  /** Changes emitted by this process, by `"Action/Reason"` (e.g. `"Disconnect/LinkClose"`). */
  transitions: Record<string, number>;
  /** Devices kicked by this process: by a newer login (`LoginElsewhere`) or by an admin (`AdminKick`). */
  kicks: { LoginElsewhere: number; AdminKick: number };
  /** The status-change callback's counts, or null when no callback is configured. */
  callback: CallbackDeliveryStats | null;
}

/**
 * How prom-client is loaded. A module-level object (not a bare function) so tests can stand in a
 * loader that fails as a missing package does. Typed loosely on purpose: our declarations must
 * not name prom-client's types, since apps without it still compile against them.
 */
export const promClientLoader: { load: () => Promise<unknown> } = {
  load: () => import('prom-client'),
};

/** The Prometheus text of one scrape. */
export interface PrometheusExposition {
  contentType: string;
  text: string;
}

/** Thrown when prom-client is not installed. */
export class MetricsUnavailableError extends Error {
  constructor(cause: unknown) {
    super('GET /metrics needs the optional peer dependency prom-client: npm install prom-client');
    this.name = 'MetricsUnavailableError';
    this.cause = cause;
  }
}

function isModuleNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/**
 * Counts what happens in one presence mount from its creation (so a late first scrape misses
 * nothing), and exposes it with the mount's current statistics in Prometheus text. Each mount has
 * its own prom-client Registry, so two mounts in one process never collide.
 */
export class PresenceMetrics {
  private readonly transitions = new Map<string, number>(TRANSITIONS.map(([action, reason]) => [`${action}/${reason}`, 0]));
  private readonly kicks = { LoginElsewhere: 0, AdminKick: 0 };
  private registry: Promise<{ registry: PromClient.Registry; scrape: { stats: PresenceStats | undefined } }> | undefined;

  constructor(
    private readonly engine: PresenceEngine,
    private readonly callbackStats: () => CallbackDeliveryStats | undefined,
  ) {
    engine.on('change', this.onChange);
  }

  private readonly onChange = (change: PresenceChange): void => {
    const key = TRANSITION_KEYS.get(change.action)?.get(change.reason) ?? `${change.action}/${change.reason}`;
    this.transitions.set(key, (this.transitions.get(key) ?? 0) + 1);
    if (change.action === 'Login') this.kicks.LoginElsewhere += change.kicked.length;
    else if (change.reason === 'Kicked') this.kicks.AdminKick += 1;
  };

  /** The counters as plain numbers, for apps that do not use Prometheus. */
  snapshot(): MetricsSnapshot {
    const callback = this.callbackStats();
    return {
      transitions: Object.fromEntries(this.transitions),
      kicks: { ...this.kicks },
      callback: callback ? { ...callback } : null,
    };
  }

  /** Stops counting (the mount is closing). */
  close(): void {
    this.engine.off('change', this.onChange);
  }

  /** This mount's metrics in Prometheus text; throws MetricsUnavailableError without prom-client. */
  async prometheus(): Promise<PrometheusExposition> {
    this.registry ??= this.createRegistry();
    let created;
    try {
      created = await this.registry;
    } catch (error) {
      this.registry = undefined;
      throw error;
    }
    // Gauges are read from one statistics call per scrape, taken before prom-client collects.
    created.scrape.stats = await this.engine.stats();
    try {
      return { contentType: created.registry.contentType, text: await created.registry.metrics() };
    } finally {
      created.scrape.stats = undefined;
    }
  }

  private async createRegistry(): Promise<{ registry: PromClient.Registry; scrape: { stats: PresenceStats | undefined } }> {
    let loaded: unknown;
    try {
      loaded = await promClientLoader.load();
    } catch (error) {
      if (isModuleNotFound(error)) throw new MetricsUnavailableError(error);
      throw error;
    }
    // From ESM a CommonJS package may arrive as its namespace or under `default`.
    const namespace = loaded as typeof PromClient & { default?: typeof PromClient };
    const prom = typeof namespace.Registry === 'function' ? namespace : (namespace.default as typeof PromClient);
    const registry = new prom.Registry();
    const scrape: { stats: PresenceStats | undefined } = { stats: undefined };
    const { transitions, kicks, callbackStats } = this;

    new prom.Gauge({
      name: 'presence_users',
      help: 'Users by status (Offline: users this mount still remembers, e.g. their last-seen time)',
      labelNames: ['status'],
      registers: [registry],
      collect() {
        const users = scrape.stats?.users;
        if (!users) return;
        for (const status of ['Online', 'PushOnline', 'Offline'] as const) this.set({ status }, users[status]);
      },
    });
    new prom.Gauge({
      name: 'presence_instances',
      help: 'Logged-in devices by status and platform',
      labelNames: ['status', 'platform'],
      registers: [registry],
      collect() {
        const platforms = scrape.stats?.platforms;
        if (!platforms) return;
        for (const platform of PLATFORMS) {
          const counts = platforms[platform];
          this.set({ status: 'Online', platform }, counts?.Online ?? 0);
          this.set({ status: 'PushOnline', platform }, counts?.PushOnline ?? 0);
        }
      },
    });
    new prom.Counter({
      name: 'presence_transitions_total',
      help: 'Device state changes made by this process, by callback action and reason',
      labelNames: ['action', 'reason'],
      registers: [registry],
      collect() {
        // Our counts are the truth; the prom-client counter only mirrors them at scrape time.
        this.reset();
        for (const [key, count] of transitions) {
          const [action = '', reason = ''] = key.split('/');
          this.inc({ action, reason }, count);
        }
      },
    });
    new prom.Counter({
      name: 'presence_kicks_total',
      help: 'Devices kicked by this process: by a newer login (LoginElsewhere) or an admin (AdminKick)',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ reason: 'LoginElsewhere' }, kicks.LoginElsewhere);
        this.inc({ reason: 'AdminKick' }, kicks.AdminKick);
      },
    });
    new prom.Counter({
      name: 'presence_callback_deliveries_total',
      help: 'Status-change callback events by outcome: delivered, failed (after maxRetries), dropped (queue full), retried (attempts retried)',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset();
        const stats = callbackStats();
        for (const outcome of ['delivered', 'failed', 'dropped', 'retried'] as const) this.inc({ outcome }, stats?.[outcome] ?? 0);
      },
    });
    new prom.Gauge({
      name: 'presence_callback_queue_size',
      help: 'Status-change callback events waiting for delivery (in flight included)',
      registers: [registry],
      collect() {
        this.set(callbackStats()?.queued ?? 0);
      },
    });
    return { registry, scrape };
  }
}
