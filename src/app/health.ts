import { cachedLoader } from '../config/cached.js';
import { loadConfigFile } from '../config/load.js';
import { requireKnown } from './describe.js';
import { snapshotAll } from './snapshot.js';
import type { Context } from './context.js';

/** `health --json`: one row per instance (all of them with `all` or no names). */
export function healthRows(ctx: Context, names: string[], all: boolean) {
  const list =
    all || names.length === 0
      ? snapshotAll(ctx.sources(cachedLoader(ctx.store, loadConfigFile)), Date.now())
      : names.map((n) => requireKnown(ctx, n));
  return list.map((s) => {
    const row = ctx.store.getRuntime(s.name);
    return {
      name: s.name,
      state: s.state,
      // One of the documented values, or null when no server runs (as in ps --json); state says why.
      health: s.health,
      ok: s.health === 'ok',
      latency_ms: s.health_latency_ms,
      consecutive_failures: row?.health_failures ?? 0,
      last_ok_at: row?.last_health_ok_at ? new Date(row.last_health_ok_at).toISOString() : null,
      reason:
        s.health === 'ok' ? null : (s.health_detail ?? s.last_error ?? (s.state === 'stopped' ? 'not running' : null)),
    };
  });
}
