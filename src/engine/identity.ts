import type { Processes } from '../platform/processes.js';
import type { RuntimeRow } from '../store/store.js';

/** The keeper recorded for the row is alive and is really our keeper (not a reused pid). */
export function keeperAlive(row: RuntimeRow, procs: Processes): boolean {
  if (!row.keeper_pid || row.keeper_starttime === null) return false;
  return procs.matches({
    pid: row.keeper_pid,
    starttime: row.keeper_starttime,
    cmdlineIncludes: ['keeper', row.name],
  });
}

/** The server recorded for the row is alive and is really that server. */
export function serverAlive(row: RuntimeRow, procs: Processes): boolean {
  if (!row.pid || row.starttime === null) return false;
  const parts: string[] = [];
  if (row.port !== null) parts.push(String(row.port));
  try {
    const argv = row.cmdline ? (JSON.parse(row.cmdline) as string[]) : [];
    if (argv[0]) parts.push(argv[0]);
  } catch {
    // old or hand-edited row: the start time alone still rules out pid reuse
  }
  return procs.matches({ pid: row.pid, starttime: row.starttime, cmdlineIncludes: parts });
}
