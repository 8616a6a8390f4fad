// Engine benchmark: login/logout, heartbeats, query and memory, each against a bare baseline in this process.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createPresence, ManualClock, type Clock, type Connection } from '../lib/index.js';
import { isoTime } from '../lib/util/iso-time.js';
import { report, type Figure } from './report.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:engine)');

function collect(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** Runs `body` repeatedly for about `ms` and answers operations per second (`body` returns how many it did). */
async function rate(ms: number, body: () => number | Promise<number>): Promise<number> {
  const started = performance.now();
  let operations = 0;
  while (performance.now() - started < ms) operations += await body();
  return operations / ((performance.now() - started) / 1000);
}

async function loginLogout(): Promise<Figure> {
  const presence = createPresence({ clock: new ManualClock(), loginPolicy: 'multi' });
  let i = 0;
  const ours = await rate(2000, async () => {
    for (let n = 0; n < 1000; n++) {
      const { connection } = await presence.engine.connect({ userId: `u${i++ % 10000}`, platform: 'Android', instanceId: 'i' }, () => {});
      await presence.engine.logout(connection);
    }
    return 1000;
  });
  await presence.close();
  const bare = new Map<string, { platform: string; since: number }>();
  let j = 0;
  const baseline = await rate(2000, async () => {
    for (let n = 0; n < 1000; n++) {
      const key = `u${j++ % 10000}`;
      bare.set(key, { platform: 'Android', since: Date.now() });
      await Promise.resolve();
      bare.delete(key);
    }
    return 1000;
  });
  return { name: 'login+logout pairs/s', value: ours, baseline, baselineName: 'Map set+delete with an await', unit: 'ops/s', higherIsBetter: true };
}

async function heartbeats(): Promise<Figure> {
  const presence = createPresence({ loginPolicy: 'multi' });
  const connections: Connection[] = [];
  for (let i = 0; i < 10_000; i++)
    connections.push((await presence.engine.connect({ userId: `u${i}`, platform: 'Web', instanceId: 'w' }, () => {})).connection);
  const engine = presence.engine;
  const ours = await rate(2000, () => {
    for (let n = 0; n < 1_000_000; n++) engine.heartbeat(connections[n % 10_000] as Connection);
    return 1_000_000;
  });
  await presence.close();
  const bare = new Map<string, number>();
  const keys = Array.from({ length: 10_000 }, (_, i) => `u${i}`);
  const baseline = await rate(2000, () => {
    for (let n = 0; n < 1_000_000; n++) bare.set(keys[n % 10_000] as string, Date.now());
    return 1_000_000;
  });
  return {
    name: 'heartbeats/s',
    value: ours,
    baseline,
    baselineName: 'Map.set(key, Date.now())',
    unit: 'ops/s',
    higherIsBetter: true,
    target: '≥ 3,000,000/s',
  };
}

async function query(): Promise<Figure> {
  const clock = new ManualClock();
  const presence = createPresence({ clock, loginPolicy: 'multi' });
  const userIds: string[] = [];
  const bare = new Map<
    string,
    {
      lastSeen: number | null;
      customStatus: string | null;
      instances: { instanceId: string; platform: string; status: string; since: number; version: string | undefined }[];
    }
  >();
  for (let i = 0; i < 500; i++) {
    const userId = `user-${i}`;
    userIds.push(userId);
    const mobile = await presence.engine.connect({ userId, platform: 'Android', instanceId: `a${i}` }, () => {});
    await presence.engine.connect({ userId, platform: 'Web', instanceId: `w${i}` }, () => {});
    if (i % 2) presence.engine.disconnect(mobile.connection, 'closed');
    bare.set(userId, {
      lastSeen: clock.now(),
      customStatus: null,
      instances: [
        { instanceId: `a${i}`, platform: 'Android', status: i % 2 ? 'PushOnline' : 'Online', since: clock.now(), version: undefined },
        { instanceId: `w${i}`, platform: 'Web', status: 'Online', since: clock.now(), version: undefined },
      ],
    });
  }
  let sink = 0;
  const ours = await rate(3000, async () => {
    const users = await presence.query(userIds, { detail: true });
    sink += users.length;
    return 1;
  });
  const baseline = await rate(3000, async () => {
    const now = Date.now();
    const users = userIds.map((userId) => {
      const user = bare.get(userId);
      if (!user) return { userId, status: 'Offline', lastSeen: null, customStatus: null, instances: [] };
      let status = 'Offline';
      for (const instance of user.instances) if (instance.status === 'Online' || status === 'Offline') status = instance.status;
      return {
        userId,
        status,
        lastSeen: isoTime(status === 'Online' ? now : (user.lastSeen ?? now)),
        customStatus: user.customStatus,
        instances: user.instances.map((instance) => ({
          instanceId: instance.instanceId,
          platform: instance.platform,
          status: instance.status,
          since: isoTime(instance.since),
          version: instance.version ?? null,
        })),
      };
    });
    sink += users.length;
    return 1;
  });
  await presence.close();
  if (sink === 0) throw new Error('nothing queried');
  return {
    name: 'query(500 users, detail)/s',
    value: ours,
    baseline,
    baselineName: '500 Map.get building the same objects, same date formatter',
    unit: 'ops/s',
    higherIsBetter: true,
    target: 'within 1.5x of baseline',
  };
}

async function memoryPerPushOnline(count: number): Promise<Figure> {
  const userIds = Array.from({ length: count }, (_, i) => `user-${i}`);
  const instanceIds = Array.from({ length: count }, (_, i) => `inst-${i}`);
  const before = collect();
  const presence = createPresence({ clock: new ManualClock() });
  for (let i = 0; i < count; i++) {
    const { connection } = await presence.engine.connect({ userId: userIds[i] as string, platform: 'iPhone', instanceId: instanceIds[i] }, () => {});
    presence.engine.disconnect(connection, 'closed');
  }
  const after = collect();
  const stats = await presence.stats();
  if (stats.instances.PushOnline !== count) throw new Error(`expected ${count} PushOnline, got ${stats.instances.PushOnline}`);
  await presence.close();
  return {
    name: `heap bytes per PushOnline instance at ${count.toLocaleString('en-US')}`,
    value: (after - before) / count,
    unit: 'bytes',
    higherIsBetter: false,
    target: count >= 1_000_000 ? '≤ 400 bytes' : undefined,
    note: 'ids are allocated before the baseline heap reading',
  };
}

/** A clock that stands still while devices are created, then runs in real time, so that they all fall due together. */
class FreezableClock implements Clock {
  private frozenAt: number | undefined = Date.now();
  private offset = 0;
  now(): number {
    return this.frozenAt ?? Date.now() + this.offset;
  }
  thaw(): void {
    if (this.frozenAt === undefined) return;
    this.offset = this.frozenAt - Date.now();
    this.frozenAt = undefined;
  }
  setTimeout(callback: () => void, ms: number) {
    return ms <= 0 ? setImmediate(callback) : setTimeout(callback, ms);
  }
  clearTimeout(handle: unknown): void {
    clearTimeout(handle as NodeJS.Timeout);
    clearImmediate(handle as NodeJS.Immediate);
  }
}

async function massExpiry(kind: 'PushOnline TTL' | 'heartbeat timeout', count: number): Promise<Figure> {
  const clock = new FreezableClock();
  const presence = createPresence({ clock, pushOnlineTtl: 500, heartbeatTimeout: '500ms' });
  let changes = 0;
  presence.on('change', () => changes++);
  for (let i = 0; i < count; i++) {
    const { connection } = await presence.engine.connect({ userId: `user-${i}`, platform: 'Android', instanceId: 'a' }, () => {});
    if (kind === 'PushOnline TTL') presence.engine.disconnect(connection, 'closed');
  }
  const expected = changes + count;
  // The 100,000 logins above leave garbage of their own: collected now, so that the window below
  // measures the expiry's own work (and the GC it causes), not the set-up's.
  collect();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  clock.thaw();
  delay.enable();
  const started = performance.now();
  while (changes < expected) await new Promise((resolve) => setTimeout(resolve, 5));
  const took = performance.now() - started - 500;
  delay.disable();
  await presence.close();
  return {
    name: `longest event-loop block while ${count.toLocaleString('en-US')} expire at once (${kind})`,
    value: delay.max / 1e6,
    unit: 'ms',
    higherIsBetter: false,
    target: '≤ 20 ms',
    note: `all ${count.toLocaleString('en-US')} processed ${took.toFixed(0)} ms after their due time`,
  };
}

const figures: Figure[] = [];
const only = process.argv.slice(2);
const want = (name: string) => only.length === 0 || only.includes(name);
if (want('login')) figures.push(await loginLogout());
if (want('heartbeat')) figures.push(await heartbeats());
if (want('query')) figures.push(await query());
if (want('expiry')) figures.push(await massExpiry('PushOnline TTL', 100_000), await massExpiry('heartbeat timeout', 100_000));
if (want('memory')) figures.push(await memoryPerPushOnline(100_000), await memoryPerPushOnline(1_000_000));
report('engine', figures);
