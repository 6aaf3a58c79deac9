import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, cli, fakeConfig, freePort, homePerTest, isAlive, psJson, waitFor, waitForRow } from '../helpers/home.js';

// Faults of the environment, at the level where they really happen: a write lock held by another
// process, a deleted database, a keeper that stops (SIGSTOP), a full disk (a real tmpfs), a damaged
// database file. What must hold: the servers keep running, every exit is recorded (with its real
// time), the commands say what is wrong and what to do, with exit code 6 and no stack trace.

const homes = homePerTest();

type Ev = { ts: string; event_type: string; message: string };
const events = async (root: string, name: string): Promise<Ev[]> =>
  JSON.parse((await cli(root, ['events', name, '-n', '100', '--json'])).stdout) as Ev[];

/** Another process holding SQLite's write lock on the home's database for `ms`. */
async function holdLock(root: string, ms: number): Promise<{ released: Promise<number> }> {
  const script = `
    const Database = require(${JSON.stringify(path.join(REPO, 'node_modules', 'better-sqlite3'))});
    const db = new Database(${JSON.stringify(path.join(root, 'state', 'llama-orch.db'))});
    db.pragma('busy_timeout = 5000');
    db.exec('BEGIN EXCLUSIVE');
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); process.stdout.write('released ' + Date.now() + '\\n'); }, ${ms});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await waitFor(() => (out.includes('locked') ? true : undefined), 5000, 'the lock');
  const released = new Promise<number>((resolve) =>
    child.once('exit', () => resolve(Number(/released (\d+)/.exec(out)?.[1] ?? Date.now()))),
  );
  return { released };
}

/** keeper.log of an instance, for a failure message. */
function keeperLog(root: string, name: string): string {
  try {
    return fs.readFileSync(path.join(root, 'logs', name, 'keeper.log'), 'utf8').slice(-4000);
  } catch (e) {
    return `no keeper.log: ${(e as Error).message}`;
  }
}

async function upHealthy(root: string, name: string): Promise<{ pid: number; keeper: number }> {
  const up = await cli(root, ['up', name, '--wait', '15']);
  expect(up.code, up.stderr).toBe(0);
  const row = (await psJson(root)).find((r) => r.name === name) as Record<string, unknown>;
  return { pid: row.pid as number, keeper: row.keeper_pid as number };
}

describe('a write lock held by another process', () => {
  it('the keeper keeps supervising: a kill -9 during the lock is restarted, and recorded with its real time', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    const { pid, keeper } = await upHealthy(home.root, 'a');
    const lock = await holdLock(home.root, 3000);
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    // ps is a pure read: it answers during the lock.
    const ps = await cli(home.root, ['ps', '--json']);
    expect(ps.code).toBe(0);
    const releasedAt = await lock.released;
    const row = await waitForRow(home.root, 'a', (r) => r.health === 'ok' && r.pid !== pid, 10_000, 'a new server');
    expect(row.keeper_pid).toBe(keeper);
    expect(isAlive(keeper)).toBe(true);
    const evs = await events(home.root, 'a');
    const exit = evs.find((e) => e.event_type === 'exit' && e.message.includes(`pid ${pid} killed by SIGKILL`));
    expect(exit).toBeDefined();
    // Recorded with the time it happened, not when the database took it.
    expect(Date.parse((exit as Ev).ts)).toBeLessThan(killedAt + 1000);
    expect(Date.parse((exit as Ev).ts)).toBeLessThan(releasedAt);
    expect(evs.find((e) => e.event_type === 'state-db')?.message).toMatch(
      /took writes again after [\d.]+ s \(SQLITE_BUSY/,
    );
    expect(row.restarts).toBe(1);
  });

  it('down during the lock stops the server and says what it could not record', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    const { pid, keeper } = await upHealthy(home.root, 'a');
    // Longer than the CLI's busy_timeout (5 s): the desired state cannot be recorded.
    const lock = await holdLock(home.root, 9000);
    const down = await cli(home.root, ['down', 'a']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toMatch(
      /^a stopped \(server pid \d+\) \(not recorded: the desired state: state database .* is locked/,
    );
    expect(isAlive(pid)).toBe(false);
    expect(isAlive(keeper)).toBe(false);
    await lock.released;
    const row = await waitForRow(home.root, 'a', (r) => r.state === 'stopped', 5000, 'stopped');
    expect(row.pid).toBeNull();
  });

  it('a command that must write exits 6 once the lock outlasts busy_timeout, naming the file; no stack trace', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    await cli(home.root, ['ps']); // creates the database
    const lock = await holdLock(home.root, 7000);
    const up = await cli(home.root, ['up', 'a']);
    expect(up.code).toBe(6);
    expect(up.stderr).toContain(
      `state database ${path.join(home.root, 'state', 'llama-orch.db')} is locked by another process`,
    );
    expect(up.stderr).toContain('hint:');
    expect(up.stderr).not.toMatch(/\n\s+at /);
    await lock.released;
  });
});

describe('a deleted state database', () => {
  it('is rebuilt from what runs: the keeper re-registers within seconds, and down stops it', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    const { pid, keeper } = await upHealthy(home.root, 'a');
    for (const f of fs.readdirSync(path.join(home.root, 'state'))) {
      if (f.startsWith('llama-orch.db')) fs.rmSync(path.join(home.root, 'state', f));
    }
    const row = await waitForRow(
      home.root,
      'a',
      (r) => r.pid === pid && r.state === 'running',
      12_000,
      'running again',
    );
    expect(row.keeper_pid).toBe(keeper);
    expect((await events(home.root, 'a')).some((e) => e.event_type === 'reregister')).toBe(true);
    const down = await cli(home.root, ['down', 'a']);
    expect(down.code).toBe(0);
    expect(isAlive(pid)).toBe(false);
  });

  it('down finds a keeper from its own file even before it re-registers', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    const { pid } = await upHealthy(home.root, 'a');
    await new Promise((r) => setTimeout(r, 200)); // keeper.json is written at start
    fs.rmSync(path.join(home.root, 'state', 'llama-orch.db'));
    const down = await cli(home.root, ['down', 'a']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain(`a stopped (server pid ${pid})`);
    expect(isAlive(pid)).toBe(false);
  });
});

describe('a keeper that stops making progress', () => {
  it('is flagged by ps within the stall bound and replaced by the daemon; its server is re-attached, not restarted', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    const { pid, keeper } = await upHealthy(home.root, 'a');
    process.kill(keeper, 'SIGSTOP');
    try {
      const flagged = await waitForRow(
        home.root,
        'a',
        (r) => (r.warnings as string[]).some((w) => w.includes(`keeper pid ${keeper} is not responding`)),
        30_000,
        'a stall warning',
      );
      expect(flagged.pid).toBe(pid);
      expect((await cli(home.root, ['daemon', 'start', '--interval', '0.5'])).code).toBe(0);
      const row = await waitForRow(
        home.root,
        'a',
        (r) => r.keeper_pid !== keeper && r.keeper_pid !== null,
        15_000,
        'a new keeper',
      );
      expect(row.pid).toBe(pid);
      expect(row.warnings).toEqual([]);
      expect((await events(home.root, 'a')).map((e) => e.event_type)).toEqual(
        expect.arrayContaining(['keeper-stalled', 'adopt']),
      );
      expect(isAlive(keeper)).toBe(false);
    } finally {
      try {
        process.kill(keeper, 'SIGCONT');
      } catch {
        // killed by the daemon
      }
      await cli(home.root, ['daemon', 'stop']);
    }
  }, 60_000);
});

describe.runIf(process.platform === 'linux' && process.getuid?.() === 0)('a full disk (a real 1 MB tmpfs)', () => {
  it('the keeper survives a flood: lines are dropped and counted, ps warns, logging resumes when space is freed', async () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    try {
      const home = homes.make();
      // logs/ on the small file system; the state database stays writable (it has its own test).
      fs.rmSync(path.join(home.root, 'logs'), { recursive: true, force: true });
      fs.symlinkSync(mnt, path.join(home.root, 'logs'));
      const port = freePort();
      home.addInstance('a', fakeConfig(port));
      const { pid, keeper } = await upHealthy(home.root, 'a');
      const flood = await fetch(`http://127.0.0.1:${port}/flood?n=40000`);
      expect(flood.status).toBe(200);
      const warned = await waitForRow(home.root, 'a', (r) => (r.warnings as string[]).length > 0, 10_000, 'a warning');
      expect((warned.warnings as string[])[0]).toMatch(
        /^logs: .*stdout.log: no space left on the device; \d+ line\(s\) dropped/,
      );
      expect(warned.pid).toBe(pid);
      expect(isAlive(keeper)).toBe(true);
      for (const f of fs.readdirSync(path.join(mnt, 'a'))) {
        if (f.startsWith('stdout.log')) fs.truncateSync(path.join(mnt, 'a', f), 0);
      }
      await fetch(`http://127.0.0.1:${port}/flood?n=10`);
      const recovered = await waitForRow(
        home.root,
        'a',
        (r) => (r.warnings as string[]).every((w) => w.includes('were dropped')),
        10_000,
        'logging resumed',
      );
      expect((recovered.warnings as string[])[0]).toMatch(/^logs: \d+ line\(s\) were dropped/);
      expect((await events(home.root, 'a')).map((e) => e.event_type)).toContain('log-write');
      expect((await cli(home.root, ['down', 'a'])).code).toBe(0);
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});

/** chattr +i works here (root, a file system with the immutable flag): the read-only case. */
function canMakeImmutable(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'chattr-')), 'f');
  fs.writeFileSync(probe, 'x');
  try {
    execFileSync('chattr', ['+i', probe], { stdio: 'ignore' });
    execFileSync('chattr', ['-i', probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.runIf(canMakeImmutable())('a read-only state database (chattr +i: even root cannot write it)', () => {
  // What holds however SQLite behaves: commands answer or fail with exit 6, and nothing dies. (With
  // the WAL index immutable, SQLite may retry for seconds inside one write of the keeper, stalling
  // its event loop meanwhile: README, "Known limits".)
  it('ps works, a command that must write exits 6 saying so, and the keeper and its server survive', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    const { pid, keeper } = await upHealthy(home.root, 'a');
    const files = ['llama-orch.db', 'llama-orch.db-wal', 'llama-orch.db-shm'].map((f) =>
      path.join(home.root, 'state', f),
    );
    // The keeper is paused meanwhile: its next transaction then comes after `sync` has written back
    // SQLite's shared memory (-shm, mapped by every connection), and that clean page faults on
    // the next write to it (SIGBUS: it killed the keeper in a CI run). Unless the keeper looks first.
    process.kill(keeper, 'SIGSTOP');
    execFileSync('chattr', ['+i', ...files]);
    execFileSync('sync');
    process.kill(keeper, 'SIGCONT');
    try {
      await waitFor(
        () => (/state database refuses writes/.test(keeperLog(home.root, 'a')) ? true : undefined),
        10_000,
        'the keeper to notice',
      );
      const ps = await cli(home.root, ['ps']);
      expect(ps.code).toBe(0);
      expect(ps.stdout).toContain(String(pid));
      const up = await cli(home.root, ['up', 'a']);
      expect(up.code).toBe(6);
      expect(up.stderr).toMatch(/state database .*llama-orch\.db (is read-only|cannot be used)/);
      expect(up.stderr).toContain('hint:');
      expect(up.stderr).not.toMatch(/\n\s+at /);
      expect(isAlive(keeper), keeperLog(home.root, 'a')).toBe(true);
      expect(isAlive(pid), keeperLog(home.root, 'a')).toBe(true);
    } finally {
      execFileSync('chattr', ['-i', ...files]);
    }
    expect((await cli(home.root, ['down', 'a'])).code).toBe(0);
    expect(isAlive(pid)).toBe(false);
  });
});

describe.runIf(canMakeImmutable())('database files made unwritable under a long-lived writer', () => {
  const CHILD = path.join(REPO, 'tests/fixtures/state-writer-child.mjs');

  /** Starts the writer, lets it write, then makes its files immutable once their pages are clean. */
  async function writerThroughFault(mode: 'raw' | 'ours') {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unwritable-'));
    const file = path.join(dir, 'llama-orch.db');
    const files = [file, `${file}-wal`, `${file}-shm`];
    const child = spawn(process.execPath, [CHILD, file, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
      child.once('exit', (code, signal) => resolve(signal ?? code)),
    );
    await waitFor(() => ((out.match(/^(wrote|queued) /gm)?.length ?? 0) >= 5 ? true : undefined), 10_000, 'writes');
    // Paused, so that its next transaction comes after `sync` has cleaned the mapped -shm pages.
    process.kill(child.pid as number, 'SIGSTOP');
    execFileSync('chattr', ['+i', ...files]);
    execFileSync('sync');
    process.kill(child.pid as number, 'SIGCONT');
    const during = await Promise.race([exited, new Promise<'alive'>((r) => setTimeout(() => r('alive'), 1500))]);
    execFileSync('chattr', ['-i', ...files]);
    return { child, exited, during, out: () => out, file };
  }

  it('a raw connection dies of SIGBUS (the fault is real here); ours keeps the writes and records them after', async () => {
    const raw = await writerThroughFault('raw');
    expect(raw.during, raw.out()).toBe('SIGBUS');

    const ours = await writerThroughFault('ours');
    try {
      expect(ours.during, ours.out()).toBe('alive');
      expect(ours.out()).toMatch(
        /state database refuses writes \(SQLITE_READONLY: .*llama-orch\.db.* is not writable \(EPERM\)\)/,
      );
      await waitFor(() => (/took writes again/.test(ours.out()) ? true : undefined), 5000, 'recovery');
    } finally {
      ours.child.kill('SIGTERM');
      await ours.exited;
    }
    // Every write queued while the files were unwritable is in the database.
    const queued = Math.max(...[...ours.out().matchAll(/^queued (\d+)/gm)].map((m) => Number(m[1])));
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(ours.file, { readonly: true });
    const ticks = db.prepare(`SELECT count(*) AS c FROM events WHERE event_type = 'tick'`).get() as { c: number };
    db.close();
    expect(ticks.c).toBeGreaterThanOrEqual(queued - 1);
  });
});

describe('a damaged state database', () => {
  it('every command says which file and what to do, exit 6, no stack trace', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    fs.mkdirSync(path.join(home.root, 'state'), { recursive: true });
    fs.writeFileSync(path.join(home.root, 'state', 'llama-orch.db'), 'not a database '.repeat(500));
    for (const args of [['ps'], ['--once', '--json'], ['up', 'a'], ['down', 'a'], ['describe', 'a']]) {
      const r = await cli(home.root, args);
      expect(r.code, args.join(' ')).toBe(6);
      expect(r.stderr).toContain('state database');
      expect(r.stderr).toContain('llama-orch.db');
      expect(r.stderr).toContain('hint: move it aside');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
