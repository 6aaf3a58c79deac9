import type { ConfigLoader } from '../../config/cached.js';
import { daemonStatus } from '../../engine/daemon-status.js';
import { snapshotAll } from '../../engine/snapshot.js';
import type { Context } from '../context.js';
import { psTable } from '../format.js';
import type { Out } from '../output.js';

// ps and --once stay free of the config validator (zod) when every config is unchanged since it
// was last validated: callers pass a loader from config/prepare.ts (or, on the fast path, the cache
// alone); see config/cached.ts and bench/BENCHMARKS.md.

export function psCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): number {
  const list = snapshotAll(ctx.home, ctx.store, Date.now(), loader);
  out.log(json ? JSON.stringify(list, null, 2) : psTable(list));
  return 0;
}

export function onceCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): number {
  const now = Date.now();
  const list = snapshotAll(ctx.home, ctx.store, now, loader);
  const daemon = daemonStatus(ctx.home);
  if (json) {
    out.log(
      JSON.stringify(
        { generated_at: new Date(now).toISOString(), home: ctx.home.root, daemon, instances: list },
        null,
        2,
      ),
    );
  } else {
    const counts = new Map<string, number>();
    for (const i of list) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
    const summary = [...counts].map(([s, n]) => `${n} ${s}`).join(', ') || 'no instances';
    out.log(
      `llama-orch  ${ctx.home.root}  daemon: ${daemon.running ? `running (pid ${daemon.pid})` : 'not running'}  ${summary}`,
    );
    out.log(psTable(list));
  }
  return 0;
}
