import { setMaxListeners } from 'node:events';
import { Agent, request, type Dispatcher } from 'undici';
import type { BenchResult } from '../domain/metrics.js';
import { connectHost, type HttpTarget } from '../platform/http.js';
import { propsCtx } from './scrape.js';

export interface BenchOptions {
  instance: string;
  target: HttpTarget;
  /** The model id the server serves (its alias). */
  model: string;
  requests: number;
  concurrency: number;
  promptTokens: number;
  maxTokens: number;
  /** Aborts the run: requests in flight are cancelled, the result covers what completed. */
  signal?: AbortSignal;
  /** After each request (done counts failed ones too). */
  onProgress?: (p: { done: number; errors: number; tokens: number; elapsedS: number }) => void;
  /** Seconds to the answer's headers (queueing and the prompt included); default 300. */
  requestTimeoutS?: number;
  /** Seconds a stream may stay silent before the request counts as failed; default 60. */
  idleTimeoutS?: number;
  now?: () => number;
}

/** One request as the stream showed it. */
export interface RequestSample {
  ok: boolean;
  error?: string;
  /** The request never reached a server (refused, reset before an answer). */
  unreachable?: boolean;
  /** Send -> first content chunk, ms. */
  ttftMs: number | null;
  /** Content chunks received (llama-server sends one per token). */
  tokens: number;
  /** First -> last content chunk, ms. */
  genMs: number;
  /** The server's `timings` from the stream's last chunk. */
  timings: ServerTimings | null;
}

export interface ServerTimings {
  prompt_n: number;
  prompt_ms: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_second: number;
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

async function oneRequest(
  base: string,
  headers: Record<string, string>,
  dispatcher: Dispatcher,
  opts: BenchOptions,
  prompt: string,
  now: () => number,
): Promise<RequestSample> {
  const sent = now();
  let first: number | null = null;
  let last: number | null = null;
  let count = 0;
  let timings: ServerTimings | null = null;
  let done = false;
  const fail = (error: string): RequestSample => ({
    ok: false,
    error,
    ttftMs: first === null ? null : first - sent,
    tokens: count,
    genMs: first !== null && last !== null ? last - first : 0,
    timings,
  });
  try {
    const res = await request(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers,
      dispatcher,
      signal: opts.signal,
      headersTimeout: (opts.requestTimeoutS ?? 300) * 1000,
      // Between two chunks of the stream: a server that stops sending fails the request.
      bodyTimeout: (opts.idleTimeoutS ?? 60) * 1000,
      // A connection per request: reusing a kept-alive one after a streamed answer failed with
      // "other side closed" on every second request (undici 7, this llama-server); it costs nothing
      // measurable (bench/BENCHMARKS.md).
      reset: true,
      body: JSON.stringify({
        model: opts.model,
        messages: [{ role: 'user', content: prompt }],
        max_tokens: opts.maxTokens,
        stream: true,
        stream_options: { include_usage: true },
        // llama.cpp: generate max_tokens whatever the model says, and process every prompt whole.
        ignore_eos: true,
        cache_prompt: false,
      }),
    });
    if (res.statusCode !== 200) {
      const text = (await res.body.text()).slice(0, 300);
      return fail(`HTTP ${res.statusCode}${errorMessage(text)}`);
    }
    let buf = '';
    for await (const chunk of res.body) {
      buf += (chunk as Buffer).toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const event = quickEvent(data) ?? parseEvent(data);
        if (!event) continue;
        if (event.error) return fail(`stream error: ${event.error}`);
        if (event.content) {
          const t = now();
          if (first === null) first = t;
          last = t;
          count++;
        }
        if (event.timings) timings = event.timings;
      }
    }
    if (!done) return fail('the stream ended without [DONE]');
    // llama-server ends every stream with its timings: without them the stream was not whole.
    if (timings === null) return fail("the stream ended without the server's timings");
    return {
      ok: true,
      ttftMs: first === null ? null : first - sent,
      tokens: count,
      genMs: first !== null && last !== null ? last - first : 0,
      timings,
    };
  } catch (e) {
    const err = e as Error & { code?: string };
    const r = fail(describeRequestError(err, opts));
    r.unreachable = first === null && UNREACHABLE.has(err.code ?? '');
    return r;
  }
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', 'EHOSTUNREACH', 'ENOTFOUND']);

/** undici's errors in words an operator reads (the code kept in brackets). */
function describeRequestError(err: Error & { code?: string }, opts: BenchOptions): string {
  switch (err.code ?? '') {
    case 'ECONNREFUSED':
      return 'connection refused (ECONNREFUSED): the server is not listening';
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'HPE_INVALID_EOF_STATE':
      return `the server closed the connection mid-answer (${err.code})`;
    case 'UND_ERR_HEADERS_TIMEOUT':
      return `no answer within ${opts.requestTimeoutS ?? 300} s (${err.code})`;
    case 'UND_ERR_BODY_TIMEOUT':
      return `the stream stayed silent for ${opts.idleTimeoutS ?? 60} s (${err.code})`;
    default:
      return err.code ? `${err.message} (${err.code})` : err.message;
  }
}

function errorMessage(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: { message?: string } | string };
    const m = typeof j.error === 'string' ? j.error : j.error?.message;
    return m ? `: ${m}` : '';
  } catch {
    // Not JSON (an HTML error page from something in front of the server): one short line.
    const line = body
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim()
      .slice(0, 120);
    return line ? `: ${line}` : '';
  }
}

const CONTENT_RE = /"(?:content|reasoning_content)":"[^"]/;

/**
 * Most events are one token: `{"choices":[{...,"delta":{"content":"..."}}],...}`. Parsing each as
 * JSON costs the client CPU that, on a small machine, the server's generation threads then lack;
 * such an event is told apart by a look at its text. Events that may carry timings or an error
 * (and anything unusual) are parsed whole.
 */
function quickEvent(data: string): StreamEvent | undefined {
  if (data.includes('"timings"') || data.includes('"error"') || !data.startsWith('{"choices":[{')) return undefined;
  return { content: CONTENT_RE.test(data), timings: null, error: null };
}

interface StreamEvent {
  content: boolean;
  timings: ServerTimings | null;
  error: string | null;
}

/** One `data:` event of an OpenAI chat stream, as llama-server sends it. */
export function parseEvent(data: string): StreamEvent | undefined {
  let j: {
    choices?: Array<{ delta?: { content?: string | null; reasoning_content?: string | null } }>;
    timings?: Partial<ServerTimings>;
    error?: { message?: string } | string;
  };
  try {
    j = JSON.parse(data) as typeof j;
  } catch {
    return undefined;
  }
  const delta = j.choices?.[0]?.delta;
  const content = Boolean(delta?.content) || Boolean(delta?.reasoning_content);
  const t = j.timings;
  // Figures a server could not have measured (negative, not finite) make the timings unknown.
  const ok = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  const opt = (v: unknown) => (v === undefined ? 0 : ok(v) ? v : NaN);
  let timings: ServerTimings | null = null;
  if (t && ok(t.predicted_n) && ok(t.predicted_ms)) {
    const rate = t.predicted_per_second ?? (t.predicted_ms > 0 ? (t.predicted_n * 1000) / t.predicted_ms : 0);
    const candidate = {
      prompt_n: opt(t.prompt_n),
      prompt_ms: opt(t.prompt_ms),
      predicted_n: t.predicted_n,
      predicted_ms: t.predicted_ms,
      predicted_per_second: opt(rate),
    };
    if (Object.values(candidate).every((v) => Number.isFinite(v))) timings = candidate;
  }
  const error = j.error ? (typeof j.error === 'string' ? j.error : (j.error.message ?? 'error')) : null;
  return { content, timings, error };
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
