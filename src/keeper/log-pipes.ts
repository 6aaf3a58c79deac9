import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

// The server's stdout and stderr are named pipes (FIFOs), not anonymous pipes: when a keeper dies,
// llama-server keeps serving (its writes fail with EPIPE and are dropped), and the next keeper reopens
// the same FIFOs and logging resumes — no model reload (DESIGN §4). Only lines written while no keeper
// was reading are lost. They live in state/pipes/NAME/ rather than next to the logs: `tail -f
// logs/NAME/*` or a script reading every file there would otherwise block on them or steal output.

export type Stream = 'stdout' | 'stderr';
export const STREAMS: readonly Stream[] = ['stdout', 'stderr'];

export function pipeDir(stateDir: string, name: string): string {
  return path.join(stateDir, 'pipes', name);
}

export function fifoPath(dir: string, stream: Stream): string {
  return path.join(dir, `${stream}.fifo`);
}

/**
 * A fresh FIFO for each new server: anything left holding the previous one (a process that escaped
 * its group) keeps writing to an unlinked pipe instead of into this server's logs.
 */
function freshFifo(file: string): void {
  fs.rmSync(file, { force: true });
  // Node has no mkfifo(3); coreutils' mkfifo is on every Linux this runs on.
  execFileSync('mkfifo', ['-m', '600', file], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Our end of one FIFO: a non-blocking reader handled by libuv like any pipe. */
function openReader(file: string): net.Socket {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  return new net.Socket({ fd, readable: true, writable: false });
}

export interface ServerPipes {
  readers: Record<Stream, net.Socket>;
  /** The server's ends (blocking writers), to pass as its stdout/stderr and close once it runs. */
  writeFds: Record<Stream, number>;
}

/** For a new server: (re)creates the FIFOs in `dir`, opens our read ends, then the server's write ends. */
export function openServerPipes(dir: string): ServerPipes {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const readers = {} as Record<Stream, net.Socket>;
  const writeFds = {} as Record<Stream, number>;
  for (const s of STREAMS) {
    const file = fifoPath(dir, s);
    freshFifo(file);
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
export function attachServerPipes(dir: string, pid: number): Partial<Record<Stream, net.Socket>> {
  const readers: Partial<Record<Stream, net.Socket>> = {};
  for (const [i, s] of STREAMS.entries()) {
    const file = fifoPath(dir, s);
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${i + 1}`);
    } catch {
      continue;
    }
    if (target !== file || !fs.lstatSync(file, { throwIfNoEntry: false })?.isFIFO()) continue;
    try {
      readers[s] = openReader(file);
    } catch {
      // unreadable: supervise without this stream's output rather than not at all
    }
  }
  return readers;
}
