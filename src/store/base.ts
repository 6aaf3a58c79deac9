import type { DesiredState } from '../domain/status.js';
import { StoreHistory } from './history.js';
import type { InstanceRow, RuntimePatch, RuntimeRow } from './rows.js';

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

/**
 * Reads, the append-only records (events, health history and the other bounded histories:
 * history.ts) and the instances table; the instance and runtime rows, the config cache and the
 * proxy's state are read here. The runtime columns are written only through the intents of `Store`
 * (store.ts, records.ts), which extends this.
 */
export class StoreBase extends StoreHistory {
  private runtimeColumns: ReadonlySet<string> | undefined;

  protected override rebound(): void {
    super.rebound();
    this.runtimeColumns = undefined;
  }

  /**
   * The only UPDATE of runtime columns, for the intents in store.ts and records.ts. The column list
   * is read from the migrated table itself, so a migration that adds a column is all it takes to
   * accept it.
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
}
