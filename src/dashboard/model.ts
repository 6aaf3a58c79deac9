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

  constructor(
    private readonly home: Home,
    private readonly store: Store,
    private readonly loadConfig: ConfigLoader,
    private readonly opts: { pollMs?: number; tickMs?: number; eventLimit?: number; now?: () => number } = {},
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

  poll(): void {
    const now = (this.opts.now ?? Date.now)();
    let version = this.lastVersion;
    try {
      version = this.store.db.pragma('data_version', { simple: true }) as number;
    } catch {
      // reported by refresh below
    }
    const changed = version !== this.lastVersion;
    if (!changed && !this.dirty && now - this.lastRefresh < (this.opts.tickMs ?? 1000)) return;
    this.lastVersion = version;
    this.dirty = false;
    this.refresh();
  }

  refresh(): void {
    this.state = this.build();
    this.lastRefresh = this.state.now;
    for (const fn of this.listeners) fn();
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
        events: this.store.listEvents(undefined, this.opts.eventLimit ?? 200),
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
