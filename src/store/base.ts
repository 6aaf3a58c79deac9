import type Database from 'better-sqlite3';
import type { GpuSample } from '../domain/gpu.js';
import type { MeasuredDevice, MemoryMeasurement, ModelIdentity } from './measurements.js';
import type { BenchResult, MetricsPoint, ServingMetrics } from '../domain/metrics.js';
import type { DesiredState, EventLevel } from '../domain/status.js';
import { unwritableFileFault, type Db } from './db.js';
import type { EventRow, HealthRow, InstanceRow, RuntimePatch, RuntimeRow } from './rows.js';

export interface ProxyListenRow {
  daemon_pid: number;
  address: string;
  started_at: number;
}

export interface ProxyStatsRow {
  name: string;
  in_flight: number;
  queued: number;
  requests_total: number;
  errors_total: number;
  last_request_at: number | null;
  updated_at: number;
}

export interface Retention {
  eventsPerInstance: number;
  healthPerInstance: number;
  /** GPU samples kept (the sampler writes one every 2 s: 1800 is an hour). */
  gpuSamples: number;
  /** Serving-metrics history rows kept per instance (720: an hour at the default 5 s interval). */
  metricsPerInstance: number;
  benchPerInstance: number;
  /** Memory measurements kept (one per model file and memory flags), newest first. */
  memoryMeasurements: number;
}

export const DEFAULT_RETENTION: Retention = {
  eventsPerInstance: 2000,
  healthPerInstance: 500,
  gpuSamples: 1800,
  metricsPerInstance: 720,
  benchPerInstance: 20,
  memoryMeasurements: 500,
};

interface MeasurementRow {
  model_path: string;
  model_size: number;
  model_mtime: number;
  flags: string;
  devices_json: string;
  estimated_bytes: number;
  loaded_bytes: number;
  measured_bytes: number | null;
  instance_name: string;
  server: string | null;
  measured_at: number;
}

function measurementOfRow(r: MeasurementRow): MemoryMeasurement | undefined {
  let devices: MeasuredDevice[];
  try {
    devices = JSON.parse(r.devices_json) as MeasuredDevice[];
  } catch {
    return undefined;
  }
  return {
    model: { path: r.model_path, size: r.model_size, mtime_ms: r.model_mtime },
    flags: r.flags,
    devices,
    estimated_bytes: r.estimated_bytes,
    loaded_bytes: r.loaded_bytes,
    measured_bytes: r.measured_bytes,
    instance: r.instance_name,
    server: r.server,
    measured_at: r.measured_at,
  };
}

/**
 * Reads, the append-only records (events, health history) and the instances table. The runtime
 * columns are written only through the intents of `Store` (store.ts), which extends this.
 */
export class StoreBase {
  private insertsSincePrune = 0;
  private readonly statements = new Map<string, Database.Statement>();
  private runtimeColumns: ReadonlySet<string> | undefined;
  private readonly writeListeners = new Set<() => void>();

  private fixedTime: number | undefined;
  readonly retention: Retention;
  /** The database file, when this connection maps its WAL index writable (see guard()). */
  private readonly guarded: string | undefined;

  constructor(
    readonly db: Db,
    private readonly clock: () => number = Date.now,
    retention: Partial<Retention> = DEFAULT_RETENTION,
  ) {
    this.retention = { ...DEFAULT_RETENTION, ...retention };
    // Opened while its WAL index could not be written, SQLite maps it read-only: nothing to guard.
    // An in-memory database has no files.
    const file = db.memory ? undefined : db.name;
    this.guarded = file !== undefined && unwritableFileFault(file) === undefined ? file : undefined;
  }

  /**
   * Throws a store fault (SQLITE_READONLY) when the WAL index became unwritable since this connection
   * opened it: SQLite's next write to its mapping would end the process with SIGBUS (store/db.ts,
   * unwritableFileFault). One access(2) call, before every statement.
   */
  protected guard(): void {
    if (this.guarded === undefined) return;
    const fault = unwritableFileFault(this.guarded);
    if (fault) throw fault;
  }

  /** SQLite's data_version for this connection: it moves when another connection commits. */
  dataVersion(): number {
    this.guard();
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /** The time written into rows and events: the clock, or the time a deferred write happened. */
  protected now(): number {
    return this.fixedTime ?? this.clock();
  }

  /**
   * Runs fn with its rows and events stamped at `t`: a write the keeper had to keep while the
   * database refused it is recorded with the time it happened (keeper/write-queue.ts).
   */
  at<T>(t: number, fn: () => T): T {
    const before = this.fixedTime;
    this.fixedTime = t;
    try {
      return fn();
    } finally {
      this.fixedTime = before;
    }
  }

  /** Prepared once per connection: the dashboard runs the same few queries every second. */
  protected sql(text: string): Database.Statement {
    this.guard();
    let st = this.statements.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  /** Runs fn inside BEGIN IMMEDIATE so concurrent writers serialise instead of failing with SQLITE_BUSY. */
  immediate<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.guard();
    const result = this.db.transaction(fn).immediate();
    this.committed();
    return result;
  }

  /**
   * SQLite's data_version does not move for a connection's own commits: tell this process's change
   * feed directly (store/watch.ts). Statements outside `immediate` commit on their own: they call
   * this too.
   */
  protected committed(): void {
    if (this.db.inTransaction) return;
    for (const fn of this.writeListeners) {
      try {
        fn();
      } catch {
        // the feed isolates its own listeners; nothing here may undo a commit
      }
    }
  }

  /** Called after each of this connection's write transactions commits. */
  onWrite(fn: () => void): () => void {
    this.writeListeners.add(fn);
    return () => this.writeListeners.delete(fn);
  }

  /**
   * Closing checkpoints, which writes the mapped WAL index: with a file unwritable that is SIGBUS,
   * so the connection is left open then (the process exits with process.exit, which does not
   * close it either).
   */
  close(): void {
    if (this.guarded !== undefined && unwritableFileFault(this.guarded)) return;
    this.db.close();
  }

  /**
   * The only UPDATE of runtime columns, for the intents in store.ts. The column list is read from
   * the migrated table itself, so a migration that adds a column is all it takes to accept it.
   */
  protected patchRuntime(name: string, patch: RuntimePatch): void {
    this.runtimeColumns ??= new Set(
      (this.db.pragma('table_info(runtime)') as Array<{ name: string }>)
        .map((c) => c.name)
        .filter((c) => c !== 'name' && c !== 'updated_at'),
    );
    const keys = Object.keys(patch);
    const unknown = keys.filter((k) => !this.runtimeColumns?.has(k));
    // A key that is not a column is a bug (an intent ahead of its migration): never drop it silently.
    if (unknown.length > 0) throw new Error(`internal: runtime has no column ${unknown.join(', ')}`);
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${k} = @${k}`).join(', ');
    const params: Record<string, unknown> = { name, updated_at: this.now() };
    for (const k of keys) params[k] = (patch as Record<string, unknown>)[k] ?? null;
    this.sql(`UPDATE runtime SET ${sets}, updated_at = @updated_at WHERE name = @name`).run(params);
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
    this.committed();
  }

  /** The validated config `up` recorded (JSON), which the keeper runs; the file may have changed since. */
  startedConfigJson(name: string): string | undefined {
    return this.getInstance(name)?.config_json ?? undefined;
  }

  /** Records the validated config that the keeper will run. */
  setConfigSnapshot(name: string, configJson: string): void {
    this.sql(`UPDATE instances SET config_json = ?, updated_at = ? WHERE name = ?`).run(configJson, this.now(), name);
    this.committed();
  }

  setDesired(name: string, desired: DesiredState): void {
    const t = this.now();
    this.sql(`UPDATE instances SET desired_state = ?, desired_at = ?, updated_at = ? WHERE name = ?`).run(
      desired,
      t,
      t,
      name,
    );
    this.committed();
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

  getRuntime(name: string): RuntimeRow | undefined {
    return this.sql(`SELECT * FROM runtime WHERE name = ?`).get(name) as RuntimeRow | undefined;
  }

  listRuntime(): RuntimeRow[] {
    return this.sql(`SELECT * FROM runtime ORDER BY name`).all() as RuntimeRow[];
  }

  /** A cheap fingerprint of what the status table shows (not the per-probe timestamps). */
  runtimeDigest(): string {
    const row = this.sql(
      `SELECT (SELECT group_concat(name || ':' || status || ':' || coalesce(pid, '') || ':' || coalesce(keeper_pid, '') || ':' ||
              coalesce(health, '') || ':' || coalesce(health_detail, '') || ':' || restarts_total, '|') FROM runtime)
              || '#' || coalesce((SELECT group_concat(name || ':' || in_flight || ':' || queued, '|') FROM proxy_stats), '')
              || '#' || coalesce((SELECT address FROM proxy_listen), '') AS d`,
    ).get() as { d: string | null };
    return row.d ?? '';
  }

  /** The daemon's proxy address, when a daemon recorded one (callers check that daemon_pid lives). */
  proxyListen(): ProxyListenRow | undefined {
    return this.sql(`SELECT daemon_pid, address, started_at FROM proxy_listen WHERE id = 1`).get() as
      ProxyListenRow | undefined;
  }

  /** Requests in flight and queued per instance, as the daemon's proxy last wrote them. */
  proxyStats(): ProxyStatsRow[] {
    return this.sql(`SELECT * FROM proxy_stats ORDER BY name`).all() as ProxyStatsRow[];
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
    this.committed();
  }

  listEvents(instance?: string, limit = 50): EventRow[] {
    const rows = instance
      ? this.sql(`SELECT * FROM events WHERE instance_name = ? ORDER BY id DESC LIMIT ?`).all(instance, limit)
      : this.sql(`SELECT * FROM events ORDER BY id DESC LIMIT ?`).all(limit);
    return (rows as EventRow[]).reverse();
  }

  /** Events of one instance written after event id `after`, oldest first. */
  eventsSince(instance: string, after: number): EventRow[] {
    return this.sql(`SELECT * FROM events WHERE instance_name = ? AND id > ? ORDER BY id`).all(
      instance,
      after,
    ) as EventRow[];
  }

  /** Events after id `after` (all instances, or one), oldest first, at most `limit`. */
  eventsAfter(after: number, limit: number, instance?: string): EventRow[] {
    return (
      instance
        ? this.sql(`SELECT * FROM events WHERE id > ? AND instance_name = ? ORDER BY id LIMIT ?`).all(
            after,
            instance,
            limit,
          )
        : this.sql(`SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?`).all(after, limit)
    ) as EventRow[];
  }

  lastEventId(): number {
    const row = this.sql(`SELECT max(id) AS id FROM events`).get() as { id: number | null };
    return row.id ?? 0;
  }

  protected addHealth(instance: string, result: string, latencyMs: number | null, detail: string | null): void {
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
      ['metrics_history', this.retention.metricsPerInstance],
      ['bench_runs', this.retention.benchPerInstance],
    ] as const) {
      this.sql(
        `DELETE FROM ${table} WHERE id IN (
             SELECT id FROM (
               SELECT id, row_number() OVER (PARTITION BY instance_name ORDER BY id DESC) AS rn FROM ${table}
             ) WHERE rn > ?)`,
      ).run(keep);
    }
    this.sql(`DELETE FROM gpu_samples WHERE id <= (SELECT max(id) FROM gpu_samples) - ?`).run(
      this.retention.gpuSamples,
    );
    this.sql(
      `DELETE FROM memory_measurements WHERE rowid NOT IN (SELECT rowid FROM memory_measurements ORDER BY measured_at DESC LIMIT ?)`,
    ).run(this.retention.memoryMeasurements);
  }

  /** What a run of this model file with these memory flags took (engine/memory-calibration.ts), or undefined. */
  memoryMeasurement(model: ModelIdentity, flags: string): MemoryMeasurement | undefined {
    const row = this.sql(
      `SELECT * FROM memory_measurements WHERE model_path = ? AND model_size = ? AND model_mtime = ? AND flags = ?`,
    ).get(model.path, model.size, model.mtime_ms, flags) as MeasurementRow | undefined;
    return row ? measurementOfRow(row) : undefined;
  }

  /** Every kept measurement, newest first. */
  listMemoryMeasurements(): MemoryMeasurement[] {
    const rows = this.sql(`SELECT * FROM memory_measurements ORDER BY measured_at DESC`).all() as MeasurementRow[];
    return rows.flatMap((r) => measurementOfRow(r) ?? []);
  }

  protected putMemoryMeasurement(m: MemoryMeasurement): void {
    this.sql(
      `INSERT OR REPLACE INTO memory_measurements (model_path, model_size, model_mtime, flags, devices_json,
         estimated_bytes, loaded_bytes, measured_bytes, instance_name, server, measured_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      m.model.path,
      m.model.size,
      m.model.mtime_ms,
      m.flags,
      JSON.stringify(m.devices),
      m.estimated_bytes,
      m.loaded_bytes,
      m.measured_bytes,
      m.instance,
      m.server,
      m.measured_at,
    );
    this.maybePrune();
  }

  protected addMetricsPoint(instance: string, m: ServingMetrics): void {
    if (m.tokens_per_s === null && m.requests_processing === null && m.slots_busy === null) return;
    this.sql(
      `INSERT INTO metrics_history (ts, instance_name, tokens_per_s, prompt_tokens_per_s, requests_processing, requests_deferred, slots_busy)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      m.at,
      instance,
      m.tokens_per_s,
      m.prompt_tokens_per_s,
      m.requests_processing,
      m.requests_deferred,
      m.slots_busy,
    );
    this.maybePrune();
  }

  /** One instance's serving history since `since` (ms), oldest first: the sparklines. */
  metricsSince(instance: string, since: number): MetricsPoint[] {
    return this.sql(
      `SELECT ts, tokens_per_s, prompt_tokens_per_s, requests_processing, requests_deferred, slots_busy
         FROM metrics_history WHERE instance_name = ? AND ts >= ? ORDER BY id`,
    ).all(instance, since) as MetricsPoint[];
  }

  protected addBench(instance: string, result: BenchResult): void {
    this.sql(`INSERT INTO bench_runs (ts, instance_name, result_json) VALUES (?, ?, ?)`).run(
      this.now(),
      instance,
      JSON.stringify(result),
    );
    this.maybePrune();
  }

  /** The newest bench result of an instance, or undefined. */
  lastBench(instance: string): BenchResult | undefined {
    const row = this.sql(`SELECT result_json FROM bench_runs WHERE instance_name = ? ORDER BY id DESC LIMIT 1`).get(
      instance,
    ) as { result_json: string } | undefined;
    if (!row) return undefined;
    try {
      return JSON.parse(row.result_json) as BenchResult;
    } catch {
      return undefined;
    }
  }

  /** The newest GPU sample (domain/gpu.ts), or undefined when none was recorded. */
  latestGpuSample(): GpuSample | undefined {
    const row = this.sql(`SELECT sample_json FROM gpu_samples ORDER BY id DESC LIMIT 1`).get() as
      { sample_json: string } | undefined;
    if (!row) return undefined;
    try {
      return JSON.parse(row.sample_json) as GpuSample;
    } catch {
      return undefined;
    }
  }

  /** The GPU samples since `since` (ms), oldest first: the history behind sparklines. */
  gpuSamplesSince(since: number): GpuSample[] {
    const rows = this.sql(`SELECT sample_json FROM gpu_samples WHERE ts >= ? ORDER BY id`).all(since) as Array<{
      sample_json: string;
    }>;
    return rows.map((r) => JSON.parse(r.sample_json) as GpuSample);
  }
}
