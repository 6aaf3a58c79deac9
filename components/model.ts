import os from 'node:os';
import type { DaemonStatus, InstanceSnapshot } from '../src/domain/snapshot.js';
import type { GpuInfo } from '../src/domain/gpu.js';
import { rigSnapshot, uptimeSeconds } from '../src/app/snapshot.js';
import type { DashboardSources, EventRow } from '../src/app/dashboard.js';
import { describeLines } from '../src/format/describe.js';
import { visibleKey } from './visible-key.js';

export type { DashboardSources };

export interface DashboardState {
  now: number;
  host: string;
  home: string;
  daemon: DaemonStatus;
  instances: InstanceSnapshot[];
  events: EventRow[];
  error: string | null;
  /** The GPU panel: the rig's GPUs, why they could not be read, whether there is no vendor tool. */
  gpus: GpuInfo[];
  gpuError: string | null;
  cpuOnly: boolean;
  /** No vendor tool because reading was turned off (LLAMA_ORCH_NVIDIA_SMI=none), in words; else null. */
  gpuOff?: string | null;
  /** The details pane's instance as describe prints it (absent or null: the pane is not shown). */
  details?: Details | null;
}

/** One instance described, for the details pane (what `describe NAME` prints). */
export interface Details {
  name: string;
  lines: string[];
}

export interface ModelOptions {
  pollMs?: number;
  tickMs?: number;
  /** The tick once nobody has pressed a key for idleAfterMs: uptimes and the clock move in 2 s steps. */
  idleTickMs?: number;
  idleAfterMs?: number;
  /** Changes from the feed are shown at most this often (a crash loop writes many events). */
  minGapMs?: number;
  /**
   * Idle and settled (every instance running healthy, or stopped, failed, invalid), the snapshot is
   * read anew at most this often; the ticks between only move the clock and the uptimes.
   */
  settledReadMs?: number;
  eventLimit?: number;
  now?: () => number;
}

/**
 * The dashboard's model: the App subscribes to it and reads its snapshot. It never probes servers:
 * it hears of keeper writes through the change feed and of config edits through the instances/
 * watcher, and otherwise ticks (once a second while someone types, every 2 s when idle) so uptimes
 * move. It describes the instance the details pane shows when the selection or the data changes.
 */
export class DashboardModel {
  private state: DashboardState;
  private listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private stopWatching: (() => Promise<void>) | undefined;
  private unsubscribe: (() => void) | undefined;
  private lastRefresh = 0;
  private dirty = true;
  private changed = false;
  private lastKey = '';
  private lastInput = 0;
  private cachedEvents: { lastId: number; rows: EventRow[] } = { lastId: -1, rows: [] };
  private lastReconcile = 0;
  private lastRead = 0;
  private lastGpuKey = '';
  /** The instance the details pane shows, and its text as last published. */
  private detailsName: string | undefined;
  private detailsText = '';

  constructor(
    private readonly deps: DashboardSources,
    private readonly opts: ModelOptions = {},
  ) {
    this.state = this.build();
  }

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getSnapshot = (): DashboardState => this.state;

  start(): void {
    this.unsubscribe = this.deps.feed.subscribe(() => (this.changed = true));
    this.stopWatching = this.deps.watchConfigs?.(() => this.markDirty());
    this.timer = setInterval(() => this.poll(), this.opts.pollMs ?? 250);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
    await this.stopWatching?.();
  }

  /** Forces a refresh on the next poll (after an action of our own, a config edit). */
  markDirty(): void {
    this.dirty = true;
  }

  /**
   * The details pane shows `name` (undefined: it is not shown). It is described now, then again
   * when the data changes (a new state is published, a change was read): never while drawing.
   */
  showDetails(name: string | undefined): void {
    if (name === this.detailsName) return;
    this.detailsName = name;
    this.state = { ...this.state, details: this.describe() };
    this.notify();
  }

  /** A key was pressed: back to the 1 s tick. */
  touch(): void {
    this.lastInput = this.now();
    this.dirty = true;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Each full-frame render costs 10-15 ms in Ink: while nobody types, tick half as often. */
  private tick(now: number): number {
    return this.idle(now) ? (this.opts.idleTickMs ?? 2000) : (this.opts.tickMs ?? 1000);
  }

  private idle(now: number): boolean {
    return now - this.lastInput > (this.opts.idleAfterMs ?? 15_000);
  }

  poll(): void {
    const now = this.now();
    const since = now - this.lastRefresh;
    const changed = this.changed && since >= (this.opts.minGapMs ?? 900);
    if (since < this.tick(now) && !this.dirty && !changed) return;
    // Reconcile (it writes) after an action of ours, else every 10 s: the snapshot shows what /proc
    // says in any case, and a write by a keeper (a probe, every few seconds each) is no reason to.
    const reconcile = this.dirty || now - this.lastReconcile >= 10_000;
    const read = this.dirty || changed || reconcile || !this.settled(now);
    const news = this.dirty || changed;
    this.dirty = false;
    this.changed = false;
    if (read) this.refresh(reconcile, news);
    else this.retime(now);
  }

  /**
   * Nothing to read on this tick: idle, the last read is recent, the GPU readings are as they were and
   * every instance is in a state that only time moves (running healthy, stopped, failed, invalid).
   * Status changes still come at once through the feed; figures that keepers write without a status
   * change (tokens/s, probe latency, a heartbeat going stale) show on the next read.
   */
  private settled(now: number): boolean {
    if (!this.idle(now) || now - this.lastRead >= (this.opts.settledReadMs ?? 6000)) return false;
    if (this.state.error !== null || this.gpuKey() !== this.lastGpuKey) return false;
    return this.state.instances.every((i) =>
      i.state === 'running' ? i.health === 'ok' : ['stopped', 'failed', 'invalid'].includes(i.state),
    );
  }

  /** What the GPU panel shows of the latest sample (not its time): a new reading of the same figures is no change. */
  private gpuKey(): string {
    const g = this.deps.gpu?.();
    return g ? JSON.stringify([g.vendor, g.gpus, g.processes, g.error]) : '';
  }

  /** The clock and uptimes of the last snapshot moved to now, without reading anything. */
  private retime(now: number): void {
    const instances = this.state.instances.map((i) =>
      i.started_at === null || i.uptime_s === null
        ? i
        : { ...i, uptime_s: uptimeSeconds(Date.parse(i.started_at), now) },
    );
    this.publish({ ...this.state, now, instances });
  }

  /** `news`: something changed (a write seen by the feed, an action, a config edit): details are described again. */
  refresh(reconcile = true, news = true): void {
    if (reconcile) {
      this.lastReconcile = this.now();
      try {
        this.deps.reconcile?.();
      } catch {
        // a busy or read-only database: the snapshot below still shows what /proc says
      }
    }
    const next = this.build();
    this.lastRead = next.now;
    this.lastGpuKey = this.gpuKey();
    this.publish(next, news);
  }

  private publish(next: DashboardState, news = false): void {
    this.lastRefresh = next.now;
    // Keep the same object (so React does not re-render) when nothing visible changed: health
    // probes rewrite timestamps and latencies several times a second.
    const key = visibleKey(next, this.tick(next.now), this.idle(next.now));
    const moved = key !== this.lastKey;
    const details = this.detailsName !== undefined && (moved || news) ? this.describe() : (this.state.details ?? null);
    if (!moved && details === this.state.details) return;
    this.lastKey = key;
    this.state = { ...next, details };
    this.notify();
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }

  /** The details of the instance shown, as describe prints them; the same object while the text is the same. */
  private describe(): Details | null {
    const name = this.detailsName;
    if (name === undefined || !this.deps.describe) return null;
    let lines: string[];
    try {
      lines = describeLines(this.deps.describe(name, this.deps.gpu?.()));
    } catch (e) {
      lines = [`cannot describe ${name}: ${e instanceof Error ? e.message : String(e)}`];
    }
    const text = lines.join('\n');
    const last = this.state.details;
    if (last?.name === name && text === this.detailsText) return last;
    this.detailsText = text;
    return { name, lines };
  }

  /** Events are re-read only when a new one was written. */
  private events(): EventRow[] {
    const { store } = this.deps.sources;
    const lastId = store.lastEventId();
    if (lastId !== this.cachedEvents.lastId) {
      this.cachedEvents = { lastId, rows: store.listEvents(undefined, this.opts.eventLimit ?? 200) };
    }
    return this.cachedEvents.rows;
  }

  private build(): DashboardState {
    const now = this.now();
    const { home } = this.deps.sources;
    try {
      const gpu = this.deps.gpu?.();
      const cpuOnly = gpu !== undefined && gpu.vendor === null;
      const rig = rigSnapshot({ ...this.deps.sources, ...(gpu ? { gpu } : {}) }, now);
      return {
        now,
        host: os.hostname(),
        home: home.root,
        daemon: rig.daemon,
        instances: rig.instances,
        events: this.events(),
        error: null,
        gpus: rig.gpus,
        gpuError: rig.gpu_error,
        cpuOnly,
        gpuOff: cpuOnly ? (this.deps.gpuToolsOff ?? null) : null,
      };
    } catch (e) {
      return {
        ...(this.state ?? {
          host: os.hostname(),
          home: home.root,
          daemon: { running: false, pid: null, proxy: null },
          instances: [],
          events: [],
          gpus: [],
          gpuError: null,
          cpuOnly: false,
          gpuOff: null,
        }),
        now,
        error: e instanceof Error ? e.message : String(e),
      };
    }
  }
}
