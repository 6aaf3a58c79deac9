/** Exit codes are a public contract (README, "Exit codes"). */
export const ExitCode = {
  ok: 0,
  general: 1,
  notFound: 2,
  alreadyRunning: 3,
  portCollision: 4,
  executableNotFound: 5,
  /** The state database is locked by another process, on a full or read-only disk, or damaged. */
  stateUnavailable: 6,
  /** The command needs a running, healthy instance (bench) and this one is not. */
  notRunning: 7,
  /** The instances to start need more GPU (or host) memory than there is (memory-fit preflight; --force overrides). */
  doesNotFit: 8,
  /** `models pull` failed: the server refused or cut the download, the hash did not match, or the disk is full. */
  download: 9,
  daemon: 10,
  /**
   * stdout or stderr is a pipe its reader closed (`| head -1`): the process ends quietly at the
   * failed write with 128 + SIGPIPE, the status of a Unix tool killed by SIGPIPE (src/cli/output.ts).
   */
  closedPipe: 141,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * An error the operator can act on: what went wrong (naming the file or instance), an optional hint
 * saying what to do, and the exit code. Anything that is not a UserError is a bug and gets a stack.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.general,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function isErrnoException(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string';
}

export function errnoCode(e: unknown): string | undefined {
  return isErrnoException(e) ? e.code : undefined;
}
