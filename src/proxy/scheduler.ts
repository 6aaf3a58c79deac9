import { asProxyError, ProxyError } from './errors.js';
import type { Route } from './routes.js';

/** What the scheduler needs to know of an instance now (engine/proxy-ops.ts reads it from the store). */
export interface InstanceView {
  /** A live keeper or server: starting, running, in backoff or stopping. */
  running: boolean;
  /** Running and its health is ok: requests can go to it. */
  healthy: boolean;
  status: string;
  health: string | null;
  lastError: string | null;
  /** The current run's address. */
  host: string | null;
  port: number | null;
  /** When the current run started (ms), for the idle clock of an instance no request reached yet. */
  startedAt: number | null;
  /**
   * When the keeper's last metrics scrape saw the server processing requests (null: not busy, or
   * not known). After the proxy's last request ended, that is clients calling its port directly,
   * which the proxy does not count: such an instance is neither idle nor evicted.
   */
  servingAt?: number | null;
}

/** An instance with nothing running (no runtime row, or its keeper and server gone). */
export const STOPPED_VIEW: Readonly<InstanceView> = {
  running: false,
  healthy: false,
  status: 'stopped',
  health: null,
  lastError: null,
  host: null,
  port: null,
  startedAt: null,
};

/** The memory-fit check of one instance against what runs now. */
export type FitCheck =
  | { fits: true }
  | {
      fits: false;
      message: string;
      /** The running instances on the devices that are short, whose stop would free memory there. */
      holders: string[];
    };

/** The engine calls behind on-demand start, eviction and idle unload (side effects, injected). */
export interface SchedulerOps {
  view(name: string): InstanceView;
  /** `up NAME` (locks, port checks, the memory preflight); rejects with the UserError. */
  start(name: string, reason: string): Promise<void>;
  /** Resolves when healthy; rejects when it fails, stops or `timeoutMs` passes. */
  waitHealthy(name: string, timeoutMs: number): Promise<void>;
  /** `down NAME`, recording why. */
  stop(name: string, reason: string): Promise<void>;
  fit(name: string): Promise<FitCheck>;
  /** Drops what is remembered of the instance (its upstream refused a connection). */
  forget?(name: string): void;
  event(name: string, level: 'info' | 'warn' | 'error', type: string, message: string): void;
  now(): number;
}

export interface SchedulerOptions {
  startTimeoutMs: number;
  /** `llama-orch ARGS` as the operator should type it (with --home where it matters). */
  command?: (args: string) => string;
  /** A failed on-demand start is answered from memory for this long (a model that cannot load is not reloaded per request). */
  failureMemoMs?: number;
}

/** Per instance: what the proxy counts (the dashboard, ps and /metrics show it). */
export interface InstanceCounts {
  inFlight: number;
  queued: number;
  requests: number;
  errors: number;
  /** When the last request ended (ms); 0: none since the daemon started. */
  lastEnd: number;
  lastRequestAt: number | null;
  /** Starts made because a request named it, stops to free memory for another, stops after idle_ttl. */
  starts: number;
  evictions: number;
  idleStops: number;
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
 */
export class Scheduler {
  private readonly counts = new Map<string, InstanceCounts>();
  /** Starts in progress, shared by every request that waits for the same instance. */
  private readonly starting = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, { at: number; error: ProxyError }>();
  /** Stops the scheduler made (idle, eviction, group) and not finished: requests wait, then start it again. */
  private readonly stopping = new Map<string, Promise<void>>();
  /** Eviction and start decisions one at a time: two cold starts must not count the same free memory. */
  private placing: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<() => void>();
  private readonly bootedAt: number;

  constructor(
    private readonly ops: SchedulerOps,
    private readonly opts: SchedulerOptions,
  ) {
    this.bootedAt = ops.now();
  }

  private command(args: string): string {
    return this.opts.command?.(args) ?? `llama-orch ${args}`;
  }

  /** Told when a count changes (the stats writer). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  view(name: string): InstanceView {
    return this.ops.view(name);
  }

  /** The instance's upstream failed: read its state afresh next time. */
  forget(name: string): void {
    this.ops.forget?.(name);
  }

  snapshot(): Map<string, InstanceCounts> {
    return new Map([...this.counts].map(([k, v]) => [k, { ...v }]));
  }

  countsOf(name: string): InstanceCounts {
    let c = this.counts.get(name);
    if (!c) {
      c = {
        inFlight: 0,
        queued: 0,
        requests: 0,
        errors: 0,
        lastEnd: 0,
        lastRequestAt: null,
        starts: 0,
        evictions: 0,
        idleStops: 0,
      };
      this.counts.set(name, c);
    }
    return c;
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  /** True when nothing is in flight or waiting for the instance. */
  idle(name: string): boolean {
    const c = this.counts.get(name);
    return !this.stopping.has(name) && !this.starting.has(name) && (!c || (c.inFlight === 0 && c.queued === 0));
  }

  /** Stops the instance, recording it as stopping meanwhile (a request for it waits, then starts it). */
  private async stopOwn(name: string, reason: string): Promise<void> {
    const p = this.ops.stop(name, reason).finally(() => this.stopping.delete(name));
    this.stopping.set(name, p);
    await p;
  }

  /** Busy with requests that did not come through the proxy (seen by a scrape after its last proxied one). */
  private servedDirectly(name: string, view = this.ops.view(name)): boolean {
    const at = view.servingAt ?? null;
    return at !== null && at > (this.counts.get(name)?.lastEnd ?? 0);
  }

  /** Forgets instances that are no longer configured (their counts, remembered failures). */
  retain(names: ReadonlySet<string>): void {
    for (const map of [this.counts, this.failures]) {
      for (const n of [...map.keys()]) if (!names.has(n) && !this.starting.has(n)) map.delete(n);
    }
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
    const c = this.countsOf(route.name);
    c.requests++;
    c.lastRequestAt = this.ops.now();
    c.queued++;
    this.changed();
    let view: InstanceView;
    try {
      // A stop of ours in progress (idle, eviction, group): wait for it, then start the instance again.
      const stopping = this.stopping.get(route.name);
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
      this.changed();
    }
    if (!view.healthy || view.host === null || view.port === null) {
      c.errors++;
      this.changed();
      throw new ProxyError(503, `${route.name} is not ready (${describe(view)})`, 'server_error', 'not_ready');
    }
    c.inFlight++;
    this.changed();
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
        this.changed();
      },
    };
  }

  /** Brings the instance to health: one start (or wait) however many requests ask. */
  private ready(route: Route, all: readonly Route[]): Promise<void> {
    const running = this.starting.get(route.name);
    if (running) return running;
    const p = this.bringUp(route, all).finally(() => this.starting.delete(route.name));
    // Every waiter may have left (aborted) before it fails: the failure is theirs, never unhandled.
    p.catch(() => undefined);
    this.starting.set(route.name, p);
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
      const failed = this.failures.get(name);
      if (failed && this.ops.now() - failed.at < (this.opts.failureMemoMs ?? 10_000)) throw failed.error;
      try {
        await this.place(route, all);
      } catch (e) {
        const err = asProxyError(e instanceof StartFailure ? e.cause : e, 503);
        // Only a start that failed is remembered; a refusal for now (a busy group member, memory
        // held by instances that serve) is not: the next request tries again.
        if (e instanceof StartFailure && err.code !== 'does_not_fit') {
          this.failures.set(name, { at: this.ops.now(), error: err });
        }
        throw err;
      }
      started = true;
      this.failures.delete(name);
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
      if (started && !timedOut) this.failures.set(name, { at: this.ops.now(), error: err });
      throw err;
    }
  }

  /** Group exclusivity, eviction by memory, then `up`: one placement at a time. */
  private place(route: Route, all: readonly Route[]): Promise<void> {
    const run = this.placing.then(
      () => this.placeNow(route, all),
      () => this.placeNow(route, all),
    );
    this.placing = run.catch(() => undefined);
    return run;
  }

  private async placeNow(route: Route, all: readonly Route[]): Promise<void> {
    const name = route.name;
    if (this.ops.view(name).running) return; // started meanwhile (an operator, another placement)
    if (route.group) {
      for (const other of all) {
        if (other.name === name || other.group !== route.group || !this.ops.view(other.name).running) continue;
        if (!other.onDemand) {
          throw new ProxyError(
            503,
            `${name} shares group "${route.group}" with ${other.name}, which runs with on_demand false: the proxy does not stop it`,
            'server_error',
            'group_busy',
            `stop it by hand ("${this.command(`down ${other.name}`)}") to let ${name} start`,
          );
        }
        if (!this.idle(other.name)) {
          const c = this.countsOf(other.name);
          throw new ProxyError(
            503,
            `${name} shares group "${route.group}" with ${other.name}, which is serving (${c.inFlight} in flight, ${c.queued} queued): try again when it is idle`,
            'server_error',
            'group_busy',
          );
        }
        this.ops.event(
          other.name,
          'info',
          'group',
          `stopped for ${name} (group "${route.group}": they never run together)`,
        );
        await this.stopOwn(other.name, `group ${route.group}: ${name} starts`);
      }
    }
    const evicted: string[] = [];
    for (;;) {
      const fit = await this.ops.fit(name);
      if (fit.fits) break;
      const byName = new Map(all.map((r) => [r.name, r]));
      const candidates = fit.holders
        .filter(
          (h) =>
            h !== name && !evicted.includes(h) && byName.get(h)?.onDemand && this.idle(h) && !this.servedDirectly(h),
        )
        .sort((a, b) => this.lastUsed(a) - this.lastUsed(b));
      const victim = candidates[0];
      if (victim === undefined) {
        const busy = fit.holders.filter((h) => h !== name && !candidates.includes(h));
        throw new ProxyError(
          503,
          `${name} does not fit: ${fit.message}` +
            (evicted.length ? `; stopped ${evicted.join(', ')} and it still does not fit` : '') +
            (busy.length ? `; not stopped (serving, or on_demand false): ${busy.join(', ')}` : ''),
          'server_error',
          'does_not_fit',
        );
      }
      this.ops.event(
        victim,
        'info',
        'evict',
        `stopped to free memory for ${name} (idle, least recently used): ${fit.message}`,
      );
      await this.stopOwn(victim, `evicted for ${name}`);
      this.countsOf(victim).evictions++;
      evicted.push(victim);
    }
    this.ops.event(name, 'info', 'on-demand', `started on demand: a request names ${route.id}`);
    try {
      await this.ops.start(name, 'on-demand');
    } catch (e) {
      throw new StartFailure(e);
    }
    this.countsOf(name).starts++;
  }

  /** When the instance last served (its last request's end), else when its run started. */
  private lastUsed(name: string): number {
    const c = this.counts.get(name);
    return Math.max(c?.lastEnd ?? 0, this.ops.view(name).startedAt ?? 0);
  }

  /**
   * Stops each instance whose idle_ttl has passed since its last request ended (or since its run
   * started, or the daemon did, when no request came). Returns the names stopped.
   */
  async sweepIdle(routes: readonly Route[]): Promise<string[]> {
    const stopped: string[] = [];
    const now = this.ops.now();
    for (const r of routes) {
      if (r.idleTtlMs === null || !this.idle(r.name)) continue;
      const view = this.ops.view(r.name);
      if (!view.running || view.status !== 'running') continue;
      if (this.servedDirectly(r.name, view)) {
        // Busy with clients that call its port directly: that is use too.
        this.countsOf(r.name).lastEnd = now;
        continue;
      }
      const since = Math.max(this.counts.get(r.name)?.lastEnd ?? 0, view.startedAt ?? 0, this.bootedAt);
      if (now - since < r.idleTtlMs) continue;
      const secs = Math.round((now - since) / 1000);
      this.ops.event(r.name, 'info', 'idle', `no request for ${secs} s (idle_ttl ${r.idleTtlMs / 1000} s): stopped`);
      try {
        await this.stopOwn(r.name, 'idle_ttl');
        this.countsOf(r.name).idleStops++;
        stopped.push(r.name);
      } catch (e) {
        this.ops.event(r.name, 'warn', 'idle', `idle stop failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return stopped;
  }
}

/** A failure of `up` itself (not a refusal before it): remembered for the failure memo. */
class StartFailure extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
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
