import type { GpuSample, LoadFacts } from '../domain/gpu.js';
import { InvalidTransitionError, canTransition } from '../domain/lifecycle.js';
import type { BenchResult, ServingMetrics } from '../domain/metrics.js';
import { mergeMeasurement, type MemoryMeasurement } from './measurements.js';
import type { EventLevel, Health, Status } from '../domain/status.js';
import { StoreBase, type ProxyStatsRow } from './base.js';
import type { RuntimePatch, RuntimeRow } from './rows.js';

export { DEFAULT_RETENTION, type ProxyListenRow, type ProxyStatsRow, type Retention } from './base.js';
export type { EventRow, HealthRow, InstanceRow, RuntimePatch, RuntimeRow } from './rows.js';

// Fragments that several intents write together.
const NO_SERVER = { pid: null, pgid: null, starttime: null, metrics: null } as const;
const NO_HEALTH = { health: null, health_detail: null } as const;

/** How a row differs from /proc (engine/reconcile.ts, observeRow). */
export interface ObservedFix {
  /** The keeper died: how, in words (the keeper-lost event and last_error). */
  keeperLost: string | null;
  /** The server pid is gone. */
  clearServer: boolean;
  /** Neither keeper nor server runs: the instance is stopped. */
  stop: boolean;
}

/** The row as the fix leaves it: one description, for the observation (a copy) and the write. */
export function applyFix(row: RuntimeRow, fix: ObservedFix): RuntimeRow {
  return {
    ...row,
    ...(fix.keeperLost !== null ? { keeper_pid: null, keeper_starttime: null, last_error: fix.keeperLost } : {}),
    ...(fix.clearServer ? NO_SERVER : {}),
    ...(fix.stop ? { status: 'stopped' as const, next_restart_at: null, ...NO_HEALTH } : {}),
  };
}

function diff(before: RuntimeRow, after: RuntimeRow): RuntimePatch {
  const old: Record<string, unknown> = { ...before };
  return Object.fromEntries(Object.entries(after).filter(([k, v]) => old[k] !== v));
}

export interface ClaimStart {
  keeperPid: number;
  keeperStarttime: number | null;
  port: number;
  /** The validated config (JSON) the keeper will run. */
  configJson: string;
  /** Keep restart counters (the daemon replacing a dead keeper); a user's `up` starts afresh. */
  carryCounters: boolean;
  reason: string;
}

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

export interface ProbeRecord {
  at: number;
  /** What the probe saw: ok, loading, unreachable, unauthorized, failure. */
  result: string;
  latencyMs: number | null;
  detail: string | null;
  /** The health machine's state after this probe. */
  before: Health;
  health: Health;
  healthDetail: string | null;
  failures: number;
  /** The run has been healthy for reset_after: its restart count starts over. */
  resetAttempts: boolean;
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

export interface TransitionOptions {
  reason?: string;
  level?: EventLevel;
  meta?: Record<string, unknown>;
}

/**
 * Typed access to the state database. The runtime columns change only through the intent methods
 * below (claim, spawn, probe, exit, adoption, ...), each one transaction; `runtime.status` only
 * through `move`, which validates against the lifecycle table (domain/lifecycle.ts) and emits the
 * state event. docs/ARCHITECTURE.md, "One writer of each runtime fact".
 */
export class Store extends StoreBase {
  /** The state machine: validates the move, persists it with its patch, emits the event. Returns the previous status. */
  private move(name: string, to: Status, opts: TransitionOptions, patch: RuntimePatch = {}): Status {
    return this.immediate(() => {
      const row = this.getRuntime(name);
      const from: Status = row?.status ?? 'stopped';
      if (!canTransition(from, to)) throw new InvalidTransitionError(name, from, to);
      this.patchRuntime(name, { ...patch, status: to });
      if (from !== to) {
        const level = opts.level ?? (to === 'failed' ? 'error' : to === 'backoff' ? 'warn' : 'info');
        const msg = `${from} -> ${to}${opts.reason ? `: ${opts.reason}` : ''}`;
        this.addEvent(name, level, 'state', msg, { from, to, ...opts.meta });
      }
      return from;
    });
  }

  // ---- the CLI (up): claims under BEGIN IMMEDIATE, so one keeper however many `up`s run at once

  /** A fresh start: the new keeper owns the instance, no server yet. */
  claimStart(name: string, c: ClaimStart): void {
    this.immediate(() => {
      this.setConfigSnapshot(name, c.configJson);
      this.setDesired(name, 'running');
      this.move(
        name,
        'starting',
        { reason: c.reason },
        {
          keeper_pid: c.keeperPid,
          keeper_starttime: c.keeperStarttime,
          ...(c.carryCounters ? {} : { restart_attempts: 0 }),
          // No live server: a pid left here would make the keeper try to adopt it.
          ...NO_SERVER,
          last_error: null,
          next_restart_at: null,
          port: c.port,
          health: 'starting',
          health_detail: null,
        },
      );
    });
  }

  /** A new keeper for a server whose keeper died: the server and its status stay as they are. */
  claimAdoption(name: string, keeperPid: number, keeperStarttime: number | null): void {
    this.immediate(() => {
      this.setDesired(name, 'running');
      this.patchRuntime(name, { keeper_pid: keeperPid, keeper_starttime: keeperStarttime, last_error: null });
    });
  }

  // ---- the keeper

  /**
   * A server is being started. `restart`: the keeper restarts it after an exit or a failed health
   * check, which is what `restarts` counts (RESTARTS in the table): 4 restarts read 4, however the
   * runs ended.
   */
  recordStarting(name: string, attempt: number, restart = false): void {
    this.immediate(() => {
      const total = this.getRuntime(name)?.restarts_total ?? 0;
      this.move(
        name,
        'starting',
        { reason: restart ? `restart${attempt > 0 ? ` ${attempt}` : ''}` : 'starting server' },
        {
          next_restart_at: null,
          health: 'starting',
          health_detail: null,
          health_failures: 0,
          ...(restart ? { restarts_total: total + 1 } : {}),
        },
      );
    });
  }

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

  /** One probe: the health row, the health columns, a change event, and starting -> running once it answers. */
  recordProbe(name: string, p: ProbeRecord): void {
    this.immediate(() => {
      this.addHealth(name, p.result, p.latencyMs, p.detail);
      this.patchRuntime(name, {
        health: p.health,
        health_detail: p.healthDetail,
        health_failures: p.failures,
        health_latency_ms: p.latencyMs,
        last_seen_at: p.at,
        ...(p.result === 'ok' ? { last_health_ok_at: p.at } : {}),
        ...(p.before !== p.health ? { health_since: p.at } : {}),
        ...(p.resetAttempts ? { restart_attempts: 0 } : {}),
      });
      if (p.before !== p.health) {
        const level = p.health === 'unhealthy' || p.health === 'unauthorized' ? 'error' : 'info';
        this.addEvent(
          name,
          level,
          'health',
          `health ${p.before} -> ${p.health}${p.healthDetail ? `: ${p.healthDetail}` : ''}`,
          {
            from: p.before,
            to: p.health,
          },
        );
      }
      const answering =
        p.health === 'ok' || p.health === 'loading' || p.health === 'unhealthy' || p.health === 'unauthorized';
      if (this.getRuntime(name)?.status === 'starting' && answering) {
        this.move(name, 'running', { reason: p.health === 'ok' ? 'healthy' : `server answering (${p.health})` });
      }
    });
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

  // ---- the daemon's proxy (src/http)

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

  recordStderrTail(name: string, tail: string[]): void {
    this.immediate(() => this.patchRuntime(name, { stderr_tail: JSON.stringify(tail) }));
  }

  recordStopping(name: string, reason: string): void {
    this.move(name, 'stopping', { reason });
  }

  recordStopped(name: string, reason: string): void {
    this.move(name, 'stopped', { reason }, { next_restart_at: null, ...NO_HEALTH });
  }

  /** `attempt` 0: a sporadic crash after a stable run (no crash loop); `note` says why this delay. */
  recordBackoff(name: string, b: { attempt: number; note: string; delayMs: number; at: number }): void {
    const delay = `in ${(b.delayMs / 1000).toFixed(1)} s`;
    this.move(
      name,
      'backoff',
      {
        reason: b.attempt > 0 ? `restart ${b.note} ${delay}` : `restart ${delay} ${b.note}`,
        meta: { delay_ms: b.delayMs, attempt: b.attempt },
      },
      { next_restart_at: b.at, restart_attempts: b.attempt, ...NO_HEALTH },
    );
  }

  recordFailed(name: string, reason: string): void {
    this.move(name, 'failed', { reason }, { last_error: reason, ...NO_SERVER, next_restart_at: null, ...NO_HEALTH });
  }

  /** The keeper `keeperPid` is leaving: it no longer owns the instance (unless another keeper took over). */
  releaseKeeper(name: string, keeperPid: number): void {
    this.immediate(() => {
      if (this.getRuntime(name)?.keeper_pid === keeperPid) {
        this.patchRuntime(name, { keeper_pid: null, keeper_starttime: null });
      }
    });
  }

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

  /** More lines dropped while the same log trouble lasts (no event: recordLogTrouble said it). */
  recordLogDropped(name: string, dropped: number): void {
    this.immediate(() => this.patchRuntime(name, { log_dropped_lines: dropped }));
  }

  recordKeeperCrash(name: string, message: string): void {
    this.immediate(() => {
      this.addEvent(name, 'error', 'keeper-crash', message);
      this.patchRuntime(name, { last_error: message });
    });
  }

  // ---- reconciliation (engine/reconcile.ts) and stopping an orphan (engine/down.ts)

  /**
   * What /proc showed differs from the row (engine/reconcile.ts): the keeper died, the server is
   * gone. Runs inside the caller's transaction, which re-read the row before it observed.
   */
  recordObserved(name: string, fix: ObservedFix): void {
    this.immediate(() => {
      const row = this.getRuntime(name) as RuntimeRow;
      const fixed = applyFix(row, fix);
      if (fix.keeperLost !== null) {
        this.addEvent(name, 'error', 'keeper-lost', fix.keeperLost, { keeper_pid: row.keeper_pid, pid: row.pid });
      }
      const { status, ...columns } = diff(row, fixed);
      this.patchRuntime(name, columns);
      if (status) this.move(name, status, { reason: 'no keeper and no server', level: 'warn' });
    });
  }

  /** A server whose keeper was gone has been stopped by the CLI. */
  recordOrphanStopped(name: string, r: { pid: number; at: number; message: string; level: EventLevel }): void {
    this.immediate(() => {
      this.patchRuntime(name, { ...NO_SERVER, last_exit_at: r.at });
      const status = this.getRuntime(name)?.status ?? 'stopped';
      if (status !== 'stopped' && status !== 'failed') {
        if (status !== 'stopping') this.move(name, 'stopping', { reason: 'orphaned server' });
        this.move(name, 'stopped', { reason: 'orphaned server stopped' }, { ...NO_HEALTH });
      }
      this.addEvent(name, r.level, 'exit', r.message, { pid: r.pid });
    });
  }

  /** `down` of a failed instance: it is acknowledged, and shows as stopped. */
  acknowledgeFailed(name: string): void {
    this.immediate(() => {
      if (this.getRuntime(name)?.status === 'failed') this.move(name, 'stopped', { reason: 'down' });
    });
  }
}
