import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { integrityCheck, openDatabase, SCHEMA_VERSION } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/schema.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/domain/errors.js';
import { InvalidTransitionError, TRANSITIONS } from '../../src/domain/lifecycle.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'store-'));

describe('store', () => {
  it('creates the schema with WAL, busy_timeout and private permissions', () => {
    const dir = path.join(tmp(), 'state');
    const file = path.join(dir, 'llama-orch.db');
    const { db } = openDatabase(file);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    const tables = (
      db.prepare(`SELECT name FROM sqlite_master WHERE type='table' ORDER BY name`).all() as Array<{ name: string }>
    ).map((t) => t.name);
    expect(tables).toEqual(expect.arrayContaining(['events', 'health_history', 'instances', 'runtime']));
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    db.close();
  });

  it('backs the file up before migrating, then reopens without migrating again', () => {
    const file = path.join(tmp(), 'state', 'db.sqlite');
    const first = openDatabase(file);
    const store = new Store(first.db);
    store.ensureInstance('a', '/x');
    first.db.close();
    const next = [...MIGRATIONS, `ALTER TABLE runtime ADD COLUMN gpu_mem INTEGER`];
    const migrated = openDatabase(file, { migrations: next });
    expect(migrated.backupPath).toBeDefined();
    expect(fs.existsSync(migrated.backupPath as string)).toBe(true);
    expect(migrated.db.pragma('user_version', { simple: true })).toBe(next.length);
    expect(new Store(migrated.db).getRuntime('a')?.status).toBe('stopped');
    migrated.db.close();
    // The backup is the old version, intact.
    const old = openDatabase(migrated.backupPath as string);
    expect(old.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    old.db.close();
    const again = openDatabase(file, { migrations: next });
    expect(again.backupPath).toBeUndefined();
    expect(integrityCheck(again.db)).toBe('ok');
    again.db.close();
  });

  it('turns a garbage file into a clear error naming the file and the recovery', () => {
    const file = path.join(tmp(), 'state', 'llama-orch.db');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, 'this is not a database, just garbage '.repeat(200));
    let err: unknown;
    try {
      openDatabase(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toContain(file);
    expect((err as UserError).message).toContain('file is not a database');
    expect((err as UserError).hint).toContain('mv');
  });

  it('refuses a database from a newer llama-orch', () => {
    const file = path.join(tmp(), 'db');
    const { db } = openDatabase(file);
    db.pragma('user_version = 99');
    db.close();
    expect(() => openDatabase(file)).toThrow(/schema version 99, newer/);
  });

  it('bounds event and health retention per instance', () => {
    const { db } = openDatabase(path.join(tmp(), 'db'));
    const store = new Store(db, Date.now, { eventsPerInstance: 50, healthPerInstance: 20 });
    for (let i = 0; i < 500; i++) {
      store.addEvent('a', 'info', 't', `e${i}`);
      store.addHealth('a', 'ok', 1, null);
    }
    store.prune();
    expect(store.listEvents('a', 1000)).toHaveLength(50);
    expect(store.listEvents('a', 1)[0]?.message).toBe('e499');
    expect(store.listHealth('a', 1000)).toHaveLength(20);
  });
});

const claim = (store: Store, name: string) =>
  store.claimStart(name, {
    keeperPid: 4242,
    keeperStarttime: 7,
    port: 18181,
    configJson: '{"stop_timeout":10}',
    carryCounters: false,
    reason: 'up',
  });

describe('runtime intents (the only writers of runtime columns)', () => {
  it("moves through the lifecycle table, writing each intent's columns and one state event per move", () => {
    const { db } = openDatabase(path.join(tmp(), 'db'));
    const store = new Store(db, () => 1000);
    store.ensureInstance('a', '/x');
    claim(store, 'a');
    expect(store.getRuntime('a')).toMatchObject({
      status: 'starting',
      keeper_pid: 4242,
      port: 18181,
      health: 'starting',
    });
    expect(store.getInstance('a')).toMatchObject({ desired_state: 'running', config_json: '{"stop_timeout":10}' });
    store.recordSpawn('a', {
      pid: 99,
      pgid: 99,
      starttime: 5,
      port: 18181,
      cmdline: '["s"]',
      startedAt: 900,
      attempt: 0,
    });
    store.recordProbe('a', {
      at: 1000,
      result: 'ok',
      latencyMs: 2,
      detail: null,
      before: 'starting',
      health: 'ok',
      healthDetail: null,
      failures: 0,
      resetAttempts: false,
    });
    expect(store.getRuntime('a')).toMatchObject({ status: 'running', pid: 99, health: 'ok', last_health_ok_at: 1000 });
    store.recordExit(
      'a',
      { pid: 99, code: 1, signal: null, at: 1000, cause: 'exit', stderrTail: ['boom'], message: 'exited', meta: {} },
      'error',
    );
    store.recordBackoff('a', { attempt: 1, note: '1/5', delayMs: 1000, at: 2000 });
    expect(store.getRuntime('a')).toMatchObject({
      status: 'backoff',
      pid: null,
      health: null,
      last_exit_code: 1,
      // An exit is not a restart: restarts count when the keeper starts the server again.
      restarts_total: 0,
      restart_attempts: 1,
      next_restart_at: 2000,
      stderr_tail: '["boom"]',
    });
    store.recordStarting('a', 1, true);
    expect(store.getRuntime('a')).toMatchObject({ status: 'starting', restarts_total: 1, next_restart_at: null });
    store.recordExit(
      'a',
      { pid: 2, code: 1, signal: null, at: 3000, stderrTail: [], cause: 'exit', message: 'x', meta: {} },
      'error',
    );
    store.recordBackoff('a', { attempt: 2, note: '2/5', delayMs: 1000, at: 4000 });
    store.recordFailed('a', 'gave up');
    expect(store.getRuntime('a')?.restarts_total).toBe(1);
    expect(store.getRuntime('a')).toMatchObject({ status: 'failed', last_error: 'gave up', next_restart_at: null });
    const moves = store
      .listEvents('a')
      .filter((e) => e.event_type === 'state')
      .map((e) => e.message);
    expect(moves).toEqual([
      'stopped -> starting: up',
      'starting -> running: healthy',
      'running -> backoff: restart 1/5 in 1.0 s',
      'backoff -> starting: restart 1',
      'starting -> backoff: restart 2/5 in 1.0 s',
      'backoff -> failed: gave up',
    ]);
  });

  it('refuses a move the table does not allow, and writes nothing', () => {
    const { db } = openDatabase(path.join(tmp(), 'db'));
    const store = new Store(db);
    store.ensureInstance('a', '/x');
    expect(() => store.recordStopping('a', 'stop requested')).toThrow(InvalidTransitionError);
    expect(store.getRuntime('a')?.status).toBe('stopped');
    expect(store.listEvents('a')).toEqual([]);
  });

  it('a keeper releases the instance only while it still owns it', () => {
    const { db } = openDatabase(path.join(tmp(), 'db'));
    const store = new Store(db);
    store.ensureInstance('a', '/x');
    claim(store, 'a');
    store.releaseKeeper('a', 1);
    expect(store.getRuntime('a')?.keeper_pid).toBe(4242);
    store.releaseKeeper('a', 4242);
    expect(store.getRuntime('a')).toMatchObject({ keeper_pid: null, keeper_starttime: null });
  });

  it('accepts a column added by a migration without a hand-kept column list', () => {
    const file = path.join(tmp(), 'db');
    const { db } = openDatabase(file, {
      migrations: [...MIGRATIONS, `ALTER TABLE runtime ADD COLUMN vram_bytes INTEGER`],
    });
    class WithVram extends Store {
      recordVram(name: string, bytes: number) {
        this.immediate(() => this.patchRuntime(name, { vram_bytes: bytes } as never));
      }
    }
    const store = new WithVram(db);
    store.ensureInstance('a', '/x');
    store.recordVram('a', 123);
    expect((store.getRuntime('a') as unknown as { vram_bytes: number }).vram_bytes).toBe(123);
  });
});

describe('lifecycle table', () => {
  it('every state can reach stopped, and stopped only leads to starting', () => {
    for (const [from, tos] of Object.entries(TRANSITIONS)) {
      if (from !== 'stopped') expect(tos.includes('stopped') || tos.includes('stopping')).toBe(true);
    }
    expect(TRANSITIONS.stopped).toEqual(['starting']);
  });
});
