import type Database from 'better-sqlite3';
import { unwritableFileFault, type Db } from './db.js';

/**
 * One connection to the state database, as every layer of the store uses it: statements prepared
 * once, each behind the guard against an unwritable WAL index, the time rows are stamped with,
 * BEGIN IMMEDIATE transactions, and this process's own commits told to the change feed. The
 * store's tables are read and written by the classes that extend it (history.ts, base.ts,
 * records.ts, store.ts).
 */
export class StoreConnection {
  private readonly statements = new Map<string, Database.Statement>();
  private readonly writeListeners = new Set<() => void>();

  private fixedTime: number | undefined;
  /** The database file, when this connection maps its WAL index writable (see guard()). */
  private guarded: string | undefined;
  private current: Db;

  constructor(
    db: Db,
    private readonly clock: () => number = Date.now,
  ) {
    this.current = db;
    this.guarded = StoreConnection.guardedFile(db);
  }

  get db(): Db {
    return this.current;
  }

  // Opened while its WAL index could not be written, SQLite maps it read-only: nothing to guard.
  // An in-memory database has no files.
  private static guardedFile(db: Db): string | undefined {
    const file = db.memory ? undefined : db.name;
    return file !== undefined && unwritableFileFault(file) === undefined ? file : undefined;
  }

  /**
   * Points this store at another connection (its file was deleted or replaced under a long-lived
   * process: daemon/db-watch.ts): everyone holding the store reads and writes the new file from now
   * on. The old connection is closed; what was prepared on it is forgotten.
   */
  rebind(db: Db): void {
    const old = this.current;
    const oldGuarded = this.guarded;
    this.current = db;
    this.guarded = StoreConnection.guardedFile(db);
    this.statements.clear();
    this.rebound();
    try {
      if (oldGuarded === undefined || !unwritableFileFault(oldGuarded)) old.close();
    } catch {
      // already unusable
    }
    this.committed();
  }

  /** What a subclass caches of the connection is forgotten here (rebind). */
  protected rebound(): void {}

  /**
   * Throws a store fault (SQLITE_READONLY) when the WAL index became unwritable since this connection
   * opened it: SQLite's next write to its mapping would end the process with SIGBUS (store/db.ts,
   * unwritableFileFault). One access(2) call, before every statement.
   */
  protected guard(): void {
    if (this.guarded === undefined) return;
    const fault = unwritableFileFault(this.guarded);
    if (fault) throw fault;
  }

  /** SQLite's data_version for this connection: it moves when another connection commits. */
  dataVersion(): number {
    this.guard();
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /** The time written into rows and events: the clock, or the time a deferred write happened. */
  protected now(): number {
    return this.fixedTime ?? this.clock();
  }

  /**
   * Runs fn with its rows and events stamped at `t`: a write the keeper had to keep while the
   * database refused it is recorded with the time it happened (keeper/state-writer.ts).
   */
  at<T>(t: number, fn: () => T): T {
    const before = this.fixedTime;
    this.fixedTime = t;
    try {
      return fn();
    } finally {
      this.fixedTime = before;
    }
  }

  /** Prepared once per connection: the dashboard runs the same few queries every second. */
  protected sql(text: string): Database.Statement {
    this.guard();
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** Runs fn inside BEGIN IMMEDIATE so concurrent writers serialise instead of failing with SQLITE_BUSY. */
  immediate<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.guard();
    const result = this.db.transaction(fn).immediate();
    this.committed();
    return result;
  }

  /**
   * SQLite's data_version does not move for a connection's own commits: tell this process's change
   * feed directly (store/watch.ts). Statements outside `immediate` commit on their own: they call
   * this too.
   */
  protected committed(): void {
    if (this.db.inTransaction) return;
    for (const fn of this.writeListeners) {
      try {
        fn();
      } catch {
        // the feed isolates its own listeners; nothing here may undo a commit
      }
    }
  }

  /** Called after each of this connection's write transactions commits. */
  onWrite(fn: () => void): () => void {
    this.writeListeners.add(fn);
    return () => this.writeListeners.delete(fn);
  }

  /**
   * Closing checkpoints, which writes the mapped WAL index: with a file unwritable that is SIGBUS,
   * so the connection is left open then (the process exits with process.exit, which does not
   * close it either).
   */
  close(): void {
    if (this.guarded !== undefined && unwritableFileFault(this.guarded)) return;
    this.db.close();
  }
}
