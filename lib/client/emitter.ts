// A tiny typed event emitter for the client helper, which must run in browsers (no node:events).

type Listener<Args extends unknown[]> = (...args: Args) => void;
/** Listeners of every event, stored together; each is only ever called with its own event's arguments. */
type StoredListener = (...args: never[]) => void;

export class TypedEmitter<Events extends { [K in keyof Events]: unknown[] }> {
  private readonly listeners = new Map<keyof Events, Set<StoredListener>>();

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as unknown as StoredListener);
    return this;
  }

  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this {
    const wrapper: Listener<Events[K]> = (...args) => {
      this.off(event, wrapper);
      listener(...args);
    };
    return this.on(event, wrapper);
  }

  off<K extends keyof Events>(event: K, listener?: Listener<Events[K]>): this {
    if (listener) this.listeners.get(event)?.delete(listener as unknown as StoredListener);
    else this.listeners.delete(event);
    return this;
  }

  /** Calls each listener; one that throws is reported asynchronously and does not stop the others. */
  protected emit<K extends keyof Events>(event: K, ...args: Events[K]): boolean {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        (listener as unknown as Listener<Events[K]>)(...args);
      } catch (error) {
        setTimeout(() => {
          throw error;
        }, 0);
      }
    }
    return true;
  }
}
