// One timer for many deadlines: an indexed min-heap, drained in bounded slices.

import type { Clock, TimerHandle } from './clock.js';

/** Something with a deadline. The scheduler owns `dueAt` and `heapIndex` (-1 when not scheduled). */
export interface Scheduled {
  dueAt: number;
  heapIndex: number;
}

/** Node's timers take at most 2^31-1 ms; longer deadlines re-arm on the way. */
const MAX_TIMER_DELAY = 2 ** 31 - 1;
/** Items handled before the scheduler checks how long it has been running. */
const SLICE_CHECK_EVERY = 32;
/** Longest stretch of due items handled before yielding to the event loop. */
const SLICE_BUDGET_MS = 5;

/**
 * Keeps items ordered by `dueAt` and calls `onDue(item, now)` when each falls due, after taking it
 * out. Owners that defer cheaply (a heartbeat moves a deadline later) leave the item where it is
 * and re-`schedule` it from `onDue`, so the hot path never touches the heap.
 */
export class Scheduler<T extends Scheduled> {
  private readonly heap: T[] = [];
  private timer: TimerHandle | undefined;
  private armedFor = Infinity;
  private closed = false;

  constructor(
    private readonly clock: Clock,
    private readonly onDue: (item: T, now: number) => void,
    private readonly onError: (error: unknown) => void,
  ) {}

  get size(): number {
    return this.heap.length;
  }

  /** Sets (or moves) the item's deadline. */
  schedule(item: T, dueAt: number): void {
    if (this.closed) return;
    const earlier = dueAt < item.dueAt;
    item.dueAt = dueAt;
    if (item.heapIndex < 0) {
      item.heapIndex = this.heap.length;
      this.heap.push(item);
      this.siftUp(item.heapIndex);
    } else if (earlier) {
      this.siftUp(item.heapIndex);
    } else {
      this.siftDown(item.heapIndex);
    }
    if (dueAt < this.armedFor) this.arm();
  }

  cancel(item: T): void {
    const index = item.heapIndex;
    if (index < 0) return;
    item.heapIndex = -1;
    const last = this.heap.pop() as T;
    if (index < this.heap.length) {
      this.heap[index] = last;
      last.heapIndex = index;
      this.siftDown(index);
      this.siftUp(last.heapIndex);
    }
  }

  /** Stops the timer and forgets every item. */
  close(): void {
    this.closed = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const item of this.heap) item.heapIndex = -1;
    this.heap.length = 0;
  }

  private arm(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    const first = this.heap[0];
    if (!first || this.closed) return;
    const delay = Math.min(Math.max(0, first.dueAt - this.clock.now()), MAX_TIMER_DELAY);
    this.armedFor = first.dueAt;
    this.timer = this.clock.setTimeout(() => this.drain(), delay);
    this.timer.unref?.();
  }

  private drain(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const started = performance.now();
    let handled = 0;
    for (;;) {
      const first = this.heap[0];
      const now = this.clock.now();
      if (!first || first.dueAt > now || this.closed) break;
      this.cancel(first);
      try {
        this.onDue(first, now);
      } catch (error) {
        this.onError(error);
      }
      if (++handled % SLICE_CHECK_EVERY === 0 && performance.now() - started > SLICE_BUDGET_MS) {
        // Yield so I/O and other timers run; continue right after.
        this.armedFor = now;
        this.timer = this.clock.setTimeout(() => this.drain(), 0);
        return;
      }
    }
    this.arm();
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const item = heap[index] as T;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as T;
      if (parent.dueAt <= item.dueAt) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = item;
    item.heapIndex = index;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const length = heap.length;
    const item = heap[index] as T;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      let child = left;
      if (right < length && (heap[right] as T).dueAt < (heap[left] as T).dueAt) child = right;
      const smaller = heap[child] as T;
      if (smaller.dueAt >= item.dueAt) break;
      heap[index] = smaller;
      smaller.heapIndex = index;
      index = child;
    }
    heap[index] = item;
    item.heapIndex = index;
  }
}
