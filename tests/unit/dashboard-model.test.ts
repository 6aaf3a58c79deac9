import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { DashboardModel } from '../../components/model.js';
import { cachedLoader } from '../../src/config/cached.js';
import { loadConfigFile } from '../../src/config/load.js';
import { homeAt } from '../../src/domain/home.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { realProcesses } from '../../src/platform/processes.js';
import { ChangeFeed } from '../../src/store/watch.js';
import { describeData, type InstanceDetails } from '../../src/app/describe.js';
import type { Context } from '../../src/app/context.js';
import type { ConfigLoader } from '../../src/config/cached.js';

function setup(describe?: (ctx: Context, name: string) => InstanceDetails) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'model-'));
  fs.mkdirSync(path.join(root, 'instances', 'a'), { recursive: true });
  fs.writeFileSync(
    path.join(root, 'instances', 'a', 'config.json'),
    JSON.stringify({ model: { path: 'm' }, server: { port: 1 } }),
  );
  const home = homeAt(root);
  const store = new Store(openDatabase(home.dbPath).db);
  let t = 1_000_000;
  // The feed is driven by the test's clock (no timer of its own).
  const feed = new ChangeFeed(store, { setInterval: () => 0, clearInterval: () => undefined });
  const ctx = {
    home,
    store,
    deps: { procs: realProcesses },
    sources: (load: ConfigLoader) => ({ home, store, procs: realProcesses, load }),
  } as unknown as Context;
  const model = new DashboardModel(
    {
      sources: { home, store, procs: realProcesses, load: cachedLoader(store, loadConfigFile) },
      feed,
      ...(describe ? { describe: (name: string) => describe(ctx, name) } : {}),
    },
    { now: () => t, idleAfterMs: 10_000, pollMs: 3_600_000 },
  );
  model.start();
  let renders = 0;
  model.subscribe(() => renders++);
  const advance = (ms: number) => {
    for (let i = 0; i < ms / 250; i++) {
      t += 250;
      feed.check();
      model.poll();
    }
  };
  // Keepers write through their own connections: data_version only moves for those.
  const other = new Store(openDatabase(home.dbPath).db);
  return { model, store: other, own: store, advance, renders: () => renders };
}

describe('DashboardModel', () => {
  it('publishes once a second while someone types; idle, only when what it shows changes (the clock: once a minute); at once on a key', () => {
    const { model, advance, renders } = setup();
    model.touch();
    advance(5000);
    expect(renders()).toBeGreaterThanOrEqual(5);
    expect(renders()).toBeLessThanOrEqual(6);
    advance(10_000); // now idle
    const before = renders();
    advance(120_000);
    // Nothing runs: only the HH:MM clock (and the minute) moves, twice in two minutes.
    expect(renders() - before).toBeGreaterThanOrEqual(2);
    expect(renders() - before).toBeLessThanOrEqual(3);
    model.touch();
    const k = renders();
    advance(250);
    expect(renders()).toBe(k + 1);
  });

  it('idle and settled, reads the snapshot every 6 s and only moves the clock between; a change is read at once', () => {
    const { model, store, own, advance } = setup();
    advance(20_000); // idle
    const reads = vi.spyOn(own, 'listRuntime');
    advance(60_000);
    // Ticks every 2 s (30 in a minute), reads about every 6 s (the reconciliation every 10 s included).
    expect(reads.mock.calls.length).toBeGreaterThanOrEqual(8);
    expect(reads.mock.calls.length).toBeLessThanOrEqual(14);
    const before = reads.mock.calls.length;
    store.ensureInstance('a', 'x');
    store.recordStarting('a', 0);
    store.recordFailed('a', 'boom');
    advance(1000);
    expect(reads.mock.calls.length).toBeGreaterThan(before);
    expect(model.getSnapshot().instances[0]).toMatchObject({ name: 'a', state: 'failed', last_error: 'boom' });
  });

  it('shows a state written by another connection within a second, without a key press', () => {
    const { model, store, advance } = setup();
    advance(3000);
    store.ensureInstance('a', 'x');
    store.recordStarting('a', 0);
    store.recordFailed('a', 'boom');
    advance(1000);
    expect(model.getSnapshot().instances[0]).toMatchObject({ name: 'a', state: 'failed', last_error: 'boom' });
    expect(model.getSnapshot().events.at(-1)?.message).toContain('starting -> failed');
  });

  it('describes the instance the details pane shows when it is chosen and when the data changes, not on every tick', () => {
    let calls = 0;
    const { model, store, advance } = setup((ctx, name) => (calls++, describeData(ctx, name)));
    advance(20_000); // idle
    expect(model.getSnapshot().details ?? null).toBeNull();
    expect(calls).toBe(0);
    model.showDetails('a');
    expect(calls).toBe(1);
    const first = model.getSnapshot().details;
    expect(first?.name).toBe('a');
    expect(first?.lines[0]).toMatch(/^Name:\s+a$/);
    // Idle, nothing changes: a minute of ticks describes it at most as often as the clock moves.
    advance(60_000);
    expect(calls).toBeLessThanOrEqual(3);
    // The same text is the same object: nothing to draw again.
    expect(model.getSnapshot().details).toBe(first);
    const before = calls;
    store.ensureInstance('a', 'x');
    store.recordStarting('a', 0);
    store.recordFailed('a', 'boom');
    advance(1000);
    expect(calls).toBeGreaterThan(before);
    expect(model.getSnapshot().details?.lines.join('\n')).toMatch(/Last error:\s+boom/);
    model.showDetails(undefined);
    expect(model.getSnapshot().details).toBeNull();
    const after = calls;
    advance(5000);
    expect(calls).toBe(after);
  });
});
