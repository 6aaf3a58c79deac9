// Reading logs: the rotated files of a stream and their last lines (the writer: rotating-file.ts;
// following: follow.ts).
import fs from 'node:fs';
import path from 'node:path';

import type { LogStream } from '../domain/status.js';
import { NotRegularFileError, openRegular } from '../platform/regular-file.js';

export type { LogStream };

export function logFile(logDir: string, stream: LogStream): string {
  return path.join(logDir, `${stream}.log`);
}

/** The rotated files of a stream, oldest first: stderr.log.3, .2, .1, stderr.log. */
export function rotatedFiles(logDir: string, stream: LogStream): string[] {
  const base = logFile(logDir, stream);
  let names: string[] = [];
  try {
    names = fs.readdirSync(logDir);
  } catch {
    return [];
  }
  const prefix = `${stream}.log.`;
  const backups = names
    .filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)))
    .map((n) => Number(n.slice(prefix.length)))
    .sort((a, b) => b - a)
    .map((i) => `${base}.${i}`);
  return fs.existsSync(base) ? [...backups, base] : backups;
}

/** Reads up to maxBytes from the end of a file ('' when it is gone; a FIFO or directory throws). */
function readEnd(file: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openRegular(file);
  } catch (e) {
    if (e instanceof NotRegularFileError) throw e;
    return '';
  }
  try {
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The last n lines of a stream across its rotated files (newest file first until n are found).
 * Throws NotRegularFileError for a log that is a FIFO, directory... (never waits on one).
 */
export function lastLines(logDir: string, stream: LogStream, n: number): string[] {
  const files = rotatedFiles(logDir, stream).reverse();
  // Newest file first; each file's lines are kept as one piece and joined once at the end (a spread
  // of 200,000 lines into unshift() overflowed the call stack: `logs -n 200000`).
  const pieces: string[][] = [];
  let count = 0;
  for (const f of files) {
    if (count >= n) break;
    let budget = 64 * 1024;
    let lines: string[] = [];
    for (;;) {
      const text = readEnd(f, budget);
      lines = text.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      const whole = text.length < budget;
      if (!whole) lines.shift(); // first line may be cut
      if (whole || lines.length >= n - count) break;
      budget *= 4;
    }
    const piece = lines.slice(Math.max(0, lines.length - (n - count)));
    pieces.unshift(piece);
    count += piece.length;
  }
  return pieces.flat();
}
