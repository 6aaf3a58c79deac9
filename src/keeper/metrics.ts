import type { InstanceConfig } from '../config/schema.js';
import type { StateWrites } from '../health/loop.js';
import { MIN_SCRAPE_GAP_MS } from '../metrics/cadence.js';
import type { ScrapeResult } from '../metrics/scrape.js';
import type { HttpTarget } from '../platform/http.js';

/** What reads one run's serving metrics (metrics/scrape.ts ServingScraper). */
export interface Scraper {
  scrape(): Promise<ScrapeResult>;
}

export type MakeScraper = (target: HttpTarget, timeoutMs: number) => Scraper;

export interface MetricsTaskDeps {
  state: StateWrites;
  now: () => number;
  /** A line in keeper.log. */
  log: (msg: string) => void;
}

/**
 * The serving metrics of one run (docs/ARCHITECTURE.md, "Serving metrics"): the health loop calls
 * `afterOk` after each healthy probe, so the scrape follows the health cadence, at most once per
 * interval, never two at a time, and never delays a probe (it is not awaited). A server that does
 * not answer /metrics in time is not unhealthy for it: the figures just age (ps shows them as
 * unknown). Each failure reason goes to keeper.log once, never with the API key.
 */
export function metricsTask(
  name: string,
  pid: number,
  config: InstanceConfig,
  scraper: Scraper,
  deps: MetricsTaskDeps,
): { afterOk: () => void; stop: () => void } {
  const gapMs = Math.max(MIN_SCRAPE_GAP_MS, config.healthcheck.interval * 1000) * 0.9;
  let inFlight = false;
  let stopped = false;
  let last = -Infinity;
  let lastError: string | null = null;
  return {
    afterOk() {
      const t = deps.now();
      if (stopped || inFlight || t - last < gapMs) return;
      inFlight = true;
      last = t;
      scraper
        .scrape()
        .then((r) => {
          if (stopped) return;
          if (r.ok) {
            if (lastError !== null) deps.log(`metrics of server ${pid} read again`);
            lastError = null;
            deps.state.write('metrics', (s) => s.recordMetrics(name, pid, r.metrics));
          } else if (r.error !== lastError) {
            lastError = r.error;
            deps.log(`cannot read the metrics of server ${pid}: ${r.error}`);
          }
        })
        // Whatever went wrong here is this scrape's, never the keeper's end.
        .catch((e: unknown) => deps.log(`metrics scrape failed: ${e instanceof Error ? e.message : String(e)}`))
        .finally(() => {
          inFlight = false;
        });
    },
    stop() {
      stopped = true;
    },
  };
}
