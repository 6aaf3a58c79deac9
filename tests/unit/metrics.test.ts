import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ServingMetrics } from '../../src/domain/metrics.js';
import { metricsTask, type Scraper } from '../../src/keeper/metrics.js';
import { parseEvent, type RequestSample } from '../../src/metrics/bench-request.js';
import { percentile, summarize } from '../../src/metrics/bench.js';
import { parsePrometheus } from '../../src/metrics/prometheus.js';
import { counterRates } from '../../src/metrics/rates.js';
import { countSlots, propsCtx, ServingScraper, type HttpGet } from '../../src/metrics/scrape.js';
import { sparkline } from '../../src/format/metrics.js';
import { formatRate, requestsText, slotsText } from '../../src/format/text.js';
import type { InstanceSnapshot } from '../../src/domain/snapshot.js';
import type { InstanceConfig } from '../../src/config/schema.js';
import { InstanceConfigSchema } from '../../src/config/schema.js';

// Recorded from the real llama-server here (de3ff81) after some traffic: /metrics, /slots, /props
// and a streamed chat completion.
const FIX = path.join(import.meta.dirname, '../fixtures/metrics');
const read = (f: string) => fs.readFileSync(path.join(FIX, f), 'utf8');

describe('Prometheus text', () => {
  it("reads llama-server's /metrics page", () => {
    const m = parsePrometheus(read('llamacpp-metrics.txt'));
    expect(m.get('llamacpp:tokens_predicted_total')).toBe(12544);
    expect(m.get('llamacpp:prompt_tokens_total')).toBe(7252);
    expect(m.get('llamacpp:requests_processing')).toBe(0);
    expect(m.get('llamacpp:requests_deferred')).toBe(0);
    // Absent in this build (older ones export it): optional.
    expect(m.has('llamacpp:kv_cache_usage_ratio')).toBe(false);
  });

  it('labels, timestamps, special values and junk', () => {
    const m = parsePrometheus(
      [
        '# HELP x y',
        'a 1',
        'b{slot="0",le="+Inf"} 2.5e3 1700000000000',
        'c NaN',
        'd +Inf',
        'e not-a-number',
        '{broken 3',
        '',
        '  f   -4  ',
      ].join('\n'),
    );
    expect(m.get('a')).toBe(1);
    expect(m.get('b{slot="0",le="+Inf"}')).toBe(2500);
    expect(m.get('c')).toBeNaN();
    expect(m.get('d')).toBe(Infinity);
    expect(m.has('e')).toBe(false);
    expect(m.get('f')).toBe(-4);
  });
});

describe('rates from the counters', () => {
  const r = (at: number, predicted: number, prompt: number, counter = predicted) => ({
    at,
    predicted,
    prompt,
    counter,
  });

  it('delta over time; none without a baseline, over a reset, or over too short an interval', () => {
    expect(counterRates(undefined, r(1000, 10, 5)).rates).toBeNull();
    expect(counterRates(r(0, 100, 50), r(2000, 300, 150)).rates).toEqual({
      tokens_per_s: 100,
      prompt_tokens_per_s: 50,
    });
    // The server restarted: its counters began again at zero. The new reading is the baseline.
    const reset = counterRates(r(0, 5000, 900), r(2000, 40, 10));
    expect(reset).toEqual({ rates: null, baseline: r(2000, 40, 10) });
    expect(counterRates(r(0, 10, 900), r(2000, 40, 10)).rates).toBeNull();
    // Too close: no rate, and the older baseline stays so the next rate spans a real interval.
    const close = counterRates(r(0, 0, 0), r(100, 40, 10));
    expect(close).toEqual({ rates: null, baseline: r(0, 0, 0) });
    expect(counterRates(r(0, 7, 7), r(5000, 7, 7)).rates).toEqual({ tokens_per_s: 0, prompt_tokens_per_s: 0 });
  });

  it('tokens still being decoded count; a request ending between /metrics and /slots never gives a dip or a double count', () => {
    // 100 in the counter, a busy slot at 50 so far.
    const a = r(0, 150, 0, 100);
    // The request ended (its 80 moved into the counter) after /slots was read with it still at 80: counted twice.
    const twice = counterRates(a, r(1000, 180 + 80, 0, 180));
    expect(twice.rates?.tokens_per_s).toBe(110);
    // The next reading is right (180, idle): no negative rate, and the baseline keeps the highest total.
    const next = counterRates(twice.baseline, r(2000, 180, 0, 180));
    expect(next.rates?.tokens_per_s).toBe(0);
    const then = counterRates(next.baseline, r(3000, 300, 0, 300));
    // Over the three intervals: 150 -> 300 generated, every token counted once.
    expect((twice.rates?.tokens_per_s ?? 0) + (next.rates?.tokens_per_s ?? 0) + (then.rates?.tokens_per_s ?? 0)).toBe(
      150,
    );
  });
});

/** A server whose answers the test scripts; counts the requests per path. */
function scripted(pages: Record<string, () => { status: number; body: string } | Error>) {
  const calls: string[] = [];
  const get: HttpGet = (_t, p) => {
    calls.push(p);
    const page = pages[p]?.() ?? { status: 404, body: '' };
    if (page instanceof Error) return Promise.reject(page);
    return Promise.resolve({ ...page, latencyMs: 1 });
  };
  return { get, calls };
}

const metricsPage = (predicted: number, prompt: number, processing = 0, deferred = 0) => ({
  status: 200,
  body: [
    `llamacpp:tokens_predicted_total ${predicted}`,
    `llamacpp:prompt_tokens_total ${prompt}`,
    `llamacpp:predicted_tokens_seconds 999`,
    `llamacpp:requests_processing ${processing}`,
    `llamacpp:requests_deferred ${deferred}`,
  ].join('\n'),
});

describe('ServingScraper', () => {
  it('rates from counter deltas (never the gauges), slots, queue, context read once', async () => {
    let t = 0;
    let page = metricsPage(100, 40);
    const { get, calls } = scripted({
      '/metrics': () => page,
      '/slots': () => ({ status: 200, body: read('slots.json') }),
      '/props': () => ({ status: 200, body: read('props.json') }),
    });
    const s = new ServingScraper(
      { host: '127.0.0.1', port: 1 },
      1000,
      () => t,
      get,
      () => t,
    );
    const first = await s.scrape();
    expect(first).toEqual({
      ok: true,
      metrics: {
        at: 0,
        tokens_per_s: null,
        prompt_tokens_per_s: null,
        requests_processing: 0,
        requests_deferred: 0,
        slots_busy: 0,
        slots_total: 2,
        ctx_size: 256,
        kv_cache_usage: null,
      },
    });
    t = 2000;
    page = metricsPage(300, 140, 2, 3);
    const second = await s.scrape();
    expect(second.ok && second.metrics).toMatchObject({
      tokens_per_s: 100,
      prompt_tokens_per_s: 50,
      requests_processing: 2,
      requests_deferred: 3,
    });
    expect(calls.filter((c) => c === '/props')).toHaveLength(1);
  });

  it('a restart under it (counters down) gives no rate, then rates from the new baseline', async () => {
    let t = 0;
    let page = metricsPage(10_000, 5000);
    const { get } = scripted({ '/metrics': () => page });
    const s = new ServingScraper(
      { host: '127.0.0.1', port: 1 },
      1000,
      () => t,
      get,
      () => t,
    );
    await s.scrape();
    t = 5000;
    page = metricsPage(50, 20);
    const after = await s.scrape();
    expect(after.ok && after.metrics.tokens_per_s).toBeNull();
    t = 10_000;
    page = metricsPage(550, 20);
    const next = await s.scrape();
    expect(next.ok && next.metrics.tokens_per_s).toBe(100);
    expect(next.ok && next.metrics.prompt_tokens_per_s).toBe(0);
  });

  it('a failed scrape keeps the baseline: the next rate spans the whole gap', async () => {
    let t = 0;
    let page: { status: number; body: string } | Error = metricsPage(0, 0);
    const { get } = scripted({ '/metrics': () => page });
    const s = new ServingScraper(
      { host: '127.0.0.1', port: 1 },
      1000,
      () => t,
      get,
      () => t,
    );
    await s.scrape();
    t = 2000;
    page = Object.assign(new Error('timed out after 1000 ms'), { name: 'TimeoutError' });
    expect(await s.scrape()).toEqual({ ok: false, error: '/metrics: no answer within 1 s' });
    t = 4000;
    page = metricsPage(400, 0);
    const r = await s.scrape();
    expect(r.ok && r.metrics.tokens_per_s).toBe(100);
  });

  it("a long generation shows while it runs: the busy slots' n_decoded is added to the counter", async () => {
    let t = 0;
    let decoded = 0;
    let counter = 0;
    const slots = () => ({
      status: 200,
      body: JSON.stringify([
        { id: 0, is_processing: decoded > 0, next_token: [{ n_decoded: decoded }] },
        { id: 1, is_processing: false, next_token: [{ n_decoded: 0 }] },
      ]),
    });
    const { get } = scripted({ '/metrics': () => metricsPage(counter, 10), '/slots': slots });
    const s = new ServingScraper(
      { host: '127.0.0.1', port: 1 },
      1000,
      () => t,
      get,
      () => t,
    );
    const rates: Array<number | null> = [];
    // 20 tok/s for 60 s, read every 5 s; the counter moves only when the request ends.
    for (t = 0; t <= 65_000; t += 5000) {
      decoded = t <= 60_000 ? (t / 1000) * 20 : 0;
      counter = t <= 60_000 ? 0 : 1200;
      const r = await s.scrape();
      rates.push(r.ok ? r.metrics.tokens_per_s : null);
    }
    expect(rates[0]).toBeNull();
    expect(rates.slice(1, 13)).toEqual(new Array(12).fill(100 / 5));
    // The end moves 1200 from the slot into the counter: nothing new, no spike.
    expect(rates[13]).toBe(0);
  });

  it('a hostile or broken server: impossible figures are shown as unknown, never as given', async () => {
    let t = 0;
    let page = {
      status: 200,
      body: [
        'llamacpp:tokens_predicted_total 0',
        'llamacpp:prompt_tokens_total 0',
        'llamacpp:requests_processing 1e300',
        'llamacpp:requests_deferred -5',
        'llamacpp:kv_cache_usage_ratio 7.5',
      ].join('\n'),
    };
    const { get } = scripted({
      '/metrics': () => page,
      '/slots': () => ({ status: 200, body: '[{"id":0,"is_processing":true},5,null,"x"]' }),
      '/props': () => ({ status: 200, body: '{"default_generation_settings":{"n_ctx":-4}}' }),
    });
    const s = new ServingScraper(
      { host: '127.0.0.1', port: 1 },
      1000,
      () => t,
      get,
      () => t,
    );
    const first = await s.scrape();
    expect(first.ok && first.metrics).toMatchObject({
      requests_processing: null,
      requests_deferred: null,
      kv_cache_usage: null,
      slots_busy: 1,
      slots_total: 1,
      ctx_size: null,
    });
    t = 1000;
    page = { status: 200, body: 'llamacpp:tokens_predicted_total 1e300\nllamacpp:prompt_tokens_total 2.5' };
    const second = await s.scrape();
    expect(second.ok && second.metrics.tokens_per_s).toBeNull();
  });

  it('says why: metrics off in the server, a refused key, a closed port', async () => {
    const cases: Array<[{ status: number; body: string } | Error, string]> = [
      [
        { status: 501, body: '{"error":{"type":"not_supported_error"}}' },
        '/metrics answered 501 (the server runs without --metrics)',
      ],
      [{ status: 401, body: '' }, '/metrics answered 401 (the API key was refused)'],
      [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), '/metrics: ECONNREFUSED'],
    ];
    for (const [page, error] of cases) {
      const { get } = scripted({ '/metrics': () => page });
      expect(await new ServingScraper({ host: '127.0.0.1', port: 1 }, 1000, Date.now, get).scrape()).toEqual({
        ok: false,
        error,
      });
    }
  });

  it('slots and props bodies', () => {
    expect(countSlots(read('slots.json'))).toEqual({ busy: 0, total: 2, decoding: 0 });
    expect(
      countSlots(
        '[{"id":0,"is_processing":true,"next_token":[{"n_decoded":7}]},{"id":1,"is_processing":false,"next_token":[{"n_decoded":3}]},{"id":2,"is_processing":true}]',
      ),
    ).toEqual({ busy: 2, total: 3, decoding: 7 });
    expect(countSlots('{"error":"x"}')).toBeNull();
    expect(countSlots('garbage')).toBeNull();
    expect(propsCtx(read('props.json'))).toBe(256);
    expect(propsCtx('{}')).toBeNull();
  });
});

describe("the keeper's metrics task", () => {
  const config = (interval: number): InstanceConfig =>
    InstanceConfigSchema.parse({ model: { path: 'm.gguf' }, server: { port: 1 }, healthcheck: { interval } });

  it('one scrape per interval, never two at once, each failure reason logged once', async () => {
    let t = 0;
    const results: Array<() => Promise<Awaited<ReturnType<Scraper['scrape']>>>> = [];
    let pending: ((v: Awaited<ReturnType<Scraper['scrape']>>) => void) | undefined;
    let scrapes = 0;
    const scraper: Scraper = {
      scrape: () => {
        scrapes++;
        return new Promise((r) => (pending = r));
      },
    };
    const written: ServingMetrics[] = [];
    const logs: string[] = [];
    const task = metricsTask('a', 42, config(5), scraper, {
      now: () => t,
      log: (m) => logs.push(m),
      state: {
        write: (_what, fn) =>
          fn({ recordMetrics: (_n: string, _p: number, m: ServingMetrics) => written.push(m) } as never),
      },
    });
    void results;
    task.afterOk();
    task.afterOk(); // in flight: no second scrape
    expect(scrapes).toBe(1);
    const m = { at: 0 } as ServingMetrics;
    pending?.({ ok: true, metrics: m });
    await new Promise((r) => setImmediate(r));
    t = 1000;
    task.afterOk(); // within the 5 s interval
    expect(scrapes).toBe(1);
    t = 5000;
    task.afterOk();
    expect(scrapes).toBe(2);
    pending?.({ ok: false, error: '/metrics: ECONNRESET' });
    await new Promise((r) => setImmediate(r));
    t = 10_000;
    task.afterOk();
    pending?.({ ok: false, error: '/metrics: ECONNRESET' });
    await new Promise((r) => setImmediate(r));
    expect(written).toEqual([m]);
    expect(logs).toEqual(['cannot read the metrics of server 42: /metrics: ECONNRESET']);
    task.stop();
    t = 20_000;
    task.afterOk();
    expect(scrapes).toBe(3);
  });

  it('a 0.1 s health interval still scrapes at most about once a second', async () => {
    let t = 0;
    let scrapes = 0;
    const task = metricsTask(
      'a',
      1,
      config(0.1),
      { scrape: () => (scrapes++, Promise.resolve({ ok: false, error: 'x' })) },
      { now: () => t, log: () => undefined, state: { write: () => undefined } },
    );
    for (t = 0; t < 3000; t += 100) {
      task.afterOk();
      await new Promise((r) => setImmediate(r));
    }
    // At 0, ~900 and ~1800 ms (a tenth early for timer jitter), then 2700.
    expect(scrapes).toBe(4);
  });
});

describe('bench figures', () => {
  it("reads llama-server's stream: content chunks and the final timings", () => {
    const events = read('chat-stream.txt')
      .split('\n')
      .filter((l) => l.startsWith('data: ') && !l.includes('[DONE]'))
      .map((l) => parseEvent(l.slice(6)));
    expect(events.filter((e) => e?.content)).toHaveLength(5);
    const last = events[events.length - 1];
    expect(last?.timings).toMatchObject({ predicted_n: 5 });
    expect(parseEvent('{"error":{"message":"the request exceeds the available context size"}}')?.error).toBe(
      'the request exceeds the available context size',
    );
    expect(parseEvent('not json')).toBeUndefined();
  });

  it('timings a server could not have measured are unknown; too few tokens give no rate', () => {
    const bad = parseEvent('{"choices":[],"timings":{"predicted_n":-3000000000,"predicted_ms":5,"prompt_n":1}}');
    expect(bad?.timings).toBeNull();
    const inf = parseEvent(
      '{"choices":[],"timings":{"predicted_n":1,"predicted_ms":0.001,"predicted_per_second":1e400}}',
    );
    expect(inf?.timings).toBeNull();
    const tiny = (tokens: number, genMs: number, predicted_ms: number): RequestSample => ({
      ok: true,
      ttftMs: 5,
      tokens,
      genMs,
      timings: {
        prompt_n: 5,
        prompt_ms: 1,
        predicted_n: tokens,
        predicted_ms,
        predicted_per_second: (tokens * 1000) / predicted_ms,
      },
    });
    const r = summarize(
      { instance: 'a', requests: 2, concurrency: 8, promptTokens: 8, maxTokens: 2 },
      '2026-11-24T00:00:00.000Z',
      [tiny(2, 0.01, 0.001), tiny(1, 0, 0.001)],
      0.1,
      false,
    );
    expect(r.tokens_per_s.p50).toBeNull();
    expect(r.server.tokens_per_s).toBeNull();
    expect(r.server.tokens_per_s_p50).toBeNull();
    expect(r.concurrency).toBe(2); // what was in flight at most
  });

  it('percentiles and the summary of a run', () => {
    expect(percentile([], 50)).toBeNull();
    expect(percentile([5, 1, 3], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBe(10);
    const timings = (n: number, ms: number) => ({
      prompt_n: 70,
      prompt_ms: 7,
      predicted_n: n,
      predicted_ms: ms,
      predicted_per_second: (n * 1000) / ms,
    });
    const samples: RequestSample[] = [
      { ok: true, ttftMs: 10, tokens: 11, genMs: 100, timings: timings(11, 110) },
      { ok: true, ttftMs: 20, tokens: 11, genMs: 50, timings: timings(11, 55) },
      { ok: true, ttftMs: 30, tokens: 10, genMs: 90, timings: timings(11, 99) },
      { ok: false, error: 'HTTP 503: Loading model', ttftMs: null, tokens: 0, genMs: 0, timings: null },
    ];
    const r = summarize(
      { instance: 'a', requests: 4, concurrency: 2, promptTokens: 64, maxTokens: 11 },
      '2026-11-24T00:00:00.000Z',
      samples,
      0.5,
      false,
    );
    expect(r).toMatchObject({
      completed: 3,
      errors: 1,
      error_samples: ['HTTP 503: Loading model'],
      ttft_ms: { p50: 20, p95: 30, max: 30 },
      // (11-1)/0.1 s, (11-1)/0.05 s, (10-1)/0.09 s
      tokens_per_s: { p50: 100, aggregate: 64 },
      prompt_tokens_per_s: 10000,
      generated_tokens: 32,
      server: { predicted_n: 33, prompt_n: 210, tokens_per_s: 125 },
      token_count_mismatches: 1,
    });
  });
});

describe('serving columns and sparklines', () => {
  const snap = (p: Partial<InstanceSnapshot>) => p as InstanceSnapshot;

  it('TOK/S, SLOTS and REQ text', () => {
    expect([null, 0, 8.44, 123.6, 12_345, 2_500_000].map(formatRate)).toEqual(['-', '0', '8.4', '124', '12k', '2.5M']);
    expect(slotsText(snap({ slots_busy: 1, slots_total: 4 }))).toBe('1/4');
    expect(slotsText(snap({ slots_busy: null, slots_total: null }))).toBe('-');
    expect(requestsText(snap({ requests_processing: 2, requests_deferred: 0 }))).toBe('2');
    expect(requestsText(snap({ requests_processing: 4, requests_deferred: 3 }))).toBe('4+3');
    expect(requestsText(snap({ requests_processing: null, requests_deferred: null }))).toBe('-');
  });

  it('buckets by time, a gap is a space, scaled to the largest cell', () => {
    const pts = [
      { ts: 0, v: 0 },
      { ts: 10, v: 10 },
      { ts: 15, v: 30 },
      { ts: 35, v: null },
      { ts: 39, v: 5 },
      { ts: 99, v: 100 }, // outside [from, to)
    ];
    const s = sparkline(pts, 0, 40, 4);
    expect(s.max).toBe(20);
    expect(s.line).toBe('▁█ ▃');
    expect(sparkline([], 0, 40, 3)).toEqual({ line: '   ', max: 0 });
    expect(sparkline([{ ts: 1, v: 0 }], 0, 40, 2).line).toBe('▁ ');
  });
});
