import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RetentionService } from '../../src/daemon/retention.js';
import { ServiceHost, type Service } from '../../src/daemon/service.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

/** A sleep that returns at once but still ends early on abort (the host's pauses, without waiting). */
const instant = (_ms: number, signal: AbortSignal) =>
  signal.aborted ? Promise.resolve() : new Promise<void>((r) => setImmediate(r));

function until(signal: AbortSignal): Promise<void> {
  return new Promise((r) => (signal.aborted ? r() : signal.addEventListener('abort', () => r(), { once: true })));
}

describe('the daemon as a host of services', () => {
  it('runs every service until stopped, then waits for each to finish', async () => {
    const order: string[] = [];
    const service = (name: string): Service => ({
      name,
      async run(signal) {
        order.push(`${name} started`);
        await until(signal);
        await new Promise((r) => setTimeout(r, 5));
        order.push(`${name} finished`);
      },
    });
    const stop = new AbortController();
    const host = new ServiceHost([service('supervision'), service('gpu')], { log: () => undefined, wait: instant });
    const done = host.run(stop.signal);
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(['supervision started', 'gpu started']);
    stop.abort();
    await done;
    expect(order.slice(2).sort()).toEqual(['gpu finished', 'supervision finished']);
  });

  it('a failing service is reported and run again after a pause; the others keep running', async () => {
    const pauses: number[] = [];
    const failures: string[] = [];
    let runs = 0;
    const stop = new AbortController();
    const flaky: Service = {
      name: 'flaky',
      run() {
        runs++;
        if (runs === 3) stop.abort();
        return Promise.reject(new Error(`nvidia-smi hung (${runs})`));
      },
    };
    let steadyRuns = 0;
    const steady: Service = {
      name: 'steady',
      async run(signal) {
        steadyRuns++;
        await until(signal);
      },
    };
    const host = new ServiceHost([flaky, steady], {
      log: () => undefined,
      wait: (ms, signal) => {
        pauses.push(ms);
        return instant(ms, signal);
      },
      onFailure: (name, error) => failures.push(`${name}: ${error}`),
    });
    await host.run(stop.signal);
    expect(failures).toEqual([
      'flaky: nvidia-smi hung (1)',
      'flaky: nvidia-smi hung (2)',
      'flaky: nvidia-smi hung (3)',
    ]);
    expect(pauses).toEqual([1000, 2000]);
    expect(steadyRuns).toBe(1);
  });

  it('retention prunes the history on its own schedule', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'retention-'));
    const store = new Store(openDatabase(path.join(dir, 'db')).db, Date.now, {
      eventsPerInstance: 10,
      healthPerInstance: 10,
    });
    for (let i = 0; i < 50; i++) store.addEvent('a', 'info', 't', `e${i}`);
    const stop = new AbortController();
    const waits: number[] = [];
    await new RetentionService(store, 60_000, (ms) => {
      waits.push(ms);
      stop.abort();
      return Promise.resolve();
    }).run(stop.signal);
    expect(store.listEvents('a', 100)).toHaveLength(10);
    expect(waits).toEqual([60_000]);
    store.close();
  });
});
