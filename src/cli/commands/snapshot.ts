import type { ConfigLoader } from '../../config/cached.js';
import { currentGpuSample } from '../../app/gpu-source.js';
import { rigSnapshot, snapshotAll } from '../../app/snapshot.js';
import { gpuLines } from '../../format/gpu.js';
import type { Context } from '../../app/context.js';
import { psTable } from '../../format/table.js';
import type { Out } from '../output.js';

// ps and --once are pure reads (app/snapshot.ts): they show what /proc says even when nothing has
// reconciled the store, and never write. They stay free of the config validator (zod) when every
// config is unchanged since it was last validated: callers pass a loader from config/prepare.ts (or,
// on the fast path, the cache alone); see config/cached.ts and bench/BENCHMARKS.md.

export async function psCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): Promise<number> {
  const gpu = await currentGpuSample(ctx.store, process.env, Date.now());
  const list = snapshotAll(ctx.sources(loader, gpu), Date.now());
  out.log(json ? JSON.stringify(list, null, 2) : psTable(list, ctx.home));
  if (gpu.error && !json) out.error(`warning: GPUs not read: ${gpu.error}`);
  return 0;
}

export async function onceCommand(ctx: Context, loader: ConfigLoader, json: boolean, out: Out): Promise<number> {
  const gpu = await currentGpuSample(ctx.store, process.env, Date.now());
  const rig = rigSnapshot(ctx.sources(loader, gpu), Date.now());
  if (json) {
    out.log(JSON.stringify(rig, null, 2));
  } else {
    const counts = new Map<string, number>();
    for (const i of rig.instances) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
    const summary = [...counts].map(([s, n]) => `${n} ${s}`).join(', ') || 'no instances';
    const { daemon } = rig;
    out.log(
      `llama-orch  ${ctx.home.root}  daemon: ${daemon.running ? `running (pid ${daemon.pid}${daemon.proxy ? `, proxy ${daemon.proxy}` : ''})` : 'not running'}  ${summary}`,
    );
    for (const line of gpuLines(rig.gpus, process.stdout.columns || 120)) out.log(line);
    if (rig.gpu_error) out.log(`GPUs: not read: ${rig.gpu_error}`);
    out.log(psTable(rig.instances, ctx.home));
  }
  return 0;
}
