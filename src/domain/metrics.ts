/**
 * What a server is serving, read by its keeper from llama-server's /metrics, /slots and /props
 * (src/metrics/scrape.ts), and what `llama-orch bench` measured. Rates come from the counters'
 * deltas over the interval between two scrapes, never from the server's `*_seconds` gauges (averages
 * that reset on every scrape). Every figure is null when the server did not say.
 */
export interface ServingMetrics {
  /** When the keeper read it (ms since the epoch). */
  at: number;
  /** Generated tokens per second over the last interval (`llamacpp:tokens_predicted_total`). */
  tokens_per_s: number | null;
  /** Prompt tokens per second over the last interval (`llamacpp:prompt_tokens_total`). */
  prompt_tokens_per_s: number | null;
  requests_processing: number | null;
  requests_deferred: number | null;
  /** Slots with `is_processing` in /slots, and all slots. */
  slots_busy: number | null;
  slots_total: number | null;
  /** The context one slot holds, in tokens (/props `default_generation_settings.n_ctx`). */
  ctx_size: number | null;
  /** KV cache usage, 0 to 1, where the build exports `llamacpp:kv_cache_usage_ratio`. */
  kv_cache_usage: number | null;
}

/** One point of an instance's serving history (the sparklines). */
export interface MetricsPoint {
  ts: number;
  tokens_per_s: number | null;
  prompt_tokens_per_s: number | null;
  requests_processing: number | null;
  requests_deferred: number | null;
  slots_busy: number | null;
}

/** `llama-orch bench NAME --json`; these names are public API (README, "bench"). */
export interface BenchResult {
  instance: string;
  /** When the run started (ISO 8601). */
  started_at: string;
  /** Requests asked for, requests that completed, and those that failed. */
  requests: number;
  completed: number;
  errors: number;
  /** The first few error messages, for a reader. */
  error_samples: string[];
  concurrency: number;
  /** What was asked: prompt tokens (approximate: the server counts them) and tokens to generate. */
  prompt_tokens: number;
  max_tokens: number;
  /** True when Ctrl-C stopped the run: the figures cover what completed before. */
  interrupted: boolean;
  /** Time to first token (the first content chunk of the stream), ms. */
  ttft_ms: { p50: number | null; p95: number | null; max: number | null };
  /**
   * Generated tokens per second: p50 of each request's (tokens after the first / time after the
   * first), and aggregate = every generated token / the run's wall time.
   */
  tokens_per_s: { p50: number | null; aggregate: number | null };
  /** p50 of each request's prompt_n / prompt_ms as the server reported it (`timings`). */
  prompt_tokens_per_s: number | null;
  /** Generated tokens counted from the streams, and the run's wall time. */
  generated_tokens: number;
  wall_s: number;
  /** The server's own `timings` over the same requests, for the cross-check. */
  server: {
    predicted_n: number;
    prompt_n: number;
    /** Sum of predicted_n / sum of predicted_ms: generation speed without HTTP or queueing. */
    tokens_per_s: number | null;
    /** p50 over requests of the server's predicted_per_second. */
    tokens_per_s_p50: number | null;
    /** Sums of the requests' prompt_ms and predicted_ms: the time the server spent on them. */
    prompt_ms: number;
    predicted_ms: number;
  };
  /** Requests whose streamed token count differed from the server's predicted_n. */
  token_count_mismatches: number;
}
