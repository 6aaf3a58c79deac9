import { ExitCode, UserError } from '../domain/errors.js';
import type { Processes, Verdict } from '../platform/processes.js';
import type { RuntimeRow } from '../store/store.js';

/**
 * Whether the keeper recorded for the row is that keeper: its pid, its start time, and "keeper NAME"
 * in its command line (our own process, which never execs).
 */
export function keeperIdentity(row: RuntimeRow, procs: Processes): Verdict {
  if (!row.keeper_pid || row.keeper_starttime === null) return 'no';
  return procs.identify({
    pid: row.keeper_pid,
    starttime: row.keeper_starttime,
    cmdlineIncludes: ['keeper', row.name],
  });
}

/**
 * Whether the server recorded for the row is that server: its pid, start time and the session the
 * keeper created for it. Nothing of its command line: `server.binary` may be a wrapper script that
 * execs llama-server (argv[0] changes) or runs it as a child; pid, start time and session survive both.
 */
export function serverIdentity(row: RuntimeRow, procs: Processes): Verdict {
  if (!row.pid || row.starttime === null) return 'no';
  return procs.identify({ pid: row.pid, starttime: row.starttime, session: row.pgid ?? row.pid });
}

/**
 * The keeper is not known to be gone: it is that keeper, or /proc could not be read (a reader out of
 * file descriptors or memory), which is never taken for its death.
 */
export function keeperAlive(row: RuntimeRow, procs: Processes): boolean {
  return keeperIdentity(row, procs) !== 'no';
}

/** The server is not known to be gone (as keeperAlive). Signalling it needs serverIdentity 'yes'. */
export function serverAlive(row: RuntimeRow, procs: Processes): boolean {
  return serverIdentity(row, procs) !== 'no';
}

/**
 * A process that holds the port belongs to the server: the server itself, or a process in the
 * session we created for it (llama-server as the child of a wrapper script that does not exec).
 */
export function holdsForServer(holderPid: number | undefined, row: RuntimeRow, procs: Processes): boolean {
  if (holderPid === undefined || !row.pid || serverIdentity(row, procs) !== 'yes') return false;
  if (holderPid === row.pid) return true;
  return procs.stat(holderPid)?.sid === (row.pgid ?? row.pid);
}

/** What recorded process of the row /proc could not be read for ('keeper pid P', 'server pid P'), if any. */
export function unknownProcess(row: RuntimeRow, procs: Processes): string | undefined {
  if (keeperIdentity(row, procs) === 'unknown') return `keeper pid ${row.keeper_pid}`;
  if (serverIdentity(row, procs) === 'unknown') return `server pid ${row.pid}`;
  return undefined;
}

/** The refusal when a recorded process cannot be told alive or gone: nothing is started or signalled on a guess. */
export function unknownProcessError(name: string, what: string, nothing: 'started' | 'signalled'): UserError {
  return new UserError(
    `${name}: cannot tell whether ${what} is still running: reading /proc failed (this process may be out of file descriptors or memory); nothing was ${nothing}`,
    ExitCode.general,
    'try again; "ulimit -n" shows the file-descriptor limit',
  );
}
