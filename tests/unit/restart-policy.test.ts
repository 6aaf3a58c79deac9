import { describe, expect, it } from 'vitest';
import { decideRestart } from '../../src/engine/restart-policy.js';

const policy = {
  enabled: true,
  initial_delay: 1,
  multiplier: 2,
  max_delay: 10,
  jitter: 0,
  max_retries: 5,
  reset_after: 300,
};

describe('restart policy', () => {
  it('grows the delay by the multiplier up to the cap', () => {
    const delays = [0, 1, 2, 3, 4].map((attempts) => decideRestart({ attempts, stableMs: 0 }, policy));
    expect(delays.map((d) => (d.kind === 'restart' ? d.delayMs : -1))).toEqual([1000, 2000, 4000, 8000, 10000]);
    expect(delays.map((d) => (d.kind === 'restart' ? d.attempt : -1))).toEqual([1, 2, 3, 4, 5]);
  });

  it('gives up after max_retries', () => {
    const d = decideRestart({ attempts: 5, stableMs: 0 }, policy);
    expect(d).toEqual({ kind: 'give-up', reason: 'gave up after 5 restarts (max_retries 5)' });
  });

  it('resets the count after a run that was stable for reset_after', () => {
    expect(decideRestart({ attempts: 5, stableMs: 300_000 }, policy)).toEqual({
      kind: 'restart',
      delayMs: 1000,
      attempt: 1,
    });
    expect(decideRestart({ attempts: 5, stableMs: 299_999 }, policy).kind).toBe('give-up');
  });

  it('applies jitter within ±jitter of the base delay', () => {
    const p = { ...policy, jitter: 0.2 };
    const at = (r: number) => decideRestart({ attempts: 1, stableMs: 0 }, p, () => r);
    expect(at(0)).toMatchObject({ delayMs: 1600 });
    expect(at(0.5)).toMatchObject({ delayMs: 2000 });
    expect(at(1)).toMatchObject({ delayMs: 2400 });
  });

  it('never restarts when disabled', () => {
    expect(decideRestart({ attempts: 0, stableMs: 0 }, { ...policy, enabled: false }).kind).toBe('give-up');
  });
});
