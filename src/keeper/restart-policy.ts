import type { InstanceConfig } from '../config/schema.js';

export type RestartDecision =
  | {
      kind: 'restart';
      delayMs: number;
      /** The restart's number in the current crash loop; 0 after a stable run (it was no loop). */
      attempt: number;
      /** Why this delay, for the backoff event. */
      note: string;
    }
  | { kind: 'give-up'; reason: string };

export interface RunHistory {
  /** Restarts in the current crash loop (runs that ended before they were stable). */
  attempts: number;
  /** How long the run that just ended was continuously healthy, ms (0: it never was). */
  healthyMs: number;
  /** When the earlier runs that were stable ended (ms): the crash rate of a sporadic crasher. */
  recentCrashes: readonly number[];
  now: number;
}

/**
 * Pure restart policy (docs/ARCHITECTURE.md, "Restart policy"). Only a crash loop is given up on:
 * a run that never became healthy, or died within `min_uptime` of becoming healthy, counts toward
 * `max_retries`, with the delay growing by `multiplier` up to `max_delay`. A run that stayed healthy
 * for `min_uptime` was not a loop: it restarts without counting, after `initial_delay` grown only by
 * the number of such crashes in the last `reset_after` seconds (the crash rate). Compare Kubernetes
 * (never gives up, backoff reset after 10 min running), pm2 (counts only restarts of a process that
 * lived less than min_uptime), systemd (gives up on 5 starts in 10 s).
 */
export function decideRestart(
  history: RunHistory,
  policy: InstanceConfig['restart'],
  random: () => number = Math.random,
): RestartDecision {
  if (!policy.enabled) return { kind: 'give-up', reason: 'restart disabled in config' };
  const delay = (steps: number) => {
    const base = Math.min(policy.max_delay, policy.initial_delay * policy.multiplier ** steps);
    const spread = base * policy.jitter * (2 * random() - 1);
    return Math.max(0, Math.round((base + spread) * 1000));
  };
  if (history.healthyMs >= policy.min_uptime * 1000) {
    const window = policy.reset_after * 1000;
    const recent = history.recentCrashes.filter((t) => history.now - t <= window).length;
    return {
      kind: 'restart',
      delayMs: delay(recent),
      attempt: 0,
      note: `after a healthy run of ${Math.round(history.healthyMs / 1000)} s${recent ? ` (${recent} earlier crash${recent === 1 ? '' : 'es'} in the last ${policy.reset_after} s)` : ''}`,
    };
  }
  if (history.attempts >= policy.max_retries) {
    const n = history.attempts;
    return {
      kind: 'give-up',
      reason: `crash loop: gave up after ${n} restart${n === 1 ? '' : 's'} that never stayed healthy for min_uptime ${policy.min_uptime} s (max_retries ${policy.max_retries})`,
    };
  }
  const attempt = history.attempts + 1;
  return { kind: 'restart', delayMs: delay(history.attempts), attempt, note: `${attempt}/${policy.max_retries}` };
}
