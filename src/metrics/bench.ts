import { setMaxListeners } from 'node:events';
import { Agent, request, type Dispatcher } from 'undici';
import type { BenchResult } from '../domain/metrics.js';
import { connectHost, type HttpTarget } from '../platform/http.js';
import { oneRequest, type RequestOptions, type RequestSample, type ServerTimings } from './bench-request.js';
import { propsCtx } from './scrape.js';

export interface BenchOptions extends RequestOptions {
  instance: string;
  target: HttpTarget;
  requests: number;
  concurrency: number;
  promptTokens: number;
  /** After each request (done counts failed ones too). */
  onProgress?: (p: { done: number; errors: number; tokens: number; elapsedS: number }) => void;
  now?: () => number;
}

/**
 * `llama-orch bench` (docs/ARCHITECTURE.md, "Serving metrics"): streams chat completions through the
 * instance's OpenAI-compatible endpoint with `concurrency` requests in flight and measures what a
 * client sees: time to the first token, tokens per second, errors. Each request carries a different
 * prompt with the prompt cache off, so each is processed whole; `ignore_eos` makes each generate
 * `maxTokens` tokens. The server's own `timings` come back with each stream and are reported beside.
 */
export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const now = opts.now ?? (() => performance.now());
  const startedAt = new Date().toISOString();
  const dispatcher = new Agent({ connections: opts.concurrency, keepAliveTimeout: 10_000 });
  // Every request in flight listens on the one Ctrl-C signal.
  if (opts.signal) setMaxListeners(opts.concurrency + 16, opts.signal);
  const base = `http://${hostForUrl(opts.target.host)}:${opts.target.port}`;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.target.apiKey) headers.authorization = `Bearer ${opts.target.apiKey}`;
  const samples: RequestSample[] = [];
  let next = 0;
  let tokens = 0;
  let t0 = now();
  /** When the last request that counts ended: the run's wall time ends there (not at teardown). */
  let lastDone = t0;
  /** Requests in a row that could not reach the server: enough of them end the run (it is gone). */
  let unreachable = 0;
  let gone: string | null = null;
  try {
    const filler = await promptFiller(base, headers, dispatcher, opts.promptTokens, opts.signal);
    t0 = now();
    lastDone = t0;
    const worker = async () => {
      while (next < opts.requests && !opts.signal?.aborted && gone === null) {
        const i = next++;
        const s = await oneRequest(base, headers, dispatcher, opts, `${i} ${filler}`, now);
        if (opts.signal?.aborted && !s.ok) break; // cancelled by Ctrl-C: not a server error
        unreachable = !s.ok && s.unreachable ? unreachable + 1 : 0;
        if (unreachable >= Math.max(3, 2 * opts.concurrency)) {
          gone = `stopped after ${unreachable} requests in a row could not reach the server (${s.error})`;
        }
        samples.push(s);
        tokens += s.tokens;
        lastDone = now();
        opts.onProgress?.({
          done: samples.length,
          errors: samples.filter((x) => !x.ok).length,
          tokens,
          elapsedS: (now() - t0) / 1000,
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.requests) }, worker));
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
  // Interrupted: the requests cancelled in flight are not counted, nor is the time they took.
  const result = summarize(opts, startedAt, samples, (lastDone - t0) / 1000, opts.signal?.aborted === true);
  if (gone) result.error_samples.unshift(gone);
  return result;
}

/** The context of one slot (/props), or null when the server does not say. */
export async function slotContext(target: HttpTarget, timeoutMs = 5000): Promise<number | null> {
  const headers: Record<string, string> = {};
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
  try {
    const res = await request(`http://${hostForUrl(target.host)}:${target.port}/props`, {
      headers,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    return res.statusCode === 200 ? propsCtx(text) : null;
  } catch {
    return null;
  }
}

function hostForUrl(host: string): string {
  const h = connectHost(host);
  return h.includes(':') ? `[${h}]` : h;
}

/**
 * Text of about `tokens` tokens for this model: one sample is counted by the server's /tokenize,
 * and repeated to size (a word is one token in some vocabularies and three in others). Without
 * /tokenize, a word is taken for a token.
 */
async function promptFiller(
  base: string,
  headers: Record<string, string>,
  dispatcher: Dispatcher,
  tokens: number,
  signal?: AbortSignal,
): Promise<string> {
  const words = 'the quick brown fox jumps over the lazy dog while a slow river runs past old stone walls'.split(' ');
  let perWord = 1;
  try {
    const sample = words.join(' ');
    const res = await request(`${base}/tokenize`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ content: sample }),
      dispatcher,
      signal,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const body = (await res.body.json()) as { tokens?: unknown[] };
    if (res.statusCode === 200 && Array.isArray(body.tokens) && body.tokens.length > 0) {
      perWord = body.tokens.length / words.length;
    }
  } catch {
    // a word per token
  }
  const n = Math.max(1, Math.round(tokens / perWord));
  return Array.from({ length: n }, (_, i) => words[i % words.length]).join(' ');
}

export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

const r1 = (v: number | null) => (v === null || !Number.isFinite(v) ? null : Math.round(v * 10) / 10);

/** A generation rate needs at least this many tokens over at least this long. */
const MIN_RATE_TOKENS = 4;
const MIN_RATE_MS = 1;

/** The figures of a run from its requests (pure; tested on its own). */
export function summarize(
  opts: Pick<BenchOptions, 'instance' | 'requests' | 'concurrency' | 'promptTokens' | 'maxTokens'>,
  startedAt: string,
  samples: RequestSample[],
  wallS: number,
  interrupted: boolean,
): BenchResult {
  const ok = samples.filter((s) => s.ok);
  const ttfts = ok.map((s) => s.ttftMs).filter((v): v is number => v !== null);
  // A request's generation speed: the tokens after the first over the time after the first.
  // Too few tokens or too short a time give no rate (2 tokens 10 µs apart is not 200,000 tok/s).
  const perRequest = ok
    .filter((s) => s.tokens >= MIN_RATE_TOKENS && s.genMs >= MIN_RATE_MS)
    .map((s) => ((s.tokens - 1) * 1000) / s.genMs);
  const timed = ok.map((s) => s.timings).filter((t): t is ServerTimings => t !== null);
  const generating = timed.filter((t) => t.predicted_n >= MIN_RATE_TOKENS && t.predicted_ms >= MIN_RATE_MS);
  const promptRates = timed.filter((t) => t.prompt_ms > 0).map((t) => (t.prompt_n * 1000) / t.prompt_ms);
  const generated = samples.reduce((a, s) => a + s.tokens, 0);
  const predictedN = timed.reduce((a, t) => a + t.predicted_n, 0);
  const predictedMs = timed.reduce((a, t) => a + t.predicted_ms, 0);
  const genN = generating.reduce((a, t) => a + t.predicted_n, 0);
  const genMs = generating.reduce((a, t) => a + t.predicted_ms, 0);
  const errors = samples.filter((s) => !s.ok);
  return {
    instance: opts.instance,
    started_at: startedAt,
    requests: opts.requests,
    completed: ok.length,
    errors: errors.length,
    error_samples: [...new Set(errors.map((s) => s.error ?? 'error'))].slice(0, 5),
    // What was in flight at most.
    concurrency: Math.min(opts.concurrency, opts.requests),
    prompt_tokens: opts.promptTokens,
    max_tokens: opts.maxTokens,
    interrupted,
    ttft_ms: { p50: r1(percentile(ttfts, 50)), p95: r1(percentile(ttfts, 95)), max: r1(percentile(ttfts, 100)) },
    tokens_per_s: {
      p50: r1(percentile(perRequest, 50)),
      aggregate: wallS > 0 && samples.length > 0 ? r1(generated / wallS) : null,
    },
    prompt_tokens_per_s: r1(percentile(promptRates, 50)),
    generated_tokens: generated,
    wall_s: Math.round(wallS * 1000) / 1000,
    server: {
      predicted_n: predictedN,
      prompt_n: timed.reduce((a, t) => a + t.prompt_n, 0),
      tokens_per_s: genMs > 0 ? r1((genN * 1000) / genMs) : null,
      prompt_ms: r1(timed.reduce((a, t) => a + t.prompt_ms, 0)) as number,
      predicted_ms: r1(predictedMs) as number,
      tokens_per_s_p50: r1(
        percentile(
          generating.map((t) => t.predicted_per_second),
          50,
        ),
      ),
    },
    token_count_mismatches: ok.filter((s) => s.timings !== null && s.timings.predicted_n !== s.tokens).length,
  };
}
