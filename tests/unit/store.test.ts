import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { integrityCheck, openDatabase, SCHEMA_VERSION } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/schema.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/errors.js';
import { transition, InvalidTransitionError, TRANSITIONS } from '../../src/engine/lifecycle.js';

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

describe('lifecycle transitions', () => {
  it('validates against the table, persists and emits one event', () => {
    const { db } = openDatabase(path.join(tmp(), 'db'));
    const store = new Store(db);
    store.ensureInstance('a', '/x');
    expect(transition(store, 'a', 'starting', { reason: 'up' })).toBe('stopped');
    transition(store, 'a', 'running');
    transition(store, 'a', 'backoff', { patch: { next_restart_at: 123 } });
    expect(store.getRuntime('a')).toMatchObject({ status: 'backoff', next_restart_at: 123 });
    expect(() => transition(store, 'a', 'running')).toThrow(InvalidTransitionError);
    expect(store.getRuntime('a')?.status).toBe('backoff');
    const msgs = store.listEvents('a').map((e) => e.message);
    expect(msgs).toEqual(['stopped -> starting: up', 'starting -> running', 'running -> backoff']);
  });

  it('every state can reach stopped, and stopped only leads to starting', () => {
    for (const [from, tos] of Object.entries(TRANSITIONS)) {
      if (from !== 'stopped') expect(tos.includes('stopped') || tos.includes('stopping')).toBe(true);
    }
    expect(TRANSITIONS.stopped).toEqual(['starting']);
  });
});
