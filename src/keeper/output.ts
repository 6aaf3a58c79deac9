import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { InstanceConfig } from '../config/schema.js';
import type { LogStream } from '../domain/status.js';
import { LineTail, RotatingFile, type LogTrouble } from '../logs/rotating-file.js';

/**
 * Where a keeper puts the server's output: logs/NAME/{stdout,stderr}.log, rotated by rename and
 * reopen, plus the last 20 stderr lines kept for the exit record.
 */
export class KeeperOutput {
  private stdout?: RotatingFile;
  private stderr?: RotatingFile;
  private readonly lastLines = new LineTail(40);
  private readonly troubles = new Map<string, string>();

  /** `onTrouble`: the files cannot be written (why, lines dropped so far), or can again (null). */
  constructor(
    private readonly logDir: string,
    private readonly onTrouble: (error: string | null, droppedLines: number) => void = () => undefined,
  ) {}

  /** (Re)opens the files with the run's limits; the directory's mode is set to 0700 each time. */
  open(config: InstanceConfig): void {
    try {
      fs.mkdirSync(this.logDir, { recursive: true, mode: 0o700 });
      fs.chmodSync(this.logDir, 0o700);
    } catch {
      // The files below fail to open too, and report why; the server runs on regardless.
    }
    this.close();
    const track = (t: LogTrouble) => {
      if (t.error) this.troubles.set(t.file, t.error);
      else this.troubles.delete(t.file);
      this.onTrouble(this.troubles.size ? [...this.troubles.values()].join('; ') : null, this.droppedLines());
    };
    const { max_bytes, backups } = config.logs;
    this.stdout = new RotatingFile(path.join(this.logDir, 'stdout.log'), max_bytes, backups, track);
    this.stderr = new RotatingFile(path.join(this.logDir, 'stderr.log'), max_bytes, backups, track);
  }

  /** Lines dropped because a log file could not be written. */
  droppedLines(): number {
    return (this.stdout?.droppedLines ?? 0) + (this.stderr?.droppedLines ?? 0);
  }

  /**
   * Starts a run's section (a separator line in both files, a fresh stderr tail) and copies the
   * readers into the files until they end.
   */
  follow(
    readers: Partial<Record<LogStream, Readable>>,
    separator: string,
    /** Sees each stderr chunk too (the run's load facts scanner). */
    onStderr?: (chunk: Buffer) => void,
  ): Promise<void> {
    const out = this.stdout as RotatingFile;
    const err = this.stderr as RotatingFile;
    this.lastLines.clear();
    out.writeLine(`==== llama-orch: ${separator} ====`);
    err.writeLine(`==== llama-orch: ${separator} ====`);
    const done = (s: Readable | undefined) =>
      new Promise<void>((resolve) => {
        if (!s) return resolve();
        s.once('close', () => resolve());
        s.once('end', () => resolve());
        // A read error ends this stream's logging, never the keeper.
        s.once('error', () => resolve());
      });
    readers.stdout?.on('data', (c: Buffer) => out.write(c));
    readers.stderr?.on('data', (c: Buffer) => {
      err.write(c);
      this.lastLines.push(c);
      onStderr?.(c);
    });
    return Promise.all([done(readers.stdout), done(readers.stderr)]).then(() => {
      out.flushPartial();
      err.flushPartial();
    });
  }

  tail(): string[] {
    return this.lastLines.get();
  }

  close(): void {
    this.stdout?.close();
    this.stderr?.close();
  }
}
