import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InstanceConfigSchema } from '../../src/config/schema.js';
import { initialHealth, type HealthState, type ProbeOutcome } from '../../src/health/machine.js';
import { healthLoop } from '../../src/health/loop.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

/** The keeper's health loop on a real SQLite store, with a scripted probe and a fake clock. */
function setup(outcomes: ProbeOutcome[]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'health-loop-'));
  const store = new Store(openDatabase(path.join(dir, 'state.db')).db);
  store.ensureInstance('a', path.join(dir, 'config.json'));
  store.recordStarting('a', 0);
  const config = InstanceConfigSchema.parse({
    model: { path: 'm.gguf' },
    server: { port: 1 },
    healthcheck: { interval: 1, retries: 2, start_period: 5 },
  });
  let t = 0;
  const probes: number[] = [];
  const deps = {
    state: { write: (_what: string, fn: (s: Store) => void) => fn(store) },
    env: {},
    now: () => t,
    sleep: (ms: number) => {
      t += ms;
      return Promise.resolve();
    },
    probe: () => {
      probes.push(t);
      const next = outcomes.shift();
      // Script exhausted: the run "ends" (the keeper would abort the loop); never answer.
      return next ? Promise.resolve(next) : new Promise<ProbeOutcome>(() => undefined);
    },
  };
  let health: HealthState = initialHealth(0);
  const cell = { get: () => health, set: (h: HealthState) => (health = h) };
  return { store, config, deps, cell, probes, health: () => health };
}

describe('keeper health loop', () => {
  it('records loading then ok, moves starting -> running once, and probes fast only while loading', async () => {
    const ctx = setup([
      { kind: 'loading', latencyMs: 1 },
      { kind: 'loading', latencyMs: 1 },
      { kind: 'ok', latencyMs: 2 },
      { kind: 'ok', latencyMs: 3 },
    ]);
    const ctl = new AbortController();
    void healthLoop('a', ctx.config, ctx.deps, ctx.cell, ctl.signal);
    await new Promise((r) => setTimeout(r, 50));
    ctl.abort();
    // First probe after 100 ms; 250 ms apart while loading; the interval (1 s) once ok.
    expect(ctx.probes).toEqual([100, 350, 600, 1600, 2600]);
    expect(ctx.health()).toMatchObject({ health: 'ok', failures: 0 });
    const row = ctx.store.getRuntime('a');
    expect(row).toMatchObject({ status: 'running', health: 'ok', health_latency_ms: 3, last_health_ok_at: 1600 });
    const events = ctx.store.listEvents('a', 20).map((e) => `${e.event_type}: ${e.message}`);
    expect(events).toEqual([
      'state: stopped -> starting: starting server',
      'health: health starting -> loading: loading 0 s',
      'state: starting -> running: server answering (loading)',
      'health: health loading -> ok',
    ]);
    expect(ctx.store.listHealth('a', 10).map((h) => h.result)).toEqual(['loading', 'loading', 'ok', 'ok']);
  });

  it('asks for a restart, with the reason, after `retries` failed probes once the server was up', async () => {
    const ctx = setup([
      { kind: 'ok', latencyMs: 2 },
      { kind: 'failure', detail: '/health timed out after 5 s' },
      { kind: 'failure', detail: '/health timed out after 5 s' },
    ]);
    const end = await healthLoop('a', ctx.config, ctx.deps, ctx.cell, new AbortController().signal);
    expect(end.kind).toBe('health');
    expect(end.reason).toMatch(/timed out/);
    expect(ctx.store.getRuntime('a')).toMatchObject({ health: 'unhealthy', health_failures: 2 });
    const health = ctx.store.listEvents('a', 20).filter((e) => e.event_type === 'health');
    expect(health.map((e) => [e.level, e.message.split(':')[0]])).toEqual([
      ['info', 'health starting -> ok'],
      ['error', 'health ok -> unhealthy'],
    ]);
  });
});
