/**
 * Scrapes are at least this far apart, whatever the health interval: a 0.1 s probe is cheap, a
 * scrape (three requests, a Prometheus page parsed) less so.
 */
export const MIN_SCRAPE_GAP_MS = 1000;
