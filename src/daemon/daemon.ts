import { discoverInstanceNames } from '../config/paths.js';
import { keeperAlive } from '../engine/identity.js';
import { reconcileRow } from '../engine/reconcile.js';
import { up, type SupervisorDeps } from '../engine/supervisor.js';
import { UserError } from '../errors.js';

export interface DaemonOptions {
  intervalMs: number;
  /** Delay between two autostarts, so several large models do not load at once. */
  staggerMs: number;
  autostart: boolean;
}

export interface DaemonDeps extends SupervisorDeps {
  /** Abortable sleep. */
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  log: (msg: string) => void;
  /** Whether an instance is marked autostart (reads its config). */
  isAutostart: (name: string) => boolean;
}

/**
 * The daemon's only jobs (DESIGN §4): boot-time autostart, and desired-state reconciliation —
 * a keeper that died while its instance should run gets a replacement (restart counters carried
 * over), an orphaned server is stopped first. It never probes health and never stops an instance.
 */
export class Daemon {
  constructor(
    private readonly deps: DaemonDeps,
    private readonly opts: DaemonOptions,
    private readonly signal: AbortSignal,
  ) {}

  async run(): Promise<void> {
    const { store, log } = this.deps;
    store.addEvent(
      null,
      'info',
      'daemon',
      `daemon started (pid ${process.pid}, loop every ${this.opts.intervalMs / 1000} s)`,
    );
    log(`daemon started, home ${this.deps.home.root}`);
    if (this.opts.autostart) await this.autostart();
    while (!this.signal.aborted) {
      try {
        await this.reconcileOnce();
        store.prune();
      } catch (e) {
        log(`reconcile failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      await this.deps.wait(this.opts.intervalMs, this.signal);
    }
    store.addEvent(null, 'info', 'daemon', 'daemon stopped (instances keep running)');
    log('daemon stopped');
  }

  private async startOne(name: string, reason: string, carry: boolean): Promise<void> {
    const { store, log } = this.deps;
    try {
      const r = await up(this.deps, name, { carryCounters: carry, waitForPid: false, reason });
      log(`${reason}: ${name} keeper pid ${r.keeperPid}${r.adopted ? ` (re-attached to server pid ${r.pid})` : ''}`);
    } catch (e) {
      const msg = e instanceof UserError ? e.message : e instanceof Error ? e.message : String(e);
      store.addEvent(name, 'error', reason, `${reason} of ${name} failed: ${msg}`);
      log(`${reason} of ${name} failed: ${msg}`);
    }
  }

  async autostart(): Promise<void> {
    const names = discoverInstanceNames(this.deps.home).filter((n) => {
      try {
        return this.deps.isAutostart(n);
      } catch {
        return false;
      }
    });
    let first = true;
    for (const name of names) {
      if (this.signal.aborted) return;
      const row = this.deps.store.getRuntime(name);
      if (row && keeperAlive(row)) continue;
      if (!first) await this.deps.wait(this.opts.staggerMs, this.signal);
      if (this.signal.aborted) return;
      first = false;
      this.deps.store.addEvent(name, 'info', 'autostart', `autostart ${name}`);
      await this.startOne(name, 'autostart', false);
    }
  }

  async reconcileOnce(): Promise<void> {
    const { store } = this.deps;
    for (const inst of store.listInstances()) {
      if (this.signal.aborted) return;
      if (inst.desired_state !== 'running') continue;
      const before = store.getRuntime(inst.name);
      if (!before || before.status === 'failed') continue;
      const seen = reconcileRow(store, inst.name);
      if (!seen || seen.keeper) continue;
      const after = store.getRuntime(inst.name);
      if (after?.status === 'failed') continue;
      // `up` re-attaches a server that still runs (no reload) or stops it first when it cannot.
      const what = seen.orphan ? `a new one takes over server pid ${seen.row.pid}` : 'starting a new one';
      store.addEvent(inst.name, 'warn', 'daemon-restart', `keeper of ${inst.name} is gone; ${what}`);
      await this.startOne(inst.name, 'daemon-restart', true);
    }
  }
}
