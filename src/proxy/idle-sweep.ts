import type { Route } from './routes.js';
import type { SchedulerOps } from './scheduler-ops.js';
import type { SchedulerState } from './scheduler-state.js';

/**
 * Stops each instance whose idle_ttl has passed since its last request ended (or since its run
 * started, or the daemon did, when no request came). Returns the names stopped.
 * The daemon's proxy service calls it every second (Scheduler.sweepIdle).
 */
export async function sweepIdle(
  ops: SchedulerOps,
  state: SchedulerState,
  routes: readonly Route[],
  /** When the daemon started (ms): the idle clock of an instance that was running before it. */
  bootedAt: number,
): Promise<string[]> {
  const stopped: string[] = [];
  const now = ops.now();
  for (const r of routes) {
    if (r.idleTtlMs === null || !state.idle(r.name)) continue;
    const view = ops.view(r.name);
    if (!view.running || view.status !== 'running') continue;
    if (state.servedDirectly(r.name, view)) {
      // Busy with clients that call its port directly: that is use too.
      state.countsOf(r.name).lastEnd = now;
      continue;
    }
    const since = Math.max(state.lastEnd(r.name), view.startedAt ?? 0, bootedAt);
    if (now - since < r.idleTtlMs) continue;
    const secs = Math.round((now - since) / 1000);
    ops.event(r.name, 'info', 'idle', `no request for ${secs} s (idle_ttl ${r.idleTtlMs / 1000} s): stopped`);
    try {
      await state.stopOwn(r.name, 'idle_ttl');
      state.countsOf(r.name).idleStops++;
      stopped.push(r.name);
    } catch (e) {
      ops.event(r.name, 'warn', 'idle', `idle stop failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return stopped;
}
