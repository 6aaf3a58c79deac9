import { isStoreFault } from '../store/faults.js';
import type { Store } from '../store/store.js';

export interface StateWriterDeps {
  /** The instance, for the recovery event. */
  name: string;
  now: () => number;
  /** A line in keeper.log. */
  log: (msg: string) => void;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
  /**
   * A connection opened while the database's files were unwritable stays read-only after they are
   * writable again (SQLite opened the file read-only). When a write is refused as read-only while
   * `writable()` says the files can be written, the writer opens a fresh connection with `reopen`.
   */
  reopen?: () => Store;
  writable?: () => boolean;
}

interface PendingWrite {
  at: number;
  what: string;
  fn: (s: Store) => void;
}

const FIRST_RETRY_MS = 10;
const MAX_RETRY_MS = 1000;
/** A refusal shorter than this is in keeper.log only, not an event. */
const NOTEWORTHY_MS = 1000;
/** Memory bound of the backlog; past it the oldest metrics readings, then probe results, go first (their history only). */
const MAX_PENDING = 5000;

/**
 * The keeper's way into the state database (docs/ARCHITECTURE.md, "Faults"): every write is an
 * intent applied at once when the database takes it. When it does not (locked by another process,
 * disk full, read-only), the write is kept, in order behind the others, and retried with backoff
 * from a timer, so the event loop never waits on SQLite and the server's pipes keep draining. Each
 * write is stamped with the time it happened, so an exit during a lock is recorded with its real
 * time once the database is writable again.
 */
export class StateWriter {
  private pending: PendingWrite[] = [];
  private timer: unknown;
  private retryMs = FIRST_RETRY_MS;
  private troubleSince: number | null = null;
  private trouble = '';
  private dropped = 0;

  constructor(
    private current: Store,
    private readonly deps: StateWriterDeps,
  ) {}

  /** The store for reads (reads in WAL mode are not blocked by another writer's lock). */
  get store(): Store {
    return this.current;
  }

  /** Writes still waiting for the database. */
  get backlog(): number {
    return this.pending.length;
  }

  /** Applies the write now when the database takes it; otherwise keeps it behind those waiting. */
  write(what: string, fn: (s: Store) => void): void {
    if (this.pending.length >= MAX_PENDING) this.shed();
    this.pending.push({ at: this.deps.now(), what, fn });
    if (this.pending.length === 1) this.drain();
  }

  /** Points the writes at another database (the file was deleted or replaced). */
  swap(store: Store): void {
    this.current = store;
  }

  /** Tries the backlog now; true when it is empty. */
  drain(): boolean {
    if (this.timer !== undefined) (this.deps.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout)))(this.timer);
    this.timer = undefined;
    let reopened = false;
    while (this.pending.length > 0) {
      const w = this.pending[0] as PendingWrite;
      try {
        this.current.at(w.at, () => w.fn(this.current));
      } catch (e) {
        if (isStoreFault(e) && !reopened && this.staleReadOnly(e)) {
          reopened = true;
          continue;
        }
        if (isStoreFault(e)) {
          this.noteTrouble(e);
          this.timer = (this.deps.setTimer ?? ((fn, ms) => setTimeout(fn, ms)))(() => this.drain(), this.retryMs);
          this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
          return false;
        }
        // Not the environment's fault: this write can never succeed. Drop it; the rest go on.
        this.deps.log(`state write "${w.what}" dropped: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.pending.shift();
    }
    this.retryMs = FIRST_RETRY_MS;
    if (this.troubleSince !== null) this.recovered();
    return true;
  }

  /** Waits until the backlog is written, at most timeoutMs; true when it was. */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = this.deps.now() + timeoutMs;
    while (!this.drain()) {
      if (this.deps.now() >= deadline) {
        this.deps.log(
          `exiting with ${this.pending.length} state write(s) not recorded (${this.trouble}): ${this.pending
            .slice(0, 20)
            .map((w) => `${new Date(w.at).toISOString()} ${w.what}`)
            .join('; ')}`,
        );
        return false;
      }
      await new Promise((r) => setTimeout(r, Math.min(this.retryMs, 200)));
    }
    return true;
  }

  /** A read-only refusal although the files are writable: a fresh connection is tried (once per drain). */
  private staleReadOnly(e: Error & { code: string }): boolean {
    const { reopen, writable } = this.deps;
    if (!e.code.startsWith('SQLITE_READONLY') || !reopen || !writable?.()) return false;
    let fresh: Store;
    try {
      fresh = reopen();
    } catch {
      return false;
    }
    const old = this.current;
    this.current = fresh;
    try {
      old.close();
    } catch {
      // already unusable
    }
    this.deps.log(
      `the state database connection stayed read-only after its files became writable again (${e.message}): opened a new one`,
    );
    return true;
  }

  private noteTrouble(e: Error & { code: string }): void {
    if (this.troubleSince !== null) return;
    this.troubleSince = this.deps.now();
    this.trouble = `${e.code}: ${e.message}`;
    this.deps.log(`state database refuses writes (${this.trouble}); keeping them in order and retrying`);
  }

  private recovered(): void {
    const downS = ((this.deps.now() - (this.troubleSince as number)) / 1000).toFixed(1);
    const shed = this.dropped ? `; ${this.dropped} probe result(s) or metrics reading(s) dropped to bound memory` : '';
    const msg = `state database took writes again after ${downS} s (${this.trouble}); the writes kept meanwhile are recorded with their times${shed}`;
    this.deps.log(msg);
    const brief = this.deps.now() - (this.troubleSince as number) < NOTEWORTHY_MS && this.dropped === 0;
    this.troubleSince = null;
    this.dropped = 0;
    // A command's own write transaction holds the lock for a moment, often: only a refusal that
    // lasted is an event (keeper.log has every one).
    if (brief) return;
    try {
      this.current.at(this.deps.now(), () => this.current.addEvent(this.deps.name, 'warn', 'state-db', msg));
    } catch {
      // keeper.log has it
    }
  }

  /** Serving metrics go first (a newer reading replaces them anyway), then probe results. */
  private shed(): void {
    let i = this.pending.findIndex((w, idx) => idx > 0 && w.what === 'metrics');
    if (i < 0) i = this.pending.findIndex((w, idx) => idx > 0 && w.what === 'probe');
    this.pending.splice(i > 0 ? i : 1, 1);
    this.dropped++;
  }
}
