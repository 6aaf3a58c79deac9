import type { DesiredState, EventLevel, Health, Status } from '../domain/status.js';

/** Rows as SQLite returns them (schema: store/schema.ts; docs/ARCHITECTURE.md, "State"). */

export interface RuntimeRow {
  name: string;
  keeper_pid: number | null;
  keeper_starttime: number | null;
  pid: number | null;
  pgid: number | null;
  starttime: number | null;
  port: number | null;
  cmdline: string | null;
  status: Status;
  health: Health | null;
  health_detail: string | null;
  health_latency_ms: number | null;
  health_failures: number;
  health_since: number | null;
  started_at: number | null;
  last_seen_at: number | null;
  last_health_ok_at: number | null;
  restart_attempts: number;
  restarts_total: number;
  next_restart_at: number | null;
  last_exit_code: number | null;
  last_exit_signal: string | null;
  last_exit_at: number | null;
  last_error: string | null;
  stderr_tail: string | null;
  /** Why the keeper cannot write the log files now (null: it can). */
  log_error: string | null;
  /** Lines dropped while the log files could not be written, in this keeper's life. */
  log_dropped_lines: number;
  /** What the current run's server loaded where (domain/gpu.ts LoadFacts, JSON); null: not known. */
  load_facts: string | null;
  /** What the current run serves (domain/metrics.ts ServingMetrics, JSON); null: not known. */
  metrics: string | null;
  /** The current run's GPU memory against the estimate (engine/memory-calibration.ts MemoryComparison, JSON); null: not compared. */
  memory: string | null;
  updated_at: number;
}

export interface InstanceRow {
  name: string;
  config_path: string;
  desired_state: DesiredState;
  config_json: string | null;
  /** When an operator (up, down) last set desired_state; null: never. */
  desired_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface EventRow {
  id: number;
  ts: number;
  instance_name: string | null;
  level: EventLevel;
  event_type: string;
  message: string;
  meta_json: string | null;
}

export interface HealthRow {
  id: number;
  ts: number;
  instance_name: string;
  result: string;
  latency_ms: number | null;
  detail: string | null;
}

export type RuntimePatch = Partial<Omit<RuntimeRow, 'name' | 'updated_at'>>;

// Fragments that several intents write together (store.ts, records.ts).
export const NO_SERVER = { pid: null, pgid: null, starttime: null, metrics: null } as const;
export const NO_HEALTH = { health: null, health_detail: null } as const;

/** A row with every column at its default: what the schema gives a new instance. */
export function emptyRuntimeRow(name: string): RuntimeRow {
  return {
    name,
    keeper_pid: null,
    keeper_starttime: null,
    pid: null,
    pgid: null,
    starttime: null,
    port: null,
    cmdline: null,
    status: 'stopped',
    health: null,
    health_detail: null,
    health_latency_ms: null,
    health_failures: 0,
    health_since: null,
    started_at: null,
    last_seen_at: null,
    last_health_ok_at: null,
    restart_attempts: 0,
    restarts_total: 0,
    next_restart_at: null,
    last_exit_code: null,
    last_exit_signal: null,
    last_exit_at: null,
    last_error: null,
    stderr_tail: null,
    log_error: null,
    log_dropped_lines: 0,
    load_facts: null,
    metrics: null,
    memory: null,
    updated_at: 0,
  };
}
