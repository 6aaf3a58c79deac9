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
  /** What needs an operator's eye although the instance runs: a stalled keeper, logs being dropped. */
  warnings: string[];
}

export interface DaemonStatus {
  running: boolean;
  pid: number | null;
}

/** `--once --json`: the whole rig at one moment. */
export interface RigSnapshot {
  generated_at: string;
  home: string;
  daemon: DaemonStatus;
  instances: InstanceSnapshot[];
}
