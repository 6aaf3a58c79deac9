import { ExitCode, UserError } from '../../domain/errors.js';
import { orchCommand, type Home } from '../../domain/home.js';
import {
  down,
  recordedLiveNames,
  restart,
  selectNames,
  up,
  waitHealthy,
  type UpResult,
} from '../../engine/supervisor.js';
import type { Context } from '../context.js';
import type { Out } from '../output.js';

export interface UpOptions {
  all?: boolean;
  wait?: boolean | string;
}

function waitMs(wait: boolean | string | undefined): number | undefined {
  if (wait === undefined || wait === false) return undefined;
  if (wait === true) return 600_000;
  const s = Number(wait);
  if (!Number.isFinite(s) || s <= 0) throw new UserError(`--wait takes a number of seconds, got "${wait}"`);
  return s * 1000;
}

function describeUp(r: UpResult, home: Home): string {
  if (r.status === 'failed')
    return `${r.name}: failed to start: ${r.error ?? `see "${orchCommand(home, `describe ${r.name}`)}"`}`;
  if (r.adopted)
    return (
      `${r.name}: re-attached to running server pid ${r.pid ?? '-'} (new keeper pid ${r.keeperPid}; no reload)` +
      (r.configChanged
        ? `; its config file changed since it started: "${orchCommand(home, `restart ${r.name}`)}" applies it`
        : '')
    );
  return `${r.name}: ${r.status} (server pid ${r.pid ?? 'pending'}, keeper pid ${r.keeperPid})`;
}

/**
 * Runs an action over several instances: every one is attempted, errors are reported per instance,
 * and the exit code is that of the first failure.
 */
async function forEach(names: string[], out: Out, fn: (name: string) => Promise<void>): Promise<number> {
  let code = 0;
  for (const name of names) {
    try {
      await fn(name);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      out.error(`error: ${e.message}`);
      if (e.hint) out.error(`  hint: ${e.hint}`);
      if (code === 0) code = e.exitCode;
    }
  }
  return code;
}

/** `up` and `restart`: start each instance, report it, and with --wait wait until it is healthy. */
async function startCommand(
  start: typeof up,
  /** `up` exits 1 when the start failed; `restart` reports it and exits 0 (as it always did). */
  failIfFailed: boolean,
  ctx: Context,
  names: string[],
  opts: UpOptions,
  out: Out,
): Promise<number> {
  const selected = selectNames(ctx.home, names, opts.all ?? false);
  const wait = waitMs(opts.wait);
  return forEach(selected, out, async (name) => {
    const r = await start(ctx.deps, name);
    out.log(describeUp(r, ctx.home));
    if (failIfFailed && r.status === 'failed') throw new UserError(`${name} failed`, ExitCode.general);
    if (wait !== undefined) {
      const row = await waitHealthy(ctx.deps, name, wait);
      out.log(`${name}: healthy (pid ${row.pid})`);
    }
  });
}

export const upCommand = (ctx: Context, names: string[], opts: UpOptions, out: Out) =>
  startCommand(up, true, ctx, names, opts, out);

export const restartCommand = (ctx: Context, names: string[], opts: UpOptions, out: Out) =>
  startCommand(restart, false, ctx, names, opts, out);

export async function downCommand(ctx: Context, names: string[], opts: { all?: boolean }, out: Out): Promise<number> {
  // An instance whose config dir was removed while it ran can still be stopped.
  const selected = selectNames(ctx.home, names, opts.all ?? false, recordedLiveNames(ctx.store));
  return forEach(selected, out, async (name) => {
    const r = await down(ctx.deps, name);
    out.log(r.message);
  });
}
