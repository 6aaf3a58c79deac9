import { loadInstance, resolveModelPath } from '../config/load.js';
import { ExitCode, UserError } from '../domain/errors.js';
import type { ServingMetrics } from '../domain/metrics.js';
import { ggufCacheFile } from '../domain/home.js';
import { keeperAlive, serverAlive } from '../engine/identity.js';
import { fitReportFor, runningFitInstances } from '../engine/memory-fit.js';
import { startedConfig } from '../engine/started-config.js';
import { down } from '../engine/down.js';
import type { SupervisorDeps } from '../engine/supervisor.js';
import { up } from '../engine/up.js';
import { waitHealthy } from '../engine/wait-healthy.js';
import { readGgufCached } from '../models/gguf.js';
import { connectHost } from '../platform/http.js';
import { STOPPED_VIEW, type FitCheck, type InstanceView, type SchedulerOps } from './scheduler-ops.js';

/** When the keeper's last scrape (fresh: under 15 s old) saw the server processing requests; else null. */
function servingAt(json: string | null, now: number): number | null {
  if (!json) return null;
  try {
    const m = JSON.parse(json) as Partial<ServingMetrics>;
    return (m.requests_processing ?? 0) > 0 && typeof m.at === 'number' && now - m.at < 15_000 ? m.at : null;
  } catch {
    return null;
  }
}

/** The scheduler's side effects through the same engine calls as the CLI's up, down and the fit preflight. */
export function engineOps(deps: SupervisorDeps): SchedulerOps {
  const { store, procs, home } = deps;
  // A healthy instance's view is read once a second at most, not per request (a row, its started
  // config and two /proc identity checks): any change the store records (the change feed) drops
  // them all, and an upstream that refuses its connection drops its own (forget).
  // The feed is listened to only while something is remembered (its 25 ms look at SQLite would
  // otherwise be most of an idle daemon's CPU), and everything is dropped a second after.
  const healthy = new Map<string, { view: InstanceView; at: number }>();
  let unsubscribe: (() => void) | undefined;
  let expiry: NodeJS.Timeout | undefined;
  const forgetAll = () => {
    healthy.clear();
    unsubscribe?.();
    unsubscribe = undefined;
    if (expiry) clearTimeout(expiry);
    expiry = undefined;
  };
  // Listening starts before the read it may keep: a commit in between is seen, not folded into the
  // feed's starting point.
  const listen = () => {
    unsubscribe ??= deps.feed.subscribe(forgetAll);
    if (!expiry) {
      expiry = setTimeout(forgetAll, 1000);
      expiry.unref();
    }
  };
  const read = (name: string): InstanceView => {
    const row = store.getRuntime(name);
    if (!row) {
      return STOPPED_VIEW;
    }
    const running = keeperAlive(row, procs) || serverAlive(row, procs);
    const cfg = running ? startedConfig(store, name) : undefined;
    return {
      running,
      healthy: running && row.status === 'running' && row.health === 'ok',
      status: running ? row.status : row.status === 'failed' ? 'failed' : 'stopped',
      health: running ? row.health : null,
      lastError: row.last_error,
      host: cfg ? connectHost(cfg.server.host) : null,
      port: running ? row.port : null,
      startedAt: row.started_at,
      servingAt: running ? servingAt(row.metrics, deps.now()) : null,
    };
  };
  return {
    now: deps.now,
    view(name): InstanceView {
      const hit = healthy.get(name);
      const now = deps.now();
      if (hit && now - hit.at < 1000) return hit.view;
      listen();
      const v = read(name);
      if (v.healthy) healthy.set(name, { view: v, at: now });
      else healthy.delete(name);
      return v;
    },
    forget(name) {
      healthy.delete(name);
    },
    async start(name, reason) {
      healthy.delete(name);
      const r = await up(deps, name, { reason, waitForPid: true });
      if (r.status === 'failed') {
        throw new UserError(`${name} failed to start${r.error ? `: ${r.error}` : ''}`, ExitCode.general);
      }
    },
    async waitHealthy(name, timeoutMs) {
      await waitHealthy(deps, name, timeoutMs);
    },
    async stop(name) {
      healthy.delete(name);
      await down(deps, name);
    },
    async fit(name): Promise<FitCheck> {
      const inst = loadInstance(home, name);
      let model;
      try {
        model = await readGgufCached(resolveModelPath(home, inst.config), ggufCacheFile(home));
      } catch {
        // A model that cannot be read: `up`'s preflight says what and where (model.path, the file).
        return { fits: true };
      }
      const running = await runningFitInstances(deps, new Set([name]));
      const report = await fitReportFor(deps, [...running, { inst, model, running: false }]);
      const short = report.devices.filter((d) => !d.fits && d.message);
      if (short.length === 0) return { fits: true };
      const runningNames = running.map((r) => r.inst.name);
      const holders = new Set<string>();
      for (const d of short) {
        // A pooled check (GPU and host together) lists no shares: anything running may hold it.
        const names = d.shares.length > 0 ? d.shares.filter((s) => s.running).map((s) => s.name) : runningNames;
        for (const n of names) holders.add(n);
      }
      return { fits: false, message: short.map((d) => d.message).join('; '), holders: [...holders] };
    },
    event(name, level, type, message) {
      try {
        store.addEvent(name, level, type, message);
      } catch {
        // a busy database loses the event, not the request
      }
    },
  };
}
