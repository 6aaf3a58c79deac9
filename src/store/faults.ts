import path from 'node:path';
import { ExitCode, UserError } from '../domain/errors.js';
import { writeRefusal } from '../platform/writable.js';
import { READ_ONLY_HOME_HINT, errnoReason } from '../domain/file-faults.js';

/**
 * Faults of the state database that are the environment's, not a bug: another process holds the
 * write lock, the disk is full, the file is read-only, missing or damaged. The keeper survives them
 * (keeper/state-writer.ts); the CLI reports them (cli/main.ts) with ExitCode.stateUnavailable.
 */
export interface StoreFault extends Error {
  code: string;
}

export function isStoreFault(e: unknown): e is StoreFault {
  return (
    e instanceof Error &&
    typeof (e as { code?: unknown }).code === 'string' &&
    (e as StoreFault).code.startsWith('SQLITE_')
  );
}

/** What the fault means for the operator, and what to do about it. */
export function explainStoreFault(e: StoreFault, file: string): { what: string; hint: string } {
  const code = e.code;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return {
      what: `state database ${file} is locked by another process (${code})`,
      hint: `find the holder with "fuser -v ${file}" (a sqlite3 shell or a backup tool); keepers keep running and record what happened once it is released`,
    };
  }
  if (code === 'SQLITE_FULL') {
    return {
      what: `state database ${file}: the disk is full (${code})`,
      hint: 'free space on that file system; keepers keep running and record what happened once they can',
    };
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return {
      what: `state database ${file} is read-only (${code})`,
      hint: `make it and its directory writable again (chmod u+w "${file}" "${file}-wal" "${file}-shm")`,
    };
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return {
      what: `state database ${file} is damaged (${code})`,
      hint: `move it aside (mv "${file}" "${file}.broken"): running keepers re-register in a new one within seconds`,
    };
  }
  if (code.startsWith('SQLITE_CANTOPEN')) {
    const refused = writeRefusal(path.dirname(file));
    if (refused)
      return {
        what: `state database ${file} cannot be opened: its directory is not writable: ${errnoReason(refused)} (${code})`,
        hint: refused === 'EROFS' ? READ_ONLY_HOME_HINT : `make ${path.dirname(file)} writable again (chmod u+w)`,
      };
  }
  return {
    what: `state database ${file} cannot be used: ${e.message} (${code})`,
    hint: 'check the file, its directory and the disk',
  };
}

/** The fault as the CLI reports it: what, what to do, exit code 6 (never a stack trace). */
export function storeFaultError(e: StoreFault, file: string): UserError {
  const { what, hint } = explainStoreFault(e, file);
  return new UserError(what, ExitCode.stateUnavailable, hint);
}
