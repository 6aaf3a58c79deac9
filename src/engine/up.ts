import fs from 'node:fs';
import path from 'node:path';
import { loadInstance, type LoadedInstance } from '../config/load.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { instanceLogDir, orchCommand, type Home } from '../domain/home.js';
import { readRegularFile } from '../platform/regular-file.js';
import type { RuntimeRow, Store } from '../store/store.js';
import { keeperAlive, serverAlive, unknownProcess, unknownProcessError } from './identity.js';
import { reconcileRow } from './reconcile.js';
import { withInstanceLock } from './instance-lock.js';
import { checkFit, checkPorts, preflight } from './preflight.js';
import { stopOrphan } from './down.js';
import type { SupervisorDeps, UpResult } from './supervisor.js';

export interface UpOptions {
  /** Keep restart counters (the daemon replacing a dead keeper); a user's `up` starts afresh. */
  carryCounters?: boolean;
  /** Wait (up to 3 s) for the keeper to report the server pid. */
  waitForPid?: boolean;
  reason?: string;
  /** The memory-fit preflight: 'check' (refuse, exit 8), 'force' (warn and start), 'skip'. Default: check, except for the daemon's replacements (carryCounters). */
  memoryFit?: 'check' | 'force' | 'skip';
}

/** The home-wide lock of the memory-fit check (state/pipes/.memory-fit/op.lock): never an instance name. */
const FIT_LOCK = '.memory-fit';

/** `up NAME`: preflight, claim under BEGIN IMMEDIATE (one keeper, however many run at once), start the keeper. */
export function up(deps: SupervisorDeps, name: string, opts: UpOptions = {}): Promise<UpResult> {
  return withInstanceLock(deps, name, () => upLocked(deps, name, opts));
}

async function upLocked(deps: SupervisorDeps, name: string, opts: UpOptions): Promise<UpResult> {
  const { store, procs } = deps;
  const inst = loadInstance(deps.home, name);
  const model = await preflight(deps, inst);
  const fit = opts.memoryFit ?? (opts.carryCounters ? 'skip' : 'check');
  store.immediate(() => store.ensureInstance(name, inst.file));
  const seen = reconcileRow(store, procs, name);
  const unsure = seen && unknownProcess(seen.row, procs);
  if (unsure) throw unknownProcessError(name, unsure, 'started');
  if (seen?.keeper) {
    throw new UserError(
      `${name} is already running (keeper pid ${seen.row.keeper_pid}${seen.row.pid ? `, server pid ${seen.row.pid}` : ''}, ${seen.row.status})`,
      ExitCode.alreadyRunning,
      `use "${orchCommand(deps.home, `restart ${name}`, deps.env)}" to restart it`,
    );
  }
  // A server whose keeper died is re-attached by the new keeper, or stopped first (adoptable).
  if (seen?.orphan && !adoptable(store, name, seen.row))
    await stopOrphan(deps, seen.row, inst.config.stop_timeout * 1000);
  const eventsBefore = store.lastEventId();
  // The fit check and the claim under one home-wide lock: two `up`s of different instances (or the
  // daemon's autostart and an operator) each see the other's claim, not the same free memory.
  // An orphan about to be re-attached is loaded already: nothing new to fit.
  const { keeperPid, adopted } =
    fit !== 'skip' && !(seen?.orphan && adoptable(store, name, seen.row))
      ? await withInstanceLock(deps, FIT_LOCK, async () => {
          await checkFit(deps, inst, model, fit === 'force');
          return claim(deps, inst, opts);
        })
      : claim(deps, inst, opts);
  const started: Started = { keeperPid, adopted, eventsBefore };
  if (opts.waitForPid !== false) await waitForKeeper(deps, name, started);
  const row = store.getRuntime(name) as RuntimeRow;
  if (opts.waitForPid !== false) checkKeeperStarted(deps, name, row, started);
  return {
    name,
    keeperPid,
    adopted,
    ...(adopted && store.startedConfigJson(name) !== JSON.stringify(inst.config) ? { configChanged: true } : {}),
    pid: row.pid,
    status: row.status,
    health: row.health,
    ...(row.status === 'failed' && row.last_error ? { error: row.last_error } : {}),
  };
}

/** The keeper the claim spawned, and whether it re-attaches a running server. */
interface Claimed {
  keeperPid: number;
  adopted: boolean;
}

/** The claimed keeper, with the last event before it (an adopting keeper's `adopt` event comes after). */
interface Started extends Claimed {
  eventsBefore: number;
}

/**
 * A server whose keeper died is re-attached by the new keeper, with no reload (docs/ARCHITECTURE.md,
 * "Adoption"), when it was starting or serving on a recorded config; otherwise (it was being
 * stopped) it is stopped first.
 */
function adoptable(store: Store, name: string, row: RuntimeRow): boolean {
  return (row.status === 'running' || row.status === 'starting') && store.startedConfigJson(name) !== undefined;
}

/**
 * The claim, one BEGIN IMMEDIATE transaction: no live keeper, no server without one unless it is
 * adopted, a free port; then the keeper is spawned and recorded.
 */
function claim(deps: SupervisorDeps, inst: LoadedInstance, opts: UpOptions): Claimed {
  const { store, procs } = deps;
  const name = inst.name;
  const logFd = openKeeperLog(deps.home, name);
  try {
    return store.immediate(() => {
      const row = store.getRuntime(name) as RuntimeRow;
      const unsure = unknownProcess(row, procs);
      if (unsure) throw unknownProcessError(name, unsure, 'started');
      if (keeperAlive(row, procs)) {
        throw new UserError(`${name} is already running (keeper pid ${row.keeper_pid})`, ExitCode.alreadyRunning);
      }
      const live = serverAlive(row, procs);
      const adopted = live && adoptable(store, name, row);
      if (live && !adopted) {
        throw new UserError(
          `${name}: server pid ${row.pid} is running without a keeper`,
          ExitCode.alreadyRunning,
          `run "${orchCommand(deps.home, `down ${name}`, deps.env)}" first`,
        );
      }
      checkPorts(deps, inst, adopted ? row : undefined);
      const pid = deps.spawnKeeper(name, logFd);
      const keeperStart = procs.stat(pid)?.starttime ?? null;
      // An adopted server keeps the config it runs; the file's applies on the next restart.
      if (adopted) store.claimAdoption(name, pid, keeperStart);
      else
        store.claimStart(name, {
          keeperPid: pid,
          keeperStarttime: keeperStart,
          port: inst.config.server.port,
          configJson: JSON.stringify(inst.config),
          carryCounters: opts.carryCounters ?? false,
          reason: opts.reason ?? 'up',
        });
      return { keeperPid: pid, adopted };
    });
  } finally {
    fs.closeSync(logFd);
  }
}

/** An adopting keeper has re-attached the server's output (its `adopt` event). */
function attached(store: Store, name: string, started: Started): boolean {
  return store.eventsSince(name, started.eventsBefore).some((e) => e.event_type === 'adopt');
}

/**
 * Waits (up to 3 s) for the keeper to report the server's pid: it records it within milliseconds of
 * its start. An adopting keeper is waited for until it has re-attached the server.
 */
async function waitForKeeper(deps: SupervisorDeps, name: string, started: Started): Promise<void> {
  const { store, procs } = deps;
  const reported = () => {
    if (started.adopted) return attached(store, name, started) || undefined;
    const row = store.getRuntime(name) as RuntimeRow;
    return row.pid !== null || row.status !== 'starting' || undefined;
  };
  // The recheck notices a keeper that died before it wrote anything.
  await deps.feed.until(
    () => reported() ?? (keeperAlive(store.getRuntime(name) as RuntimeRow, procs) ? undefined : true),
    3000,
    {
      recheckMs: 100,
    },
  );
}

/**
 * A keeper that died before it started (or re-attached) the server: that is a failure, with the
 * reason from its log, not a success with a pending pid.
 */
function checkKeeperStarted(deps: SupervisorDeps, name: string, row: RuntimeRow, started: Started): void {
  if (row.status === 'failed' || keeperAlive(row, deps.procs)) return;
  const reattached = !started.adopted || attached(deps.store, name, started);
  if (reattached && row.pid !== null) return;
  const logFile = path.join(instanceLogDir(deps.home, name), 'keeper.log');
  throw new UserError(
    `${name}: its keeper (pid ${started.keeperPid}) exited at once${lastLine(logFile)}`,
    ExitCode.general,
    `see ${logFile}`,
  );
}

function openKeeperLog(home: Home, name: string): number {
  const dir = instanceLogDir(home, name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'keeper.log');
  try {
    if (fs.statSync(file).size > 1024 * 1024) fs.renameSync(file, `${file}.1`);
  } catch {
    // no keeper.log yet
  }
  return fs.openSync(file, 'a', 0o600);
}

/** The last line of a small log file, as ": LINE" (or nothing). */
function lastLine(file: string): string {
  try {
    const text = readRegularFile(file).toString('utf8').trimEnd();
    const line = text.slice(text.lastIndexOf('\n') + 1).trim();
    return line ? `: ${line.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}
