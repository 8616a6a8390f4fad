// Planned changes (lib/redis/planned.ts) sent to Redis together: one call per node carries every plan queued while the
// process's previous call to that node was in flight, so that a busy process pays the cost of a call (its network round, the
// function's start, the counts) once per batch instead of once per login. An idle process sends each plan at once: nothing
// waits for a timer.

/** One planned change as plannedBatch in presence.lua takes it. */
export interface BatchEntry {
  /** Its bucket's stats key: a call counts its entries' changes in its first entry's. */
  readonly stats: string;
  /** Its keys, in the order the function takes them. */
  readonly keys: readonly string[];
  /** Its kind and arguments (`['L', n, ...]` or `['R', n, ...]`). */
  readonly args: readonly (string | number)[];
}

/** Per entry: whether it applied (false: its record had changed), or why its call failed. */
export type BatchAnswer = boolean | { readonly error: unknown };

/** Sends one batch (the entries of one node) and answers each entry, in order (a rejection fails them all). */
export type SendBatch = (entries: readonly BatchEntry[]) => Promise<BatchAnswer[]>;

/** At most this many plans in one call: a call stays well under a millisecond of Redis's time. */
export const MAX_BATCH = 64;

interface Waiting {
  readonly entry: BatchEntry;
  resolve(applied: boolean): void;
  reject(error: unknown): void;
}

/** A queue of plans per node, with at most one call to each node in flight. */
export class PlanBatches {
  private readonly waiting = new Map<string, Waiting[]>();
  private readonly busy = new Set<string>();

  constructor(private readonly send: SendBatch) {}

  /** Queues a plan for a node; answers whether Redis applied it (false: the record had changed). */
  add(node: string, entry: BatchEntry): Promise<boolean> {
    return new Promise((resolve, reject) => {
      let queue = this.waiting.get(node);
      if (!queue) this.waiting.set(node, (queue = []));
      queue.push({ entry, resolve, reject });
      // The plans added in this turn of the event loop go together; a node with a call in flight is sent its queue when it answers.
      if (queue.length === 1 && !this.busy.has(node)) setImmediate(() => this.flush(node));
    });
  }

  private flush(node: string): void {
    const queue = this.waiting.get(node);
    if (!queue || queue.length === 0 || this.busy.has(node)) return;
    const batch = queue.splice(0, MAX_BATCH);
    if (queue.length === 0) this.waiting.delete(node);
    this.busy.add(node);
    this.send(batch.map((w) => w.entry))
      .then(
        (answers) =>
          batch.forEach((w, i) => {
            const answer = answers[i];
            if (typeof answer === 'object') w.reject(answer.error);
            else w.resolve(answer === true);
          }),
        (error: unknown) => batch.forEach((w) => w.reject(error)),
      )
      .finally(() => {
        this.busy.delete(node);
        // Those queued meanwhile, with the plans their callers make on this answer in the same turn.
        if (this.waiting.has(node)) setImmediate(() => this.flush(node));
      });
  }
}
