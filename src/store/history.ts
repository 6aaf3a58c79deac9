import type { GpuSample } from '../domain/gpu.js';
import type { BenchResult, MetricsPoint, ServingMetrics } from '../domain/metrics.js';
import type { EventLevel } from '../domain/status.js';
import { StoreConnection } from './connection.js';
import type { Db } from './db.js';
import { measurementOfRow, type MeasurementRow, type MemoryMeasurement, type ModelIdentity } from './measurements.js';
import type { EventRow, HealthRow } from './rows.js';

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

/**
 * The bounded histories: events, health probes, serving metrics, bench runs, GPU samples and
 * memory measurements. Rows are only appended (or, for a measurement, replaced) and the oldest
 * pruned past the retention; the intents of `Store` (records.ts, store.ts) write them inside their
 * transactions, through the protected writers here.
 */
export class StoreHistory extends StoreConnection {
  private insertsSincePrune = 0;
  readonly retention: Retention;

  constructor(db: Db, clock: () => number = Date.now, retention: Partial<Retention> = DEFAULT_RETENTION) {
    super(db, clock);
    this.retention = { ...DEFAULT_RETENTION, ...retention };
  }

  // ---- events

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

  // ---- health probes

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

  // ---- retention

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

  // ---- memory measurements

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

  // ---- serving metrics and bench runs

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

  // ---- GPU samples (written by the daemon's sampler: records.ts, recordGpuSample)

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
