import { request, type Dispatcher } from 'undici';

/** What one request takes of the run's options (BenchOptions, bench.ts). */
export interface RequestOptions {
  /** The model id the server serves (its alias). */
  model: string;
  maxTokens: number;
  /** Aborts the run: requests in flight are cancelled, the result covers what completed. */
  signal?: AbortSignal;
  /** Seconds to the answer's headers (queueing and the prompt included); default 300. */
  requestTimeoutS?: number;
  /** Seconds a stream may stay silent before the request counts as failed; default 60. */
  idleTimeoutS?: number;
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
 * One streamed chat completion of the run (bench.ts, runBench), as a client sees it: the time to
 * its first content chunk, the chunks counted as tokens, the server's timings from the stream's
 * end; any failure (an HTTP error, a broken or silent stream, an unreachable server) in words.
 */
export async function oneRequest(
  base: string,
  headers: Record<string, string>,
  dispatcher: Dispatcher,
  opts: RequestOptions,
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
function describeRequestError(err: Error & { code?: string }, opts: RequestOptions): string {
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
