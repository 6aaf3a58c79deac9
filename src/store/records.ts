import type { GpuSample, LoadFacts } from '../domain/gpu.js';
import type { BenchResult, ServingMetrics } from '../domain/metrics.js';
import type { EventLevel } from '../domain/status.js';
import { StoreBase, type ProxyStatsRow } from './base.js';
import { mergeMeasurement, type MemoryMeasurement } from './measurements.js';
import { NO_HEALTH, NO_SERVER, type RuntimeRow } from './rows.js';

export interface SpawnRecord {
  pid: number;
  pgid: number;
  starttime: number | null;
  port: number;
  /** The command line as shown to people (secrets masked), JSON. */
  cmdline: string;
  startedAt: number;
  attempt: number;
}

export interface ExitFacts {
  pid: number;
  code: number | null;
  signal: string | null;
  at: number;
  /** What ended the run: the server itself, a stop request, or a health restart. */
  cause: 'exit' | 'stop' | 'health';
  stderrTail: string[];
  /** The event's message, e.g. "server pid 12 exited with code 1 after 3.0 s". */
  message: string;
  /** Why it died, when the stderr says (out of GPU memory...): kept as last_error until the next start. */
  reason?: string | null;
  meta: Record<string, unknown>;
}

/**
 * The intents that record what happened without moving an instance's status: a run's spawn, exit
 * and what it loaded, serves and measured, the keeper's log trouble and crashes, and the daemon's
 * writes (GPU samples, proxy state) and bench runs. Each is one transaction. The intents that move
 * `runtime.status`, and the claims and release of an instance, are `Store`'s (store.ts), which
 * extends this.
 */
export class StoreRecords extends StoreBase {
  // ---- the keeper: a run

  recordSpawn(name: string, s: SpawnRecord): void {
    this.immediate(() => {
      this.patchRuntime(name, {
        pid: s.pid,
        pgid: s.pgid,
        starttime: s.starttime,
        port: s.port,
        cmdline: s.cmdline,
        started_at: s.startedAt,
        last_error: null,
        load_facts: null,
        metrics: null,
        memory: null,
      });
      this.addEvent(name, 'info', 'spawn', `server started, pid ${s.pid}`, { pid: s.pid, restart: s.attempt });
    });
  }

  /** The keeper re-attached (or failed to re-attach) a server whose keeper died. */
  recordAdoption(name: string, pid: number, message: string): void {
    this.immediate(() => this.addEvent(name, 'warn', 'adopt', message, { pid }));
  }

  /** A run ended: its pid is cleared, its exit kept (code or signal, stderr tail), the `exit` event added. */
  recordExit(name: string, e: ExitFacts, level: EventLevel): void {
    this.immediate(() => {
      this.patchRuntime(name, {
        ...NO_SERVER,
        ...NO_HEALTH,
        last_exit_code: e.code,
        last_exit_signal: e.signal,
        last_exit_at: e.at,
        stderr_tail: JSON.stringify(e.stderrTail),
        ...(e.reason ? { last_error: e.reason } : {}),
      });
      this.addEvent(name, level, 'exit', e.message, e.meta);
    });
  }

  /** The stderr tail once the server's output has drained (after the exit record). */
  recordStderrTail(name: string, tail: string[]): void {
    this.immediate(() => this.patchRuntime(name, { stderr_tail: JSON.stringify(tail) }));
  }

  /** What the run of server `pid` loaded where (keeper/load-facts.ts); ignored once another run started. */
  recordLoadFacts(name: string, pid: number, facts: LoadFacts): void {
    this.immediate(() => {
      if (this.getRuntime(name)?.pid !== pid) return;
      this.patchRuntime(name, { load_facts: JSON.stringify(facts) });
    });
  }

  /**
   * The run of server `pid`'s GPU memory against the estimate (keeper/memory-check.ts): the
   * comparison (JSON), the measurement the next preflight of its model and flags counts (merged
   * with the kept one), and the event when they differ. Ignored once another run started.
   */
  recordMemory(
    name: string,
    pid: number,
    m: {
      comparison: string;
      measurement: MemoryMeasurement | null;
      event: { level: EventLevel; message: string; meta: Record<string, unknown> } | null;
    },
  ): void {
    this.immediate(() => {
      if (this.getRuntime(name)?.pid !== pid) return;
      this.patchRuntime(name, { memory: m.comparison });
      if (m.measurement) {
        const prev = this.memoryMeasurement(m.measurement.model, m.measurement.flags);
        this.putMemoryMeasurement(mergeMeasurement(prev, m.measurement));
      }
      if (m.event) this.addEvent(name, m.event.level, 'memory', m.event.message, m.event.meta);
    });
  }

  /**
   * What the run of server `pid` serves (keeper/metrics.ts): the current figures and, when the scrape
   * gave rates, a history row (one per scrape; the keeper scrapes at most once per interval).
   */
  recordMetrics(name: string, pid: number, m: ServingMetrics): void {
    this.immediate(() => {
      if (this.getRuntime(name)?.pid !== pid) return;
      this.patchRuntime(name, { metrics: JSON.stringify(m) });
      this.addMetricsPoint(name, m);
    });
  }

  // ---- the keeper: its own trouble

  /**
   * The keeper could not write a log file (`error`), or can again (null). `dropped`: lines lost
   * so far in this keeper's life.
   */
  recordLogTrouble(name: string, t: { error: string | null; dropped: number; message: string }): void {
    this.immediate(() => {
      this.patchRuntime(name, { log_error: t.error, log_dropped_lines: t.dropped });
      this.addEvent(name, t.error ? 'error' : 'warn', 'log-write', t.message, { dropped_lines: t.dropped });
    });
  }

  /** More lines dropped while the same log trouble lasts (no event: recordLogTrouble said it). */
  recordLogDropped(name: string, dropped: number): void {
    this.immediate(() => this.patchRuntime(name, { log_dropped_lines: dropped }));
  }

  /**
   * The database file was deleted or replaced while the keeper ran: it writes what it knows (the row
   * from the old file, still open) into the new one, so nothing runs untracked.
   */
  recordReRegistration(
    name: string,
    r: { configPath: string; configJson: string | null; row: RuntimeRow | undefined; message: string },
  ): void {
    this.immediate(() => {
      this.ensureInstance(name, r.configPath);
      if (r.configJson) this.setConfigSnapshot(name, r.configJson);
      this.setDesired(name, 'running');
      if (r.row) {
        const facts: Record<string, unknown> = { ...r.row };
        delete facts.name;
        delete facts.updated_at;
        this.patchRuntime(name, facts);
      }
      this.addEvent(name, 'warn', 'reregister', r.message);
    });
  }

  recordKeeperCrash(name: string, message: string): void {
    this.immediate(() => {
      this.addEvent(name, 'error', 'keeper-crash', message);
      this.patchRuntime(name, { last_error: message });
    });
  }

  // ---- bench (cli/commands/bench.ts)

  /** A finished `llama-orch bench` run (the newest few per instance are kept). */
  recordBench(name: string, result: BenchResult): void {
    this.immediate(() => this.addBench(name, result));
  }

  // ---- the daemon's GPU sampler (daemon/gpu-service.ts)

  /** One reading of the rig's GPUs; the history is kept bounded (prune). */
  recordGpuSample(sample: GpuSample): void {
    this.immediate(() => {
      this.sql(`INSERT INTO gpu_samples (ts, sample_json) VALUES (?, ?)`).run(sample.at, JSON.stringify(sample));
    });
  }

  // ---- the daemon's proxy (daemon/proxy-service.ts)

  /** The proxy listens (daemonPid's); `null` clears it when that daemon's proxy stops. */
  recordProxyListen(daemonPid: number, address: string | null): void {
    this.immediate(() => {
      if (address === null) this.sql(`DELETE FROM proxy_listen WHERE daemon_pid = ?`).run(daemonPid);
      else
        this.sql(`INSERT OR REPLACE INTO proxy_listen (id, daemon_pid, address, started_at) VALUES (1, ?, ?, ?)`).run(
          daemonPid,
          address,
          this.now(),
        );
      if (address === null) this.sql(`DELETE FROM proxy_stats`).run();
    });
  }

  /** Replaces the per-instance request counts (only instances the proxy has seen). */
  recordProxyStats(rows: Array<Omit<ProxyStatsRow, 'updated_at'>>): void {
    this.immediate(() => {
      this.sql(`DELETE FROM proxy_stats`).run();
      const ins = this.sql(
        `INSERT INTO proxy_stats (name, in_flight, queued, requests_total, errors_total, last_request_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      );
      const now = this.now();
      for (const r of rows)
        ins.run(r.name, r.in_flight, r.queued, r.requests_total, r.errors_total, r.last_request_at, now);
    });
  }
}
