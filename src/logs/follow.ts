import fs from 'node:fs';
import path from 'node:path';
import { watch } from 'chokidar';
import { instanceLogDir, type Home } from '../domain/home.js';
import type { LogStream } from '../domain/status.js';
import { NotRegularFileError, openRegular } from '../platform/regular-file.js';
import { lastLines, logFile } from './tail.js';

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** A short synchronous pause (a rotation's renames take microseconds). */
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

export interface FollowOptions {
  /** Lines of history sent first (0: only what is written from now on). */
  initial: number;
  onLines: (lines: string[]) => void;
  /** The timer that backs the watcher up (its events can coalesce across a rotation). */
  pollMs?: number;
  /**
   * False while the reader cannot take more (a slow client of the REST API's log stream): the file
   * is not read then, so what is written meanwhile waits in the file, in order, for the next poll.
   */
  ready?: () => boolean;
}

/**
 * Follows one stream of an instance's log across rotation: the last `initial` lines, then every new
 * line, in order, through any number of rotations. The one follower behind `logs -f` and the
 * dashboard's log pane. Returns the function that stops it.
 */
export function followLog(logDir: string, stream: LogStream, opts: FollowOptions): () => void {
  let first: string[] = [];
  try {
    first = opts.initial > 0 ? lastLines(logDir, stream, opts.initial) : [];
  } catch (e) {
    // A log that is not a regular file (a FIFO...) is said, never waited on.
    if (!(e instanceof NotRegularFileError)) throw e;
    first = [`llama-orch: ${e.message}`];
  }
  if (first.length) opts.onLines(first);
  const follower = new LogFollower(logFile(logDir, stream), opts.onLines);
  follower.start(false);
  fs.mkdirSync(logDir, { recursive: true, mode: 0o700 });
  const watcher = watch(logDir, {
    depth: 0,
    ignoreInitial: true,
    ignored: (p) => p !== logDir && !path.basename(p).startsWith(stream),
  });
  const poll = () => {
    if (!opts.ready || opts.ready()) follower.poll();
  };
  watcher.on('all', poll);
  const timer = setInterval(poll, opts.pollMs ?? 500);
  return () => {
    clearInterval(timer);
    void watcher.close();
    follower.close();
  };
}

/** The dashboard's view of the log files (components receive it; they never touch files). */
export interface LogSource {
  /** Sends the last `initial` lines, then new ones as they are written (across rotation). Returns a stop function. */
  follow(name: string, stream: LogStream, initial: number, onLines: (lines: string[]) => void): () => void;
}

export function fileLogSource(home: Home, pollMs = 500): LogSource {
  return {
    follow: (name, stream, initial, onLines) =>
      followLog(instanceLogDir(home, name), stream, { initial, onLines, pollMs }),
  };
}

/**
 * Follows one log file across rename-and-reopen rotation: reads what was appended; when the path
 * names a new file (inode changed), finishes the old file first, then continues with the new one.
 */
export class LogFollower {
  private fd = -1;
  private ino = -1;
  private pos = 0;
  private partial = '';

  constructor(
    readonly file: string,
    private readonly onLines: (lines: string[]) => void,
  ) {}

  /** Starts at the current end of the file (pass true to start at its beginning). */
  start(fromBeginning = false): void {
    this.openCurrent(fromBeginning);
  }

  private openCurrent(fromBeginning: boolean): boolean {
    try {
      // Non-blocking and checked: a FIFO put in the log's place is skipped, never waited on.
      const fd = openRegular(this.file);
      const st = fs.fstatSync(fd);
      this.fd = fd;
      this.ino = st.ino;
      this.pos = fromBeginning ? 0 : st.size;
      return true;
    } catch {
      return false;
    }
  }

  private drain(): void {
    if (this.fd < 0) return;
    const buf = Buffer.alloc(256 * 1024);
    for (;;) {
      const n = fs.readSync(this.fd, buf, 0, buf.length, this.pos);
      if (n <= 0) break;
      this.pos += n;
      const text = this.partial + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      if (lines.length) this.onLines(lines);
    }
  }

  /** Reads whatever is new; call on a watcher event or a timer. */
  poll(): void {
    if (this.fd < 0) {
      if (this.openCurrent(true)) this.drain();
      return;
    }
    this.drain();
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(this.file);
    } catch {
      st = undefined;
    }
    if (st && st.ino !== this.ino) {
      // The writer may have added to the old file between our drain and its rotation (its writes
      // are synchronous, so nothing lands after the rename): read the rest before letting it go.
      this.drain();
      fs.closeSync(this.fd);
      this.fd = -1;
      const oldIno = this.ino;
      // Open the current file first, then read every backup written between the old file and it:
      // a rotation during this poll then only pushes the opened file into the backups (skipped by
      // inode), never past us unread.
      const opened = this.openCurrent(true);
      for (const fd of this.openNewerBackups(oldIno, opened ? this.ino : -1)) this.readWhole(fd);
      if (this.partial) {
        this.onLines([this.partial]);
        this.partial = '';
      }
      if (opened) this.drain();
    } else if (st && st.size < this.pos) {
      // Truncated in place by someone else: start over.
      this.pos = 0;
      this.drain();
    }
  }

  /**
   * The backups written after the file with inode oldIno, oldest first. A rotation may be renaming
   * files while we look (FILE.1 briefly missing): a gap below the old file's index means "look again".
   */
  /**
   * Opens the backups newerBackups() names, checking that each fd is the file it was listed as: a
   * rotation between listing and opening shifts every name by one (FILE.1 would then be a newer
   * file, read out of order). Once open, renames no longer matter.
   */
  private openNewerBackups(oldIno: number, openedIno: number): number[] {
    for (let attempt = 0; attempt < 50; attempt++) {
      const fds: number[] = [];
      let shifted = false;
      for (const b of this.newerBackups(oldIno, openedIno)) {
        let fd: number;
        try {
          fd = openRegular(b.file);
        } catch {
          shifted = true;
          break;
        }
        fds.push(fd);
        if (fs.fstatSync(fd).ino !== b.ino) {
          shifted = true;
          break;
        }
      }
      if (!shifted) return fds;
      for (const fd of fds) fs.closeSync(fd);
      sleepSync(1);
    }
    return [];
  }

  private newerBackups(oldIno: number, openedIno: number): Array<{ file: string; ino: number }> {
    const dir = path.dirname(this.file);
    const prefix = `${path.basename(this.file)}.`;
    for (let attempt = 0; attempt < 50; attempt++) {
      const byIndex = new Map<number, number>();
      let names: string[] = [];
      try {
        names = fs.readdirSync(dir);
      } catch {
        return [];
      }
      for (const n of names) {
        if (!n.startsWith(prefix) || !/^\d+$/.test(n.slice(prefix.length))) continue;
        try {
          byIndex.set(Number(n.slice(prefix.length)), fs.statSync(path.join(dir, n)).ino);
        } catch {
          // renamed between readdir and stat: the next attempt sees it
        }
      }
      const k = [...byIndex].find(([, ino]) => ino === oldIno)?.[0];
      const newer = k === undefined ? [] : Array.from({ length: k - 1 }, (_, i) => k - 1 - i);
      if (k !== undefined && newer.every((i) => byIndex.has(i))) {
        // Only what lies between the old file and the one just opened (it may itself have been
        // rotated into the backups already; anything newer than it is read after it, next poll).
        const j = [...byIndex].find(([, ino]) => ino === openedIno)?.[0] ?? 0;
        return newer.filter((i) => i > j).map((i) => ({ file: `${this.file}.${i}`, ino: byIndex.get(i) as number }));
      }
      sleepSync(2);
    }
    return []; // the old file was rotated out of existence: nothing reliable to add
  }

  /** Reads an opened backup to its end and closes it. */
  private readWhole(fd: number): void {
    let text: string;
    try {
      text = fs.readFileSync(fd, 'utf8');
    } catch {
      return;
    } finally {
      fs.closeSync(fd);
    }
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    if (lines.length) this.onLines(lines);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
