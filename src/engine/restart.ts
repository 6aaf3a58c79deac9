import { loadInstance } from '../config/load.js';
import { reconcileRow } from './reconcile.js';
import { withInstanceLock } from './instance-lock.js';
import { checkPorts, preflight } from './preflight.js';
import { down } from './down.js';
import { up } from './up.js';
import type { SupervisorDeps, UpResult } from './supervisor.js';

/**
 * `restart NAME`: the new config and what it needs (binary, model, key, port) are checked before the
 * running server is stopped, so a broken edit fails the restart instead of causing an outage.
 */
export function restart(deps: SupervisorDeps, name: string): Promise<UpResult> {
  // One lock for both halves: a parallel restart waits for this one, then restarts in turn.
  return withInstanceLock(deps, name, () => restartLocked(deps, name));
}

async function restartLocked(outer: SupervisorDeps, name: string): Promise<UpResult> {
  // up() runs preflight again (the file may change while the old server stops); what it would warn
  // about again was said already: once per command.
  const said = new Set<string>();
  const deps: SupervisorDeps = {
    ...outer,
    warn: (message) => {
      if (said.has(message)) return;
      said.add(message);
      outer.warn?.(message);
    },
  };
  const inst = loadInstance(deps.home, name);
  await preflight(deps, inst);
  const seen = reconcileRow(deps.store, deps.procs, name);
  checkPorts(deps, inst, seen?.server ? seen.row : undefined);
  await down(deps, name);
  // The memory it held is freed by the stop; refusing now would leave it stopped, so the fit only warns.
  return up(deps, name, { memoryFit: 'force' });
}
