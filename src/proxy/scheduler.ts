import { asProxyError, ProxyError } from './errors.js';
import { sweepIdle } from './idle-sweep.js';
import { placeNow, StartFailure, type Placer } from './placement.js';
import type { Route } from './routes.js';
import type { InstanceView, SchedulerOps } from './scheduler-ops.js';
import { SchedulerState, type InstanceCounts } from './scheduler-state.js';

export interface SchedulerOptions {
  startTimeoutMs: number;
  /** `llama-orch ARGS` as the operator should type it (with --home where it matters). */
  command?: (args: string) => string;
  /** A failed on-demand start is answered from memory for this long (a model that cannot load is not reloaded per request). */
  failureMemoMs?: number;
}

export interface Lease {
  /** The address to send the request to. */
  host: string;
  port: number;
  /** Ends the request: `ok` false counts an error. Call once. */
  release(ok: boolean): void;
}

/**
 * On-demand start, memory-aware eviction and idle unload (docs/ARCHITECTURE.md, "Proxy and REST
 * API"). Requests acquire a lease: a stopped instance is started once however many requests wait
 * for it (they are counted as queued meanwhile); starts that need memory stop idle instances on the
 * same devices, least recently used first and never one with requests in flight or queued; the idle
 * sweep stops an instance `idle_ttl` after its last request ended.
 * What it remembers per instance: scheduler-state.ts; placement: placement.ts; idle: idle-sweep.ts.
 */
export class Scheduler {
  private readonly state: SchedulerState;
  private readonly placer: Placer;
  /** Eviction and start decisions one at a time: two cold starts must not count the same free memory. */
  private placing: Promise<unknown> = Promise.resolve();
  private readonly bootedAt: number;

  constructor(
    private readonly ops: SchedulerOps,
    private readonly opts: SchedulerOptions,
  ) {
    this.bootedAt = ops.now();
    this.state = new SchedulerState(ops);
    this.placer = { ops, state: this.state, command: (args) => this.command(args) };
  }

  private command(args: string): string {
    return this.opts.command?.(args) ?? `llama-orch ${args}`;
  }

  /** Told when a count changes (the stats writer). */
  onChange(fn: () => void): () => void {
    return this.state.onChange(fn);
  }

  view(name: string): InstanceView {
    return this.ops.view(name);
  }

  /** The instance's upstream failed: read its state afresh next time. */
  forget(name: string): void {
    this.ops.forget?.(name);
  }

  snapshot(): Map<string, InstanceCounts> {
    return this.state.snapshot();
  }

  countsOf(name: string): InstanceCounts {
    return this.state.countsOf(name);
  }

  /** True when nothing is in flight or waiting for the instance. */
  idle(name: string): boolean {
    return this.state.idle(name);
  }

  /** Forgets instances that are no longer configured (their counts, remembered failures). */
  retain(names: ReadonlySet<string>): void {
    this.state.retain(names);
  }

  /**
   * Waits until the instance can take the request (starting it when `on_demand`) and counts it in
   * flight. `signal`: the client left; the start goes on for the others (and for the next request).
   */
  async acquire(
    route: Route,
    all: readonly Route[],
    signal?: AbortSignal,
    /** `start` false: a stopped instance is 503, not started; `touch` false: the idle clock does not move (a monitoring GET). */
    opts: { start?: boolean; touch?: boolean } = {},
  ): Promise<Lease> {
    const c = this.state.countsOf(route.name);
    c.requests++;
    c.lastRequestAt = this.ops.now();
    c.queued++;
    this.state.changed();
    let view: InstanceView;
    try {
      // A stop of ours in progress (idle, eviction, group): wait for it, then start the instance again.
      const stopping = this.state.stopping.get(route.name);
      if (stopping)
        await abortable(
          stopping.catch(() => undefined),
          signal,
        );
      view = this.ops.view(route.name);
      if (!view.healthy) {
        if (opts.start === false && !view.running) {
          throw new ProxyError(
            503,
            `${route.name} is ${view.status}: a GET or HEAD through /upstream does not start it`,
            'server_error',
            'not_running',
          );
        }
        await abortable(this.ready(route, all), signal);
        view = this.ops.view(route.name);
      }
    } catch (e) {
      if (!(e instanceof ProxyError && e.status === 499)) c.errors++;
      throw e;
    } finally {
      c.queued--;
      this.state.changed();
    }
    if (!view.healthy || view.host === null || view.port === null) {
      c.errors++;
      this.state.changed();
      throw new ProxyError(503, `${route.name} is not ready (${describe(view)})`, 'server_error', 'not_ready');
    }
    c.inFlight++;
    this.state.changed();
    let released = false;
    return {
      host: view.host,
      port: view.port,
      release: (ok) => {
        if (released) return;
        released = true;
        c.inFlight--;
        if (!ok) c.errors++;
        if (opts.touch !== false) c.lastEnd = this.ops.now();
        this.state.changed();
      },
    };
  }

  /** Brings the instance to health: one start (or wait) however many requests ask. */
  private ready(route: Route, all: readonly Route[]): Promise<void> {
    const running = this.state.starting.get(route.name);
    if (running) return running;
    const p = this.bringUp(route, all).finally(() => this.state.starting.delete(route.name));
    // Every waiter may have left (aborted) before it fails: the failure is theirs, never unhandled.
    p.catch(() => undefined);
    this.state.starting.set(route.name, p);
    return p;
  }

  private async bringUp(route: Route, all: readonly Route[]): Promise<void> {
    const name = route.name;
    const began = this.ops.now();
    const view = this.ops.view(name);
    let started = false;
    if (!view.running) {
      if (!route.onDemand) {
        throw new ProxyError(
          503,
          `${name} is ${view.status} and on_demand is false for it: the proxy does not start it`,
          'server_error',
          'not_running',
          `start it with "${this.command(`up ${name}`)}", or set "on_demand": true in its config`,
        );
      }
      const failed = this.state.failures.get(name);
      if (failed && this.ops.now() - failed.at < (this.opts.failureMemoMs ?? 10_000)) throw failed.error;
      try {
        await this.place(route, all);
      } catch (e) {
        const err = asProxyError(e instanceof StartFailure ? e.cause : e, 503);
        // Only a start that failed is remembered; a refusal for now (a busy group member, memory
        // held by instances that serve) is not: the next request tries again.
        if (e instanceof StartFailure && err.code !== 'does_not_fit') {
          this.state.failures.set(name, { at: this.ops.now(), error: err });
        }
        throw err;
      }
      started = true;
      this.state.failures.delete(name);
    }
    try {
      // start_timeout bounds the whole start: placement (evictions, `up`) and the load.
      await this.ops.waitHealthy(name, Math.max(1000, this.opts.startTimeoutMs - (this.ops.now() - began)));
    } catch (e) {
      const cause = asProxyError(e, 503);
      const timedOut = cause.message.includes('not healthy after');
      const err = new ProxyError(timedOut ? 504 : 503, cause.message, 'server_error', 'start_failed', cause.hint);
      // A start of ours that ended (a model that does not load): answered from memory for a while.
      // One still loading after the timeout is not: the next request waits for it again.
      if (started && !timedOut) this.state.failures.set(name, { at: this.ops.now(), error: err });
      throw err;
    }
  }

  /** Group exclusivity, eviction by memory, then `up`: one placement at a time. */
  private place(route: Route, all: readonly Route[]): Promise<void> {
    const run = this.placing.then(
      () => placeNow(this.placer, route, all),
      () => placeNow(this.placer, route, all),
    );
    this.placing = run.catch(() => undefined);
    return run;
  }

  /**
   * Stops each instance whose idle_ttl has passed since its last request ended (or since its run
   * started, or the daemon did, when no request came). Returns the names stopped.
   */
  sweepIdle(routes: readonly Route[]): Promise<string[]> {
    return sweepIdle(this.ops, this.state, routes, this.bootedAt);
  }
}

function describe(v: InstanceView): string {
  return `${v.status}${v.health ? `, health ${v.health}` : ''}${v.lastError ? `: ${v.lastError}` : ''}`;
}

/** The promise, or a rejection when the client leaves first (the promise itself goes on). */
function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new ProxyError(499, 'client closed the request'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new ProxyError(499, 'client closed the request'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
