import { ExitCode, UserError } from '../../domain/errors.js';
import { orchCommand, type Home } from '../../domain/home.js';
import { down } from '../../engine/down.js';
import { restart } from '../../engine/restart.js';
import { recordedLiveNames, selectNames } from '../../engine/selection.js';
import type { UpResult } from '../../engine/supervisor.js';
import { up } from '../../engine/up.js';
import { waitHealthy } from '../../engine/wait-healthy.js';
import { isStoreFault, storeFaultError } from '../../store/faults.js';
import type { RuntimeRow } from '../../store/store.js';
import type { Context } from '../../app/context.js';
import type { Out } from '../output.js';
import { JOINED, healthyJson, joinable, upJson } from '../../app/lifecycle.js';

export interface UpOptions {
  all?: boolean;
  wait?: boolean | string;
  json?: boolean;
  /** Start even when the memory-fit preflight says the instances do not fit (it warns instead). */
  force?: boolean;
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
 * The instances asked for, each checked on its own: an unknown name is that name's failure (exit 2)
 * and the others are still acted on, as any other failure (README, "--json").
 */
function selectEach(
  home: Context['home'],
  names: string[],
  all: boolean,
  alsoKnown: string[] = [],
): { names: string[]; unknown: Map<string, UserError> } {
  if (all || names.length === 0) return { names: selectNames(home, names, all, alsoKnown), unknown: new Map() };
  const unknown = new Map<string, UserError>();
  for (const n of names) {
    try {
      selectNames(home, [n], false, alsoKnown);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      unknown.set(n, e);
    }
  }
  return { names, unknown };
}

/** One instance's result in `--json` output (README, "up / restart / down --json"). */
export interface ActionJson {
  name: string;
  ok: boolean;
  [field: string]: unknown;
}

/**
 * Runs an action over several instances: every one is attempted, errors are reported per instance,
 * and the exit code is that of the first failure. With `json`, each instance's result (or error,
 * with its hint and exit code) is one object of the array printed at the end, and nothing else is
 * printed on stdout.
 */
async function forEach(
  names: string[],
  out: Out,
  json: boolean,
  fn: (name: string) => Promise<Omit<ActionJson, 'name' | 'ok'> & { ok?: boolean }>,
  dbPath?: string,
): Promise<number> {
  let code = 0;
  const results: ActionJson[] = [];
  for (const name of names) {
    try {
      results.push({ name, ok: true, ...(await fn(name)) });
    } catch (caught) {
      // A database fault (exit 6) is this instance's result too: the others are still attempted and
      // --json still prints every one.
      const e = isStoreFault(caught) && dbPath ? storeFaultError(caught, dbPath) : caught;
      if (!(e instanceof UserError)) throw e;
      if (json) results.push({ name, ok: false, error: e.message, hint: e.hint ?? null, exit_code: e.exitCode });
      else {
        out.error(`error: ${e.message}`);
        if (e.hint) out.error(`  hint: ${e.hint}`);
      }
      if (code === 0) code = e.exitCode;
    }
  }
  if (json) out.log(JSON.stringify(results, null, 2));
  return code;
}

export interface Progress {
  update: (row: RuntimeRow) => void;
  done: () => void;
}

const SPIN = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * What `--wait` shows while a model loads, on stderr: a spinner line rewritten in place on a
 * terminal, otherwise one plain line each time the state or health changes (logs stay readable).
 */
export function waitProgress(name: string, stream: NodeJS.WriteStream, now: () => number = Date.now): Progress {
  const t0 = now();
  const tty = stream.isTTY === true;
  let last = '';
  let frame = 0;
  let row: RuntimeRow | undefined;
  const text = (r: RuntimeRow) => {
    // "loading 5 s" already says loading: the detail alone then.
    const detail = r.health_detail ?? '';
    const h = r.health && detail.startsWith(r.health) ? detail : `${r.health ?? ''}${detail ? `: ${detail}` : ''}`;
    const health = r.health && r.health !== r.status ? `, ${h}` : '';
    return `${name}: ${r.status}${health}`;
  };
  const draw = () => {
    if (!row) return;
    const line = `${SPIN[frame++ % SPIN.length]} ${text(row)} (${Math.round((now() - t0) / 1000)} s)`;
    stream.write(`\r\u001b[K${line.slice(0, Math.max(20, (stream.columns || 80) - 1))}`);
  };
  const timer = tty ? setInterval(draw, 100) : undefined;
  return {
    update(r) {
      row = r;
      // The loading detail counts seconds ("loading 9 s"): a plain line per change, not per second.
      // Nothing for a start that is over within a second, nor for `ok` (the caller says "healthy").
      const key = `${r.status} ${r.health ?? ''} ${(r.health_detail ?? '').replace(/\d+(\.\d+)? ?s\b/g, '')}`;
      if (tty || key === last || r.health === 'ok' || now() - t0 < 1000) return;
      last = key;
      stream.write(`${text(r)} (${Math.round((now() - t0) / 1000)} s)\n`);
    },
    done() {
      if (timer) clearInterval(timer);
      if (tty) stream.write('\r\u001b[K');
    },
  };
}

/** `up` and `restart`: start each instance, report it, and with --wait wait until it is healthy. */
async function startCommand(
  start: (deps: Context['deps'], name: string, force: boolean) => Promise<UpResult>,
  /** `up` exits 1 when the start failed; `restart` reports it and exits 0 (as it always did). */
  failIfFailed: boolean,
  ctx: Context,
  names: string[],
  opts: UpOptions,
  out: Out,
): Promise<number> {
  const { names: selected, unknown } = selectEach(ctx.home, names, opts.all ?? false);
  const wait = waitMs(opts.wait);
  const json = opts.json ?? false;
  return forEach(
    selected,
    out,
    json,
    async (name) => {
      const notFound = unknown.get(name);
      if (notFound) throw notFound;
      let r: UpResult | undefined;
      try {
        r = await start(ctx.deps, name, opts.force ?? false);
      } catch (e) {
        // `up --wait` on an instance that is already starting or running joins the wait.
        const row = wait !== undefined && failIfFailed ? joinable(e, ctx.store.getRuntime(name)) : null;
        if (!row) throw e;
        if (!json) out.log(`${name}: already ${row.status}; waiting for it to be healthy`);
      }
      if (r && !json) out.log(describeUp(r, ctx.home));
      if (r && failIfFailed && r.status === 'failed')
        throw new UserError(
          json ? `${name} failed to start: ${r.error ?? 'see describe'}` : `${name} failed`,
          ExitCode.general,
        );
      const result: Record<string, unknown> = r ? upJson(r) : { ...JOINED };
      if (wait !== undefined && r?.status !== 'failed') {
        const progress = waitProgress(name, process.stderr);
        let row: RuntimeRow;
        try {
          row = await waitHealthy(ctx.deps, name, wait, (x) => progress.update(x));
        } finally {
          progress.done();
        }
        if (!json) out.log(`${name}: healthy (pid ${row.pid})`);
        Object.assign(result, healthyJson(row));
      }
      return result;
    },
    ctx.home.dbPath,
  );
}

export const upCommand = (ctx: Context, names: string[], opts: UpOptions, out: Out) =>
  startCommand(
    (deps, name, force) => up(deps, name, { memoryFit: force ? 'force' : 'check' }),
    true,
    ctx,
    names,
    opts,
    out,
  );

export const restartCommand = (ctx: Context, names: string[], opts: UpOptions, out: Out) =>
  startCommand((deps, name) => restart(deps, name), false, ctx, names, opts, out);

export async function downCommand(
  ctx: Context,
  names: string[],
  opts: { all?: boolean; json?: boolean },
  out: Out,
): Promise<number> {
  // An instance whose config dir was removed while it ran can still be stopped.
  const { names: selected, unknown } = selectEach(ctx.home, names, opts.all ?? false, recordedLiveNames(ctx.store));
  const json = opts.json ?? false;
  return forEach(
    selected,
    out,
    json,
    async (name) => {
      const notFound = unknown.get(name);
      if (notFound) throw notFound;
      const r = await down(ctx.deps, name);
      if (!json) out.log(r.message);
      return { was_running: r.wasRunning, message: r.message };
    },
    ctx.home.dbPath,
  );
}
