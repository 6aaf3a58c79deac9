import type { StoreBase } from './base.js';

/** What changed since the last notification. */
export interface Change {
  /** Something the status table shows (status, pid, health, restarts) changed. */
  runtime: boolean;
  /** A new event was written. */
  events: boolean;
}

export interface FeedOptions {
  /** How often SQLite's data_version is looked at while someone listens. */
  intervalMs?: number;
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (t: unknown) => void;
}

/**
 * The change feed (docs/ARCHITECTURE.md, "Change feed"): tells subscribers that instance state or
 * events changed, whoever wrote them. Other processes' commits move SQLite's `data_version` (a
 * per-connection counter, one cheap pragma); this process's own commits are reported by the store
 * itself (`onWrite`). Only a change of what the status table shows, or a new event, is passed on:
 * keepers write a health row on every probe. The dashboard, `up --wait`, `down` and, later, the
 * proxy and the REST API listen here instead of polling SQLite on their own.
 */
export class ChangeFeed {
  private readonly listeners = new Set<(c: Change) => void>();
  private timer: unknown;
  private version = -1;
  private digest = '';
  private lastEvent = -1;
  private readonly unhookWrites: () => void;

  constructor(
    private readonly store: StoreBase,
    private readonly opts: FeedOptions = {},
  ) {
    this.unhookWrites = store.onWrite(() => this.check(true));
  }

  /** Starts listening; the returned function stops. The first call after a change sees it. */
  subscribe(fn: (c: Change) => void): () => void {
    if (this.listeners.size === 0) this.startTimer();
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0) this.stopTimer();
    };
  }

  /**
   * Resolves with check()'s first defined value, looked at now and after every change; with
   * undefined once `timeoutMs` passes or `signal` aborts. `recheckMs` also looks every so often,
   * for what the database does not record (a process that died without a word).
   */
  until<T>(
    check: () => T | undefined,
    timeoutMs: number,
    opts: { signal?: AbortSignal; recheckMs?: number } = {},
  ): Promise<T | undefined> {
    const { signal, recheckMs } = opts;
    if (signal?.aborted) return Promise.resolve(check());
    return new Promise((resolve) => {
      const recheck =
        recheckMs === undefined
          ? undefined
          : setInterval(() => {
              const v = check();
              if (v !== undefined) done(v);
            }, recheckMs);
      const done = (v: T | undefined) => {
        clearTimeout(deadline);
        if (recheck) clearInterval(recheck);
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onAbort = () => done(undefined);
      const deadline = setTimeout(() => done(check()), timeoutMs);
      // Subscribe (which takes the baseline) before the first look: a change in between is seen.
      const unsubscribe = this.subscribe(() => {
        const v = check();
        if (v !== undefined) done(v);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      const first = check();
      if (first !== undefined) done(first);
    });
  }

  close(): void {
    this.stopTimer();
    this.listeners.clear();
    this.unhookWrites();
  }

  /** Looks for a change now (the timer calls this; so does the store after its own writes). */
  check(ownWrite = false): void {
    if (this.listeners.size === 0) return;
    if (!ownWrite) {
      let version: number;
      try {
        version = this.store.dataVersion();
      } catch {
        return; // a busy or vanished database: the next tick tries again
      }
      if (version === this.version) return;
      this.version = version;
    }
    let digest: string;
    let lastEvent: number;
    try {
      digest = this.store.runtimeDigest();
      lastEvent = this.store.lastEventId();
    } catch {
      return;
    }
    const change: Change = { runtime: digest !== this.digest, events: lastEvent !== this.lastEvent };
    this.digest = digest;
    this.lastEvent = lastEvent;
    if (!change.runtime && !change.events) return;
    for (const fn of [...this.listeners]) {
      try {
        fn(change);
      } catch {
        // A listener's failure is its own: the write that triggered it has committed, and the
        // other listeners still hear of it.
      }
    }
  }

  private startTimer(): void {
    try {
      this.version = this.store.dataVersion();
      this.digest = this.store.runtimeDigest();
      this.lastEvent = this.store.lastEventId();
    } catch {
      this.version = -1;
    }
    const set = this.opts.setInterval ?? ((fn: () => void, ms: number) => setInterval(fn, ms));
    this.timer = set(() => this.check(), this.opts.intervalMs ?? 25);
  }

  private stopTimer(): void {
    if (this.timer === undefined) return;
    (this.opts.clearInterval ?? ((t: unknown) => clearInterval(t as NodeJS.Timeout)))(this.timer);
    this.timer = undefined;
  }
}
