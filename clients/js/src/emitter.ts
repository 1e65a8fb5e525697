// A tiny typed event emitter (no dependency): `on` returns its own unsubscribe,
// a listener that throws does not stop the others.

/** Listener signatures by event name. */
export type Listeners = { [name: string]: (...args: never[]) => void };

/** Calls every listener of a name with the emitted arguments. */
export class Emitter<L extends Listeners> {
  private readonly listeners = new Map<keyof L, Set<L[keyof L]>>();

  /** Adds `listener` for `name`; returns a function that removes it. */
  on<K extends keyof L>(name: K, listener: L[K]): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener);
    return () => this.off(name, listener);
  }

  /** Removes `listener` for `name`. */
  off<K extends keyof L>(name: K, listener: L[K]): void {
    this.listeners.get(name)?.delete(listener);
  }

  /** Calls the listeners of `name`; one that throws is reported and the others still run. */
  protected emit<K extends keyof L>(name: K, ...args: Parameters<L[K]>): void {
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        (listener as (...a: Parameters<L[K]>) => void)(...args);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
