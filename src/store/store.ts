import { InvalidTransitionError, canTransition } from '../domain/lifecycle.js';
import type { EventLevel, Health, Status } from '../domain/status.js';
import { StoreRecords } from './records.js';
import { NO_HEALTH, NO_SERVER, type RuntimePatch, type RuntimeRow } from './rows.js';

export type { EventRow, HealthRow, InstanceRow, RuntimePatch, RuntimeRow } from './rows.js';

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

export interface TransitionOptions {
  reason?: string;
  level?: EventLevel;
  meta?: Record<string, unknown>;
}

/**
 * Typed access to the state database. The runtime columns change only through the intent methods
 * (claim, spawn, probe, exit, adoption, ...), each one transaction; `runtime.status` only through
 * `move`, which validates against the lifecycle table (domain/lifecycle.ts) and emits the state
 * event. docs/ARCHITECTURE.md, "One writer of each runtime fact". Here: `move`, the intents that
 * go through it, and who owns an instance (claims, release); the intents that record a run's facts
 * without moving its status (spawn, exit, metrics, ...) are in records.ts.
 */
export class Store extends StoreRecords {
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
