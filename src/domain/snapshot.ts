import type { GpuInfo, Offload } from './gpu.js';
import type { DisplayState } from './status.js';

/**
 * One instance as scripts see it (`ps --json`, `--once --json`, the dashboard's rows). These field
 * names are a public API: add fields, never rename or remove one.
 */
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
  /**
   * What needs an operator's eye although the instance runs: a stalled keeper, logs being dropped,
   * a GPU backend running on the CPU, memory on a GPU it is not pinned to, a full or hot GPU.
   */
  warnings: string[];
  /** GPU memory the server holds (vendor tool per process, else its own buffer sizes); null: unknown. */
  vram_bytes: number | null;
  /** `offloaded N/M layers to GPU`, as the server of the current run said; null: not known. */
  offload: Offload | null;
  /** Indices of the GPUs its processes hold memory on (per the vendor tool). */
  on_gpus: number[];
  /**
   * What the server serves (domain/metrics.ts; read by its keeper on the health cadence): generated
   * and prompt tokens per second over the last interval, busy and total slots, requests processing
   * and deferred, the context of a slot, and when it was read (ISO 8601). Null when unknown: not
   * running, `metrics: false`, or no current reading.
   */
  tokens_per_s: number | null;
  prompt_tokens_per_s: number | null;
  slots_busy: number | null;
  slots_total: number | null;
  requests_processing: number | null;
  requests_deferred: number | null;
  ctx_size: number | null;
  /** KV cache usage, 0 to 1, where the server's build exports `llamacpp:kv_cache_usage_ratio`. */
  kv_cache_usage: number | null;
  metrics_at: string | null;
  /**
   * Requests the daemon's proxy is passing to it now, and those waiting for it to start (on
   * demand); null when no daemon serves the proxy.
   */
  proxy_in_flight: number | null;
  proxy_queued: number | null;
}

export interface DaemonStatus {
  running: boolean;
  pid: number | null;
  /** The URL its proxy serves /v1, /api and /metrics on (`http://HOST:PORT`); null: no proxy. */
  proxy: string | null;
}

/** `--once --json`: the whole rig at one moment. */
export interface RigSnapshot {
  generated_at: string;
  home: string;
  daemon: DaemonStatus;
  instances: InstanceSnapshot[];
  /** The rig's GPUs (`gpus --json` objects); empty on a CPU-only rig. */
  gpus: GpuInfo[];
  /** Why the GPUs could not be read (the vendor tool failed or timed out); null: fine or none. */
  gpu_error: string | null;
}
