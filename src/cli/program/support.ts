import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { ExitCode, UserError } from '../../domain/errors.js';
import { openContext, type Context } from '../../app/context.js';
import { isStoreFault, storeFaultError } from '../../store/faults.js';

/** What the commands' actions share: the exit code they set, the home, the context, option parsers. */

/** Commands set this; only the entry calls process.exit. */
let exitCode: number = ExitCode.ok;

export function setExit(code: number): void {
  exitCode = code;
}

export function exitCodeSet(): number {
  return exitCode;
}

/** Opens the home's context for one command and closes it after; store faults become UserErrors. */
export async function withContext<T>(home: string | undefined, fn: (ctx: Context) => Promise<T> | T): Promise<T> {
  const ctx = openContext(home);
  try {
    return await fn(ctx);
  } catch (e) {
    // A locked, full, read-only or damaged database is the environment's fault: say so, no stack.
    if (isStoreFault(e)) throw storeFaultError(e, ctx.home.dbPath);
    throw e;
  } finally {
    try {
      ctx.close();
    } catch {
      // closing a connection to a vanished or broken file: nothing left to do
    }
  }
}

/** --home, given before the command or after it. */
export function homeOf(cmd: CommandUnknownOpts): string | undefined {
  return (cmd.optsWithGlobals() as { home?: string }).home;
}

export function parseCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UserError(`expected a whole number, got "${v}"`);
  return n;
}

/** A whole number from 1 to 1,000,000 for the named option (digits only: no 0x10, 1e3 or -1). */
export function positive(option: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < 1 || n > 1_000_000)
      throw new UserError(`${option} expects a whole number from 1 to 1000000, got "${v}"`);
    return n;
  };
}
