import type { InstanceConfig } from '../config/schema.js';

export type RestartDecision =
  { kind: 'restart'; delayMs: number; attempt: number } | { kind: 'give-up'; reason: string };

export interface RunHistory {
  /** Restarts already made since the last reset. */
  attempts: number;
  /** How long the run that just ended was continuously healthy (or up, when health never ran), ms. */
  stableMs: number;
}

/**
 * Pure restart policy: (history, config, random) -> delay | give up. pm2's rules: a run that was
 * stable for reset_after counts as a fresh start; backoff grows by multiplier up to max_delay;
 * jitter spreads restarts of many instances; after max_retries the instance is failed.
 */
export function decideRestart(
  history: RunHistory,
  policy: InstanceConfig['restart'],
  random: () => number = Math.random,
): RestartDecision {
  if (!policy.enabled) return { kind: 'give-up', reason: 'restart disabled in config' };
  const attempts = history.stableMs >= policy.reset_after * 1000 ? 0 : history.attempts;
  if (attempts >= policy.max_retries) {
    return {
      kind: 'give-up',
      reason: `gave up after ${attempts} restart${attempts === 1 ? '' : 's'} (max_retries ${policy.max_retries})`,
    };
  }
  const base = Math.min(policy.max_delay, policy.initial_delay * policy.multiplier ** attempts);
  const spread = base * policy.jitter * (2 * random() - 1);
  const delayMs = Math.max(0, Math.round((base + spread) * 1000));
  return { kind: 'restart', delayMs, attempt: attempts + 1 };
}
