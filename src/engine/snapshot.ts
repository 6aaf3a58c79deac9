import path from 'node:path';
import { resolveModelPath } from '../config/paths.js';
import type { ConfigLoader } from '../config/cached.js';
import type { Home } from '../home.js';
import { instanceConfigPath } from '../home.js';
import { discoverInstanceNames } from '../config/paths.js';
import type { Store } from '../store/store.js';
import { reconcileRow } from './reconcile.js';

export type DisplayState =
  'stopped' | 'starting' | 'running' | 'stopping' | 'backoff' | 'failed' | 'orphaned' | 'invalid';

/** One instance as scripts see it (`ps --json`, `--once --json`): these names are a public API. */
export interface InstanceSnapshot {
  name: string;
  state: DisplayState;
  health: string | null;
  health_detail: string | null;
  health_latency_ms: number | null;
  pid: number | null;
  keeper_pid: number | null;
  port: number | null;
  host: string | null;
  backend: string | null;
  gpus: Array<number | string>;
  model: string | null;
  model_path: string | null;
  started_at: string | null;
  uptime_s: number | null;
  restarts: number;
  restart_attempts: number;
  next_restart_in_s: number | null;
  last_exit: { code: number | null; signal: string | null; at: string | null } | null;
  last_error: string | null;
  config_error: string | null;
  autostart: boolean;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function snapshotInstance(
  home: Home,
  store: Store,
  name: string,
  now: number,
  load: ConfigLoader,
): InstanceSnapshot {
  const loaded = load(instanceConfigPath(home, name), name);
  const seen = loaded.ok || store.getRuntime(name) ? reconcileRow(store, name) : undefined;
  const row = seen?.row;
  const running = row?.pid !== null && row?.pid !== undefined && seen?.server === true;
  const probed = running && seen?.keeper === true;
  // A file edited into an invalid state does not change what a live server runs: show the config
  // it was started with (recorded by `up`); config_error still reports the file's problems.
  const cfg = loaded.ok ? loaded.instance.config : running || seen?.keeper ? store.startedConfig(name) : undefined;
  let state: DisplayState = row?.status ?? 'stopped';
  if (seen?.orphan) state = 'orphaned';
  if (!loaded.ok && state === 'stopped') state = 'invalid';
  const modelPath = cfg ? resolveModelPath(home, cfg) : null;
  return {
    name,
    state,
    // Only a live keeper probes: an orphan's last recorded health would be stale.
    health: probed ? (row?.health ?? null) : null,
    health_detail: probed ? (row?.health_detail ?? null) : null,
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
    uptime_s: running && row?.started_at ? Math.max(0, Math.floor((now - row.started_at) / 1000)) : null,
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
  };
}

export function snapshotAll(home: Home, store: Store, now: number, load: ConfigLoader): InstanceSnapshot[] {
  const names = new Set(discoverInstanceNames(home));
  // Instances whose config was removed while they ran still show (they may need stopping).
  for (const r of store.listRuntime()) if (r.pid !== null || r.keeper_pid !== null) names.add(r.name);
  return [...names].sort().map((n) => snapshotInstance(home, store, n, now, load));
}
