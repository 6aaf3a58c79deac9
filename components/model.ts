import os from 'node:os';
import { clockText, formatUptime, latencyText } from '../src/format/text.js';
import type { DaemonStatus, InstanceSnapshot } from '../src/domain/snapshot.js';
import type { GpuInfo, GpuSample } from '../src/domain/gpu.js';
import { rigSnapshot, uptimeSeconds, type SnapshotSources } from '../src/app/snapshot.js';
import type { EventRow } from '../src/store/store.js';
import type { ChangeFeed } from '../src/store/watch.js';

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
}

export interface DashboardSources {
  /** What a snapshot reads (home, store, /proc, configs). */
  sources: SnapshotSources;
  /** Tells the model that instance state or events changed (store/watch.ts). */
  feed: ChangeFeed;
  /** Config files under instances/ changed (config/watch.ts); returns the stop function. */
  watchConfigs?: (onChange: () => void) => () => Promise<void>;
  /** The explicit reconciliation step, run before each read (engine/reconcile.ts). */
  reconcile?: () => void;
  /** The latest GPU sample (the daemon's while fresh, else the dashboard's own sampler's). */
  gpu?: () => GpuSample | undefined;
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
 * The dashboard's view model, for useSyncExternalStore. It never probes servers: it hears of keeper
 * writes through the change feed and of config edits through the instances/ watcher, and otherwise
 * ticks (once a second while someone types, every 2 s when idle) so uptimes move.
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
    this.dirty = false;
    this.changed = false;
    if (read) this.refresh(reconcile);
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

  refresh(reconcile = true): void {
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
    this.publish(next);
  }

  private publish(next: DashboardState): void {
    this.lastRefresh = next.now;
    // Keep the same object (so React does not re-render) when nothing visible changed: health
    // probes rewrite timestamps and latencies several times a second.
    const key = visibleKey(next, this.tick(next.now), this.idle(next.now));
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.state = next;
    for (const fn of this.listeners) fn();
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
        cpuOnly: gpu !== undefined && gpu.vendor === null,
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
        }),
        now,
        error: e instanceof Error ? e.message : String(e),
      };
    }
  }
}

/**
 * What the screen shows: a refresh that changes none of it renders nothing. While someone uses the
 * dashboard every tick redraws (a pane may show times relative to now); idle, only what the table
 * and header show moves it (the clock to the minute, the uptimes as printed) and once a minute.
 */
function visibleKey(s: DashboardState, tickMs: number, idle: boolean): string {
  const inst = s.instances.map((i) => [
    i.name,
    i.state,
    i.health,
    i.health_detail,
    i.pid,
    i.port,
    i.backend,
    i.gpus.join(','),
    i.model,
    i.started_at, // uptimes move with the tick, not on their own
    i.restarts,
    i.next_restart_in_s === null ? null : Math.round(i.next_restart_in_s),
    i.last_error,
    i.config_error,
    // A probe's latency as printed (below 10 ms not at all, else to one significant digit): its
    // jitter would otherwise redraw the whole frame on nearly every probe of 16 instances.
    latencyText(i.health_latency_ms),
    i.vram_bytes === null ? null : Math.round(i.vram_bytes / 2 ** 26),
    i.warnings.join('|'),
    i.tokens_per_s,
    i.slots_busy,
    i.slots_total,
    i.requests_processing,
    i.requests_deferred,
    i.proxy_in_flight,
    i.proxy_queued,
  ]);
  // GPU readings to the percent and 64 MiB: noise below that would re-render every sample.
  const gpus = s.gpus.map((g) => [
    g.index,
    g.utilization_pct,
    g.memory_used_bytes === null ? null : Math.round(g.memory_used_bytes / 2 ** 26),
    g.temperature_c,
    g.power_w === null ? null : Math.round(g.power_w / 5),
    g.processes.map((p) => `${p.pid}:${p.instance}:${Math.round((p.memory_bytes ?? 0) / 2 ** 26)}`).join(','),
  ]);
  const lastEvent = s.events.length ? s.events[s.events.length - 1]?.id : 0;
  const clock = idle
    ? [clockText(s.now), Math.floor(s.now / 60_000), s.instances.map((i) => formatUptime(i.uptime_s))]
    : Math.floor(s.now / tickMs);
  return JSON.stringify([
    clock,
    s.daemon.running,
    s.daemon.proxy,
    s.error,
    lastEvent,
    inst,
    gpus,
    s.gpuError,
    s.cpuOnly,
  ]);
}
