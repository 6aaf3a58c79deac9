import { loadInstance } from '../config/load.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { instanceConfigPath } from '../domain/home.js';
import type { RuntimeRow } from '../store/store.js';
import { explainStoreFault, isStoreFault } from '../store/faults.js';
import { emptyRuntimeRow } from '../store/rows.js';
import { keeperAlive, serverAlive, serverIdentity, unknownProcess, unknownProcessError } from './identity.js';
import { observeRow, reconcileRow, type Observed } from './reconcile.js';
import { readKeeperFile } from './keeper-file.js';
import { startedConfig } from './started-config.js';
import { stopGroup } from './stop.js';
import { withInstanceLock } from './instance-lock.js';
import type { SupervisorDeps } from './supervisor.js';

export interface DownResult {
  name: string;
  wasRunning: boolean;
  message: string;
}

/** Runs a store write that may fail (locked, full, read-only): `down` skips it and says so; `up` does not. */
export type Tolerate = <T>(what: string, fn: () => T) => T | undefined;
const strict: Tolerate = (_what, fn) => fn();

/** Stops a server whose keeper is gone, after its identity is proven. */
export async function stopOrphan(
  deps: SupervisorDeps,
  row: RuntimeRow,
  graceMs: number,
  tolerate: Tolerate = strict,
): Promise<void> {
  if (!row.pid) return;
  const verdict = serverIdentity(row, deps.procs);
  if (verdict === 'no') return;
  const pid = row.pid;
  if (verdict === 'unknown') throw unknownProcessError(row.name, `server pid ${pid}`, 'signalled');
  const message = `stopping orphaned server pid ${pid} (its keeper is gone)`;
  tolerate('the stop event', () => deps.store.addEvent(row.name, 'warn', 'orphan-stop', message));
  const res = await stopGroup({ pid, pgid: row.pgid ?? pid }, graceMs, deps);
  const left = res.leftovers.length ? `; left: ${res.leftovers.join(', ')}` : '';
  tolerate('the stop', () =>
    deps.store.recordOrphanStopped(row.name, {
      pid,
      at: deps.now(),
      level: res.leftovers.length ? 'error' : 'info',
      message: `orphaned server pid ${pid} stopped${res.killed ? ' (needed SIGKILL)' : ''}${left}`,
    }),
  );
}

/**
 * `down NAME`: through the keeper; an orphaned server is stopped directly after an identity check.
 * It works whatever the state database does (docs/ARCHITECTURE.md, "Faults"): a write it refuses
 * (locked, full, read-only) is skipped and said; with no readable row the keeper is found from its
 * own file (engine/keeper-file.ts).
 */
export function down(deps: SupervisorDeps, name: string): Promise<DownResult> {
  return withInstanceLock(deps, name, () => downLocked(deps, name));
}

async function downLocked(deps: SupervisorDeps, name: string): Promise<DownResult> {
  const { store, procs } = deps;
  const notes: string[] = [];
  const tolerate = <T>(what: string, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (e) {
      if (!isStoreFault(e)) throw e;
      const why = explainStoreFault(e, deps.home.dbPath).what;
      if (!notes.some((n) => n.endsWith(why))) notes.push(`${what}: ${why}`);
      return undefined;
    }
  };
  const result = (wasRunning: boolean, message: string): DownResult => ({
    name,
    wasRunning,
    message: notes.length ? `${message} (not recorded: ${notes.join('; ')})` : message,
  });
  // No valid config needed: a server must stay stoppable after its file is broken or removed.
  tolerate('the desired state', () =>
    store.immediate(() => {
      store.ensureInstance(name, instanceConfigPath(deps.home, name));
      store.setDesired(name, 'stopped');
    }),
  );
  const graceMs = (tolerate('the grace period', () => stopTimeoutS(deps, name)) ?? DEFAULT_STOP_TIMEOUT_S) * 1000;
  const recorded = tolerate('reading the instance', () => store.getRuntime(name));
  let seen =
    tolerate('the reconciliation', () => reconcileRow(store, procs, name)) ??
    (recorded ? observeRow(recorded, procs) : undefined);
  // Nothing running in the database's view (a new or replaced file, before the keeper re-registers):
  // the keeper's own file may still name a running keeper.
  if (!seen?.keeper && !seen?.orphan) seen = fromKeeperFile(deps, name) ?? seen;
  if (!seen) return result(false, `${name} is not running`);
  const unsure = unknownProcess(seen.row, procs);
  if (unsure) throw unknownProcessError(name, unsure, 'signalled');
  if (seen.keeper && seen.row.keeper_pid) {
    const keeperRow = seen.row;
    const keeperPid = keeperRow.keeper_pid as number;
    const serverPid = keeperRow.pid;
    if (!procs.signal(keeperPid, 'SIGTERM') && keeperAlive(keeperRow, procs)) {
      throw new UserError(
        `${name}: cannot signal keeper pid ${keeperPid} (not permitted: it runs as another user)`,
        ExitCode.general,
        'run llama-orch as the user that started the instance',
      );
    }
    // The keeper records the stop and exits; the recheck sees its exit in /proc whether or not it
    // could write.
    const gone = () => (keeperAlive(keeperRow, procs) ? undefined : true);
    await deps.feed.until(gone, graceMs + 5000, { recheckMs: 50 });
    if (keeperAlive(keeperRow, procs)) {
      // The keeper is wedged: take over, stop the server ourselves, then the keeper.
      if (serverAlive(keeperRow, procs)) await stopOrphan(deps, keeperRow, 1000, tolerate);
      procs.signal(keeperPid, 'SIGKILL');
      tolerate('the reconciliation', () => reconcileRow(store, procs, name));
      return result(true, `${name} stopped (keeper pid ${keeperPid} did not exit and was killed)`);
    }
    return result(true, `${name} stopped${serverPid ? ` (server pid ${serverPid})` : ''}`);
  }
  if (seen.orphan) {
    const pid = seen.row.pid;
    await stopOrphan(deps, seen.row, graceMs, tolerate);
    tolerate('the reconciliation', () => reconcileRow(store, procs, name));
    return result(true, `${name}: orphaned server pid ${pid} stopped (its keeper had died)`);
  }
  tolerate('acknowledging the failure', () => store.acknowledgeFailed(name));
  return result(false, `${name} is not running`);
}

/** The instance as its keeper's file describes it, when the database has no readable row for it. */
function fromKeeperFile(deps: SupervisorDeps, name: string): Observed | undefined {
  const found = readKeeperFile(deps.home, name);
  if (!found) return undefined;
  const f = found.file;
  const row: RuntimeRow = {
    ...emptyRuntimeRow(name),
    keeper_pid: f.keeper_pid,
    keeper_starttime: f.keeper_starttime,
    pid: f.pid,
    pgid: f.pgid,
    starttime: f.starttime,
    port: f.port,
    cmdline: f.binary ? JSON.stringify([f.binary]) : null,
    status: 'running',
  };
  const seen = observeRow(row, deps.procs);
  return seen.keeper || seen.orphan ? seen : undefined;
}

/**
 * The grace period the keeper uses: from the config it was started with (what `up` recorded), else
 * the file's when it is valid, else the default.
 */
function stopTimeoutS(deps: SupervisorDeps, name: string): number {
  const started = startedConfig(deps.store, name);
  if (started) return started.stop_timeout;
  try {
    return loadInstance(deps.home, name).config.stop_timeout;
  } catch {
    return DEFAULT_STOP_TIMEOUT_S;
  }
}
// The schema's default for stop_timeout (config/schema.ts).
const DEFAULT_STOP_TIMEOUT_S = 10;
