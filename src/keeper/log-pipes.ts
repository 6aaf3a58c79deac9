import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { LOG_STREAMS, type LogStream } from '../domain/status.js';
import type { Processes } from '../platform/processes.js';

// The server's stdout and stderr are named pipes (FIFOs), not anonymous pipes: when a keeper dies,
// llama-server keeps serving (its writes fail with EPIPE and are dropped), and the next keeper reopens
// the same FIFOs and logging resumes — no model reload (docs/ARCHITECTURE.md, "Adoption"). Only lines
// written while no keeper was reading are lost. Where they live: domain/home.ts (instancePipeDir).

export function fifoPath(dir: string, stream: LogStream): string {
  return path.join(dir, `${stream}.fifo`);
}

/** Our end of one FIFO: a non-blocking reader handled by libuv like any pipe. */
function openReader(file: string): net.Socket {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  return new net.Socket({ fd, readable: true, writable: false });
}

export interface ServerPipes {
  readers: Record<LogStream, net.Socket>;
  /** The server's ends (blocking writers), to pass as its stdout/stderr and close once it runs. */
  writeFds: Record<LogStream, number>;
}

/**
 * For a new server: fresh FIFOs in `dir` (anything left holding the previous ones, a process that
 * escaped its group, keeps writing to an unlinked pipe instead of into this server's logs), our
 * read ends, then the server's write ends.
 */
export function openServerPipes(dir: string, procs: Processes): ServerPipes {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const readers = {} as Record<LogStream, net.Socket>;
  const writeFds = {} as Record<LogStream, number>;
  for (const s of LOG_STREAMS) {
    const file = fifoPath(dir, s);
    procs.mkfifo(file);
    readers[s] = openReader(file);
    // Blocking for the server (O_NONBLOCK would be shared with it); it cannot block here since our
    // reader is already open.
    writeFds[s] = fs.openSync(file, fs.constants.O_WRONLY);
  }
  return { readers, writeFds };
}

/**
 * For a running server whose keeper died: opens our read ends of the FIFOs the server writes to.
 * A stream is left out when the server's fd is not that FIFO (started with anonymous pipes by an
 * older keeper, or the FIFO was replaced): its output cannot be recovered.
 */
export function attachServerPipes(dir: string, pid: number, procs: Processes): Partial<Record<LogStream, net.Socket>> {
  const readers: Partial<Record<LogStream, net.Socket>> = {};
  for (const [i, s] of LOG_STREAMS.entries()) {
    const file = fifoPath(dir, s);
    if (procs.fdTarget(pid, i + 1) !== file || !fs.lstatSync(file, { throwIfNoEntry: false })?.isFIFO()) continue;
    try {
      readers[s] = openReader(file);
    } catch {
      // unreadable: supervise without this stream's output rather than not at all
    }
  }
  return readers;
}
