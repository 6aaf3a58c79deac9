import path from 'node:path';
import { ExitCode, UserError } from '../domain/errors.js';
import { instanceLogDir, orchCommand } from '../domain/home.js';
import type { RuntimeRow } from '../store/store.js';
import { keeperAlive } from './identity.js';
import type { SupervisorDeps } from './supervisor.js';

/** Waits for health ok; fails early when the instance fails or its keeper dies. */
export async function waitHealthy(
  deps: SupervisorDeps,
  name: string,
  timeoutMs: number,
  /** Told the row at every change while waiting (`up --wait` shows progress). */
  onProgress?: (row: RuntimeRow) => void,
): Promise<RuntimeRow> {
  const { store, procs } = deps;
  const settled = () => {
    const row = store.getRuntime(name) as RuntimeRow;
    onProgress?.(row);
    // Health stays ok while a server is being stopped: only a running one counts.
    if ((row.status === 'running' && row.health === 'ok') || row.status === 'failed' || row.status === 'stopped')
      return row;
    return keeperAlive(row, procs) ? undefined : row;
  };
  const row = (await deps.feed.until(settled, timeoutMs, { recheckMs: 500 })) ?? store.getRuntime(name);
  if (!row) throw new UserError(`${name} is not recorded in the state database`);
  if (row.status === 'running' && row.health === 'ok') return row;
  if (row.status === 'failed' || row.status === 'stopped') {
    throw new UserError(`${name} did not become healthy: ${row.status}${row.last_error ? ` (${row.last_error})` : ''}`);
  }
  if (!keeperAlive(row, procs)) {
    throw new UserError(
      `${name} did not become healthy: its keeper (pid ${row.keeper_pid ?? '-'}) exited`,
      ExitCode.general,
      `see ${path.join(instanceLogDir(deps.home, name), 'keeper.log')}`,
    );
  }
  throw new UserError(
    `${name} not healthy after ${Math.round(timeoutMs / 1000)} s (status ${row.status}, health ${row.health ?? '-'}${row.health_detail ? `: ${row.health_detail}` : ''})`,
    ExitCode.general,
    `see "${orchCommand(deps.home, `describe ${name}`, deps.env)}" and "${orchCommand(deps.home, `logs ${name}`, deps.env)}"`,
  );
}
