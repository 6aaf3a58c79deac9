import { ACTIVE_STATUSES } from '../domain/lifecycle.js';
import type { Processes } from '../platform/processes.js';
import { applyFix, type ObservedFix, type RuntimeRow, type Store } from '../store/store.js';
import type { InstanceConfig } from '../config/schema.js';
import type { StoreBase } from '../store/base.js';
import { keeperAlive, serverAlive } from './identity.js';
import { startedConfig } from './started-config.js';

export interface Observed {
  /** The row as it stands once what /proc says is taken into account. */
  row: RuntimeRow;
  keeper: boolean;
  server: boolean;
  /** Keeper gone, server still running under no supervision. */
  orphan: boolean;
  /** What reconcile() records: the one description of the fix, applied to a copy here and to the row by Store.recordObserved. */
  fix: ObservedFix | null;
}

/**
 * Compares a row with /proc without writing anything: what reconcile() would record, applied to a
 * copy. Snapshots (ps, --once, the dashboard) read through this, so they are right even when no one
 * has reconciled yet and the database cannot be written.
 */
export function observeRow(row: RuntimeRow, procs: Processes): Observed {
  // A live keeper records its server's exit within milliseconds, unless the database refuses its
  // writes for a while (a lock, a full disk): so its server pid is checked too, and shown only when
  // alive; the keeper itself fixes the row.
  if (row.keeper_pid !== null && keeperAlive(row, procs)) {
    return { row, keeper: true, server: row.pid !== null && serverAlive(row, procs), orphan: false, fix: null };
  }
  if (row.keeper_pid === null && row.pid === null && !ACTIVE_STATUSES.has(row.status)) {
    return { row, keeper: false, server: false, orphan: false, fix: null };
  }
  const server = serverAlive(row, procs);
  const keeperLost =
    row.keeper_pid === null
      ? null
      : server
        ? `keeper pid ${row.keeper_pid} died; server pid ${row.pid} is still running without supervision (orphan): "llama-orch up ${row.name}" or "down ${row.name}" recovers it`
        : `keeper pid ${row.keeper_pid} died${row.pid ? ` and server pid ${row.pid} is gone` : ''}`;
  const fix: ObservedFix = {
    keeperLost,
    clearServer: !server && row.pid !== null,
    stop: !server && ACTIVE_STATUSES.has(row.status),
  };
  const stale = fix.keeperLost !== null || fix.clearServer || fix.stop;
  return { row: stale ? applyFix(row, fix) : row, keeper: false, server, orphan: server, fix: stale ? fix : null };
}

/**
 * The one answer to "does it run, and with which config": nothing when no keeper or server of it
 * is alive; otherwise the validated config `up` recorded, which is what runs (the file may have
 * changed since, or been edited into an invalid state). ps, the proxy's routes and the memory-fit
 * preflight all read it here.
 */
export function runningConfig(store: StoreBase, seen: Observed | undefined): InstanceConfig | undefined {
  return seen && (seen.keeper || seen.server) ? startedConfig(store, seen.row.name) : undefined;
}

/** runningConfig of an instance by name (observed now, nothing written). */
export function liveConfig(store: StoreBase, procs: Processes, name: string): InstanceConfig | undefined {
  const row = store.getRuntime(name);
  return row ? runningConfig(store, observeRow(row, procs)) : undefined;
}

/**
 * The explicit reconciliation step that commands and the daemon run before they act: records once
 * what /proc shows that the store does not know (a keeper died: event; a server pid gone: cleared).
 * Never signals anything. Returns the observation after the write.
 */
export function reconcileRow(store: Store, procs: Processes, name: string): Observed | undefined {
  const peek = store.getRuntime(name);
  if (!peek) return undefined;
  const seen = observeRow(peek, procs);
  if (!seen.fix) return seen;
  return store.immediate(() => {
    // Re-read inside the write lock: another process may have fixed (or changed) it meanwhile.
    const row = store.getRuntime(name);
    if (!row) return undefined;
    const again = observeRow(row, procs);
    if (again.fix) store.recordObserved(name, again.fix);
    return { ...again, row: store.getRuntime(name) as RuntimeRow, fix: null };
  });
}

/** reconcileRow for every recorded instance. */
export function reconcileAll(store: Store, procs: Processes): void {
  for (const row of store.listRuntime()) reconcileRow(store, procs, row.name);
}
