import { ExitCode, UserError } from '../domain/errors.js';
import type { UpResult } from '../engine/supervisor.js';
import type { RuntimeRow } from '../store/store.js';

/** The JSON shapes of up, restart and down (README), shared by the CLI's --json and the REST API. */

/** One start's fields in `up --json` / `restart --json` (README), and in the REST API's answers. */
export function upJson(r: UpResult): Record<string, unknown> {
  return {
    ok: r.status !== 'failed',
    status: r.status,
    pid: r.pid,
    keeper_pid: r.keeperPid,
    adopted: r.adopted,
    config_changed: r.configChanged ?? false,
    error: r.error ?? null,
  };
}

/** What `--wait` adds once the instance is healthy. */
export function healthyJson(row: RuntimeRow): Record<string, unknown> {
  return {
    status: row.status,
    pid: row.pid,
    keeper_pid: row.keeper_pid,
    health: row.health,
    health_latency_ms: row.health_latency_ms === null ? null : Math.round(row.health_latency_ms * 10) / 10,
  };
}

/**
 * `up --wait` and the API's `start?wait=`: a start refused because the instance is already starting or
 * running is joined (the caller waits for it to be healthy) rather than failed. The row joined, or
 * null when the error is anything else (the caller rethrows it).
 */
export function joinable(e: unknown, row: RuntimeRow | undefined): RuntimeRow | null {
  if (!(e instanceof UserError) || e.exitCode !== ExitCode.alreadyRunning) return null;
  return row && row.keeper_pid !== null ? row : null;
}

/** The fields of a joined start (no new start was made). */
export const JOINED = { joined: true, adopted: false, config_changed: false, error: null } as const;
