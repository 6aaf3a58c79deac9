import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LineTail, RotatingFile } from '../../src/logs/rotating-file.js';
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
