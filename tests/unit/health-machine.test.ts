import { describe, expect, it } from 'vitest';
import { initialHealth, stableMs, stepHealth, type HealthState, type ProbeOutcome } from '../../src/health/machine.js';

const hc = {
  type: 'http' as const,
  path: '/health',
  interval: 1,
  timeout: 1,
  retries: 3,
  start_period: 10,
  startup_timeout: 60,
};
const ok: ProbeOutcome = { kind: 'ok', latencyMs: 2 };
const loading: ProbeOutcome = { kind: 'loading', latencyMs: 1 };
const refused: ProbeOutcome = { kind: 'unreachable', detail: 'connection refused' };
const timeout: ProbeOutcome = { kind: 'failure', detail: '/health timed out after 1 s' };

function run(seq: Array<[number, ProbeOutcome]>, start = 0) {
  let s: HealthState = initialHealth(start);
  const restarts: string[] = [];
  for (const [t, o] of seq) {
    const step = stepHealth(s, o, t, hc);
    s = step.state;
    if (step.restart) restarts.push(step.restart);
  }
  return { s, restarts };
}

describe('health state machine', () => {
  it('tolerates connection refused during start_period', () => {
    const { s, restarts } = run([
      [1000, refused],
      [5000, refused],
      [9000, refused],
    ]);
    expect(s.health).toBe('starting');
    expect(s.failures).toBe(0);
    expect(restarts).toEqual([]);
  });

  it('counts refused after start_period and restarts after retries', () => {
    const { s, restarts } = run([
      [11_000, refused],
      [12_000, refused],
      [13_000, refused],
    ]);
    expect(s.health).toBe('unhealthy');
    expect(restarts).toEqual(['unhealthy: connection refused 3/3']);
  });

  it('tolerates loading until startup_timeout, then restarts with the reason', () => {
    const a = run([
      [1000, loading],
      [59_000, loading],
    ]);
    expect(a.s.health).toBe('loading');
    expect(a.restarts).toEqual([]);
    const b = run([
      [1000, loading],
      [61_000, loading],
    ]);
    expect(b.restarts).toEqual(['still loading after 61 s (startup_timeout 60 s)']);
  });

  it('recovery resets the failure count', () => {
    const { s, restarts } = run([
      [1000, ok],
      [2000, timeout],
      [3000, timeout],
      [4000, ok],
      [5000, timeout],
      [6000, timeout],
    ]);
    expect(restarts).toEqual([]);
    expect(s.failures).toBe(2);
    expect(s.detail).toBe('/health timed out after 1 s 2/3');
  });

  it('marks a rejected API key as unauthorized without restarting', () => {
    const { s, restarts } = run([
      [1000, { kind: 'unauthorized', detail: '/health answered 401' }],
      [2000, { kind: 'unauthorized', detail: '/health answered 401' }],
      [3000, { kind: 'unauthorized', detail: 'x' }],
    ]);
    expect(s.health).toBe('unauthorized');
    expect(restarts).toEqual([]);
  });

  it('measures continuous health for reset_after', () => {
    const { s } = run([
      [1000, ok],
      [2000, ok],
      [3000, timeout],
      [4000, ok],
    ]);
    expect(stableMs(s, 10_000)).toBe(9000);
    const broken = run([
      [1000, ok],
      [2000, timeout],
      [3000, timeout],
      [4000, timeout],
    ]);
    expect(stableMs(broken.s, 10_000)).toBe(0);
  });
});
