import { transition } from '../engine/lifecycle.js';
import type { Store } from '../store/store.js';
import { describeExit } from './classify.js';

/** The keeper's writes to SQLite that end a run or the instance; each is one transaction. */

export function recordFailed(store: Store, name: string, reason: string): void {
  transition(store, name, 'failed', {
    reason,
    patch: {
      last_error: reason,
      pid: null,
      pgid: null,
      starttime: null,
      next_restart_at: null,
      health: null,
      health_detail: null,
    },
  });
}

export interface ExitRecord {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  runMs: number;
  /** What ended the run: the server itself, a stop request, or a health restart. */
  cause: 'exit' | 'stop' | 'health';
  at: number;
  stderrTail: string[];
  killed?: boolean;
  leftovers?: number[];
  /** A re-attached server is not this keeper's child: its exit status cannot be known. */
  adopted?: boolean;
}

/** Clears the run's pid, keeps its exit (code or signal, stderr tail) and adds the `exit` event. */
export function recordExit(store: Store, name: string, r: ExitRecord): void {
  const what = describeExit(r.code, r.signal, r.runMs, r.adopted);
  store.immediate(() => {
    store.updateRuntime(name, {
      pid: null,
      pgid: null,
      starttime: null,
      last_exit_code: r.code,
      last_exit_signal: r.signal,
      last_exit_at: r.at,
      stderr_tail: JSON.stringify(r.stderrTail),
      health: null,
      health_detail: null,
      restarts_total: (store.getRuntime(name)?.restarts_total ?? 0) + (r.cause === 'stop' ? 0 : 1),
    });
    const level = r.cause === 'stop' ? 'info' : 'error';
    const extra = r.killed ? ' (needed SIGKILL)' : '';
    const left = r.leftovers && r.leftovers.length > 0 ? `; processes left: ${r.leftovers.join(', ')}` : '';
    store.addEvent(name, level, 'exit', `server pid ${r.pid} ${what}${extra}${left}`, {
      pid: r.pid,
      code: r.code,
      signal: r.signal,
      run_ms: r.runMs,
      cause: r.cause,
    });
  });
}
