import type { StoreBase } from '../store/base.js';
import type { Service } from './service.js';

/**
 * Keeps the event and health history bounded (store/history.ts, prune) even when nothing writes for
 * a long time; the metrics history will be pruned here too.
 */
export class RetentionService implements Service {
  readonly name = 'retention';

  constructor(
    private readonly store: StoreBase,
    private readonly intervalMs: number,
    private readonly wait: (ms: number, signal: AbortSignal) => Promise<void>,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.store.prune();
      await this.wait(this.intervalMs, signal);
    }
  }
}
