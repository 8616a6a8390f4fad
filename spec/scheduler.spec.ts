// The deadline scheduler: due order, cancel, reschedule, long delays, errors, and mass expiry in slices that yield.

import { expect } from 'chai';
import fc from 'fast-check';
import { ManualClock, systemClock, type Clock, type TimerHandle } from '../lib/core/clock.js';
import { Scheduler, type Scheduled } from '../lib/core/scheduler.js';

class Item implements Scheduled {
  dueAt = Infinity;
  heapIndex = -1;
  constructor(readonly name: string) {}
}

/** A clock whose timers run only when the test says so, one at a time. */
class SteppingClock implements Clock {
  current = 1_000_000;
  readonly queue: { due: number; callback: () => void; cancelled: boolean }[] = [];
  now(): number {
    return this.current;
  }
  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer = { due: this.current + ms, callback, cancelled: false };
    this.queue.push(timer);
    return timer as TimerHandle;
  }
  clearTimeout(handle: TimerHandle): void {
    (handle as { cancelled: boolean }).cancelled = true;
  }
  /** Runs the earliest live timer (moving time to it); false when none is left. */
  runNext(): boolean {
    const live = this.queue.filter((timer) => !timer.cancelled).sort((a, b) => a.due - b.due);
    const next = live[0];
    if (!next) return false;
    next.cancelled = true;
    this.current = Math.max(this.current, next.due);
    next.callback();
    return true;
  }
}

function busyWait(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin: a handler doing real work
  }
}

describe('Scheduler', () => {
  function setup(onDue?: (item: Item, now: number) => void): { clock: ManualClock; scheduler: Scheduler<Item>; fired: [string, number][]; errors: unknown[] } {
    const clock = new ManualClock();
    const fired: [string, number][] = [];
    const errors: unknown[] = [];
    const scheduler = new Scheduler<Item>(
      clock,
      onDue ??
        ((item, now) => {
          fired.push([item.name, now]);
        }),
      (error) => errors.push(error),
    );
    return { clock, scheduler, fired, errors };
  }

  it('calls each item at its due time, in due order, after taking it out', () => {
    const { clock, scheduler, fired } = setup();
    const t0 = clock.now();
    const c = new Item('c');
    scheduler.schedule(c, t0 + 300);
    scheduler.schedule(new Item('a'), t0 + 100);
    scheduler.schedule(new Item('b'), t0 + 200);
    expect(scheduler.size).to.equal(3);
    clock.advance(99);
    expect(fired).to.deep.equal([]);
    clock.advance(1);
    expect(fired).to.deep.equal([['a', t0 + 100]]);
    clock.advance(1000);
    expect(fired).to.deep.equal([
      ['a', t0 + 100],
      ['b', t0 + 200],
      ['c', t0 + 300],
    ]);
    expect(scheduler.size).to.equal(0);
    expect(c.heapIndex).to.equal(-1);
  });

  it('property: any schedule / reschedule / cancel sequence fires exactly the live items, each once, at its last due time, in order', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('schedule' as const), item: fc.nat(9), delay: fc.integer({ min: 0, max: 500 }) }),
            fc.record({ op: fc.constant('cancel' as const), item: fc.nat(9) }),
            fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 200 }) }),
          ),
          { maxLength: 60 },
        ),
        (ops) => {
          const { clock, scheduler, fired } = setup();
          const items = Array.from({ length: 10 }, (_, i) => new Item(`i${i}`));
          const expectedDue = new Map<string, number>();
          const expectedFired: [string, number][] = [];
          const flush = (until: number): void => {
            // Due items, earliest first (ties by name: the check below ignores the order among equal times).
            const due = [...expectedDue].filter(([, at]) => at <= until).sort((a, b) => a[1] - b[1]);
            for (const [name, at] of due) {
              expectedFired.push([name, at]);
              expectedDue.delete(name);
            }
          };
          for (const op of ops) {
            if (op.op === 'schedule') {
              const item = items[op.item] as Item;
              scheduler.schedule(item, clock.now() + op.delay);
              expectedDue.set(item.name, clock.now() + op.delay);
            } else if (op.op === 'cancel') {
              scheduler.cancel(items[op.item] as Item);
              expectedDue.delete(`i${op.item}`);
            } else {
              flush(clock.now() + op.ms);
              clock.advance(op.ms);
            }
            expect(scheduler.size).to.equal(expectedDue.size);
          }
          flush(Infinity);
          clock.advance(1000);
          const byTimeThenName = (list: [string, number][]): [string, number][] => [...list].sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]));
          expect(byTimeThenName(fired)).to.deep.equal(byTimeThenName(expectedFired));
          // Fired times never go backwards.
          for (let i = 1; i < fired.length; i++) expect((fired[i] as [string, number])[1]).to.be.at.least((fired[i - 1] as [string, number])[1]);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('cancel: a cancelled item never fires; cancelling the head re-arms for the next; cancelling twice is harmless', () => {
    const { clock, scheduler, fired } = setup();
    const t0 = clock.now();
    const a = new Item('a');
    const b = new Item('b');
    scheduler.schedule(a, t0 + 10);
    scheduler.schedule(b, t0 + 20);
    scheduler.cancel(a);
    scheduler.cancel(a);
    scheduler.cancel(new Item('never scheduled'));
    expect(scheduler.size).to.equal(1);
    clock.advance(100);
    expect(fired).to.deep.equal([['b', t0 + 20]]);
  });

  it('reschedule earlier fires earlier; later fires later, not at the old time', () => {
    const { clock, scheduler, fired } = setup();
    const t0 = clock.now();
    const early = new Item('early');
    const late = new Item('late');
    scheduler.schedule(early, t0 + 1000);
    scheduler.schedule(late, t0 + 100);
    scheduler.schedule(early, t0 + 50);
    scheduler.schedule(late, t0 + 500);
    clock.advance(100);
    expect(fired).to.deep.equal([['early', t0 + 50]]);
    clock.advance(399);
    expect(fired).to.have.length(1);
    clock.advance(1);
    expect(fired).to.deep.equal([
      ['early', t0 + 50],
      ['late', t0 + 500],
    ]);
  });

  it('an owner may re-schedule the item from onDue (a deadline that moved while it waited)', () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    let deadline = t0 + 100;
    const calls: number[] = [];
    const scheduler: Scheduler<Item> = new Scheduler<Item>(
      clock,
      (item, now) => {
        calls.push(now);
        if (deadline > now) scheduler.schedule(item, deadline);
      },
      () => {},
    );
    scheduler.schedule(new Item('x'), deadline);
    deadline = t0 + 250; // e.g. a heartbeat arrived
    clock.advance(1000);
    expect(calls).to.deep.equal([t0 + 100, t0 + 250]);
  });

  it('handles deadlines beyond the 24.8-day limit of Node timers at the right time', () => {
    const { clock, scheduler, fired } = setup();
    const t0 = clock.now();
    const thirtyDays = 30 * 24 * 3600 * 1000;
    scheduler.schedule(new Item('far'), t0 + thirtyDays);
    clock.advance(thirtyDays - 1);
    expect(fired).to.deep.equal([]);
    clock.advance(1);
    expect(fired).to.deep.equal([['far', t0 + thirtyDays]]);
  });

  it('reports an onDue that throws and goes on with the others', () => {
    const { clock, scheduler, errors } = setup((item) => {
      if (item.name === 'bad') throw new Error('boom');
      handled.push(item.name);
    });
    const handled: string[] = [];
    scheduler.schedule(new Item('bad'), clock.now() + 1);
    scheduler.schedule(new Item('good'), clock.now() + 2);
    clock.advance(10);
    expect(handled).to.deep.equal(['good']);
    expect(errors).to.have.length(1);
    expect((errors[0] as Error).message).to.equal('boom');
  });

  it('close() stops its timer and forgets every item; later schedules are ignored', () => {
    const { clock, scheduler, fired } = setup();
    const item = new Item('x');
    scheduler.schedule(item, clock.now() + 10);
    expect(clock.pending).to.equal(1);
    scheduler.close();
    expect(clock.pending).to.equal(0);
    expect(item.heapIndex).to.equal(-1);
    scheduler.schedule(new Item('y'), clock.now() + 5);
    clock.advance(100);
    expect(fired).to.deep.equal([]);
    expect(scheduler.size).to.equal(0);
  });

  it('keeps one timer for many deadlines', () => {
    const { clock, scheduler } = setup();
    for (let i = 0; i < 1000; i++) scheduler.schedule(new Item(`i${i}`), clock.now() + 1000 - i);
    expect(clock.pending).to.equal(1);
  });

  describe('a mass expiry of 100k items', function () {
    this.timeout(60_000);
    const COUNT = 100_000;
    /** The first items are slow (real work); the rest cheap, so the test stays quick. */
    const SLOW_ITEMS = 400;

    function massSetup(clock: Clock): { scheduler: Scheduler<Item>; handled: Item[]; items: Item[] } {
      const handled: Item[] = [];
      const scheduler = new Scheduler<Item>(
        clock,
        (item) => {
          if (handled.length < SLOW_ITEMS) busyWait(0.05);
          handled.push(item);
        },
        (error) => {
          throw error;
        },
      );
      const items: Item[] = [];
      const due = clock.now() + 1000;
      for (let i = 0; i < COUNT; i++) {
        const item = new Item(`i${i}`);
        items.push(item);
        // Slightly spread due times (all within 100 ms) so the order is checkable.
        scheduler.schedule(item, due + (i % 100));
      }
      return { scheduler, handled, items };
    }

    it('handles them in slices that yield, each short, all in due order (stepping clock)', () => {
      const clock = new SteppingClock();
      const { handled } = massSetup(clock);
      clock.current += 1100;
      const slices: number[] = [];
      const times: number[] = [];
      for (;;) {
        const before = handled.length;
        const started = performance.now();
        if (!clock.runNext()) break;
        times.push(performance.now() - started);
        slices.push(handled.length - before);
      }
      expect(slices[0], 'the first slice yields before finishing').to.be.below(COUNT);
      expect(slices.length).to.be.greaterThan(1);
      expect(handled).to.have.length(COUNT);
      expect(new Set(handled).size).to.equal(COUNT);
      for (let i = 1; i < handled.length; i++) {
        if ((handled[i] as Item).dueAt < (handled[i - 1] as Item).dueAt) throw new Error(`out of order at ${i}`);
      }
      // The budget is a few ms per slice. Wall time on a shared machine: a slice preempted by another process can run long, so the
      // typical slice is held to the budget (with slack) and at most one may overrun.
      const sorted = [...times].sort((x, y) => x - y);
      expect(sorted[Math.floor(sorted.length / 2)], 'median slice (ms)').to.be.below(20);
      expect(
        times.filter((ms) => ms >= 50),
        'slices of 50 ms or more',
      ).to.have.length.of.at.most(1);
    });

    it('lets other timers run between slices (ManualClock)', () => {
      const clock = new ManualClock();
      const { handled } = massSetup(clock);
      const seen: number[] = [];
      // Set after the scheduler armed its timer for the same instant: runs after the first slice yields.
      clock.setTimeout(() => seen.push(handled.length), 1000);
      clock.advance(1100);
      expect(seen).to.have.length(1);
      expect(seen[0]).to.be.greaterThan(0).and.below(COUNT);
      expect(handled).to.have.length(COUNT);
    });

    it('lets the event loop run between slices (system clock)', async () => {
      const handled: Item[] = [];
      const scheduler = new Scheduler<Item>(
        systemClock,
        (item) => {
          if (handled.length < SLOW_ITEMS) busyWait(0.05);
          handled.push(item);
        },
        (error) => {
          throw error;
        },
      );
      const now = systemClock.now();
      for (let i = 0; i < COUNT; i++) scheduler.schedule(new Item(`i${i}`), now - 1);
      const seenByImmediate = await new Promise<number>((resolve) => setImmediate(() => resolve(handled.length)));
      expect(seenByImmediate).to.be.below(COUNT);
      const started = Date.now();
      while (handled.length < COUNT && Date.now() - started < 30_000) await new Promise((resolve) => setImmediate(resolve));
      expect(handled).to.have.length(COUNT);
      scheduler.close();
    });
  });
});
