import { spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InstanceConfigSchema } from '../../src/config/schema.js';
import { runProbe } from '../../src/health/probes.js';
import { abortableSleep } from '../../src/platform/sleep.js';
import { homeAt } from '../../src/domain/home.js';
import { Keeper } from '../../src/keeper/keeper.js';
import { StateWriter } from '../../src/keeper/state-writer.js';
import { realProcesses } from '../../src/platform/processes.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { fakeConfig, freePort, isAlive, waitFor, homePerTest } from '../helpers/home.js';

// The Keeper class in this process, with real processes: the race where the server `up` chose to
// adopt exits before the new keeper re-attaches to it, and what one run leaves behind.

const homes = homePerTest();

/** An instance's row and validated config in a fresh home, as `up` records them before the keeper starts. */
function recorded(name: string, config: Record<string, unknown>) {
  const home = homes.make();
  home.addInstance(name, config);
  const h = homeAt(home.root);
  const store = new Store(openDatabase(h.dbPath).db);
  store.ensureInstance(name, path.join(h.instancesDir, name, 'config.json'));
  const parsed = InstanceConfigSchema.parse(
    JSON.parse(fs.readFileSync(path.join(h.instancesDir, name, 'config.json'), 'utf8')),
  );
  store.setConfigSnapshot(name, JSON.stringify(parsed));
  return { h, store };
}

function keeperOf(name: string, h: ReturnType<typeof homeAt>, store: Store, stop: AbortSignal): Keeper {
  return new Keeper(
    name,
    {
      state: new StateWriter(store, { name, now: Date.now, log: () => undefined }),
      home: h,
      procs: realProcesses,
      pid: process.pid,
      env: process.env,
      now: Date.now,
      random: () => 0.5,
      sleep: abortableSleep,
      probe: (hc, target) => runProbe(hc, target, process.env),
    },
    stop,
  );
}

describe('keeper adopting a server that has just exited', () => {
  it('records the exit (status unknown) and restarts it under the restart policy', async () => {
    const port = freePort();
    const { h, store } = recorded('late', fakeConfig(port));
    // A pid that existed and is gone now.
    const gone = spawnSync('true').pid;
    // What `up` leaves when it chose to adopt the (then live) server: plain SQL, as in a test
    // fixture; the product writes it through claimAdoption over a row its keeper had written.
    store.db
      .prepare(
        `UPDATE runtime SET status = 'running', pid = @gone, pgid = @gone, starttime = 1, started_at = @t,
           keeper_pid = @me, port = @port WHERE name = 'late'`,
      )
      .run({ gone, t: Date.now() - 5000, me: process.pid, port });
    const stop = new AbortController();
    const keeper = keeperOf('late', h, store, stop.signal);
    expect(await keeper.claim()).toBe(true);
    const done = keeper.run();
    const row = await waitFor(
      () => {
        const r = store.getRuntime('late');
        return r?.health === 'ok' && r.pid !== gone ? r : undefined;
      },
      10_000,
      'a new server',
    );
    const events = store.listEvents('late', 50).map((e) => `${e.event_type}: ${e.message}`);
    expect(events).toContain(`adopt: server pid ${gone} exited before it could be re-attached`);
    expect(events.find((e) => e.startsWith('exit:'))).toMatch(/exit status unknown: a re-attached server/);
    expect(events.some((e) => e.startsWith('state: running -> backoff'))).toBe(true);
    expect(events.filter((e) => e.startsWith('spawn:'))).toHaveLength(1);
    stop.abort();
    expect(await done).toBe(0);
    expect(isAlive(row.pid as number)).toBe(false);
    expect(store.getRuntime('late')).toMatchObject({ status: 'stopped', pid: null, keeper_pid: null });
    store.close();
  });
});

describe('keeper runs', () => {
  it('a run leaves nothing on the keeper-long stop signal: many restarts, no growing listener list', async () => {
    // Each run once added an abort listener to the keeper's stop signal and never removed it: the
    // listener kept the run's context (health, stderr tail, exit) alive, ~5 KB a restart for the
    // keeper's whole life (bench/keeper-churn.mjs).
    const port = freePort();
    const { h, store } = recorded(
      'churn',
      fakeConfig(
        port,
        { FAKE_CRASH_AFTER_MS: '150' },
        { restart: { initial_delay: 0.1, multiplier: 1, max_retries: 1000 } },
      ),
    );
    store.db.prepare(`UPDATE runtime SET keeper_pid = ? WHERE name = 'churn'`).run(process.pid);
    const stop = new AbortController();
    const keeper = keeperOf('churn', h, store, stop.signal);
    expect(await keeper.claim()).toBe(true);
    const done = keeper.run();
    await waitFor(
      () => ((store.getRuntime('churn')?.restarts_total ?? 0) >= 6 ? true : undefined),
      20_000,
      '6 restarts',
    );
    // One listener at most: the current run's, or the backoff sleep's.
    expect(getEventListeners(stop.signal, 'abort').length).toBeLessThanOrEqual(1);
    stop.abort();
    expect(await done).toBe(0);
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0);
    store.close();
  });
});
