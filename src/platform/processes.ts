import fs from 'node:fs';
import { childProcess } from './builtins.js';
import { findPortHolder, type PortHolder } from './ports.js';
import {
  descendants,
  groupMembers,
  isLive,
  identify,
  readCmdline,
  readStat,
  signalGroup,
  signalPid,
  type Identity,
  type ProcStat,
  type Verdict,
} from './proc.js';

export type { Identity, PortHolder, ProcStat, Verdict };

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  /** The child's stdout and stderr: an open fd, or 'ignore' (/dev/null). stdin is always /dev/null. */
  stdout: number | 'ignore';
  stderr: number | 'ignore';
}

/** A started process: its pid and, as our child, its end. node's ChildProcess is one. */
export interface Spawned {
  readonly pid?: number | undefined;
  once(event: 'exit', fn: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  once(event: 'error', fn: (e: Error) => void): unknown;
  /** Lets this process exit without waiting for the child (detached keepers and daemons). */
  unref(): void;
}

/**
 * Every process side effect of llama-orch, in one seam (docs/ARCHITECTURE.md, "Side effects"):
 * starting processes, signalling them, reading their identity from /proc, FIFOs, port holders.
 * `up`, `down`, adoption, the keeper and the daemon receive it through their Deps; in-process tests
 * pass a scripted one (tests/helpers/scripted-processes.ts). Linux here; another platform provides
 * the same interface.
 */
export interface Processes {
  /** Starts `file` in its own session and process group. */
  spawnDetached(file: string, args: string[], opts: SpawnOptions): Spawned;
  signal(pid: number, signal: NodeJS.Signals): boolean;
  signalGroup(pgid: number, signal: NodeJS.Signals): boolean;
  stat(pid: number): ProcStat | undefined;
  cmdline(pid: number): string[] | undefined;
  /** Whether the pid is still the process recorded (proc.ts identify): 'unknown' when /proc cannot be read. */
  identify(id: Identity): Verdict;
  isLive(pid: number): boolean;
  groupMembers(pgid: number): number[];
  descendants(pid: number): number[];
  /** What the process's fd points to (a FIFO's path, "socket:[N]"), if readable. */
  fdTarget(pid: number, fd: number): string | undefined;
  portHolder(port: number): PortHolder | undefined;
  /** Creates a FIFO (mode 0600), replacing whatever was at `file`. */
  mkfifo(file: string): void;
}

export const realProcesses: Processes = {
  spawnDetached(file, args, opts) {
    return childProcess().spawn(file, args, {
      env: opts.env,
      detached: true,
      stdio: ['ignore', opts.stdout, opts.stderr],
    });
  },
  signal: signalPid,
  signalGroup,
  stat: readStat,
  cmdline: readCmdline,
  identify,
  isLive,
  groupMembers,
  descendants,
  fdTarget(pid, fd) {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return undefined;
    }
  },
  portHolder: findPortHolder,
  mkfifo(file) {
    fs.rmSync(file, { force: true });
    // Node has no mkfifo(3); coreutils' mkfifo is on every Linux this runs on.
    childProcess().execFileSync('mkfifo', ['-m', '600', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  },
};
