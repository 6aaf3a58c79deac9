import { describe, expect, it } from 'vitest';
import { decideRestart, type RunHistory } from '../../src/keeper/restart-policy.js';

const policy = {
  enabled: true,
  initial_delay: 1,
  multiplier: 2,
  max_delay: 10,
  jitter: 0,
  max_retries: 5,
  min_uptime: 30,
  reset_after: 300,
};

const NOW = 10_000_000;
const loop = (attempts: number): RunHistory => ({ attempts, healthyMs: 0, recentCrashes: [], now: NOW });
const afterHealthy = (healthyMs: number, recentCrashes: number[] = [], attempts = 0): RunHistory => ({
  attempts,
  healthyMs,
  recentCrashes,
  now: NOW,
});

describe('restart policy: a crash loop', () => {
  it('grows the delay by the multiplier up to the cap', () => {
    const delays = [0, 1, 2, 3, 4].map((attempts) => decideRestart(loop(attempts), policy));
    expect(delays.map((d) => (d.kind === 'restart' ? d.delayMs : -1))).toEqual([1000, 2000, 4000, 8000, 10000]);
    expect(delays.map((d) => (d.kind === 'restart' ? d.attempt : -1))).toEqual([1, 2, 3, 4, 5]);
  });

  it('is given up after max_retries runs that never stayed healthy for min_uptime', () => {
    const d = decideRestart(loop(5), policy);
    expect(d).toEqual({
      kind: 'give-up',
      reason: 'crash loop: gave up after 5 restarts that never stayed healthy for min_uptime 30 s (max_retries 5)',
    });
    // Healthy, but for less than min_uptime: still the loop.
    expect(decideRestart(afterHealthy(29_999, [], 5), policy).kind).toBe('give-up');
  });

  it('applies jitter within ±jitter of the base delay', () => {
    const p = { ...policy, jitter: 0.2 };
    const at = (r: number) => decideRestart(loop(1), p, () => r);
    expect(at(0)).toMatchObject({ delayMs: 1600 });
    expect(at(0.5)).toMatchObject({ delayMs: 2000 });
    expect(at(1)).toMatchObject({ delayMs: 2400 });
  });

  it('never restarts when disabled', () => {
    expect(decideRestart(loop(0), { ...policy, enabled: false }).kind).toBe('give-up');
  });
});

describe('restart policy: a sporadic crash after a healthy run', () => {
  it('restarts promptly and does not count toward max_retries, however many came before', () => {
    const d = decideRestart(afterHealthy(180_000, [], 5), policy);
    expect(d).toEqual({ kind: 'restart', delayMs: 1000, attempt: 0, note: 'after a healthy run of 180 s' });
  });

  it('grows the delay only with the crash rate (sporadic crashes in the last reset_after seconds)', () => {
    const recent = [NOW - 250_000, NOW - 100_000];
    const old = [NOW - 900_000, NOW - 600_000];
    expect(decideRestart(afterHealthy(60_000, [...old, ...recent]), policy)).toMatchObject({
      delayMs: 4000,
      attempt: 0,
      note: 'after a healthy run of 60 s (2 earlier crashes in the last 300 s)',
    });
    expect(decideRestart(afterHealthy(60_000, old), policy)).toMatchObject({ delayMs: 1000 });
  });

  it('a server killed every 3 minutes is never abandoned (the soak in bench/soak.mjs, in miniature)', () => {
    let attempts = 0;
    const crashes: number[] = [];
    for (let i = 0; i < 100; i++) {
      const now = i * 180_000;
      const d = decideRestart({ attempts, healthyMs: 170_000, recentCrashes: crashes, now }, policy);
      expect(d.kind).toBe('restart');
      if (d.kind === 'restart') {
        attempts = d.attempt;
        if (d.attempt === 0) crashes.push(now);
        expect(d.delayMs).toBeLessThanOrEqual(2000);
      }
    }
  });
});
