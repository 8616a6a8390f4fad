// Planned logins and removes (lib/redis/planned.ts) change Redis exactly as the full functions do: the same operations run on
// two RedisStores, one planning from the records it remembers and one that never does, answer alike and leave the same keys.

import { expect } from 'chai';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import type { Platform } from '../lib/index.js';
import type { LoginPolicy } from '../lib/core/types.js';
import type { StoreChange, StoreLoginResult } from '../lib/core/store.js';
import { RedisStore } from '../lib/redis/index.js';
import { deleteKeys, directContext, redisClient, uniquePrefix } from './helpers/redis.js';

const PLATFORMS: Platform[] = ['Web', 'MiniProgram', 'Android', 'iPhone', 'Windows', 'Mac'];
/** Device ids as the scripts' cjson writes them in index members: '/' escaped, '"' not planned (the full function). */
const INSTANCES = ['a', 'b/2', 'c"3', 'd'];
const OWNERS = ['o1', 'o2'];
/** Sequences tried (PLANNED_RUNS to try more). */
const RUNS = Number(process.env.PLANNED_RUNS ?? 150);

type Op =
  | { kind: 'login'; user: number; instance: number; platform: Platform; resume: boolean; owner: number }
  | { kind: 'remove'; user: number; instance: number; knownSid: boolean; revoke: boolean; owner: number | null }
  | { kind: 'pushOnline'; user: number; instance: number; owner: number }
  | { kind: 'kick'; user: number; platform: Platform | null }
  | { kind: 'customStatus'; user: number; text: string | null };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('login' as const),
      user: fc.nat(1),
      instance: fc.nat(3),
      platform: fc.constantFrom(...PLATFORMS),
      resume: fc.constantFrom(false, false, true),
      owner: fc.nat(1),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('remove' as const),
      user: fc.nat(1),
      instance: fc.nat(3),
      knownSid: fc.constantFrom(true, true, false),
      revoke: fc.boolean(),
      owner: fc.option(fc.nat(1)),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('pushOnline' as const), user: fc.nat(1), instance: fc.nat(3), owner: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('kick' as const), user: fc.nat(1), platform: fc.option(fc.constantFrom(...PLATFORMS)) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('customStatus' as const), user: fc.nat(1), text: fc.option(fc.constantFrom('busy', 'in "a" meeting / út')) }),
  },
);

/** Seq numbers start from each Redis's clock for a new user: the two stores' numbers of a user differ by one constant. */
class SeqPairs {
  private readonly deltas = new Map<string, number>();
  check(userId: string, planned: number, full: number, where: string): void {
    const delta = this.deltas.get(userId);
    if (delta === undefined) this.deltas.set(userId, planned - full);
    else expect(planned - full, `seq of ${userId} (${where})`).to.equal(delta);
  }
}

function sameChange(seqs: SeqPairs, planned: StoreChange | null, full: StoreChange | null, where: string): void {
  if (planned === null || full === null) return void expect(planned, where).to.deep.equal(full);
  seqs.check(planned.userId, planned.seq, full.seq, where);
  expect({ ...planned, seq: 0 }, where).to.deep.equal({ ...full, seq: 0 });
}

function sameLogin(seqs: SeqPairs, planned: StoreLoginResult, full: StoreLoginResult, where: string): void {
  if (planned.outcome === 'revoked' || full.outcome === 'revoked') return void expect(planned, where).to.deep.equal(full);
  expect(planned.outcome, where).to.equal(full.outcome);
  expect(planned.sessionId, where).to.equal(full.sessionId);
  sameChange(seqs, planned.change, full.change, where);
}

/**
 * Every key under the prefix, by name without the prefix, but the leases (renewed on each store's own timer) and the admin kick
 * marks (kept for a while of real time, so one may lapse between the two dumps; kicks run the full function on both stores).
 */
async function dump(client: Redis, prefix: string): Promise<Record<string, unknown>> {
  const keys = await client.keys(`${prefix}*`);
  const out: Record<string, unknown> = {};
  for (const key of keys.sort()) {
    const name = key.slice(prefix.length);
    if (/:(leases|gone)$/.test(name) || /:kk:/.test(name)) continue;
    const type = await client.type(key);
    if (type === 'string') {
      const text = (await client.get(key)) as string;
      if (/:u:/.test(name)) {
        const record = JSON.parse(text) as { s: string; i: unknown };
        out[name] = { ...record, s: Number(record.s), i: Array.isArray(record.i) ? record.i : [], expires: (await client.pttl(key)) > 0 };
      } else out[name] = text;
    } else if (type === 'hash') out[name] = await client.hgetall(key);
    else if (type === 'zset') out[name] = await client.zrange(key, '0', '-1', 'WITHSCORES');
    else out[name] = type;
  }
  return out;
}

/** The seq numbers in records and revocations ("<at>|<seq>|<notice>") checked pairwise, then set aside: the rest compares whole. */
function compareDumps(seqs: SeqPairs, planned: Record<string, unknown>, full: Record<string, unknown>): void {
  expect(Object.keys(planned)).to.deep.equal(Object.keys(full));
  for (const name of Object.keys(planned)) {
    const userId = name.slice(name.lastIndexOf(':') + 1);
    if (/:u:/.test(name)) {
      const a = planned[name] as { s: number };
      const b = full[name] as { s: number };
      seqs.check(userId, a.s, b.s, `record ${name}`);
      expect({ ...a, s: 0 }, name).to.deep.equal({ ...b, s: 0 });
    } else if (/:r:/.test(name)) {
      const a = planned[name] as Record<string, string>;
      const b = full[name] as Record<string, string>;
      expect(Object.keys(a).sort(), name).to.deep.equal(Object.keys(b).sort());
      for (const sid of Object.keys(a)) {
        const [atA, seqA, ...noticeA] = (a[sid] as string).split('|');
        const [atB, seqB, ...noticeB] = (b[sid] as string).split('|');
        expect([atA, noticeA.join('|')], `${name} ${sid}`).to.deep.equal([atB, noticeB.join('|')]);
        if (seqA === '0' || seqB === '0') expect(seqA, `${name} ${sid}`).to.equal(seqB);
        else seqs.check(userId, Number(seqA), Number(seqB), `${name} ${sid}`);
      }
    } else expect(planned[name], name).to.deep.equal(full[name]);
  }
}

describe('RedisStore planned logins and removes', function () {
  this.timeout(120_000 + RUNS * 500);
  let client: Redis;
  const prefixes = [uniquePrefix('planned'), uniquePrefix('full')];
  let planned: RedisStore;
  let full: RedisStore;
  const now = { at: Date.now() };
  let applied = 0;

  before(async () => {
    client = redisClient();
    planned = new RedisStore({ client: redisClient(), prefix: prefixes[0], sweepInterval: 3_600_000 });
    full = new RedisStore({ client: redisClient(), prefix: prefixes[1], sweepInterval: 3_600_000 });
    // The second store never remembers a record, so it never plans: every change runs the full function.
    Object.assign(full, { records: { get: () => undefined, set: () => {}, forget: () => {} } });
    const runPlan = (planned as unknown as { runPlan: (...args: unknown[]) => Promise<boolean> }).runPlan.bind(planned);
    Object.assign(planned, {
      runPlan: async (...args: unknown[]) => {
        const done = await runPlan(...args);
        if (done) applied++;
        return done;
      },
    });
    await planned.init(directContext(() => now.at));
    await full.init(directContext(() => now.at));
  });

  after(async () => {
    await planned.close();
    await full.close();
    for (const prefix of prefixes) await deleteKeys(client, prefix);
    client.disconnect();
  });

  it('answer alike and leave the same keys, for any sequence of logins, removes, link losses, kicks and custom statuses', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<LoginPolicy>('single', 'dual', 'triple', 'multi'),
        fc.constantFrom(1, 3),
        fc.array(op, { minLength: 1, maxLength: 30 }),
        async (loginPolicy, maxInstancesPerPlatform, ops) => {
          run++;
          const seqs = new SeqPairs();
          const limits = { loginPolicy, maxInstancesPerPlatform, maxWebInstances: maxInstancesPerPlatform + 1 };
          /** The sessions handed out per user and device, newest last. */
          const sessions = new Map<string, string[]>();
          for (const [step, o] of ops.entries()) {
            now.at += 7;
            const userId = `r${run}u${o.user}`;
            const where = `run ${run} step ${step} ${JSON.stringify(o)}`;
            const device = 'instance' in o ? INSTANCES[o.instance]! : '';
            const known = sessions.get(`${userId}/${device}`) ?? [];
            if (o.kind === 'login') {
              const request = {
                userId,
                platform: o.platform,
                instanceId: device,
                resumeSessionId: o.resume ? known.at(-1) : undefined,
                newSessionId: `s${run}-${step}`,
                version: step % 3 === 0 ? '1.2.0' : undefined,
                at: now.at,
                limits,
                owner: OWNERS[o.owner],
              };
              const a = await planned.login(request);
              const b = await full.login(request);
              sameLogin(seqs, a, b, where);
              if (a.outcome !== 'revoked') sessions.set(`${userId}/${device}`, [...known, a.sessionId]);
            } else if (o.kind === 'remove') {
              const request = {
                userId,
                instanceId: device,
                sessionId: o.knownSid ? (known.at(-1) ?? 'none') : undefined,
                at: now.at,
                lastSeen: now.at - 3,
                revoke: o.revoke,
                owner: o.owner === null ? undefined : OWNERS[o.owner],
              };
              sameChange(seqs, await planned.remove(request), await full.remove(request), where);
            } else if (o.kind === 'pushOnline') {
              const request = { userId, instanceId: device, sessionId: known.at(-1) ?? 'none', at: now.at, lastSeen: now.at - 2, owner: OWNERS[o.owner] };
              sameChange(seqs, await planned.markPushOnline(request), await full.markPushOnline(request), where);
            } else if (o.kind === 'kick') {
              const request = { userId, platform: o.platform ?? undefined, at: now.at };
              const a = await planned.kick(request);
              const b = await full.kick(request);
              expect(a.length, where).to.equal(b.length);
              a.forEach((change, i) => sameChange(seqs, change, b[i] as StoreChange, where));
            } else {
              const request = { userId, customStatus: o.text, at: now.at };
              expect(await planned.setCustomStatus(request), where).to.deep.equal(await full.setCustomStatus(request));
            }
          }
          expect(await planned.stats()).to.deep.equal(await full.stats());
          compareDumps(seqs, await dump(client, prefixes[0] as string), await dump(client, prefixes[1] as string));
        },
      ),
      { numRuns: RUNS },
    );
    // The property says nothing unless plans ran: most logins and removes of a remembered user are planned.
    expect(applied).to.be.greaterThan(RUNS / 5);
  });
});
