import fs from 'node:fs';
import { ExitCode } from '../domain/errors.js';

/** Where commands print; injected so tests can capture it. */
export interface Out {
  log: (s: string) => void;
  error: (s: string) => void;
}

export const stdOut: Out = {
  log: (s) => process.stdout.write(s + '\n'),
  error: (s) => process.stderr.write(s + '\n'),
};

/**
 * Prints straight to fds 1 and 2, synchronously, for the fast path (`ps`, `--once`): it prints one
 * answer and exits, and merely touching process.stdout loads Node's stream modules, ~4 ms of a
 * command that costs ~35 ms beyond Node's own start (bench/BENCHMARKS.md). A closed pipe ends the
 * process as exitQuietlyOnClosedPipe does (exit 141); a non-blocking pipe that is full is waited on.
 */
export const fdOut: Out = {
  log: (s) => writeAll(1, s + '\n'),
  error: (s) => writeAll(2, s + '\n'),
};

let pause: Int32Array | undefined;

function writeAll(fd: number, text: string): void {
  let buf = Buffer.from(text);
  while (buf.length > 0) {
    try {
      buf = buf.subarray(fs.writeSync(fd, buf));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') process.exit(ExitCode.closedPipe);
      if (code !== 'EAGAIN') throw e;
      // A pipe another program made non-blocking, full: its reader empties it; look again in 1 ms.
      pause ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

const INSTALLED = Symbol.for('llama-orch.exitOnClosedPipe');

/**
 * A reader that closes the pipe (`llama-orch logs NAME | head -1`) ends the process at the next
 * write, quietly, with exit 141 (128 + SIGPIPE, what the shell shows for a Unix tool killed by
 * SIGPIPE; README, "Exit codes"), on stdout or stderr, in one-shot and following commands alike.
 * Node ignores SIGPIPE, so without this the failed write is an unhandled 'error' event: a stack
 * trace ending in "Error: write EPIPE". Every write of the CLI goes through these two streams, so
 * both entry points (entry.ts, fast-entry.ts) call this once before anything is printed; a second
 * call (the fast path declining to the full CLI, two bundles in one process) does nothing.
 */
export function exitQuietlyOnClosedPipe(): void {
  const proc = process as unknown as Record<symbol, boolean | undefined>;
  if (proc[INSTALLED]) return;
  proc[INSTALLED] = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(ExitCode.closedPipe);
      // Any other failure of the terminal or file we print to stays what it was without a listener.
      throw e;
    });
  }
}

/**
 * Resolves once everything written to stdout and stderr so far has left the process. A pipe whose
 * reader is slower than the CLI (`| less`, `| ssh`) takes 64 KiB at once; the rest waits in the
 * stream, and process.exit() before it is written would cut the output there. (A reader that
 * closes the pipe instead ends the process with exit 141 through the handler above.)
 */
export function flushed(): Promise<void> {
  const drained = (stream: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => {
      if (stream.destroyed || !stream.writable) return resolve();
      // Writes are written in order: the callback of an empty one runs after all earlier ones.
      stream.write('', () => resolve());
    });
  return Promise.all([drained(process.stdout), drained(process.stderr)]).then(() => undefined);
}
