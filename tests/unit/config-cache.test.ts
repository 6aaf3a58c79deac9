import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cachedLoader } from '../../src/config/cached.js';
import { loadConfigFile } from '../../src/config/load.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

describe('config validation cache', () => {
  it('reuses a result while the file is unchanged and revalidates after an edit', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-'));
    const store = new Store(openDatabase(path.join(dir, 'state', 'db')).db);
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ model: { path: 'm' }, server: { port: 1 } }));
    let calls = 0;
    const counting = (f: string, n: string) => {
      calls++;
      return loadConfigFile(f, n);
    };
    const load = cachedLoader(store, counting);
    expect(load(file, 'x').ok).toBe(true);
    expect(load(file, 'x').ok).toBe(true);
    expect(calls).toBe(1);
    // Without a validator at all, a hit still answers.
    expect(cachedLoader(store)(file, 'x').ok).toBe(true);
    fs.writeFileSync(file, JSON.stringify({ model: { path: 'm' }, server: { port: 'bad' } }));
    const after = load(file, 'x');
    expect(calls).toBe(2);
    expect(after.ok).toBe(false);
    expect(() => cachedLoader(store)(path.join(dir, 'other.json'), 'y')).not.toThrow();
  });
});
