import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { StateWriter } from '../../src/keeper/state-writer.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

// The keeper's writes while another connection holds the write lock (a real SQLite lock), with the
// keeper's connection as the keeper opens it: busy_timeout 0, so it never waits on the lock.

function setup() {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'writer-')), 'db');
  const keeperDb = openDatabase(file).db;
  keeperDb.pragma('busy_timeout = 0');
  const store = new Store(keeperDb);
  store.ensureInstance('a', '/x');
  const other = openDatabase(file).db;
  const logs: string[] = [];
  let t = 1_000_000;
  const writer = new StateWriter(store, {
    name: 'a',
    now: () => t,
    log: (m) => logs.push(m),
    setTimer: () => 0,
    clearTimer: () => undefined,
  });
  return { store, other, writer, logs, tick: (ms: number) => (t += ms) };
}

describe("the keeper's state writer", () => {
  it('a backlog at its bound sheds metrics readings first, then probe results, never state moves', () => {
    const { other, writer } = setup();
    other.exec('BEGIN EXCLUSIVE');
    const done: string[] = [];
    // Each one writes (so the lock refuses it) and says that it ran.
    const w = (what: string) =>
      writer.write(what, (s) => {
        s.recordLogDropped('a', 1);
        done.push(what);
      });
    w('starting');
    for (let i = 0; i < 2500; i++) w('probe');
    for (let i = 0; i < 2499; i++) w('metrics');
    expect(writer.backlog).toBe(5000);
    for (let i = 0; i < 2600; i++) w('exit');
    expect(writer.backlog).toBe(5000);
    other.exec('COMMIT');
    expect(writer.drain()).toBe(true);
    const count = (k: string) => done.filter((d) => d === k).length;
    // 2600 shed: every metrics reading, then the oldest 101 probe results.
    expect([count('starting'), count('metrics'), count('probe'), count('exit')]).toEqual([1, 0, 2399, 2600]);
    expect(done[0]).toBe('starting');
  });

  it('applies a write at once when the database takes it', () => {
    const { store, writer } = setup();
    writer.write('starting', (s) => s.recordStarting('a', 0));
    expect(writer.backlog).toBe(0);
    expect(store.getRuntime('a')?.status).toBe('starting');
  });

  it('during a lock: returns at once, keeps the writes in order, records them with their own times once released', () => {
    const { store, other, writer, logs, tick } = setup();
    other.exec('BEGIN EXCLUSIVE');
    const started = performance.now();
    writer.write('starting', (s) => s.recordStarting('a', 0));
    tick(1000);
    writer.write('spawn', (s) =>
      s.recordSpawn('a', { pid: 7, pgid: 7, starttime: 1, port: 1, cmdline: '[]', startedAt: 1_001_000, attempt: 0 }),
    );
    tick(2000);
    writer.write('failed', (s) => s.recordFailed('a', 'boom'));
    expect(performance.now() - started).toBeLessThan(100); // never waited for the lock
    expect(writer.backlog).toBe(3);
    expect(writer.drain()).toBe(false); // still locked
    expect(logs[0]).toMatch(/state database refuses writes \(SQLITE_BUSY/);
    other.exec('COMMIT');
    tick(5000);
    expect(writer.drain()).toBe(true);
    const events = store.listEvents('a', 20);
    expect(events.map((e) => [e.ts - 1_000_000, e.event_type])).toEqual([
      [0, 'state'],
      [1000, 'spawn'],
      [3000, 'state'],
      [8000, 'state-db'],
    ]);
    expect(events.at(-1)?.message).toMatch(/took writes again after 8.0 s \(SQLITE_BUSY/);
    expect(store.getRuntime('a')).toMatchObject({ status: 'failed', last_error: 'boom' });
  });

  it('drops a write that can never succeed (not a fault of the database) and goes on with the rest', () => {
    const { store, writer, logs } = setup();
    writer.write('stopping', (s) => s.recordStopping('a', 'impossible from stopped'));
    writer.write('starting', (s) => s.recordStarting('a', 0));
    expect(store.getRuntime('a')?.status).toBe('starting');
    expect(logs[0]).toMatch(/state write "stopping" dropped: invalid lifecycle transition for a: stopped -> stopping/);
  });

  it('flush waits for the lock to go, and says what it could not write when it does not', async () => {
    const { other, writer, logs } = setup();
    other.exec('BEGIN EXCLUSIVE');
    writer.write('starting', (s) => s.recordStarting('a', 0));
    expect(await writer.flush(0)).toBe(false);
    expect(logs.at(-1)).toMatch(/exiting with 1 state write\(s\) not recorded .* starting/);
    other.exec('COMMIT');
    expect(await writer.flush(1000)).toBe(true);
  });
});

/** chattr +i works here (root, a file system with the immutable flag). */
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

describe.runIf(canMakeImmutable())('a connection opened while the files were unwritable', () => {
  it('stays read-only after they are writable again: the writer opens a fresh one, and only then', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'writer-ro-')), 'db');
    const holder = openDatabase(file).db; // keeps -wal and -shm in place
    new Store(holder).ensureInstance('a', '/x');
    const files = [file, `${file}-wal`, `${file}-shm`];
    execFileSync('chattr', ['+i', ...files]);
    let stale: Store;
    try {
      const Database = createRequire(import.meta.url)('better-sqlite3') as typeof import('better-sqlite3');
      stale = new Store(new Database(file));
    } finally {
      execFileSync('chattr', ['-i', ...files]);
    }
    const logs: string[] = [];
    let writable = false;
    let reopened = 0;
    const writer = new StateWriter(stale, {
      name: 'a',
      now: () => 1_000_000,
      log: (m) => logs.push(m),
      setTimer: () => 0,
      clearTimer: () => undefined,
      reopen: () => {
        reopened++;
        return new Store(openDatabase(file).db);
      },
      writable: () => writable,
    });
    // The files are writable, but this connection is not; while writable() says no, no new one.
    writer.write('starting', (s) => s.recordStarting('a', 0));
    expect(writer.backlog).toBe(1);
    expect(reopened).toBe(0);
    writable = true;
    expect(writer.drain()).toBe(true);
    expect(reopened).toBe(1);
    expect(logs.join('\n')).toMatch(/stayed read-only after its files became writable again .*opened a new one/);
    expect(new Store(holder).getRuntime('a')?.status).toBe('starting');
    holder.close();
  });
});
