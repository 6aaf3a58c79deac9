/** What rates are computed from (llama-server's /metrics and /slots). */
export interface CounterReading {
  /** When /metrics answered, ms on a monotonic clock. */
  at: number;
  /**
   * Generated tokens so far: `llamacpp:tokens_predicted_total` (which llama-server adds to only
   * when a request ends) plus the tokens the busy slots have decoded so far (/slots `n_decoded`),
   * so a long generation shows while it runs rather than as one spike at its end.
   */
  predicted: number;
  /** `llamacpp:tokens_predicted_total` alone: only this going down means a reset. */
  counter: number;
  /** `llamacpp:prompt_tokens_total` (added to after each batch). */
  prompt: number;
}

export interface Rates {
  tokens_per_s: number;
  prompt_tokens_per_s: number;
}

/** Two readings closer than this give no rate (the next one is compared with the older). */
export const MIN_RATE_INTERVAL_MS = 250;

/**
 * Rates over the interval between the baseline and a new reading, and the next baseline.
 *
 * - No baseline, or the counters went down (the server restarted: they began again at zero): no
 *   rate; the reading is the new baseline. A rate never spans a reset and is never negative.
 * - Readings closer than MIN_RATE_INTERVAL_MS: no rate; the older baseline stays.
 * - /metrics and /slots are two requests: a request that ends between them is counted twice or not
 *   at all in one reading. The baseline keeps the highest total seen, so such a reading costs one
 *   interval its share and the sum of all deltas stays the true total (no dip, no double count).
 */
export function counterRates(
  prev: CounterReading | undefined,
  cur: CounterReading,
): { rates: Rates | null; baseline: CounterReading } {
  if (!prev || cur.counter < prev.counter || cur.prompt < prev.prompt) return { rates: null, baseline: cur };
  const dtMs = cur.at - prev.at;
  if (dtMs < MIN_RATE_INTERVAL_MS) return { rates: null, baseline: prev };
  const predicted = Math.max(prev.predicted, cur.predicted);
  const rates = {
    tokens_per_s: ((predicted - prev.predicted) * 1000) / dtMs,
    prompt_tokens_per_s: ((cur.prompt - prev.prompt) * 1000) / dtMs,
  };
  return { rates, baseline: { ...cur, predicted } };
}
