import { discoverInstanceNames } from '../config/paths.js';
import { UserError } from '../domain/errors.js';
import { orchCommandWithHome } from '../domain/home.js';
import { keeperAlive } from '../engine/identity.js';
import { heartbeatAgeMs, STALLED_AFTER_MS } from '../engine/keeper-file.js';
import type { RuntimeRow } from '../store/store.js';
import { reconcileRow } from '../engine/reconcile.js';
import type { SupervisorDeps } from '../engine/supervisor.js';
import { up } from '../engine/up.js';
import type { Service } from './service.js';

export interface SupervisionDeps extends SupervisorDeps {
  /** Abortable sleep. */
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  log: (msg: string) => void;
  /** Whether an instance is marked autostart (reads its config). */
  isAutostart: (name: string) => boolean;
}

export interface SupervisionOptions {
  intervalMs: number;
  /** Delay between two autostarts, so several large models do not load at once. */
  staggerMs: number;
  autostart: boolean;
}

/**
 * The daemon's supervision (docs/ARCHITECTURE.md, "Daemon services"): boot-time autostart, then
 * desired-state reconciliation — a keeper that died while its instance should run gets a
 * replacement (restart counters carried over, its server re-attached when it still runs). It never
 * probes health and never stops an instance.
 */
export class SupervisionService implements Service {
  readonly name = 'supervision';
  private autostarted = false;

  constructor(
    private readonly deps: SupervisionDeps,
    private readonly opts: SupervisionOptions,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    if (this.opts.autostart && !this.autostarted) {
      this.autostarted = true;
      await this.autostart(signal);
    }
    while (!signal.aborted) {
      try {
        await this.reconcileOnce(signal);
      } catch (e) {
        // A bad pass (a busy database, say) is logged and tried again at the next interval.
        this.deps.log(`reconcile failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      await this.deps.wait(this.opts.intervalMs, signal);
    }
  }

  /** The keeper is alive but its heartbeat file has not moved for STALLED_AFTER_MS. */
  private stalled(row: RuntimeRow): boolean {
    if (row.keeper_pid === null) return false;
    const age = heartbeatAgeMs(this.deps.home, row.name, this.deps.now(), row.keeper_pid);
    return age !== undefined && age > STALLED_AFTER_MS;
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

  async autostart(signal: AbortSignal): Promise<void> {
    const names = discoverInstanceNames(this.deps.home).filter((n) => {
      try {
        return this.deps.isAutostart(n);
      } catch {
        return false;
      }
    });
    let first = true;
    for (const name of names) {
      if (signal.aborted) return;
      const row = this.deps.store.getRuntime(name);
      if (row && keeperAlive(row, this.deps.procs)) continue;
      // An operator's `down` stands until their `up`, across daemon restarts and reboots.
      const inst = this.deps.store.getInstance(name);
      if (inst?.desired_state === 'stopped' && inst.desired_at !== null) {
        this.deps.log(
          `autostart: ${name} skipped (stopped by the operator; "${orchCommandWithHome(this.deps.home, `up ${name}`)}" starts it)`,
        );
        continue;
      }
      if (!first) await this.deps.wait(this.opts.staggerMs, signal);
      if (signal.aborted) return;
      first = false;
      this.deps.store.addEvent(name, 'info', 'autostart', `autostart ${name}`);
      await this.startOne(name, 'autostart', false);
    }
  }

  async reconcileOnce(signal?: AbortSignal): Promise<void> {
    const { store, procs } = this.deps;
    for (const inst of store.listInstances()) {
      if (signal?.aborted) return;
      if (inst.desired_state !== 'running') continue;
      const before = store.getRuntime(inst.name);
      if (!before || before.status === 'failed') continue;
      let seen = reconcileRow(store, procs, inst.name);
      if (seen?.keeper && this.stalled(seen.row)) {
        // A keeper that stopped making progress (SIGSTOP, a hang) leaves its server unsupervised
        // and its pipes undrained: replace it; the new keeper re-attaches the server.
        const age = Math.round(
          (heartbeatAgeMs(this.deps.home, inst.name, this.deps.now(), seen.row.keeper_pid as number) ?? 0) / 1000,
        );
        store.addEvent(
          inst.name,
          'error',
          'keeper-stalled',
          `keeper pid ${seen.row.keeper_pid} made no progress for ${age} s: killed; a new keeper takes over`,
        );
        procs.signal(seen.row.keeper_pid as number, 'SIGKILL');
        await this.deps.feed.until(() => (keeperAlive(seen?.row as RuntimeRow, procs) ? undefined : true), 2000, {
          recheckMs: 20,
        });
        seen = reconcileRow(store, procs, inst.name);
      }
      if (!seen || seen.keeper) continue;
      if (store.getRuntime(inst.name)?.status === 'failed') continue;
      // `up` re-attaches a server that still runs (no reload) or stops it first when it cannot.
      const what = seen.orphan ? `a new one takes over server pid ${seen.row.pid}` : 'starting a new one';
      store.addEvent(inst.name, 'warn', 'daemon-restart', `keeper of ${inst.name} is gone; ${what}`);
      await this.startOne(inst.name, 'daemon-restart', true);
    }
  }
}
