import fs from 'node:fs';

const NL = 0x0a;
/** A partial line longer than this is written out rather than held back. */
const MAX_PENDING = 64 * 1024;

/**
 * Size-rotated log file by rename-and-reopen (never copy-truncate): file -> file.1 -> ... -> file.N.
 * Only whole lines are written, so a line never straddles two files and no file exceeds maxBytes
 * except by a single line longer than maxBytes. Writes are synchronous: the keeper reads the pipe as
 * fast as the disk takes it, and the server never waits on a slow consumer of ours.
 */
export class RotatingFile {
  private fd = -1;
  private size = 0;
  private pending: Buffer | null = null;

  constructor(
    readonly file: string,
    readonly maxBytes: number,
    readonly backups: number,
  ) {
    this.open();
  }

  private open(): void {
    this.fd = fs.openSync(this.file, 'a', 0o600);
    this.size = fs.fstatSync(this.fd).size;
  }

  private rotate(): void {
    fs.closeSync(this.fd);
    if (this.backups === 0) {
      fs.rmSync(this.file, { force: true });
    } else {
      for (let i = this.backups - 1; i >= 1; i--) {
        try {
          fs.renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
        } catch {
          // that backup does not exist yet
        }
      }
      fs.renameSync(this.file, `${this.file}.1`);
    }
    this.open();
  }

  private writeRaw(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off);
    this.size += buf.length;
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
        this.rotate();
      } else if (this.size === 0) {
        // One line longer than maxBytes: it gets a file of its own.
        const nl = buf.indexOf(NL, start);
        const end = nl === -1 ? buf.length : nl + 1;
        this.writeRaw(buf.subarray(start, end));
        start = end;
        if (start < buf.length) this.rotate();
      } else {
        this.rotate();
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
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
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
