// Time as the engine sees it: the system clock, or a manual one that tests drive.

export interface TimerHandle {
  unref?(): unknown;
}

/** Where the engine reads the time and sets its timers; inject a `ManualClock` in tests. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(callback, ms) {
    // setTimeout(0) waits at least 1 ms; setImmediate lets a chunked job continue right after I/O.
    if (ms <= 0) return setImmediate(callback);
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    if (handle instanceof Immediate) clearImmediate(handle as NodeJS.Immediate);
    else clearTimeout(handle as NodeJS.Timeout);
  },
};

const Immediate = setImmediate(() => {}).constructor;

interface ManualTimer extends TimerHandle {
  due: number;
  order: number;
  callback: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to: `advance(ms)` runs every timer that falls due, in order,
 * including timers those timers set. For tests of code that takes a `clock` option.
 */
export class ManualClock implements Clock {
  private current: number;
  private timers: ManualTimer[] = [];
  private order = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { due: this.current + Math.max(0, ms), order: this.order++, callback, cancelled: false };
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as ManualTimer).cancelled = true;
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.filter((timer) => !timer.cancelled).length;
  }

  /** Moves time forward by `ms`, running due timers in due order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      this.timers = this.timers.filter((timer) => !timer.cancelled);
      let next: ManualTimer | undefined;
      for (const timer of this.timers) {
        if (timer.due <= target && (!next || timer.due < next.due || (timer.due === next.due && timer.order < next.order))) next = timer;
      }
      if (!next) break;
      this.current = Math.max(this.current, next.due);
      next.cancelled = true;
      next.callback();
    }
    this.current = target;
  }
}
