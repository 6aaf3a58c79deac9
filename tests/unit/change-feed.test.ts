import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { ChangeFeed, type Change } from '../../src/store/watch.js';

function stores() {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'feed-')), 'db');
  const reader = new Store(openDatabase(file).db);
  const writer = new Store(openDatabase(file).db); // another process, as far as SQLite can tell
  reader.ensureInstance('a', '/x');
  return { reader, writer };
}

describe('the change feed', () => {
  it("hears another connection's writes and this connection's own, once per change", () => {
    const { reader, writer } = stores();
    const feed = new ChangeFeed(reader, { setInterval: () => 0, clearInterval: () => undefined });
    const seen: Change[] = [];
    feed.subscribe((c) => seen.push(c));
    feed.check();
    expect(seen).toEqual([]);
    writer.recordStarting('a', 0);
    feed.check();
    feed.check();
    expect(seen).toEqual([{ runtime: true, events: true }]);
    reader.recordFailed('a', 'boom'); // own write: reported by the store, no tick needed
    expect(seen).toHaveLength(2);
    feed.close();
  });

  it('ignores writes that change nothing the status table shows (a probe of the same health)', () => {
    const { reader, writer } = stores();
    writer.recordStarting('a', 0);
    const feed = new ChangeFeed(reader, { setInterval: () => 0, clearInterval: () => undefined });
    const seen: Change[] = [];
    feed.subscribe((c) => seen.push(c));
    const probe = {
      result: 'loading',
      latencyMs: 1,
      detail: null,
      before: 'starting' as const,
      health: 'starting' as const,
      healthDetail: 'waiting',
      failures: 0,
      resetAttempts: false,
    };
    writer.recordProbe('a', { ...probe, at: 1 });
    feed.check();
    expect(seen).toEqual([{ runtime: true, events: false }]); // health_detail appeared
    writer.recordProbe('a', { ...probe, at: 2, latencyMs: 3 });
    feed.check();
    expect(seen).toHaveLength(1);
    feed.close();
  });

  it('until() resolves on the change that makes its check true, or undefined at the deadline', async () => {
    const { reader, writer } = stores();
    const feed = new ChangeFeed(reader, { intervalMs: 5 });
    const failed = feed.until(() => (reader.getRuntime('a')?.status === 'failed' ? 'failed' : undefined), 2000);
    setTimeout(() => {
      writer.recordStarting('a', 0);
      writer.recordFailed('a', 'boom');
    }, 20);
    expect(await failed).toBe('failed');
    const started = Date.now();
    expect(await feed.until(() => undefined, 50)).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    feed.close();
  });
});
