// A home on a read-only file system (#26 item 9): a real tmpfs mounted read-only. Every command says
// "read-only file system" with the path and what to do, with its documented exit code, never an
// internal error with a stack. Mounting needs root (CAP_SYS_ADMIN); without it the test says so and
// is skipped.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/home.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ro-home-'));
function mount(...args: string[]): boolean {
  try {
    execFileSync('mount', args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const mounted = mount('-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir);
afterAll(() => {
  if (mounted)
    try {
      execFileSync('umount', [dir]);
    } catch {
      // left mounted: the rmSync below then only empties it
    }

  fs.rmSync(dir, { recursive: true, force: true });
});

const noStack = (s: string) => {
  expect(s).not.toMatch(/internal error|\n\s+at /);
};

describe.skipIf(!mounted)('a read-only home (tmpfs mounted ro; skipped where mount is not permitted)', () => {
  it('a fresh home: state commands exit 6 and say read-only; config schema exits 1 naming the file', async () => {
    fs.mkdirSync(path.join(dir, 'fresh', 'instances'), { recursive: true });
    expect(mount('-o', 'remount,ro', dir)).toBe(true);
    const home = path.join(dir, 'fresh');
    const ps = await cli(home, ['ps']);
    expect(ps.code).toBe(6);
    expect(ps.stderr).toContain(`cannot create the state directory ${home}/state: read-only file system (EROFS)`);
    expect(ps.stderr).toContain('pass --home');
    noStack(ps.stderr);
    const schema = await cli(home, ['config', 'schema']);
    expect(schema.code).toBe(1);
    expect(schema.stderr).toContain(`${home}/instances/config.schema.json: read-only file system (EROFS)`);
    noStack(schema.stderr);
    const pull = await cli(home, ['models', 'pull', 'https://127.0.0.1:9/x.gguf', '--to', path.join(home, 'models')]);
    noStack(pull.stderr);
    expect(mount('-o', 'remount,rw', dir)).toBe(true);
  });

  it('a home whose state/ exists: exit 6 says the directory is read-only, not only SQLITE_CANTOPEN', async () => {
    const home = path.join(dir, 'used');
    fs.mkdirSync(path.join(home, 'instances'), { recursive: true });
    expect((await cli(home, ['ps'])).code).toBe(0);
    const check = async (what: string) => {
      for (const args of [['ps'], ['events'], ['--once']]) {
        const r = await cli(home, args);
        expect(r.code, `${args.join(' ')} (${what})`).toBe(6);
        expect(r.stderr).toContain('read-only file system (EROFS)');
        noStack(r.stderr);
      }
    };
    expect(mount('-o', 'remount,ro', dir)).toBe(true);
    await check('the database is there');
    expect(mount('-o', 'remount,rw', dir)).toBe(true);
    fs.rmSync(path.join(home, 'state', 'llama-orch.db'), { force: true });
    expect(mount('-o', 'remount,ro', dir)).toBe(true);
    await check('the database was deleted');
    expect(mount('-o', 'remount,rw', dir)).toBe(true);
  });
});
