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
    // An intent that reads, then writes (restarts_total + 1), in one IMMEDIATE transaction.
    store.recordStarting('shared', i, true);
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
      `INSERT INTO runtime (name, status, restarts_total, updated_at) VALUES ('shared', 'stopped', 0, 0)`,
    ).run();
    db.close();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => execa('node', [script, file, String(i), '300'])),
    );
    const busy = results.map((r) => (JSON.parse(r.stdout) as { busy: number }).busy);
    expect(busy).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const check = openDatabase(file).db;
    const row = check.prepare(`SELECT restarts_total FROM runtime WHERE name = 'shared'`).get() as {
      restarts_total: number;
    };
    expect(row.restarts_total).toBe(2400);
    expect(integrityCheck(check)).toBe('ok');
    check.close();
  });
});
