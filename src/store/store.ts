import type Database from 'better-sqlite3';
import type { InstanceConfig } from '../config/schema.js';
import type { Db } from './db.js';

export type Status = 'stopped' | 'starting' | 'running' | 'stopping' | 'backoff' | 'failed';
export type Health = 'unknown' | 'starting' | 'loading' | 'ok' | 'unhealthy' | 'unauthorized';
export type EventLevel = 'debug' | 'info' | 'warn' | 'error';

export interface RuntimeRow {
  name: string;
  keeper_pid: number | null;
  keeper_starttime: number | null;
  pid: number | null;
  pgid: number | null;
  starttime: number | null;
  port: number | null;
  cmdline: string | null;
  binary_version: string | null;
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
  updated_at: number;
}

export interface InstanceRow {
  name: string;
  config_path: string;
  desired_state: 'running' | 'stopped';
  config_json: string | null;
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

const RUNTIME_COLUMNS = new Set<string>([
  'keeper_pid',
  'keeper_starttime',
  'pid',
  'pgid',
  'starttime',
  'port',
  'cmdline',
  'binary_version',
  'status',
  'health',
  'health_detail',
  'health_latency_ms',
  'health_failures',
  'health_since',
  'started_at',
  'last_seen_at',
  'last_health_ok_at',
  'restart_attempts',
  'restarts_total',
  'next_restart_at',
  'last_exit_code',
  'last_exit_signal',
  'last_exit_at',
  'last_error',
  'stderr_tail',
]);

export interface Retention {
  eventsPerInstance: number;
  healthPerInstance: number;
}

export const DEFAULT_RETENTION: Retention = { eventsPerInstance: 2000, healthPerInstance: 500 };

/** Typed access to the state database. Every read-then-write goes through `immediate`. */
export class Store {
  private insertsSincePrune = 0;
  private readonly statements = new Map<string, Database.Statement>();

  /** Prepared once per connection: the dashboard runs the same few queries every second. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  constructor(
    readonly db: Db,
    private readonly now: () => number = Date.now,
    readonly retention: Retention = DEFAULT_RETENTION,
  ) {}

  /** Runs fn inside BEGIN IMMEDIATE so concurrent writers serialise instead of failing with SQLITE_BUSY. */
  immediate<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    this.db.close();
  }

  ensureInstance(name: string, configPath: string): void {
    const t = this.now();
    this.sql(
      `INSERT INTO instances (name, config_path, desired_state, created_at, updated_at)
         VALUES (?, ?, 'stopped', ?, ?)
         ON CONFLICT(name) DO UPDATE SET config_path = excluded.config_path`,
    ).run(name, configPath, t, t);
    this.sql(
      `INSERT INTO runtime (name, status, updated_at) VALUES (?, 'stopped', ?) ON CONFLICT(name) DO NOTHING`,
    ).run(name, t);
  }

  /** The validated config `up` recorded, which the keeper runs (the file may have changed since). */
  startedConfig(name: string): InstanceConfig | undefined {
    const json = this.getInstance(name)?.config_json;
    return json ? (JSON.parse(json) as InstanceConfig) : undefined;
  }

  /** Records the validated config that the keeper will run. */
  setConfigSnapshot(name: string, config: InstanceConfig): void {
    this.sql(`UPDATE instances SET config_json = ?, updated_at = ? WHERE name = ?`).run(
      JSON.stringify(config),
      this.now(),
      name,
    );
  }

  cachedConfig(file: string, key: string): string | undefined {
    const row = this.sql(`SELECT key, result_json FROM config_cache WHERE path = ?`).get(file) as
      { key: string; result_json: string } | undefined;
    return row && row.key === key ? row.result_json : undefined;
  }

  cacheConfig(file: string, key: string, resultJson: string): void {
    this.sql(
      `INSERT INTO config_cache (path, key, result_json) VALUES (?, ?, ?)
         ON CONFLICT(path) DO UPDATE SET key = excluded.key, result_json = excluded.result_json`,
    ).run(file, key, resultJson);
  }

  getInstance(name: string): InstanceRow | undefined {
    return this.sql(`SELECT * FROM instances WHERE name = ?`).get(name) as InstanceRow | undefined;
  }

  listInstances(): InstanceRow[] {
    return this.sql(`SELECT * FROM instances ORDER BY name`).all() as InstanceRow[];
  }

  setDesired(name: string, desired: 'running' | 'stopped'): void {
    this.sql(`UPDATE instances SET desired_state = ?, updated_at = ? WHERE name = ?`).run(desired, this.now(), name);
  }

  getRuntime(name: string): RuntimeRow | undefined {
    return this.sql(`SELECT * FROM runtime WHERE name = ?`).get(name) as RuntimeRow | undefined;
  }

  /** A cheap fingerprint of what the status table shows (not the per-probe timestamps). */
  runtimeDigest(): string {
    const row = this.sql(
      `SELECT group_concat(name || ':' || status || ':' || coalesce(pid, '') || ':' || coalesce(keeper_pid, '') || ':' ||
              coalesce(health, '') || ':' || coalesce(health_detail, '') || ':' || restarts_total, '|') AS d FROM runtime`,
    ).get() as { d: string | null };
    return row.d ?? '';
  }

  listRuntime(): RuntimeRow[] {
    return this.sql(`SELECT * FROM runtime ORDER BY name`).all() as RuntimeRow[];
  }

  updateRuntime(name: string, patch: RuntimePatch): void {
    const keys = Object.keys(patch).filter((k) => RUNTIME_COLUMNS.has(k));
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${k} = @${k}`).join(', ');
    const params: Record<string, unknown> = { name, updated_at: this.now() };
    for (const k of keys) params[k] = (patch as Record<string, unknown>)[k] ?? null;
    this.sql(`UPDATE runtime SET ${sets}, updated_at = @updated_at WHERE name = @name`).run(params);
  }

  addEvent(
    instance: string | null,
    level: EventLevel,
    type: string,
    message: string,
    meta?: Record<string, unknown>,
  ): void {
    this.sql(
      `INSERT INTO events (ts, instance_name, level, event_type, message, meta_json) VALUES (?, ?, ?, ?, ?, ?)`,
    ).run(this.now(), instance, level, type, message, meta ? JSON.stringify(meta) : null);
    this.maybePrune();
  }

  listEvents(instance?: string, limit = 50): EventRow[] {
    const rows = instance
      ? this.sql(`SELECT * FROM events WHERE instance_name = ? ORDER BY id DESC LIMIT ?`).all(instance, limit)
      : this.sql(`SELECT * FROM events ORDER BY id DESC LIMIT ?`).all(limit);
    return (rows as EventRow[]).reverse();
  }

  lastEventId(): number {
    const row = this.sql(`SELECT max(id) AS id FROM events`).get() as { id: number | null };
    return row.id ?? 0;
  }

  addHealth(instance: string, result: string, latencyMs: number | null, detail: string | null): void {
    this.sql(`INSERT INTO health_history (ts, instance_name, result, latency_ms, detail) VALUES (?, ?, ?, ?, ?)`).run(
      this.now(),
      instance,
      result,
      latencyMs,
      detail,
    );
    this.maybePrune();
  }

  listHealth(instance: string, limit = 20): HealthRow[] {
    return (
      this.sql(`SELECT * FROM health_history WHERE instance_name = ? ORDER BY id DESC LIMIT ?`).all(
        instance,
        limit,
      ) as HealthRow[]
    ).reverse();
  }

  private maybePrune(): void {
    if (++this.insertsSincePrune < 100) return;
    this.insertsSincePrune = 0;
    this.prune();
  }

  /** Keeps the newest N events and health rows per instance (bounded retention). */
  prune(): void {
    const { eventsPerInstance, healthPerInstance } = this.retention;
    for (const [table, keep] of [
      ['events', eventsPerInstance],
      ['health_history', healthPerInstance],
    ] as const) {
      this.sql(
        `DELETE FROM ${table} WHERE id IN (
             SELECT id FROM (
               SELECT id, row_number() OVER (PARTITION BY instance_name ORDER BY id DESC) AS rn FROM ${table}
             ) WHERE rn > ?)`,
      ).run(keep);
    }
  }
}
