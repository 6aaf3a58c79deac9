import type { DownloadProgress } from '../domain/download.js';

/** How `models pull` reports itself: throttled progress with a rate, and sizes in its messages. */

/** Throttled progress with the rate over the last few seconds. */
export class Meter {
  private last = -Infinity;
  private samples: { t: number; bytes: number }[] = [];

  constructor(
    private readonly intervalMs: number,
    private readonly emit: (p: Pick<DownloadProgress, 'received' | 'bytesPerSecond' | 'etaSeconds'>) => void,
  ) {}

  start(bytes: number): void {
    this.samples = [{ t: performance.now(), bytes }];
    this.last = -Infinity;
  }

  report(received: number, total: number | null, final: boolean): void {
    const t = performance.now();
    if (!final && t - this.last < this.intervalMs) return;
    this.last = t;
    this.samples.push({ t, bytes: received });
    while (this.samples.length > 2 && (this.samples[1]?.t ?? t) < t - 5000) this.samples.shift();
    const first = this.samples[0] ?? { t, bytes: received };
    const rate = t > first.t ? ((received - first.bytes) * 1000) / (t - first.t) : 0;
    const eta = total !== null && rate > 0 ? Math.max(0, (total - received) / rate) : null;
    this.emit({ received, bytesPerSecond: Math.max(0, rate), etaSeconds: final && total !== null ? 0 : eta });
  }
}
