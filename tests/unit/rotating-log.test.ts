import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LineTail, RotatingFile, type LogTrouble } from '../../src/logs/rotating-file.js';
import { execFileSync } from 'node:child_process';
import { LogFollower } from '../../src/logs/follow.js';
import { lastLines, rotatedFiles } from '../../src/logs/tail.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'rot-'));

function readAll(dir: string): string[] {
  return rotatedFiles(dir, 'stdout')
    .map((f) => fs.readFileSync(f, 'utf8'))
    .join('')
    .split('\n')
    .filter(Boolean);
}

describe('RotatingFile', () => {
  it('rotates by rename at max_bytes, keeps whole lines in order, none lost', () => {
    const dir = tmp();
    const f = new RotatingFile(path.join(dir, 'stdout.log'), 4096, 50);
    const lines = Array.from({ length: 3000 }, (_, i) => `line ${i} ${'y'.repeat(i % 37)}`);
    // Feed in chunks that split lines at arbitrary points.
    const blob = Buffer.from(lines.join('\n') + '\n');
    for (let off = 0; off < blob.length; off += 777) f.write(blob.subarray(off, off + 777));
    f.close();
    expect(readAll(dir)).toEqual(lines);
    for (const file of rotatedFiles(dir, 'stdout')) {
      expect(fs.statSync(file).size).toBeLessThanOrEqual(4096);
      expect(fs.readFileSync(file, 'utf8').endsWith('\n')).toBe(true);
    }
  });

  it('keeps only `backups` old files', () => {
    const dir = tmp();
    const f = new RotatingFile(path.join(dir, 'stdout.log'), 1024, 2);
    for (let i = 0; i < 200; i++) f.write(Buffer.from(`${'z'.repeat(60)} ${i}\n`));
    f.close();
    expect(fs.readdirSync(dir).sort()).toEqual(['stdout.log', 'stdout.log.1', 'stdout.log.2']);
    expect(readAll(dir).pop()).toContain(' 199');
  });

  it('gives a line longer than max_bytes a file of its own', () => {
    const dir = tmp();
    const f = new RotatingFile(path.join(dir, 'stdout.log'), 1024, 5);
    f.write(Buffer.from('short\n' + 'L'.repeat(3000) + '\nafter\n'));
    f.close();
    expect(readAll(dir)).toEqual(['short', 'L'.repeat(3000), 'after']);
  });
});

describe('log reading', () => {
  it('reads the last lines across rotated files', () => {
    const dir = tmp();
    const f = new RotatingFile(path.join(dir, 'stdout.log'), 1024, 10);
    for (let i = 0; i < 300; i++) f.write(Buffer.from(`n${i}\n`));
    f.close();
    expect(rotatedFiles(dir, 'stdout').length).toBeGreaterThan(1);
    expect(lastLines(dir, 'stdout', 5)).toEqual(['n295', 'n296', 'n297', 'n298', 'n299']);
    expect(lastLines(dir, 'stdout', 1000)).toHaveLength(300);
  });

  it('reads 300,000 lines in one call (a spread of them overflowed the call stack)', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'stdout.log'), Array.from({ length: 300_000 }, (_, i) => `l${i}\n`).join(''));
    const lines = lastLines(dir, 'stdout', 250_000);
    expect(lines).toHaveLength(250_000);
    expect(lines[0]).toBe('l50000');
    expect(lines.at(-1)).toBe('l299999');
  });

  it('follows a file across rotation without losing or repeating lines', () => {
    const dir = tmp();
    const file = path.join(dir, 'stdout.log');
    const f = new RotatingFile(file, 2048, 10);
    f.write(Buffer.from('before\n'));
    const seen: string[] = [];
    const follower = new LogFollower(file, (l) => seen.push(...l));
    follower.start(false);
    for (let i = 0; i < 400; i++) {
      f.write(Buffer.from(`f${i} ${'q'.repeat(20)}\n`));
      if (i % 7 === 0) follower.poll();
    }
    follower.poll();
    follower.poll();
    f.close();
    follower.close();
    expect(seen).toEqual(Array.from({ length: 400 }, (_, i) => `f${i} ${'q'.repeat(20)}`));
  });

  it('follows across several rotations between two polls', () => {
    const dir = tmp();
    const file = path.join(dir, 'stdout.log');
    const f = new RotatingFile(file, 1024, 50);
    const seen: string[] = [];
    const follower = new LogFollower(file, (l) => seen.push(...l));
    follower.start(false);
    const expected: string[] = [];
    for (let round = 0; round < 5; round++) {
      // ~6 KB per round: five or six rotations before the follower looks again.
      for (let i = 0; i < 200; i++) {
        const line = `r${round} l${i} ${'w'.repeat(20)}`;
        expected.push(line);
        f.write(Buffer.from(line + '\n'));
      }
      follower.poll();
    }
    f.close();
    follower.close();
    expect(seen).toEqual(expected);
  });

  it('keeps the stderr tail bounded', () => {
    const t = new LineTail(3);
    t.push(Buffer.from('a\nb\nc\nd\npartial'));
    expect(t.get()).toEqual(['c', 'd', 'partial']);
  });
});

describe('rotating file under a hostile file system (never throws; drops, counts and reports)', () => {
  const troubled = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rot-fault-'));
    const reports: Array<string | null> = [];
    return { dir, file: path.join(dir, 'stderr.log'), reports, on: (t: LogTrouble) => reports.push(t.error) };
  };

  it('refuses a symbolic link in its place, writes nothing through it, and recovers once it is removed', async () => {
    const t = troubled();
    const target = path.join(t.dir, 'outside');
    fs.symlinkSync(target, t.file);
    const w = new RotatingFile(t.file, 1024 * 1024, 3, t.on);
    w.write(Buffer.from('a\nb\n'));
    expect(fs.existsSync(target)).toBe(false);
    expect(w.droppedLines).toBe(2);
    expect(t.reports).toEqual([`${t.file} is a symbolic link: refusing to follow it (remove it)`]);
    fs.rmSync(t.file);
    await new Promise((r) => setTimeout(r, 1100)); // reopened at most once a second
    w.write(Buffer.from('c\n'));
    w.close();
    expect(fs.readFileSync(t.file, 'utf8')).toBe('c\n');
    expect(t.reports.at(-1)).toBeNull();
    expect(fs.statSync(t.file).mode & 0o777).toBe(0o600);
  });

  it('a directory where a backup goes stops the rotation (no backup is overwritten), reported once', () => {
    const t = troubled();
    const w = new RotatingFile(t.file, 100, 3, t.on);
    const line = (i: number) => Buffer.from(`${String(i).padStart(3, '0')} ${'x'.repeat(45)}\n`);
    for (let i = 0; i < 6; i++) w.write(line(i)); // two rotations: .1 and .2 exist
    fs.rmSync(`${t.file}.2`);
    fs.mkdirSync(`${t.file}.2`);
    for (let i = 6; i < 40; i++) w.write(line(i));
    w.close();
    expect(fs.statSync(`${t.file}.2`).isDirectory()).toBe(true);
    const all = [`${t.file}.1`, t.file].map((f) => fs.readFileSync(f, 'utf8')).join('');
    // Nothing lost: every line from the first rotation on is in .1 or the (oversized) current file.
    for (let i = 2; i < 40; i++) expect(all).toContain(`${String(i).padStart(3, '0')} `);
    expect(t.reports).toEqual([`rotation stopped: ${t.file}.2 is a directory; writing on past max_bytes`]);
    expect(w.droppedLines).toBe(0);
  });

  it("a directory in the file's own place is never renamed; lines are dropped and counted", () => {
    const t = troubled();
    fs.mkdirSync(t.file);
    const w = new RotatingFile(t.file, 100, 3, t.on);
    for (let i = 0; i < 10; i++) w.write(Buffer.from(`line ${i} ${'y'.repeat(40)}\n`));
    w.close();
    expect(fs.statSync(t.file).isDirectory()).toBe(true);
    expect(fs.existsSync(`${t.file}.1`)).toBe(false);
    expect(w.droppedLines).toBe(10);
    expect(t.reports[0]).toBe(`${t.file} is a directory`);
  });

  it.runIf(canMountTmpfs())(
    'a full disk (a real 64 KB tmpfs): lines dropped and counted, writing resumes when space is freed',
    () => {
      const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'rot-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
      try {
        const reports: Array<string | null> = [];
        const file = path.join(mnt, 'stderr.log');
        const w = new RotatingFile(file, 1024 * 1024, 0, (t) => reports.push(t.error));
        const line = Buffer.from(`${'z'.repeat(99)}\n`);
        for (let i = 0; i < 2000; i++) w.write(line);
        expect(w.droppedLines).toBeGreaterThan(1000);
        expect(reports).toEqual([`${file}: no space left on the device`]);
        fs.truncateSync(file, 0);
        w.write(Buffer.from('after\n'));
        w.close();
        expect(reports.at(-1)).toBeNull();
        expect(fs.readFileSync(file, 'utf8')).toContain('after\n');
      } finally {
        execFileSync('umount', [mnt]);
      }
    },
  );
});

/** Root on Linux can mount a tmpfs (the dev machine and CI run as root); elsewhere that test is skipped. */
function canMountTmpfs(): boolean {
  return process.platform === 'linux' && process.getuid?.() === 0;
}
