import fs from 'node:fs';
import { NotRegularFileError, fileKind } from '../platform/regular-file.js';

const NL = 0x0a;
/** A partial line longer than this is written out rather than held back. */
const MAX_PENDING = 64 * 1024;

/** The writer cannot write (error set, lines being dropped), or can again (error null). */
export interface LogTrouble {
  file: string;
  error: string | null;
  /** Lines dropped so far by this writer. */
  droppedLines: number;
}

const REOPEN_EVERY_MS = 1000;

function describeFsError(file: string, e: unknown): string {
  if (e instanceof NotRegularFileError) return `${e.message}: refusing to write to it (remove it)`;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENXIO') {
    // A FIFO without a reader (opened non-blocking) or a socket: never waited on.
    const st = fs.statSync(file, { throwIfNoEntry: false });
    const kind = st && !st.isFile() ? fileKind(st) : 'a FIFO or socket';
    return `${file} is ${kind}, not a regular file: refusing to write to it (remove it)`;
  }
  if (code === 'ELOOP') return `${file} is a symbolic link: refusing to follow it (remove it)`;
  if (code === 'EISDIR') return `${file} is a directory`;
  if (code === 'ENOSPC') return `${file}: no space left on the device`;
  if (code === 'EACCES' || code === 'EPERM') return `${file}: not permitted (${code}; immutable or read-only?)`;
  if (code === 'EROFS') return `${file}: read-only file system`;
  return `${file}: ${code ?? (e instanceof Error ? e.message : String(e))}`;
}

function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(NL); i !== -1; i = buf.indexOf(NL, i + 1)) n++;
  return n;
}

/**
 * Size-rotated log file by rename-and-reopen (never copy-truncate): file -> file.1 -> ... -> file.N.
 * Only whole lines are written, so a line never straddles two files and no file exceeds maxBytes
 * except by a single line longer than maxBytes. Writes are synchronous: the keeper reads the pipe as
 * fast as the disk takes it, and the server never waits on a slow consumer of ours.
 *
 * Faults of the disk never throw (docs/ARCHITECTURE.md, "Faults"): while the file cannot be written
 * (full disk, immutable file, a directory or a symbolic link in its place) lines are dropped and
 * counted, `onTrouble` is told once when it starts and once when writing works again, and the file
 * is reopened once a second. A rotation that cannot rename a backup is reported and skipped (the
 * file grows past maxBytes) rather than overwriting a backup. The file is opened without following
 * a symbolic link, and its mode is set to 0600 every time it is opened.
 */
export class RotatingFile {
  private fd = -1;
  private size = 0;
  private pending: Buffer | null = null;
  /** Why writes fail now, and why rotation failed last (kept until a rotation succeeds). */
  private writeError: string | null = null;
  private rotateError: string | null = null;
  private reported: string | null = null;
  private dropped = 0;
  private lastOpenAttempt = 0;
  private rotateBlockedUntil = 0;
  private lastCountReport = 0;

  constructor(
    readonly file: string,
    readonly maxBytes: number,
    readonly backups: number,
    private readonly onTrouble: (t: LogTrouble) => void = () => undefined,
  ) {
    this.open();
  }

  /** Lines dropped so far because the file could not be written. */
  get droppedLines(): number {
    return this.dropped;
  }

  private open(): boolean {
    this.lastOpenAttempt = Date.now();
    try {
      const fd = fs.openSync(
        this.file,
        // O_NONBLOCK: a FIFO in the log's place fails (ENXIO) or is refused below, never waited on.
        fs.constants.O_WRONLY |
          fs.constants.O_APPEND |
          fs.constants.O_CREAT |
          fs.constants.O_NOFOLLOW |
          (fs.constants.O_NONBLOCK ?? 0),
        0o600,
      );
      this.fd = fd;
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new NotRegularFileError(this.file, fileKind(st));
      fs.fchmodSync(fd, 0o600);
      this.size = fs.fstatSync(fd).size;
      return true;
    } catch (e) {
      if (this.fd >= 0) this.closeFd();
      this.fail(e);
      return false;
    }
  }

  private closeFd(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // nothing left to do with it
    }
    this.fd = -1;
  }

  private fail(e: unknown, kind: 'write' | 'rotate' = 'write'): void {
    const what = e instanceof Error && kind === 'rotate' ? e.message : describeFsError(this.file, e);
    if (kind === 'write') this.writeError = what;
    else this.rotateError = what;
    this.report();
  }

  /** Tells onTrouble when what is wrong changes (not on every failed write). */
  private report(): void {
    const now = [this.writeError, this.rotateError].filter((x) => x !== null).join('; ') || null;
    if (now === this.reported) return;
    this.reported = now;
    this.lastCountReport = Date.now();
    this.onTrouble({ file: this.file, error: now, droppedLines: this.dropped });
  }

  private drop(buf: Buffer): void {
    this.dropped += Math.max(1, countLines(buf));
    // While the trouble lasts, the count is passed on at most once a second (no new event).
    const now = Date.now();
    if (this.reported !== null && now - this.lastCountReport >= REOPEN_EVERY_MS) {
      this.lastCountReport = now;
      this.onTrouble({ file: this.file, error: this.reported, droppedLines: this.dropped });
    }
  }

  /** Rotates; false when it could not (the caller writes on into the current file). */
  private rotate(): boolean {
    if (Date.now() < this.rotateBlockedUntil) return false;
    this.closeFd();
    let ok = true;
    if (this.backups === 0) {
      try {
        fs.rmSync(this.file, { force: true });
      } catch (e) {
        this.fail(e);
        ok = false;
      }
      this.open();
      return ok && this.fd >= 0;
    }
    // Shift the backups up from the oldest; a rename that fails for any reason but a missing file
    // stops the rotation here: renaming on would overwrite the backup that could not be moved.
    for (let i = this.backups - 1; i >= 0; i--) {
      const from = i === 0 ? this.file : `${this.file}.${i}`;
      const to = `${this.file}.${i + 1}`;
      try {
        // Only regular files move: something else in either place (a directory, a link) stays
        // where it is, and so does everything newer than it.
        for (const p of [from, to]) {
          const st = fs.lstatSync(p, { throwIfNoEntry: false });
          if (st && !st.isFile())
            throw Object.assign(new Error(`${p} is not a regular file`), { code: 'EISDIR', path: p });
        }
        fs.renameSync(from, to);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        const where = (e as { path?: string }).path ?? to;
        this.fail(new Error(`rotation stopped: ${describeFsError(where, e)}; writing on past max_bytes`), 'rotate');
        ok = false;
        this.rotateBlockedUntil = Date.now() + REOPEN_EVERY_MS;
        break;
      }
    }
    if (ok && this.rotateError !== null) {
      this.rotateError = null;
      this.report();
    }
    this.open();
    return ok;
  }

  private writeRaw(buf: Buffer): void {
    if (this.fd < 0 && (Date.now() - this.lastOpenAttempt < REOPEN_EVERY_MS || !this.open())) {
      this.drop(buf);
      return;
    }
    let off = 0;
    try {
      while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off);
    } catch (e) {
      this.drop(buf.subarray(off));
      this.size += off;
      this.fail(e);
      // ENOSPC and the like may pass: keep the fd; a file that went bad is reopened later.
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') this.closeFd();
      return;
    }
    this.size += buf.length;
    if (this.writeError !== null) {
      this.writeError = null;
      this.report();
    }
  }
  /** Writes complete lines, rotating between lines when the next would not fit. */
  private writeLines(buf: Buffer): void {
    let start = 0;
    while (start < buf.length) {
      const remaining = buf.length - start;
      if (this.size + remaining <= this.maxBytes) {
        this.writeRaw(start === 0 ? buf : buf.subarray(start));
        return;
      }
      const room = this.maxBytes - this.size;
      const cut = room > 0 ? buf.lastIndexOf(NL, start + room - 1) : -1;
      if (cut >= start) {
        this.writeRaw(buf.subarray(start, cut + 1));
        start = cut + 1;
        if (!this.rotate()) return this.writeRaw(buf.subarray(start));
      } else if (this.size === 0) {
        // One line longer than maxBytes: it gets a file of its own.
        const nl = buf.indexOf(NL, start);
        const end = nl === -1 ? buf.length : nl + 1;
        this.writeRaw(buf.subarray(start, end));
        start = end;
        if (start < buf.length && !this.rotate()) return this.writeRaw(buf.subarray(start));
      } else if (!this.rotate()) {
        return this.writeRaw(buf.subarray(start));
      }
    }
  }

  write(chunk: Buffer): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    const lastNl = buf.lastIndexOf(NL);
    if (lastNl !== buf.length - 1) {
      const tail = buf.subarray(lastNl + 1);
      if (tail.length <= MAX_PENDING) {
        this.pending = Buffer.from(tail);
        buf = buf.subarray(0, lastNl + 1);
      }
    }
    if (buf.length > 0) this.writeLines(buf);
  }

  /** Writes a line of our own (separators), after whatever partial line the server left. */
  writeLine(text: string): void {
    this.flushPartial();
    this.writeLines(Buffer.from(text.endsWith('\n') ? text : text + '\n'));
  }

  flushPartial(): void {
    if (this.pending) {
      const p = this.pending;
      this.pending = null;
      this.writeLines(Buffer.concat([p, Buffer.from('\n')]));
    }
  }

  close(): void {
    this.flushPartial();
    if (this.fd >= 0) this.closeFd();
  }
}

/** Keeps the last N lines of a stream (the stderr tail recorded at each exit). */
export class LineTail {
  private lines: string[] = [];
  private partial = '';

  constructor(readonly max = 20) {}

  push(chunk: Buffer): void {
    // Only the end of a big chunk can matter.
    const text = this.partial + chunk.subarray(Math.max(0, chunk.length - 16384)).toString('utf8');
    const parts = text.split('\n');
    this.partial = (parts.pop() ?? '').slice(-2000);
    for (const p of parts) if (p.trim() !== '') this.lines.push(p.slice(0, 2000));
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }

  get(): string[] {
    return this.partial.trim() ? [...this.lines, this.partial].slice(-this.max) : [...this.lines];
  }

  clear(): void {
    this.lines = [];
    this.partial = '';
  }
}
