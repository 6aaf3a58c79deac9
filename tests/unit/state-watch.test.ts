import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StateWatchService } from '../../src/daemon/state-watch.js';
import { homeAt } from '../../src/domain/home.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

// The daemon's hold on its home (daemon/state-watch.ts), with a real SQLite file and pid file.

const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function setup() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'state-watch-'));
  const home = homeAt(root);
  const store = new Store(openDatabase(home.dbPath).db);
  stores.push(store);
  const pidFile = path.join(home.stateDir, 'daemon.pid');
  fs.writeFileSync(pidFile, `${process.pid} 0\n`);
  const logs: string[] = [];
  let reopened = 0;
  const watch = new StateWatchService({
    home,
    store,
    pidFile,
    open: () => openDatabase(home.dbPath).db,
    reopened: () => reopened++,
    wait: () => Promise.resolve(),
    log: (m) => logs.push(m),
  });
  return { home, store, pidFile, logs, watch, reopened: () => reopened };
}

/** What another process reads in the file at the home's path now. */
function readByOthers(file: string): string[] {
  const other = new Store(openDatabase(file).db);
  try {
    return other.listInstances().map((i) => i.name);
  } finally {
    other.close();
  }
}

describe('the daemon watching its state files', () => {
  it('does nothing while the file is the one it opened', () => {
    const { store, home, watch, logs } = setup();
    store.ensureInstance('a', '/x');
    watch.check();
    expect(logs).toEqual([]);
    expect(readByOthers(home.dbPath)).toEqual(['a']);
  });

  it('a deleted database: the same store object now writes the new file, and says so', () => {
    const { store, home, watch, logs, reopened } = setup();
    store.ensureInstance('old', '/x');
    for (const f of fs.readdirSync(home.stateDir))
      if (f.startsWith('llama-orch.db')) fs.rmSync(path.join(home.stateDir, f));
    watch.check();
    expect(logs).toEqual([`state database ${home.dbPath} was deleted: reopened`]);
    expect(reopened()).toBe(1);
    store.ensureInstance('new', '/y');
    expect(readByOthers(home.dbPath)).toEqual(['new']);
    expect(store.listEvents(null, 10).map((e) => e.message)).toContainEqual(
      expect.stringMatching(/was deleted; the daemon reopened it$/),
    );
    watch.check(); // once: the file is its own now
    expect(logs).toHaveLength(1);
  });

  it('a replaced database (another inode) is reopened too', () => {
    const { store, home, watch, logs } = setup();
    const other = path.join(home.stateDir, 'other.db');
    const s2 = new Store(openDatabase(other).db);
    s2.ensureInstance('theirs', '/z');
    s2.close();
    for (const f of fs.readdirSync(home.stateDir))
      if (f.startsWith('llama-orch.db')) fs.rmSync(path.join(home.stateDir, f));
    fs.renameSync(other, home.dbPath);
    watch.check();
    expect(logs[0]).toBe(`state database ${home.dbPath} was replaced: reopened`);
    expect(store.listInstances().map((i) => i.name)).toEqual(['theirs']);
  });

  it('state/ removed whole: the folder, the database and the pid file (this process) come back', () => {
    const { home, pidFile, watch, logs } = setup();
    fs.rmSync(home.stateDir, { recursive: true, force: true });
    watch.check();
    expect(fs.readFileSync(pidFile, 'utf8').split(/\s+/)[0]).toBe(String(process.pid));
    expect(fs.existsSync(home.dbPath)).toBe(true);
    expect(logs).toEqual([
      `state database ${home.dbPath} was deleted: reopened`,
      `${pidFile} was removed: written again`,
    ]);
  });
});
