import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  InvalidUtf8Error,
  NotRegularFileError,
  decodeUtf8,
  firstInvalidUtf8,
  openRegular,
  readFailure,
  readRegularFile,
  readRegularText,
} from '../../src/platform/regular-file.js';
import { loadConfigFile } from '../../src/config/load.js';
import { loadSettings, settingsProblems } from '../../src/config/settings.js';
import { homeAt } from '../../src/domain/home.js';
import { lastLines } from '../../src/logs/tail.js';
import { LogFollower } from '../../src/logs/follow.js';
import { RotatingFile, type LogTrouble } from '../../src/logs/rotating-file.js';
import { readGguf } from '../../src/models/gguf.js';

// Files that must be regular files are read without ever waiting: a FIFO, directory, socket or
// device is an error naming the file and what it is; text is strict UTF-8 with a BOM accepted.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'regular-file-'));
  dirs.push(d);
  return d;
}
function fifo(file: string): string {
  execFileSync('mkfifo', [file]);
  return file;
}

describe('openRegular / readRegularText', () => {
  it('reads a regular file and one behind a symlink', () => {
    const d = tmp();
    fs.writeFileSync(path.join(d, 'a.json'), '{"a":1}');
    fs.symlinkSync(path.join(d, 'a.json'), path.join(d, 'link.json'));
    expect(readRegularText(path.join(d, 'a.json'))).toBe('{"a":1}');
    expect(readRegularText(path.join(d, 'link.json'))).toBe('{"a":1}');
    expect(() => readRegularText(path.join(d, 'link.json'), { noFollow: true })).toThrow(/is a symbolic link/);
  });

  it('a FIFO is an error at once, never a wait (also behind a symlink)', () => {
    const d = tmp();
    const f = fifo(path.join(d, 'config.json'));
    fs.symlinkSync(f, path.join(d, 'via-link.json'));
    const t0 = Date.now();
    expect(() => readRegularText(f)).toThrow(NotRegularFileError);
    expect(() => readRegularText(f)).toThrow(`${f} is a FIFO (named pipe), not a regular file`);
    expect(() => openRegular(path.join(d, 'via-link.json'))).toThrow(/via-link\.json is a FIFO \(named pipe\)/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('names a directory, a socket and a character device', async () => {
    const d = tmp();
    expect(() => readRegularFile(d)).toThrow(`${d} is a directory, not a regular file`);
    const sock = path.join(d, 's.sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      expect(() => readRegularFile(sock)).toThrow(`${sock} is a socket, not a regular file`);
    } finally {
      server.close();
    }
    expect(() => readRegularFile('/dev/null')).toThrow('/dev/null is a character device, not a regular file');
  });

  it('a missing file keeps its errno (callers treat ENOENT as absent)', () => {
    const missing = path.join(tmp(), 'nope.json');
    expect(() => readRegularText(missing)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    let err: unknown;
    try {
      readRegularText(missing);
    } catch (e) {
      err = e;
    }
    expect(readFailure(err)).toBe('file not found');
  });
});

describe('strict UTF-8', () => {
  it('drops a leading BOM', () => {
    const d = tmp();
    fs.writeFileSync(
      path.join(d, 'bom.json'),
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"é":1}')]),
    );
    expect(readRegularText(path.join(d, 'bom.json'))).toBe('{"é":1}');
  });

  it('invalid bytes are an error with the byte offset, line and column', () => {
    const buf = Buffer.concat([Buffer.from('{\n  "aé": "x'), Buffer.from([0xff]), Buffer.from('"\n}')]);
    let err: unknown;
    try {
      decodeUtf8(buf, '/h/config.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidUtf8Error);
    const e = err as InvalidUtf8Error;
    expect(e.offset).toBe(13);
    expect(e.line).toBe(2);
    expect(e.column).toBe(11);
    expect(e.message).toBe(
      '/h/config.json: invalid UTF-8: byte 0xff at byte offset 13 (line 2, column 11); save the file as UTF-8',
    );
  });

  it('firstInvalidUtf8 agrees with TextDecoder on edge cases', () => {
    const cases: Array<[number[], number]> = [
      [[0x41, 0xc3, 0xa9], -1], // "Aé"
      [[0xf0, 0x9f, 0x98, 0x80], -1], // an emoji
      [[0xc0, 0x80], 0], // overlong NUL
      [[0x41, 0xe0, 0x80, 0x80], 1], // overlong 3-byte
      [[0xed, 0xa0, 0x80], 0], // a surrogate
      [[0xf4, 0x90, 0x80, 0x80], 0], // above U+10FFFF
      [[0x41, 0x42, 0xe2, 0x82], 2], // cut at the end
      [[0x80], 0], // a lone continuation byte
    ];
    for (const [bytes, at] of cases) {
      const buf = Uint8Array.from(bytes);
      expect(firstInvalidUtf8(buf), bytes.join(',')).toBe(at);
      let ok = true;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(buf);
      } catch {
        ok = false;
      }
      expect(ok, bytes.join(',')).toBe(at === -1);
    }
  });
});

describe('the readers use it', () => {
  it('loadConfigFile: a FIFO, a directory, invalid UTF-8 are problems naming what they are; a BOM is fine', () => {
    const d = tmp();
    const f = fifo(path.join(d, 'config.json'));
    const r = loadConfigFile(f, 'zz');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems).toEqual([
      { file: f, jsonPath: '$', message: 'config.json is a FIFO (named pipe), not a regular file' },
    ]);
    fs.rmSync(f);
    fs.mkdirSync(f);
    expect(!loadConfigFile(f, 'zz').ok && loadConfigFile(f, 'zz')).toMatchObject({
      problems: [{ message: 'config.json is a directory, not a regular file' }],
    });
    fs.rmdirSync(f);
    const body = JSON.stringify({ model: { path: 'm.gguf', alias: 'caf' }, server: { port: 8080 } });
    fs.writeFileSync(f, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]));
    expect(loadConfigFile(f, 'zz').ok).toBe(true);
    fs.writeFileSync(f, Buffer.from(body.replace('caf', 'caf\xe9'), 'latin1'));
    const bad = loadConfigFile(f, 'zz');
    expect(!bad.ok && bad.problems[0]?.message).toMatch(
      /^invalid UTF-8: byte 0xe9 at byte offset \d+ \(line 1, column \d+\)/,
    );
  });

  it('llama-orch.json: a FIFO is an error (loadSettings and lint), a BOM is accepted', () => {
    const d = tmp();
    const file = fifo(path.join(d, 'llama-orch.json'));
    expect(() => loadSettings(homeAt(d))).toThrow(`cannot read ${file}: it is a FIFO (named pipe), not a regular file`);
    expect(settingsProblems(homeAt(d))).toEqual([
      { file, jsonPath: '$', message: 'it is a FIFO (named pipe), not a regular file' },
    ]);
    fs.rmSync(file);
    fs.writeFileSync(file, '\uFEFF{"proxy":{"listen":"127.0.0.1:9999"}}');
    expect(loadSettings(homeAt(d)).proxy.listen).toBe('127.0.0.1:9999');
    expect(settingsProblems(homeAt(d))).toEqual([]);
  });

  it('logs: lastLines throws for a FIFO log; the follower skips one', () => {
    const d = tmp();
    const f = fifo(path.join(d, 'stderr.log'));
    expect(() => lastLines(d, 'stderr', 10)).toThrow(`${f} is a FIFO (named pipe), not a regular file`);
    const seen: string[] = [];
    const follower = new LogFollower(f, (l) => seen.push(...l));
    follower.start(true);
    follower.poll();
    follower.close();
    expect(seen).toEqual([]);
  });

  it('the log writer refuses a FIFO in its place at once (with or without a reader)', () => {
    const f = fifo(path.join(tmp(), 'stdout.log'));
    const troubles: LogTrouble[] = [];
    const t0 = Date.now();
    const w = new RotatingFile(f, 1024, 2, (t) => troubles.push(t));
    w.write(Buffer.from('a line\n'));
    w.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(troubles[0]?.error).toBe(
      `${f} is a FIFO (named pipe), not a regular file: refusing to write to it (remove it)`,
    );
    // With a reader the open succeeds; the check after it refuses the FIFO all the same.
    const reader = fs.openSync(f, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const seen: LogTrouble[] = [];
      const w2 = new RotatingFile(f, 1024, 2, (t) => seen.push(t));
      w2.write(Buffer.from('a line\n'));
      w2.close();
      expect(seen[0]?.error).toBe(
        `${f} is a FIFO (named pipe), not a regular file: refusing to write to it (remove it)`,
      );
    } finally {
      fs.closeSync(reader);
    }
  });

  it('models: a FIFO in a model path is an error, not a wait', async () => {
    const f = fifo(path.join(tmp(), 'm.gguf'));
    await expect(readGguf(f)).rejects.toThrow(`${f} is a FIFO (named pipe), not a regular file`);
  });
});
