import type { ProxyServer } from '../proxy/server.js';
import type { Route } from '../proxy/routes.js';
import type { Scheduler } from '../proxy/scheduler.js';
import type { Store } from '../store/store.js';
import type { Service } from './service.js';

export interface ProxyServiceDeps {
  server: ProxyServer;
  scheduler: Scheduler;
  routes: () => Route[];
  store: Store;
  /** The address the server is bound to (HOST:PORT), recorded for `daemon status`, ps and the dashboard. */
  address: string;
  /** The daemon's pid, recorded with the address (readers check that it lives). */
  pid: number;
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  log: (msg: string) => void;
  /** How often idle instances are looked for (ms). */
  sweepMs?: number;
  /** The longest a count change waits before it is written to the store (ms). */
  statsMs?: number;
}

/**
 * The daemon's proxy (docs/ARCHITECTURE.md, "Proxy and REST API"): the server is bound before the
 * daemon's services start (a taken port is the daemon's error, not a retry loop); this service
 * records the address, writes the request counts to the store a few times a second at most while
 * they change, stops instances idle past their idle_ttl, and closes the server when the daemon stops.
 */
export class ProxyService implements Service {
  readonly name = 'proxy';
  private dirty = true;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ProxyServiceDeps) {}

  /** Records where the proxy listens (again: after the state database was replaced, daemon/state-watch.ts). */
  recordListen(): void {
    this.deps.store.recordProxyListen(this.deps.pid, this.deps.address);
    this.dirty = true;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { store, scheduler, server, log } = this.deps;
    this.recordListen();
    log(`proxy: listening on http://${this.deps.address}`);
    const unhook = scheduler.onChange(() => this.schedule());
    // On stop, no new request is taken at once (a sweep's `down` may still be running below).
    const onAbort = () => void server.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      while (!signal.aborted) {
        try {
          const routes = this.deps.routes();
          scheduler.retain(new Set(routes.map((r) => r.name)));
          server.counters.retain(new Set(routes.map((r) => r.name)));
          await scheduler.sweepIdle(routes);
          const live = new Set<string>();
          for (const r of routes) {
            const v = scheduler.view(r.name);
            if (v.running && v.host !== null && v.port !== null) live.add(`${v.host}:${v.port}`);
          }
          server.retainUpstreams(live);
        } catch (e) {
          log(`proxy: idle sweep failed: ${e instanceof Error ? e.message : String(e)}`);
        }
        if (this.dirty) this.flush();
        await this.deps.wait(this.deps.sweepMs ?? 1000, signal);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      unhook();
      if (this.timer) clearTimeout(this.timer);
      await server.close();
      try {
        store.recordProxyListen(this.deps.pid, null);
      } catch {
        // the next daemon replaces the row; readers check the pid
      }
      log('proxy: stopped');
    }
  }

  private schedule(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.deps.statsMs ?? 250);
    this.timer.unref();
  }

  /** Writes the counts; a busy or full database keeps them dirty for the next try. */
  private flush(): void {
    const rows = [...this.deps.scheduler.snapshot()].map(([name, c]) => ({
      name,
      in_flight: c.inFlight,
      queued: c.queued,
      requests_total: c.requests,
      errors_total: c.errors,
      last_request_at: c.lastRequestAt,
    }));
    try {
      this.deps.store.recordProxyStats(rows);
      this.dirty = false;
    } catch {
      this.dirty = true;
    }
  }
}
