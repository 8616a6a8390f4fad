// One master of a Redis Cluster away for longer than leaseTtl (found by the chaos run on a cluster): the leases in the other
// masters' buckets were not renewed meanwhile (each renewal waits for every master), and no process may reap the others' devices
// there once it is back; and the stores must use the restarted master again (ioredis drops it from its pool).

import { expect } from 'chai';
import { Cluster } from 'ioredis';
import { createPresence, type Presence, type PresenceChange } from '../lib/index.js';
import { RedisStore } from '../lib/redis/index.js';
import { bucketOf, BUCKET_TAGS, slotOf } from '../lib/redis/layout.js';
import { delay, PrivateRedisCluster, waitFor } from './fixtures/cluster-harness.js';
import { skipBecause } from './helpers/skip.js';

const noop = () => {};
const LEASE_TTL = 1000;

describe('cluster: one master away for longer than leaseTtl (3 masters, no replicas)', function () {
  this.timeout(90_000);
  let cluster: PrivateRedisCluster | undefined;
  const clients: Cluster[] = [];
  const presences: Presence[] = [];

  before(async function () {
    try {
      cluster = await PrivateRedisCluster.start({ masters: 3 });
    } catch (error) {
      if (process.env.CI) throw error;
      skipBecause(this, `no private Redis Cluster: ${(error as Error).message.split('\n')[0]}`);
    }
  });

  after(async function () {
    for (const presence of presences.splice(0)) await presence.close().catch(() => undefined);
    for (const client of clients.splice(0)) client.disconnect();
    await cluster?.stop();
  });

  function open(): { presence: Presence; changes: PresenceChange[] } {
    const client = new Cluster((cluster as PrivateRedisCluster).startupNodes, { shardedSubscribers: true });
    client.on('error', noop);
    clients.push(client);
    const presence = createPresence({
      loginPolicy: 'multi',
      store: new RedisStore({ client, prefix: 'partial:', leaseTtl: LEASE_TTL, sweepInterval: 100 }),
      logger: { warn: noop, error: noop },
    });
    presences.push(presence);
    const changes: PresenceChange[] = [];
    presence.on('change', (change) => changes.push(change));
    return { presence, changes };
  }

  it("reaps none of the live processes' devices in the other masters' buckets once the master is back", async function () {
    const running = cluster as PrivateRedisCluster;
    const owners = await running.slotOwners();
    const masterOf = (userId: string) => owners[slotOf(BUCKET_TAGS[bucketOf(userId)] as string)] as number;
    // Two users on each master.
    const users: string[] = [];
    for (let i = 0; users.length < 6; i++) {
      const userId = `p${i}`;
      if (users.filter((other) => masterOf(other) === masterOf(userId)).length < 2) users.push(userId);
    }
    const x = open();
    const y = open();
    for (const [i, userId] of users.entries())
      await (i % 2 === 0 ? x : y).presence.engine.connect({ userId, platform: 'Windows', instanceId: `${userId}-pc` }, noop);
    await waitFor(async () => (await x.presence.query(users)).every((user) => user.status === 'Online'), 'every user Online');
    const down = masterOf(users[0] as string);
    const healthy = users.filter((userId) => masterOf(userId) !== down);
    x.changes.length = 0;
    y.changes.length = 0;
    // Away for twice the lease, then back, empty, with its slots (Redis's rejoin delay adds about 2 s).
    await running.restartMasterEmpty(down, 2 * LEASE_TTL);
    // Two more leases: a wrong reap would have come by then.
    await delay(2 * LEASE_TTL + 500);
    const seen = [...x.changes, ...y.changes]
      .filter((change) => healthy.includes(change.userId))
      .map((change) => `${change.userId} ${change.action}/${change.reason}`);
    expect(seen, 'changes for users in the buckets of the masters that stayed up').to.deep.equal([]);
    // And every user is Online again: those of the restarted master re-asserted (quietly), the others never touched.
    const online = async (presence: Presence) =>
      (await presence.query(users).catch(() => [])).filter((user) => user.status === 'Online').length === users.length;
    await waitFor(async () => (await online(x.presence)) && online(y.presence), 'every user Online after the restart, on both', 10_000);
  });
});
