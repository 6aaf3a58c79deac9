import fs from 'node:fs';
import { loadConfigFile, loadInstance, resolveModelPath } from '../config/load.js';
import { cachedLoader } from '../config/cached.js';
import { resolveServerBinary } from '../config/binary.js';
import { buildServerCommand, maskedCommand } from '../engine/command.js';
import { snapshotInstance, type InstanceSnapshot } from './snapshot.js';
import { instanceLogDir } from '../domain/home.js';
import type { GpuSample, LoadFacts } from '../domain/gpu.js';
import { attributeGpus, instanceGpuPids, vramHistory } from '../engine/gpus.js';
import { readNsPids } from '../platform/proc.js';
import type { MemoryComparison } from '../engine/memory-calibration.js';
import type { Context } from './context.js';

/**
 * One instance in full (`describe`, the dashboard's details, GET /api/instances/NAME): its snapshot
 * row, what the store knows of its runs, the command it runs and its recent history.
 */

/** The instance's snapshot; an unknown name is the exit-2 "unknown instance" error listing the known ones. */
export function requireKnown(ctx: Context, name: string, gpu?: GpuSample): InstanceSnapshot {
  // loadInstance gives the exit-2 "unknown instance" error with the list of known names.
  if (!fs.existsSync(`${ctx.home.instancesDir}/${name}/config.json`) && !ctx.store.getRuntime(name))
    loadInstance(ctx.home, name);
  return snapshotInstance(ctx.sources(cachedLoader(ctx.store, loadConfigFile), gpu), name, Date.now());
}

function loadFactsOf(json: string | null | undefined): LoadFacts | null {
  try {
    return json ? (JSON.parse(json) as LoadFacts) : null;
  } catch {
    return null;
  }
}

/** describe's `memory`: the keeper's comparison of the run's estimate with its buffers and the tool's figure. */
export type DescribeMemory = Omit<MemoryComparison, 'measured_at'> & { measured_at: string | null };

function memoryOf(json: string | null | undefined): DescribeMemory | null {
  try {
    const m = json ? (JSON.parse(json) as MemoryComparison) : null;
    return m ? { ...m, measured_at: m.measured_at === null ? null : new Date(m.measured_at).toISOString() } : null;
  } catch {
    return null;
  }
}

/** How far back describe's sparklines go. */
export const SERVING_WINDOW_MS = 10 * 60_000;

function configOf(ctx: Context, name: string) {
  try {
    return loadInstance(ctx.home, name).config;
  } catch {
    return undefined;
  }
}

/** What the server served over the window (the keeper's scrapes) and its GPU memory (the daemon's samples). */
function servingHistory(ctx: Context, name: string, pid: number | null, gpu: GpuSample | undefined, now: number) {
  const since = now - SERVING_WINDOW_MS;
  const metrics = ctx.store.metricsSince(name, since);
  let vram: Array<{ ts: number; v: number | null }> = [];
  if (gpu && pid !== null) {
    const servers = ctx.store
      .listRuntime()
      .filter((r) => r.pid !== null)
      .map((r) => ({ name: r.name, pid: r.pid as number }));
    const pids = instanceGpuPids(attributeGpus(gpu, servers, { procs: ctx.deps.procs, nsPids: readNsPids }), name);
    vram = vramHistory(ctx.store.gpuSamplesSince(since), pids);
  }
  return { since, metrics, vram };
}

/** `gpu`: the rig's GPUs at this moment, for the instance's VRAM and GPU warnings. */
export function describeData(ctx: Context, name: string, gpu?: GpuSample) {
  const snap = requireKnown(ctx, name, gpu);
  const now = Date.now();
  const row = ctx.store.getRuntime(name);
  let command: { argv: string[]; env: Record<string, string> } | null = null;
  let commandError: string | null = null;
  try {
    const inst = loadInstance(ctx.home, name);
    const bin = resolveServerBinary(ctx.home, inst.config, process.env);
    command = maskedCommand(
      buildServerCommand({
        name,
        config: inst.config,
        binary: bin.path ?? '(llama-server not found)',
        modelPath: resolveModelPath(ctx.home, inst.config),
        env: process.env,
      }),
    );
  } catch (e) {
    commandError = e instanceof Error ? e.message : String(e);
  }
  let stderrTail: string[] = [];
  try {
    stderrTail = row?.stderr_tail ? (JSON.parse(row.stderr_tail) as string[]) : [];
  } catch {
    stderrTail = [];
  }
  return {
    ...snap,
    config_path: `${ctx.home.instancesDir}/${name}/config.json`,
    log_dir: instanceLogDir(ctx.home, name),
    command,
    command_error: commandError,
    restart_attempts: row?.restart_attempts ?? 0,
    next_restart_at: row?.next_restart_at ? new Date(row.next_restart_at).toISOString() : null,
    last_health_ok_at: row?.last_health_ok_at ? new Date(row.last_health_ok_at).toISOString() : null,
    health_failures: row?.health_failures ?? 0,
    stderr_tail: stderrTail,
    /** What the current run's server loaded where (keeper/load-facts.ts); null when none runs. */
    load: snap.pid !== null ? loadFactsOf(row?.load_facts) : null,
    /**
     * The run's memory against the estimate (engine/memory-calibration.ts MemoryComparison): per GPU
     * the estimate, the server's buffers and the vendor tool's figure, and whether they differ by
     * more than 10 % or 512 MiB; null until the keeper compared them (once the server is healthy).
     */
    memory: snap.pid !== null ? memoryOf(row?.memory) : null,
    /** The config turns the scrape off. */
    metrics_off: configOf(ctx, name)?.metrics === false,
    /** The keeper's scrapes and the GPU memory over the last 10 minutes (the sparklines). */
    serving_history: servingHistory(ctx, name, snap.pid, gpu, now),
    /** The newest `bench` result (domain/metrics.ts BenchResult), or null. */
    last_bench: ctx.store.lastBench(name) ?? null,
    recent_events: ctx.store.listEvents(name, 15).map((e) => ({
      ts: new Date(e.ts).toISOString(),
      level: e.level,
      type: e.event_type,
      message: e.message,
    })),
    recent_health: ctx.store.listHealth(name, 10).map((h) => ({
      ts: new Date(h.ts).toISOString(),
      result: h.result,
      latency_ms: h.latency_ms === null ? null : Math.round(h.latency_ms * 10) / 10,
      detail: h.detail,
    })),
  };
}

/** `describe --json`: times as ISO 8601 like every other field. */
export function describeJson(d: InstanceDetails) {
  const iso = (ms: number) => new Date(ms).toISOString();
  const h = d.serving_history;
  return {
    ...d,
    serving_history: {
      since: iso(h.since),
      metrics: h.metrics.map((p) => ({ ...p, ts: iso(p.ts) })),
      vram: h.vram.map((p) => ({ ts: iso(p.ts), bytes: p.v })),
    },
  };
}

/** describe's data (its JSON before times become ISO 8601). */
export type InstanceDetails = ReturnType<typeof describeData>;
