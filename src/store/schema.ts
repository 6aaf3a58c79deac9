/**
 * Ordered migrations; index + 1 is the PRAGMA user_version after applying it. The runtime table's
 * column list is read back from SQLite (store/base.ts), so adding a column starts here.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE instances (
    name TEXT PRIMARY KEY,
    config_path TEXT NOT NULL,
    desired_state TEXT NOT NULL DEFAULT 'stopped' CHECK (desired_state IN ('running','stopped')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE runtime (
    name TEXT PRIMARY KEY,
    keeper_pid INTEGER,
    keeper_starttime INTEGER,
    pid INTEGER,
    pgid INTEGER,
    starttime INTEGER,
    port INTEGER,
    cmdline TEXT,
    binary_version TEXT,
    status TEXT NOT NULL DEFAULT 'stopped',
    health TEXT,
    health_detail TEXT,
    health_latency_ms REAL,
    health_failures INTEGER NOT NULL DEFAULT 0,
    health_since INTEGER,
    started_at INTEGER,
    last_seen_at INTEGER,
    last_health_ok_at INTEGER,
    restart_attempts INTEGER NOT NULL DEFAULT 0,
    restarts_total INTEGER NOT NULL DEFAULT 0,
    next_restart_at INTEGER,
    last_exit_code INTEGER,
    last_exit_signal TEXT,
    last_exit_at INTEGER,
    last_error TEXT,
    stderr_tail TEXT,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    instance_name TEXT,
    level TEXT NOT NULL CHECK (level IN ('debug','info','warn','error')),
    event_type TEXT NOT NULL,
    message TEXT NOT NULL,
    meta_json TEXT
  );
  CREATE INDEX events_by_instance ON events (instance_name, id);
  CREATE TABLE health_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    instance_name TEXT NOT NULL,
    result TEXT NOT NULL,
    latency_ms REAL,
    detail TEXT
  );
  CREATE INDEX health_by_instance ON health_history (instance_name, id);
  `,
  // v2: the validated config an instance was started with; the keeper runs exactly that (no zod there).
  `ALTER TABLE instances ADD COLUMN config_json TEXT;`,
  // v3: validation results keyed by file identity, so ps/--once need not load the validator.
  `CREATE TABLE config_cache (path TEXT PRIMARY KEY, key TEXT NOT NULL, result_json TEXT NOT NULL);`,
  // v4: binary_version was never written (the server's build is in its log's first lines).
  `ALTER TABLE runtime DROP COLUMN binary_version;`,
  // v5: log writing trouble (shown by ps), and whether an operator ever set the desired state (the
  // daemon autostarts only instances nobody stopped).
  `ALTER TABLE runtime ADD COLUMN log_error TEXT;
   ALTER TABLE runtime ADD COLUMN log_dropped_lines INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE instances ADD COLUMN desired_at INTEGER;`,
  // v6: what the server of the current run loaded where (keeper/load-facts.ts), and the GPU
  // sampler's readings (bounded history: store/history.ts, prune).
  `ALTER TABLE runtime ADD COLUMN load_facts TEXT;
   CREATE TABLE gpu_samples (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, sample_json TEXT NOT NULL);`,
  // v7: what the current run serves (domain/metrics.ts ServingMetrics, JSON), its history for the
  // sparklines (one row per instance per scrape, bounded per instance), and bench results.
  `ALTER TABLE runtime ADD COLUMN metrics TEXT;
   CREATE TABLE metrics_history (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     instance_name TEXT NOT NULL,
     tokens_per_s REAL,
     prompt_tokens_per_s REAL,
     requests_processing INTEGER,
     requests_deferred INTEGER,
     slots_busy INTEGER
   );
   CREATE INDEX metrics_by_instance ON metrics_history (instance_name, id);
   CREATE TABLE bench_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, instance_name TEXT NOT NULL, result_json TEXT NOT NULL);
   CREATE INDEX bench_by_instance ON bench_runs (instance_name, id);`,
  // v8: the daemon's proxy (src/proxy): where it listens, and each instance's requests in flight and
  // queued (written by the daemon at most a few times a second; the dashboard and ps read them).
  `CREATE TABLE proxy_listen (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     daemon_pid INTEGER NOT NULL,
     address TEXT NOT NULL,
     started_at INTEGER NOT NULL
   );
   CREATE TABLE proxy_stats (
     name TEXT PRIMARY KEY,
     in_flight INTEGER NOT NULL,
     queued INTEGER NOT NULL,
     requests_total INTEGER NOT NULL,
     errors_total INTEGER NOT NULL,
     last_request_at INTEGER,
     updated_at INTEGER NOT NULL
   );`,
  // v9: the estimate against reality (engine/memory-calibration.ts): the current run's comparison
  // (describe's memory), and per model file and memory flags what a run took on its GPUs by the
  // vendor tool, which the next preflight counts instead of the estimate (the newest 500 kept).
  `ALTER TABLE runtime ADD COLUMN memory TEXT;
   CREATE TABLE memory_measurements (
     model_path TEXT NOT NULL,
     model_size INTEGER NOT NULL,
     model_mtime INTEGER NOT NULL,
     flags TEXT NOT NULL,
     devices_json TEXT NOT NULL,
     estimated_bytes INTEGER NOT NULL,
     loaded_bytes INTEGER NOT NULL,
     measured_bytes INTEGER,
     instance_name TEXT NOT NULL,
     server TEXT,
     measured_at INTEGER NOT NULL,
     PRIMARY KEY (model_path, model_size, model_mtime, flags)
   );`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;
