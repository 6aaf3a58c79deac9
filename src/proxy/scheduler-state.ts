import type { ProxyError } from './errors.js';
import type { SchedulerOps } from './scheduler-ops.js';

/** Per instance: what the proxy counts (the dashboard, ps and /metrics show it). */
export interface InstanceCounts {
  inFlight: number;
  queued: number;
  requests: number;
  errors: number;
  /** When the last request ended (ms); 0: none since the daemon started. */
  lastEnd: number;
  lastRequestAt: number | null;
  /** Starts made because a request named it, stops to free memory for another, stops after idle_ttl. */
  starts: number;
  evictions: number;
  idleStops: number;
}

/**
 * What the scheduler remembers of each instance between requests: the counts, the starts and stops
 * it has in progress, the failed starts it answers from memory; and what follows from them (idle,
 * last used). Placement (placement.ts) and the idle sweep (idle-sweep.ts) decide from it.
 */
export class SchedulerState {
  private readonly counts = new Map<string, InstanceCounts>();
  /** Starts in progress, shared by every request that waits for the same instance. */
  readonly starting = new Map<string, Promise<void>>();
  /** Failed on-demand starts, answered from memory for a while (SchedulerOptions.failureMemoMs). */
  readonly failures = new Map<string, { at: number; error: ProxyError }>();
  /** Stops the scheduler made (idle, eviction, group) and not finished: requests wait, then start it again. */
  readonly stopping = new Map<string, Promise<void>>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly ops: SchedulerOps) {}

  /** Told when a count changes (the stats writer). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(): void {
    for (const fn of this.listeners) fn();
  }

  snapshot(): Map<string, InstanceCounts> {
    return new Map([...this.counts].map(([k, v]) => [k, { ...v }]));
  }

  countsOf(name: string): InstanceCounts {
    let c = this.counts.get(name);
    if (!c) {
      c = {
        inFlight: 0,
        queued: 0,
        requests: 0,
        errors: 0,
        lastEnd: 0,
        lastRequestAt: null,
        starts: 0,
        evictions: 0,
        idleStops: 0,
      };
      this.counts.set(name, c);
    }
    return c;
  }

  /** When the last request ended (ms), 0 when none did (its counts are not created). */
  lastEnd(name: string): number {
    return this.counts.get(name)?.lastEnd ?? 0;
  }

  /** True when nothing is in flight or waiting for the instance. */
  idle(name: string): boolean {
    const c = this.counts.get(name);
    return !this.stopping.has(name) && !this.starting.has(name) && (!c || (c.inFlight === 0 && c.queued === 0));
  }

  /** Stops the instance, recording it as stopping meanwhile (a request for it waits, then starts it). */
  async stopOwn(name: string, reason: string): Promise<void> {
    const p = this.ops.stop(name, reason).finally(() => this.stopping.delete(name));
    this.stopping.set(name, p);
    await p;
  }

  /** Busy with requests that did not come through the proxy (seen by a scrape after its last proxied one). */
  servedDirectly(name: string, view = this.ops.view(name)): boolean {
    const at = view.servingAt ?? null;
    return at !== null && at > this.lastEnd(name);
  }

  /** When the instance last served (its last request's end), else when its run started. */
  lastUsed(name: string): number {
    return Math.max(this.lastEnd(name), this.ops.view(name).startedAt ?? 0);
  }

  /** Forgets instances that are no longer configured (their counts, remembered failures). */
  retain(names: ReadonlySet<string>): void {
    for (const map of [this.counts, this.failures]) {
      for (const n of [...map.keys()]) if (!names.has(n) && !this.starting.has(n)) map.delete(n);
    }
  }
}
