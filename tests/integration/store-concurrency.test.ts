import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/home.js';
import { integrityCheck, openDatabase } from '../../src/store/db.js';

const WORKER = `
import { openDatabase } from '${REPO}/dist/src/store/db.js';
import { Store } from '${REPO}/dist/src/store/store.js';
const [file, id, n] = process.argv.slice(2);
const { db } = openDatabase(file);
const store = new Store(db);
let busy = 0;
for (let i = 0; i < Number(n); i++) {
  try {
    store.immediate(() => {
      const row = db.prepare("SELECT restart_attempts FROM runtime WHERE name = 'shared'").get();
      store.updateRuntime('shared', { restart_attempts: row.restart_attempts + 1 });
      store.addEvent('shared', 'info', 'inc', 'worker ' + id + ' step ' + i);
    });
  } catch (e) {
    if (String(e.code).startsWith('SQLITE_BUSY')) busy++;
    else throw e;
  }
}
db.close();
console.log(JSON.stringify({ busy }));
`;

describe('store under concurrent writers', () => {
  it('8 processes x 300 read-then-write transactions: 0 SQLITE_BUSY, no lost update, integrity ok', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conc-'));
    const file = path.join(dir, 'state', 'llama-orch.db');
    const script = path.join(dir, 'worker.mjs');
    fs.writeFileSync(script, WORKER);
    const { db } = openDatabase(file);
    db.prepare(
      `INSERT INTO runtime (name, status, restart_attempts, updated_at) VALUES ('shared', 'stopped', 0, 0)`,
    ).run();
    db.close();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => execa('node', [script, file, String(i), '300'])),
    );
    const busy = results.map((r) => (JSON.parse(r.stdout) as { busy: number }).busy);
    expect(busy).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const check = openDatabase(file).db;
    const row = check.prepare(`SELECT restart_attempts FROM runtime WHERE name = 'shared'`).get() as {
      restart_attempts: number;
    };
    expect(row.restart_attempts).toBe(2400);
    expect(integrityCheck(check)).toBe('ok');
    check.close();
  });
});
