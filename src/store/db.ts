import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ExitCode, UserError, errnoCode } from '../domain/errors.js';
import { READ_ONLY_HOME_HINT, errnoReason } from '../domain/file-faults.js';
import { writeRefusal } from '../platform/writable.js';
import { isStoreFault, storeFaultError, type StoreFault } from './faults.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';

export type Db = Database.Database;

let nativeBinding: string | null | undefined;
/**
 * The compiled addon's path, handed to better-sqlite3 directly: it then skips the `bindings`
 * module's search through a dozen candidate paths at every start of the CLI.
 */
function addonPath(): string | undefined {
  if (nativeBinding === undefined) {
    try {
      const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
      const candidate = path.join(path.dirname(pkg), 'build', 'Release', 'better_sqlite3.node');
      nativeBinding = fs.existsSync(candidate) ? candidate : null;
    } catch {
      nativeBinding = null;
    }
  }
  return nativeBinding ?? undefined;
}

function corruptError(file: string, cause: unknown): UserError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new UserError(
    `state database ${file} is unreadable: ${detail}`,
    ExitCode.stateUnavailable,
    `move it aside (mv "${file}" "${file}.broken") and run the command again: a new database is created. ` +
      'Running servers keep running; stop any you no longer want by their PID (see "ps -ef | grep llama-server").',
  );
}

function ensurePrivateDir(dir: string): void {
  try {
    const st = fs.statSync(dir, { throwIfNoEntry: false });
    if (st?.isDirectory() && (st.mode & 0o777) === 0o700) return;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700);
  } catch (e) {
    // A recursive mkdir on a read-only mount can say ENOENT: the nearest existing directory says why.
    const code = writeRefusal(dir) ?? errnoCode(e);
    throw new UserError(
      `cannot create the state directory ${dir}: ${code ? errnoReason(code) : String(e)}`,
      ExitCode.stateUnavailable,
      code === 'EROFS' ? READ_ONLY_HOME_HINT : 'check the permissions of the home directory, or pass --home',
    );
  }
}

function restrictFiles(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, 0o600);
    } catch {
      // -wal/-shm exist only while a connection is open in WAL mode
    }
  }
}

/** Copies the database (with its WAL folded in) before a migration changes it. */
function backupBeforeMigration(db: Db, file: string, from: number): string {
  const backup = `${file}.v${from}-${new Date().toISOString().replace(/[:.]/g, '-')}.bak`;
  db.exec(`VACUUM INTO '${backup.replace(/'/g, "''")}'`);
  fs.chmodSync(backup, 0o600);
  return backup;
}

export interface OpenOptions {
  readonly?: boolean;
  /** Migrations to apply; tests pass longer lists to exercise upgrades. */
  migrations?: readonly string[];
}

export interface OpenedDb {
  db: Db;
  backupPath?: string;
}

/**
 * Opens (creating if needed) the state database: WAL, busy_timeout 5000, migrations under
 * user_version with a backup first. A garbage file gives a UserError naming it, never a stack.
 */
export function openDatabase(file: string, opts: OpenOptions = {}): OpenedDb {
  const migrations = opts.migrations ?? MIGRATIONS;
  ensurePrivateDir(path.dirname(file));
  if (!fs.existsSync(file)) {
    // A -wal or -shm without its database belonged to a deleted one: a new database would read
    // them as its own (SQLITE_IOERR_SHORT_READ). Keepers re-register what runs (keeper/liveness.ts).
    try {
      for (const companion of [`${file}-wal`, `${file}-shm`]) fs.rmSync(companion, { force: true });
      fs.closeSync(fs.openSync(file, 'a', 0o600));
    } catch (e) {
      const code = errnoCode(e);
      throw new UserError(
        `state database ${file} cannot be created: ${code ? errnoReason(code) : String(e)}`,
        ExitCode.stateUnavailable,
        code === 'EROFS' ? READ_ONLY_HOME_HINT : `check that ${path.dirname(file)} is writable and its disk has space`,
      );
    }
  }
  let db: Db;
  try {
    const binding = addonPath();
    db = new Database(file, { fileMustExist: true, ...(binding ? { nativeBinding: binding } : {}) });
  } catch (e) {
    throw corruptError(file, e);
  }
  let backupPath: string | undefined;
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    const current = db.pragma('user_version', { simple: true }) as number;
    if (current > migrations.length) {
      db.close();
      throw new UserError(
        `state database ${file} has schema version ${current}, newer than this llama-orch understands (${migrations.length})`,
        ExitCode.general,
        'upgrade llama-orch, or restore the backup made before the upgrade (state/*.bak)',
      );
    }
    if (current < migrations.length) {
      // BEGIN IMMEDIATE serialises concurrent first openers; re-read the version inside.
      db.exec('BEGIN IMMEDIATE');
      try {
        const inside = db.pragma('user_version', { simple: true }) as number;
        if (inside < migrations.length) {
          if (inside > 0) {
            db.exec('COMMIT');
            backupPath = backupBeforeMigration(db, file, inside);
            db.exec('BEGIN IMMEDIATE');
          }
          const again = db.pragma('user_version', { simple: true }) as number;
          for (let v = again; v < migrations.length; v++) {
            db.exec(migrations[v] ?? '');
            db.pragma(`user_version = ${v + 1}`);
          }
        }
        db.exec('COMMIT');
      } catch (e) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw e;
      }
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    try {
      db.close();
    } catch {
      // already unusable
    }
    // Locked, full, read-only: the file is fine, the environment is not.
    if (isStoreFault(e) && !/^SQLITE_(CORRUPT|NOTADB)/.test(e.code)) throw storeFaultError(e, file);
    throw corruptError(file, e);
  }
  restrictFiles(file);
  return { db, backupPath };
}

/**
 * A fault when the database's WAL index (`-shm`) may no longer be written by this process: made
 * immutable (chattr +i), its file system remounted read-only, its mode changed. SQLite maps that file
 * into memory (the only one: mmap_size is 0 in this build), and a write through the mapping to a file
 * that became unwritable is not an error SQLite can return but SIGBUS, which ends the process (shown
 * in tests/integration/faults.test.ts). A connection opened while it was writable therefore looks
 * here before every statement (StoreBase.guard): the answer is a fault like SQLite's own
 * (SQLITE_READONLY), which the keeper keeps and retries and the CLI reports. This narrows the window
 * to the microseconds between the check and the write; it cannot close it. A missing file is no
 * fault (not created yet, or a deleted database: keeper/liveness.ts); the database file and the WAL
 * are written with write(2), whose errors SQLite reports itself.
 */
export function unwritableFileFault(file: string): StoreFault | undefined {
  const shm = `${file}-shm`;
  try {
    fs.accessSync(shm, fs.constants.W_OK);
    return undefined;
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'ENOENT') return undefined;
    const fault = new Error(
      `attempt to write a readonly database: ${path.basename(shm)} is not writable (${code ?? String(e)})`,
    ) as StoreFault;
    fault.code = 'SQLITE_READONLY';
    return fault;
  }
}

/** The database file, its WAL, its WAL index and their directory can all be written now (missing files count as writable). */
export function databaseWritable(file: string): boolean {
  for (const f of [path.dirname(file), file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.accessSync(f, fs.constants.W_OK);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') return false;
    }
  }
  return true;
}

export function integrityCheck(db: Db): string {
  return String(db.pragma('integrity_check', { simple: true }));
}

export { SCHEMA_VERSION };
