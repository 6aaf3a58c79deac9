import type { ServingMetrics } from '../domain/metrics.js';
import { httpRequest, type HttpResult, type HttpTarget } from '../platform/http.js';
import { parsePrometheus } from './prometheus.js';
import { counterRates, MIN_RATE_INTERVAL_MS, type CounterReading } from './rates.js';

export type HttpGet = (target: HttpTarget, path: string, timeoutMs: number) => Promise<HttpResult>;

const realGet: HttpGet = (target, path, timeoutMs) => httpRequest(target, 'GET', path, timeoutMs, undefined, 1 << 20);

export type ScrapeResult = { ok: true; metrics: ServingMetrics } | { ok: false; error: string };

const P = 'llamacpp:';

/**
 * Reads what one run of llama-server is serving (docs/ARCHITECTURE.md, "Serving metrics"): /metrics
 * (counters -> rates, the request gauges), /slots (busy and total) and, once per run, /props (the
 * context of a slot). One scraper per run: a new run starts without a baseline, and a counter that
 * goes down (a restart the keeper did not see) starts a new one, so no rate spans a reset.
 */
export class ServingScraper {
  private baseline: CounterReading | undefined;
  private ctxSize: number | null | undefined;

  constructor(
    private readonly target: HttpTarget,
    private readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
    private readonly get: HttpGet = realGet,
  ) {}

  async scrape(): Promise<ScrapeResult> {
    const [metrics, slots, props] = await Promise.all([
      this.fetch('/metrics'),
      this.fetch('/slots'),
      this.ctxSize === undefined ? this.fetch('/props') : Promise.resolve(undefined),
    ]);
    const at = this.now();
    if (props && 'res' in props && props.res.status === 200) this.ctxSize = propsCtx(props.res.body);

    if ('error' in metrics) return { ok: false, error: `/metrics: ${metrics.error}` };
    if (metrics.res.status !== 200) return { ok: false, error: `/metrics answered ${describeStatus(metrics.res)}` };
    const series = parsePrometheus(metrics.res.body);
    const predicted = series.get(`${P}tokens_predicted_total`);
    const prompt = series.get(`${P}prompt_tokens_total`);
    let rates = null;
    if (predicted !== undefined && prompt !== undefined) {
      const cur = { at, predicted, prompt };
      rates = counterRates(this.baseline, cur);
      const reset = this.baseline && (predicted < this.baseline.predicted || prompt < this.baseline.prompt);
      // Too close to the baseline: keep the older one, so the next rate spans a real interval.
      if (!this.baseline || reset || at - this.baseline.at >= MIN_RATE_INTERVAL_MS) this.baseline = cur;
    }
    const slotCounts = slots && 'res' in slots && slots.res.status === 200 ? countSlots(slots.res.body) : null;
    const gauge = (name: string) => finiteOrNull(series.get(`${P}${name}`));
    return {
      ok: true,
      metrics: {
        at,
        tokens_per_s: rates ? round(rates.tokens_per_s) : null,
        prompt_tokens_per_s: rates ? round(rates.prompt_tokens_per_s) : null,
        requests_processing: gauge('requests_processing'),
        requests_deferred: gauge('requests_deferred'),
        slots_busy: slotCounts?.busy ?? null,
        slots_total: slotCounts?.total ?? null,
        ctx_size: this.ctxSize ?? null,
        kv_cache_usage: gauge('kv_cache_usage_ratio'),
      },
    };
  }

  private async fetch(path: string): Promise<{ res: HttpResult } | { error: string }> {
    try {
      return { res: await this.get(this.target, path, this.timeoutMs) };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err?.name === 'TimeoutError') return { error: `no answer within ${this.timeoutMs / 1000} s` };
      return { error: err?.code ?? err?.message ?? String(e) };
    }
  }
}

function describeStatus(res: HttpResult): string {
  if (res.status === 501) return '501 (the server runs without --metrics)';
  if (res.status === 401 || res.status === 403) return `${res.status} (the API key was refused)`;
  return String(res.status);
}

/** Busy and total slots from /slots (an array of `{id, is_processing, ...}`). */
export function countSlots(body: string): { busy: number; total: number } | null {
  try {
    const slots = JSON.parse(body) as unknown;
    if (!Array.isArray(slots)) return null;
    const busy = slots.filter((s) => (s as { is_processing?: unknown })?.is_processing === true).length;
    return { busy, total: slots.length };
  } catch {
    return null;
  }
}

/** The context of one slot from /props; null when it does not say. */
export function propsCtx(body: string): number | null {
  try {
    const props = JSON.parse(body) as { default_generation_settings?: { n_ctx?: unknown } };
    const n = props.default_generation_settings?.n_ctx;
    return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function finiteOrNull(v: number | undefined): number | null {
  return v !== undefined && Number.isFinite(v) ? v : null;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
