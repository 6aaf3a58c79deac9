import os from 'node:os';
import { watch, type FSWatcher } from 'chokidar';
import type { Home } from '../home.js';
import type { EventRow, Store } from '../store/store.js';
import { snapshotAll, type InstanceSnapshot } from '../engine/snapshot.js';
import type { ConfigLoader } from '../config/cached.js';
import { daemonStatus, type DaemonStatus } from '../engine/daemon-status.js';

export interface DashboardState {
  now: number;
  host: string;
  home: string;
  daemon: DaemonStatus;
  instances: InstanceSnapshot[];
  events: EventRow[];
  error: string | null;
}

/**
 * The dashboard's view of the world, for useSyncExternalStore: it never probes servers itself; it
 * notices keeper writes through SQLite's data_version (a cheap per-connection counter) and config
 * edits through a watcher on instances/, and otherwise ticks once a second for uptimes.
 */
export class DashboardModel {
  private state: DashboardState;
  private listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private lastVersion = -1;
  private lastRefresh = 0;
  private dirty = true;
  private lastKey = '';
  private lastInput = 0;

  constructor(
    private readonly home: Home,
    private readonly store: Store,
    private readonly loadConfig: ConfigLoader,
    private readonly opts: {
      pollMs?: number;
      tickMs?: number;
      /** The tick once nobody has pressed a key for idleAfterMs: uptimes and the clock move in 2 s steps. */
      idleTickMs?: number;
      idleAfterMs?: number;
      minGapMs?: number;
      eventLimit?: number;
      now?: () => number;
    } = {},
  ) {
    this.state = this.build();
  }

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getSnapshot = (): DashboardState => this.state;

  start(): void {
    this.watcher = watch(this.home.instancesDir, { depth: 1, ignoreInitial: true });
    this.watcher.on('all', () => this.markDirty());
    this.timer = setInterval(() => this.poll(), this.opts.pollMs ?? 250);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.watcher?.close();
  }

  /** Forces a refresh on the next poll (after an action of our own, a config edit). */
  markDirty(): void {
    this.dirty = true;
  }

  /** A key was pressed: back to the 1 s tick. */
  touch(): void {
    this.lastInput = (this.opts.now ?? Date.now)();
    this.dirty = true;
  }

  /** Each full-frame render costs 10-15 ms in Ink: while nobody types, tick half as often. */
  private tick(now: number): number {
    const idle = now - this.lastInput > (this.opts.idleAfterMs ?? 15_000);
    return idle ? (this.opts.idleTickMs ?? 2000) : (this.opts.tickMs ?? 1000);
  }

  poll(): void {
    const now = (this.opts.now ?? Date.now)();
    let version = this.lastVersion;
    try {
      version = this.store.db.pragma('data_version', { simple: true }) as number;
    } catch {
      // reported by refresh below
    }
    const since = now - this.lastRefresh;
    let changed = false;
    if (version !== this.lastVersion && since >= (this.opts.minGapMs ?? 900)) {
      this.lastVersion = version;
      // Keepers write a health row per probe; only a change of what the table shows (state, pid,
      // health, events) is worth a full rebuild before the next tick.
      const digest = this.digest();
      changed = digest !== this.lastDigest;
      this.lastDigest = digest;
    }
    if (since < this.tick(now) && !this.dirty && !changed) return;
    this.dirty = false;
    this.refresh();
  }

  private lastDigest = '';

  private digest(): string {
    try {
      return this.store.runtimeDigest() + ':' + this.store.lastEventId();
    } catch {
      return String(Math.random());
    }
  }

  refresh(): void {
    const next = this.build();
    this.lastRefresh = next.now;
    // Keep the same object (so React does not re-render) when nothing visible changed: health
    // probes rewrite timestamps and latencies several times a second.
    const key = visibleKey(next, this.tick(next.now));
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.state = next;
    for (const fn of this.listeners) fn();
  }

  private cachedEvents: { lastId: number; rows: EventRow[] } = { lastId: -1, rows: [] };

  /** Events are re-read only when a new one was written. */
  private events(): EventRow[] {
    const lastId = this.store.lastEventId();
    if (lastId !== this.cachedEvents.lastId) {
      this.cachedEvents = { lastId, rows: this.store.listEvents(undefined, this.opts.eventLimit ?? 200) };
    }
    return this.cachedEvents.rows;
  }

  private build(): DashboardState {
    const now = (this.opts.now ?? Date.now)();
    try {
      return {
        now,
        host: os.hostname(),
        home: this.home.root,
        daemon: daemonStatus(this.home),
        instances: snapshotAll(this.home, this.store, now, this.loadConfig),
        events: this.events(),
        error: null,
      };
    } catch (e) {
      return {
        ...(this.state ?? {
          host: os.hostname(),
          home: this.home.root,
          daemon: { running: false, pid: null },
          instances: [],
          events: [],
        }),
        now,
        error: e instanceof Error ? e.message : String(e),
      };
    }
  }
}

/** What the screen shows, to the second: a refresh that changes none of it renders nothing. */
function visibleKey(s: DashboardState, tickMs: number): string {
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
    i.health_latency_ms === null ? null : Math.round(i.health_latency_ms / 10),
  ]);
  const lastEvent = s.events.length ? s.events[s.events.length - 1]?.id : 0;
  return JSON.stringify([Math.floor(s.now / tickMs), s.daemon.running, s.error, lastEvent, inst]);
}
