import type { ServingMetrics } from '../domain/metrics.js';
import { httpRequest, type HttpResult, type HttpTarget } from '../platform/http.js';
import { parsePrometheus } from './prometheus.js';
import { counterRates, type CounterReading } from './rates.js';

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
    /** Wall clock: when a reading was taken, as shown. */
    private readonly wall: () => number = Date.now,
    private readonly get: HttpGet = realGet,
    /** Monotonic clock: the intervals rates are computed over. */
    private readonly clock: () => number = () => performance.now(),
  ) {}

  async scrape(): Promise<ScrapeResult> {
    let answeredAt = 0;
    const [metrics, slots, props] = await Promise.all([
      this.fetch('/metrics').then((r) => {
        answeredAt = this.clock();
        return r;
      }),
      this.fetch('/slots'),
      this.ctxSize === undefined ? this.fetch('/props') : Promise.resolve(undefined),
    ]);
    const at = this.wall();
    if (props && 'res' in props && props.res.status === 200) this.ctxSize = propsCtx(props.res.body);

    if ('error' in metrics) return { ok: false, error: `/metrics: ${metrics.error}` };
    if (metrics.res.status !== 200) return { ok: false, error: `/metrics answered ${describeStatus(metrics.res)}` };
    const series = parsePrometheus(metrics.res.body);
    const slotCounts = slots && 'res' in slots && slots.res.status === 200 ? countSlots(slots.res.body) : null;
    const counter = series.get(`${P}tokens_predicted_total`);
    const prompt = series.get(`${P}prompt_tokens_total`);
    let rates = null;
    if (isCount(counter) && isCount(prompt)) {
      const cur = { at: answeredAt, counter, predicted: counter + (slotCounts?.decoding ?? 0), prompt };
      const r = counterRates(this.baseline, cur);
      rates = r.rates;
      this.baseline = r.baseline;
    }
    // What a server says is checked before anyone sees it: counts are whole and not negative, a
    // ratio is between 0 and 1, a rate past any real hardware is a broken counter.
    const count = (name: string) => {
      const v = series.get(`${P}${name}`);
      return isCount(v) ? Math.round(v) : null;
    };
    const ratio = series.get(`${P}kv_cache_usage_ratio`);
    const rate = (v: number | undefined) => (v !== undefined && v >= 0 && v <= MAX_RATE ? round(v) : null);
    return {
      ok: true,
      metrics: {
        at,
        tokens_per_s: rate(rates?.tokens_per_s),
        prompt_tokens_per_s: rate(rates?.prompt_tokens_per_s),
        requests_processing: count('requests_processing'),
        requests_deferred: count('requests_deferred'),
        slots_busy: slotCounts?.busy ?? null,
        slots_total: slotCounts?.total ?? null,
        ctx_size: this.ctxSize ?? null,
        kv_cache_usage: ratio !== undefined && ratio >= 0 && ratio <= 1 ? ratio : null,
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

interface SlotJson {
  is_processing?: unknown;
  next_token?: Array<{ n_decoded?: unknown }>;
}

/**
 * Busy and total slots from /slots (an array of `{id, is_processing, next_token: [{n_decoded}]}`),
 * and the tokens the busy slots have generated so far.
 */
export function countSlots(body: string): { busy: number; total: number; decoding: number } | null {
  try {
    const slots = JSON.parse(body) as unknown;
    if (!Array.isArray(slots)) return null;
    let busy = 0;
    let decoding = 0;
    let total = 0;
    for (const s of slots as SlotJson[]) {
      if (typeof s !== 'object' || s === null || Array.isArray(s)) continue;
      total++;
      if (s.is_processing !== true) continue;
      busy++;
      const n = s.next_token?.[0]?.n_decoded;
      if (typeof n === 'number' && isCount(n)) decoding += n;
    }
    return { busy, total, decoding };
  } catch {
    return null;
  }
}

/** The context of one slot from /props; null when it does not say. */
export function propsCtx(body: string): number | null {
  try {
    const props = JSON.parse(body) as { default_generation_settings?: { n_ctx?: unknown } };
    const n = props.default_generation_settings?.n_ctx;
    return typeof n === 'number' && Number.isInteger(n) && n > 0 && n < 2 ** 31 ? n : null;
  } catch {
    return null;
  }
}

/** Tokens per second no server reaches (a broken or hostile counter): shown as unknown. */
const MAX_RATE = 10_000_000;

function isCount(v: number | undefined): v is number {
  return v !== undefined && Number.isFinite(v) && v >= 0 && v < Number.MAX_SAFE_INTEGER;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
