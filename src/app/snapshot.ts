import path from 'node:path';
import type { ConfigLoader } from '../config/cached.js';
import { discoverInstanceNames, resolveModelPath } from '../config/paths.js';
import { instanceConfigPath, type Home } from '../domain/home.js';
import type { DisplayState } from '../domain/status.js';
import type { DaemonStatus, InstanceSnapshot, RigSnapshot } from '../domain/snapshot.js';
import type { Processes } from '../platform/processes.js';
import type { StoreBase } from '../store/base.js';
import type { RuntimeRow } from '../store/rows.js';
import type { GpuSample, LoadFacts } from '../domain/gpu.js';
import type { ServingMetrics } from '../domain/metrics.js';
import type { InstanceConfig } from '../config/schema.js';
import { MIN_SCRAPE_GAP_MS } from '../metrics/cadence.js';
import { attributeGpus, instanceGpuFacts, type GpuView } from '../engine/gpus.js';
import { heartbeatAgeMs, STALLED_AFTER_MS } from '../engine/keeper-file.js';
import { daemonStatus } from './daemon-status.js';
import { observeRow, runningConfig } from '../engine/reconcile.js';

export type { InstanceSnapshot, RigSnapshot };

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Whole seconds since a run started (ms since the epoch), never negative. */
export const uptimeSeconds = (startedAtMs: number, now: number) => Math.max(0, Math.floor((now - startedAtMs) / 1000));

export interface SnapshotSources {
  home: Home;
  store: StoreBase;
  procs: Processes;
  load: ConfigLoader;
  /** The rig's GPUs at this moment (app/gpu-source.ts currentGpuSample); absent: not read. */
  gpu?: GpuSample;
  /** NSpid of a pid (platform/proc.ts): maps host pids a vendor tool reports to servers in containers. */
  nsPids?: (pid: number) => number[];
}

/**
 * One instance as `ps --json` publishes it. A pure read: the row as /proc shows it (observeRow),
 * never a write, so it works on a database that cannot be written.
 */
export function snapshotInstance(
  src: SnapshotSources,
  name: string,
  now: number,
  reads: RigReads = readRig(src),
): InstanceSnapshot {
  const { home, store, procs, load } = src;
  const { view: gpuView, proxy } = reads;
  const loaded = load(instanceConfigPath(home, name), name);
  const recorded = reads.rows.get(name);
  const seen = recorded ? observeRow(recorded, procs) : undefined;
  const row = seen?.row;
  const running = row?.pid !== null && row?.pid !== undefined && seen?.server === true;
  const { warnings, stalled } = warningsOf(home, name, row, seen?.keeper === true, now);
  const probed = running && seen?.keeper === true && !stalled;
  // A file edited into an invalid state does not change what a live server runs: show the config
  // it was started with (recorded by `up`); config_error still reports the file's problems.
  const cfg = loaded.ok ? loaded.instance.config : runningConfig(store, seen);
  let state: DisplayState = row?.status ?? 'stopped';
  if (seen?.orphan) state = 'orphaned';
  if (!loaded.ok && state === 'stopped') state = 'invalid';
  const modelPath = cfg ? resolveModelPath(home, cfg) : null;
  const facts = running ? parseFacts(row?.load_facts ?? null) : null;
  const gpu = instanceGpuFacts(
    gpuView,
    { name, running, backend: cfg?.gpu.backend ?? null, devices: cfg?.gpu.devices ?? [] },
    facts,
  );
  warnings.push(...gpu.warnings);
  return {
    name,
    state,
    // Only a live keeper probes: an orphan's (or a stalled keeper's) last recorded health is stale.
    health: probed ? (row?.health ?? null) : stalled && running ? 'unknown' : null,
    health_detail: probed ? (row?.health_detail ?? null) : stalled && running ? 'keeper not responding' : null,
    health_latency_ms: probed && row?.health_latency_ms != null ? Math.round(row.health_latency_ms * 10) / 10 : null,
    pid: running ? (row?.pid ?? null) : null,
    keeper_pid: seen?.keeper ? (row?.keeper_pid ?? null) : null,
    port: cfg?.server.port ?? row?.port ?? null,
    host: cfg?.server.host ?? null,
    backend: cfg?.gpu.backend ?? null,
    gpus: cfg?.gpu.devices ?? [],
    model: cfg ? (cfg.model.alias ?? path.basename(cfg.model.path)) : null,
    model_path: modelPath,
    started_at: running ? iso(row?.started_at ?? null) : null,
    uptime_s: running && row?.started_at ? uptimeSeconds(row.started_at, now) : null,
    restarts: row?.restarts_total ?? 0,
    restart_attempts: row?.restart_attempts ?? 0,
    next_restart_in_s:
      row?.status === 'backoff' && row.next_restart_at !== null
        ? Math.max(0, Math.round((row.next_restart_at - now) / 100) / 10)
        : null,
    // Code and signal are both null when the server was not the keeper's child (re-attached, orphan).
    last_exit:
      row && (row.last_exit_code !== null || row.last_exit_signal !== null || row.last_exit_at !== null)
        ? { code: row.last_exit_code, signal: row.last_exit_signal, at: iso(row.last_exit_at) }
        : null,
    last_error: row?.last_error ?? null,
    config_error: loaded.ok ? null : loaded.problems.map((p) => `${p.jsonPath}: ${p.message}`).join('; '),
    autostart: cfg?.autostart ?? false,
    warnings,
    vram_bytes: gpu.vram_bytes,
    offload: facts?.offload ?? null,
    on_gpus: gpu.on_gpus,
    ...servingOf(probed ? (row?.metrics ?? null) : null, cfg, now),
    proxy_in_flight: proxy ? (proxy.get(name)?.in_flight ?? 0) : null,
    proxy_queued: proxy ? (proxy.get(name)?.queued ?? 0) : null,
  };
}

type ServingFields = Pick<
  InstanceSnapshot,
  | 'tokens_per_s'
  | 'prompt_tokens_per_s'
  | 'slots_busy'
  | 'slots_total'
  | 'requests_processing'
  | 'requests_deferred'
  | 'ctx_size'
  | 'kv_cache_usage'
  | 'metrics_at'
>;

const NO_SERVING: ServingFields = {
  tokens_per_s: null,
  prompt_tokens_per_s: null,
  slots_busy: null,
  slots_total: null,
  requests_processing: null,
  requests_deferred: null,
  ctx_size: null,
  kv_cache_usage: null,
  metrics_at: null,
};

/**
 * The keeper's last reading of what the server serves, while it is current: a reading older than
 * three scrape intervals (a server that stopped answering /metrics, metrics turned off) is unknown,
 * not a frozen figure.
 */
function servingOf(json: string | null, cfg: InstanceConfig | undefined, now: number): ServingFields {
  if (!json || !cfg?.metrics) return NO_SERVING;
  let m: ServingMetrics;
  try {
    m = JSON.parse(json) as ServingMetrics;
  } catch {
    return NO_SERVING;
  }
  const gapMs = Math.max(MIN_SCRAPE_GAP_MS, cfg.healthcheck.interval * 1000);
  if (now - m.at > Math.max(15_000, 3 * gapMs + cfg.healthcheck.timeout * 1000)) return NO_SERVING;
  return {
    tokens_per_s: m.tokens_per_s,
    prompt_tokens_per_s: m.prompt_tokens_per_s,
    slots_busy: m.slots_busy,
    slots_total: m.slots_total,
    requests_processing: m.requests_processing,
    requests_deferred: m.requests_deferred,
    ctx_size: m.ctx_size,
    kv_cache_usage: m.kv_cache_usage,
    metrics_at: iso(m.at),
  };
}

function parseFacts(json: string | null): LoadFacts | null {
  if (!json) return null;
  try {
    return JSON.parse(json) as LoadFacts;
  } catch {
    return null;
  }
}

/**
 * What every instance of one snapshot shares, read once: the runtime rows (one query, not one per
 * instance), the daemon, the GPU sample mapped to the running servers and the proxy's counts. The
 * dashboard builds a snapshot every second or two, so these reads are its idle cost.
 */
interface RigReads {
  rows: Map<string, RuntimeRow>;
  daemon: DaemonStatus;
  view: GpuView | undefined;
  proxy: ProxyCounts | null;
}

function readRig(src: SnapshotSources): RigReads {
  const rows = new Map(src.store.listRuntime().map((r) => [r.name, r]));
  const daemon = daemonStatus(src.home, src.store);
  return { rows, daemon, view: viewOf(src, [...rows.values()]), proxy: proxyCountsOf(src, daemon) };
}

/** The GPU sample mapped to the running servers (engine/gpus.ts), once per snapshot. */
function viewOf(src: SnapshotSources, rows: RuntimeRow[]): GpuView | undefined {
  if (!src.gpu) return undefined;
  const servers = rows.filter((r) => r.pid !== null).map((r) => ({ name: r.name, pid: r.pid as number }));
  return attributeGpus(src.gpu, servers, { procs: src.procs, nsPids: src.nsPids ?? (() => []) });
}

function warningsOf(
  home: Home,
  name: string,
  row: RuntimeRow | undefined,
  keeper: boolean,
  now: number,
): { warnings: string[]; stalled: boolean } {
  const out: string[] = [];
  let stalled = false;
  if (keeper && row?.keeper_pid) {
    const age = heartbeatAgeMs(home, name, now, row.keeper_pid);
    if (age !== undefined && age > STALLED_AFTER_MS) {
      stalled = true;
      out.push(
        `keeper pid ${row.keeper_pid} is not responding: no heartbeat for ${Math.round(age / 1000)} s (stopped or hung; the daemon replaces it)`,
      );
    }
  }
  if (row?.log_error) out.push(`logs: ${row.log_error}; ${row.log_dropped_lines} line(s) dropped so far`);
  else if (row && row.log_dropped_lines > 0) {
    out.push(`logs: ${row.log_dropped_lines} line(s) were dropped while the log files could not be written`);
  }
  return { warnings: out, stalled };
}

/** Every configured instance, plus any recorded as running whose config was removed (it may need stopping). */
export function snapshotAll(src: SnapshotSources, now: number): InstanceSnapshot[] {
  return snapshotWith(src, now, readRig(src));
}

function snapshotWith(src: SnapshotSources, now: number, reads: RigReads): InstanceSnapshot[] {
  const names = new Set(discoverInstanceNames(src.home));
  for (const r of reads.rows.values()) if (r.pid !== null || r.keeper_pid !== null) names.add(r.name);
  return [...names].sort().map((n) => snapshotInstance(src, n, now, reads));
}

/** Requests in flight and queued per instance, as the live daemon's proxy wrote them; null: no proxy. */
type ProxyCounts = Map<string, { in_flight: number; queued: number }>;

function proxyCountsOf(src: SnapshotSources, daemon: DaemonStatus): ProxyCounts | null {
  if (!daemon.proxy) return null;
  try {
    return new Map(src.store.proxyStats().map((r) => [r.name, { in_flight: r.in_flight, queued: r.queued }]));
  } catch {
    return null;
  }
}

/** `--once --json`: the instances and the daemon at one moment. */
export function rigSnapshot(src: SnapshotSources, now: number): RigSnapshot {
  const reads = readRig(src);
  return {
    generated_at: new Date(now).toISOString(),
    home: src.home.root,
    daemon: reads.daemon,
    instances: snapshotWith(src, now, reads),
    gpus: reads.view?.gpus ?? [],
    gpu_error: reads.view?.error ?? null,
  };
}
