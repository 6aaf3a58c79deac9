/** The counters rates are computed from (llama-server's /metrics). */
export interface CounterReading {
  /** When they were read, ms. */
  at: number;
  /** `llamacpp:tokens_predicted_total`. */
  predicted: number;
  /** `llamacpp:prompt_tokens_total`. */
  prompt: number;
}

export interface Rates {
  tokens_per_s: number;
  prompt_tokens_per_s: number;
}

/** Two readings closer than this give no rate (the next one is compared with the older). */
export const MIN_RATE_INTERVAL_MS = 250;

/**
 * Rates over the interval between two readings of the counters, or null when there is none to give:
 * no earlier reading, readings too close together, or a counter that went down (the server
 * restarted, so its counters started again from zero: the new reading is the next baseline). Never
 * negative, never a figure over a reset.
 */
export function counterRates(prev: CounterReading | undefined, cur: CounterReading): Rates | null {
  if (!prev) return null;
  const dtS = (cur.at - prev.at) / 1000;
  if (dtS * 1000 < MIN_RATE_INTERVAL_MS) return null;
  const dPredicted = cur.predicted - prev.predicted;
  const dPrompt = cur.prompt - prev.prompt;
  if (dPredicted < 0 || dPrompt < 0 || !Number.isFinite(dPredicted) || !Number.isFinite(dPrompt)) return null;
  return { tokens_per_s: dPredicted / dtS, prompt_tokens_per_s: dPrompt / dtS };
}
