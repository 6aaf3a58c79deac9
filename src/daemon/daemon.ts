import { readNsPids } from '../platform/proc.js';
import { DEFAULT_GPU_OPTIONS, GpuService, type GpuServiceOptions } from './gpu-service.js';
import { RetentionService } from './retention.js';
import { ServiceHost, type Service } from './service.js';
import { SupervisionService, type SupervisionDeps, type SupervisionOptions } from './supervision.js';

export type DaemonDeps = SupervisionDeps;

export interface DaemonOptions extends SupervisionOptions {
  /** How often the history tables are pruned. */
  retentionMs?: number;
  /** The GPU sampler's cadence (DEFAULT_GPU_OPTIONS), or false: no GPU sampling. */
  gpu?: GpuServiceOptions | false;
  /** Services built by the composition root (the proxy, bound already). */
  extra?: Service[];
}

/** The daemon's services, in start order. New long-lived services are added here. */
export function daemonServices(deps: DaemonDeps, opts: DaemonOptions): Service[] {
  const services: Service[] = [
    new SupervisionService(deps, opts),
    new RetentionService(deps.store, opts.retentionMs ?? 60_000, deps.wait),
  ];
  if (opts.gpu !== false) {
    const { store, procs, env, wait, log } = deps;
    services.push(
      new GpuService({ store, procs, env, wait, log, nsPids: readNsPids }, opts.gpu ?? DEFAULT_GPU_OPTIONS),
    );
  }
  services.push(...(opts.extra ?? []));
  return services;
}

/**
 * Runs the daemon until `signal` aborts: the host of long-lived services (docs/ARCHITECTURE.md,
 * "Daemon services"). Stopping it stops no instance.
 */
export async function runDaemon(deps: DaemonDeps, opts: DaemonOptions, signal: AbortSignal): Promise<void> {
  const { store, log } = deps;
  store.addEvent(null, 'info', 'daemon', `daemon started (pid ${process.pid}, loop every ${opts.intervalMs / 1000} s)`);
  log(`daemon started, home ${deps.home.root}`);
  const host = new ServiceHost(daemonServices(deps, opts), {
    log,
    wait: deps.wait,
    onFailure: (service, error) => {
      try {
        store.addEvent(null, 'error', 'daemon', `daemon service ${service} failed: ${error}`);
      } catch {
        // the daemon.log line is written already
      }
    },
  });
  await host.run(signal);
  store.addEvent(null, 'info', 'daemon', 'daemon stopped (instances keep running)');
  log('daemon stopped');
}
