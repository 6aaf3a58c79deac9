import type { RuntimeRow, Store } from '../store/store.js';
import { keeperAlive, serverAlive } from './identity.js';
import { transition } from './lifecycle.js';

export interface Observed {
  row: RuntimeRow;
  keeper: boolean;
  server: boolean;
  /** Keeper gone, server still running under no supervision. */
  orphan: boolean;
}

const ACTIVE = new Set(['starting', 'running', 'backoff', 'stopping']);

/**
 * Compares what the store says with what /proc says and records the difference once: a keeper that
 * died is reported (event), a server pid that is gone is cleared. Never signals anything.
 */
export function reconcileRow(store: Store, name: string): Observed | undefined {
  // Fast path without a write lock: the common case (keeper alive, or nothing recorded) needs no fix.
  const peek = store.getRuntime(name);
  if (!peek) return undefined;
  // A live keeper records its server's exit within milliseconds, so its pid column can be trusted
  // (half the /proc reads of a ps or a dashboard refresh).
  if (peek.keeper_pid !== null && keeperAlive(peek))
    return { row: peek, keeper: true, server: peek.pid !== null, orphan: false };
  if (peek.keeper_pid === null && peek.pid === null && !ACTIVE.has(peek.status)) {
    return { row: peek, keeper: false, server: false, orphan: false };
  }
  return store.immediate(() => {
    const row = store.getRuntime(name);
    if (!row) return undefined;
    const keeper = keeperAlive(row);
    const server = serverAlive(row);
    if (keeper) return { row, keeper, server, orphan: false };
    if (row.keeper_pid !== null) {
      const what = server
        ? `keeper pid ${row.keeper_pid} died; server pid ${row.pid} is still running without supervision (orphan): "llama-orch up ${name}" or "down ${name}" recovers it`
        : `keeper pid ${row.keeper_pid} died${row.pid ? ` and server pid ${row.pid} is gone` : ''}`;
      store.addEvent(name, 'error', 'keeper-lost', what, { keeper_pid: row.keeper_pid, pid: row.pid });
      store.updateRuntime(name, { keeper_pid: null, keeper_starttime: null, last_error: what });
    }
    if (!server && row.pid !== null) {
      store.updateRuntime(name, { pid: null, pgid: null, starttime: null });
    }
    if (!server && ACTIVE.has(row.status)) {
      transition(store, name, 'stopped', {
        reason: 'no keeper and no server',
        level: 'warn',
        patch: { next_restart_at: null, health: null, health_detail: null },
      });
    }
    const fresh = store.getRuntime(name) as RuntimeRow;
    return { row: fresh, keeper: false, server, orphan: server };
  });
}
