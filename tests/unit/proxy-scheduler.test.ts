import { describe, expect, it } from 'vitest';
import { ExitCode, UserError } from '../../src/domain/errors.js';
import { ProxyError } from '../../src/proxy/errors.js';
import type { Route } from '../../src/proxy/routes.js';
import { Scheduler } from '../../src/proxy/scheduler.js';
import { type FitCheck, type InstanceView, type SchedulerOps, STOPPED_VIEW } from '../../src/proxy/scheduler-ops.js';

// The scheduler against a scripted engine: instance views the test flips, a clock it moves, and
// every start, stop and fit check recorded in order.

function route(name: string, extra: Partial<Route> = {}): Route {
  return { name, id: name, ids: [name], onDemand: true, idleTtlMs: null, group: null, apiKeyEnv: null, ...extra };
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback and timer-free continuation run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

const STOPPED = STOPPED_VIEW;

/** The outcome of a promise without awaiting it to the end: for asserting what is still pending. */
function track<T>(p: Promise<T>): { done: () => boolean; value: () => T | undefined; error: () => unknown } {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  p.then(
    (v) => {
      done = true;
      value = v;
    },
    (e: unknown) => {
      done = true;
      error = e;
    },
  );
  return { done: () => done, value: () => value, error: () => error };
}

class Rig {
  now = 1_000_000;
  readonly views = new Map<string, InstanceView>();
  /** start, stop and fit, in the order the scheduler made them. */
  readonly calls: string[] = [];
  readonly events: string[] = [];
  /** A started instance is healthy at once (else it stays `starting` until healthy() or failHealth()). */
  autoHealthy = false;
  /** waitHealthy calls: one per start however many requests wait for it. */
  waits = 0;
  /** What start does beyond recording the call; a rejection is the failed `up`. */
  startHook: (name: string) => Promise<void> = () => Promise.resolve();
  stopHook: (name: string) => Promise<void> = () => Promise.resolve();
  fitFn: (name: string) => FitCheck = () => ({ fits: true });
  private nextPort = 9100;
  private readonly ports = new Map<string, number>();
  private readonly waiters = new Map<string, Deferred<void>[]>();

  readonly ops: SchedulerOps = {
    view: (name) => this.views.get(name) ?? STOPPED,
    start: async (name, reason) => {
      this.calls.push(`start ${name} (${reason})`);
      await this.startHook(name);
      if (this.autoHealthy) this.running(name);
      else this.starting(name);
    },
    waitHealthy: (name) => {
      this.waits++;
      const v = this.views.get(name) ?? STOPPED;
      if (v.healthy) return Promise.resolve();
      if (!v.running) return Promise.reject(new UserError(`${name} did not become healthy: ${v.status}`));
      const d = deferred();
      this.waiters.set(name, [...(this.waiters.get(name) ?? []), d]);
      return d.promise;
    },
    stop: async (name, reason) => {
      this.calls.push(`stop ${name} (${reason})`);
      await this.stopHook(name);
      this.views.set(name, STOPPED);
    },
    fit: (name) => {
      this.calls.push(`fit ${name}`);
      return Promise.resolve(this.fitFn(name));
    },
    event: (name, level, type, message) => {
      this.events.push(`${level} ${name} ${type}: ${message}`);
    },
    now: () => this.now,
  };

  portOf(name: string): number {
    let p = this.ports.get(name);
    if (p === undefined) {
      p = this.nextPort++;
      this.ports.set(name, p);
    }
    return p;
  }

  /** Running and healthy (an operator's `up`, or a finished start). */
  running(name: string, startedAt: number | null = this.now): void {
    this.views.set(name, {
      running: true,
      healthy: true,
      status: 'running',
      health: 'ok',
      lastError: null,
      host: '127.0.0.1',
      port: this.portOf(name),
      startedAt,
    });
  }

  /** Started, the model still loading. */
  starting(name: string): void {
    this.views.set(name, {
      running: true,
      healthy: false,
      status: 'starting',
      health: 'loading',
      lastError: null,
      host: '127.0.0.1',
      port: this.portOf(name),
      startedAt: this.now,
    });
  }

  /** The loading instance becomes healthy: every waiter is told. */
  healthy(name: string): void {
    this.running(name, this.views.get(name)?.startedAt ?? this.now);
    for (const d of this.waiters.get(name) ?? []) d.resolve();
    this.waiters.delete(name);
  }

  failHealth(name: string, error: unknown): void {
    this.views.set(name, { ...STOPPED, status: 'failed', lastError: String(error) });
    for (const d of this.waiters.get(name) ?? []) d.reject(error);
    this.waiters.delete(name);
  }

  waiting(name: string): number {
    return this.waiters.get(name)?.length ?? 0;
  }

  runningNow(): string[] {
    return [...this.views].filter(([, v]) => v.running).map(([n]) => n);
  }
}

function setup(opts: { startTimeoutMs?: number; failureMemoMs?: number } = {}) {
  const rig = new Rig();
  const scheduler = new Scheduler(rig.ops, { startTimeoutMs: opts.startTimeoutMs ?? 5000, ...opts });
  return { rig, scheduler };
}

async function rejection(p: Promise<unknown>): Promise<ProxyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyError);
    return e as ProxyError;
  }
  throw new Error('expected the promise to reject');
}

/** A memory check that fits when at most `max` of `holders` run (each holder takes one slot of memory). */
function slots(rig: Rig, holders: string[], max: number, message = 'GPU 0: needs 6.0 GiB, 2.0 GiB free'): void {
  rig.fitFn = () => {
    const up = holders.filter((h) => rig.views.get(h)?.running);
    return up.length <= max ? { fits: true } : { fits: false, message, holders: up };
  };
}

describe('leases on a healthy instance', () => {
  it('answers at once with the address, counts the request in flight, and release counts its end', async () => {
    const { rig, scheduler } = setup();
    rig.running('a');
    const r = route('a');
    rig.now = 2_000_000;
    const lease = await scheduler.acquire(r, [r]);
    expect(lease).toMatchObject({ host: '127.0.0.1', port: rig.portOf('a') });
    expect(rig.calls).toEqual([]);
    expect(scheduler.countsOf('a')).toMatchObject({
      inFlight: 1,
      queued: 0,
      requests: 1,
      errors: 0,
      lastEnd: 0,
      lastRequestAt: 2_000_000,
      starts: 0,
    });
    rig.now = 2_000_750;
    lease.release(true);
    expect(scheduler.countsOf('a')).toMatchObject({ inFlight: 0, requests: 1, errors: 0, lastEnd: 2_000_750 });
  });

  it('a release with ok false counts an error; a second release of the same lease counts nothing', async () => {
    const { rig, scheduler } = setup();
    rig.running('a');
    const r = route('a');
    const one = await scheduler.acquire(r, [r]);
    const two = await scheduler.acquire(r, [r]);
    expect(scheduler.countsOf('a').inFlight).toBe(2);
    one.release(false);
    one.release(false);
    one.release(true);
    expect(scheduler.countsOf('a')).toMatchObject({ inFlight: 1, errors: 1, requests: 2 });
    two.release(true);
    expect(scheduler.countsOf('a')).toMatchObject({ inFlight: 0, errors: 1 });
  });

  it('snapshot is a copy: changing it does not change the counts', async () => {
    const { rig, scheduler } = setup();
    rig.running('a');
    const r = route('a');
    (await scheduler.acquire(r, [r])).release(true);
    const snap = scheduler.snapshot();
    (snap.get('a') as { requests: number }).requests = 99;
    expect(scheduler.countsOf('a').requests).toBe(1);
    expect([...scheduler.snapshot().keys()]).toEqual(['a']);
  });

  it('onChange listeners hear every count change until they unsubscribe', async () => {
    const { rig, scheduler } = setup();
    rig.running('a');
    const r = route('a');
    let heard = 0;
    let heardToo = 0;
    const off = scheduler.onChange(() => heard++);
    scheduler.onChange(() => heardToo++);
    const lease = await scheduler.acquire(r, [r]);
    const afterAcquire = heard;
    expect(afterAcquire).toBeGreaterThan(0);
    lease.release(true);
    expect(heard).toBeGreaterThan(afterAcquire);
    off();
    const before = heard;
    const beforeToo = heardToo;
    (await scheduler.acquire(r, [r])).release(true);
    expect(heard).toBe(before);
    expect(heardToo).toBeGreaterThan(beforeToo);
  });
});

describe('on-demand start', () => {
  it('8 requests for a stopped instance make exactly one start; all 8 get leases once it is healthy', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    let changes = 0;
    scheduler.onChange(() => changes++);
    const pending = Array.from({ length: 8 }, () => scheduler.acquire(r, [r]));
    const tracked = pending.map(track);
    await settle();
    expect(rig.calls).toEqual(['fit a', 'start a (on-demand)']);
    expect(rig.waits).toBe(1);
    expect(scheduler.countsOf('a')).toMatchObject({ queued: 8, inFlight: 0, requests: 8, starts: 1 });
    expect(scheduler.idle('a')).toBe(false);
    expect(tracked.some((t) => t.done())).toBe(false);
    expect(changes).toBeGreaterThanOrEqual(8);
    expect(rig.events.filter((e) => e.includes('on-demand'))).toHaveLength(1);

    rig.healthy('a');
    const leases = await Promise.all(pending);
    expect(leases.map((l) => l.port)).toEqual(Array<number>(8).fill(rig.portOf('a')));
    expect(rig.calls).toEqual(['fit a', 'start a (on-demand)']);
    expect(scheduler.countsOf('a')).toMatchObject({ queued: 0, inFlight: 8, requests: 8, starts: 1, errors: 0 });
    for (const l of leases) l.release(true);
    expect(scheduler.countsOf('a').inFlight).toBe(0);
    expect(scheduler.idle('a')).toBe(true);
  });

  it('a request for an instance that is already loading waits for it without starting it again', async () => {
    const { rig, scheduler } = setup();
    rig.starting('a');
    const r = route('a');
    const p = track(scheduler.acquire(r, [r]));
    await settle();
    expect(rig.calls).toEqual([]);
    expect(scheduler.countsOf('a').queued).toBe(1);
    rig.healthy('a');
    await settle();
    expect(p.value()?.port).toBe(rig.portOf('a'));
  });

  it('on_demand false: 503 not_running, and nothing is started', async () => {
    const { rig, scheduler } = setup();
    const r = route('a', { onDemand: false });
    const e = await rejection(scheduler.acquire(r, [r]));
    expect(e.status).toBe(503);
    expect(e.code).toBe('not_running');
    expect(e.message).toContain('on_demand is false');
    expect(e.hint).toContain('llama-orch up a');
    expect(rig.calls).toEqual([]);
    expect(scheduler.countsOf('a')).toMatchObject({ queued: 0, inFlight: 0, errors: 1, requests: 1, starts: 0 });
  });

  it('on_demand false still serves an instance an operator started', async () => {
    const { rig, scheduler } = setup();
    rig.running('a');
    const r = route('a', { onDemand: false });
    const lease = await scheduler.acquire(r, [r]);
    expect(lease.port).toBe(rig.portOf('a'));
  });

  it('a failed start answers 503 and is remembered: no second start within the memo, one after it', async () => {
    const { rig, scheduler } = setup({ failureMemoMs: 10_000 });
    const r = route('a');
    rig.startHook = () => Promise.reject(new UserError('a failed to start: model file is truncated'));
    const first = await rejection(scheduler.acquire(r, [r]));
    expect(first.status).toBe(503);
    expect(first.message).toContain('model file is truncated');
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);

    rig.now += 9_999;
    const second = await rejection(scheduler.acquire(r, [r]));
    expect(second.status).toBe(503);
    expect(second.message).toContain('model file is truncated');
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);
    expect(scheduler.countsOf('a')).toMatchObject({ errors: 2, requests: 2, queued: 0, starts: 0 });

    rig.now += 2;
    rig.startHook = () => Promise.resolve();
    rig.autoHealthy = true;
    const lease = await scheduler.acquire(r, [r]);
    expect(lease.port).toBe(rig.portOf('a'));
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(2);
    expect(scheduler.countsOf('a').starts).toBe(1);
  });

  it('the failure memo defaults to 10 s', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    rig.startHook = () => Promise.reject(new Error('boom'));
    await rejection(scheduler.acquire(r, [r]));
    rig.now += 9_000;
    await rejection(scheduler.acquire(r, [r]));
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);
    rig.now += 1_001;
    await rejection(scheduler.acquire(r, [r]));
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(2);
  });

  // The case the memo is for: `up` succeeds, then the model does not load (fixed in 2bcd172).
  it('a start whose server fails while loading is remembered too (no reload per request)', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    rig.ops.waitHealthy = (name) => {
      rig.views.set(name, { ...STOPPED, status: 'failed', lastError: 'out of memory' });
      return Promise.reject(new UserError(`${name} did not become healthy: failed (out of memory)`));
    };
    const first = await rejection(scheduler.acquire(r, [r]));
    expect(first.code).toBe('start_failed');
    rig.now += 1_000;
    const second = await rejection(scheduler.acquire(r, [r]));
    expect(second.message).toContain('out of memory');
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);
    rig.now += 10_000;
    await rejection(scheduler.acquire(r, [r]));
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(2);
  });

  it('a start still loading at start_timeout is not remembered: the next request waits for it again', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    rig.ops.waitHealthy = (name) =>
      Promise.reject(new UserError(`${name} not healthy after 5 s (status starting, health loading)`));
    expect((await rejection(scheduler.acquire(r, [r]))).status).toBe(504);
    rig.now += 1_000;
    let waited = false;
    rig.ops.waitHealthy = () => {
      waited = true;
      rig.running('a');
      return Promise.resolve();
    };
    const lease = await scheduler.acquire(r, [r]);
    expect(waited).toBe(true);
    expect(lease.port).toBe(rig.portOf('a'));
    // Still starting (running): no second start, just the wait.
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);
  });

  it('a server that fails while loading answers 503 start_failed with the reason', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    const p = scheduler.acquire(r, [r]);
    await settle();
    rig.failHealth('a', new UserError('a did not become healthy: failed (out of memory)'));
    const e = await rejection(p);
    expect(e.status).toBe(503);
    expect(e.code).toBe('start_failed');
    expect(e.message).toContain('out of memory');
    expect(scheduler.countsOf('a')).toMatchObject({ queued: 0, inFlight: 0, errors: 1 });
    expect(scheduler.idle('a')).toBe(true);
  });

  it('a start that outlives start_timeout answers 504, and the timeout is passed to waitHealthy', async () => {
    const { rig, scheduler } = setup({ startTimeoutMs: 1234 });
    const r = route('a');
    let asked: number | undefined;
    const waitHealthy = rig.ops.waitHealthy;
    rig.ops.waitHealthy = (name, timeoutMs) => {
      asked = timeoutMs;
      return waitHealthy(name, timeoutMs).then(() =>
        Promise.reject(new UserError(`${name} not healthy after 1 s (status starting, health loading)`)),
      );
    };
    rig.autoHealthy = true;
    const e = await rejection(scheduler.acquire(r, [r]));
    expect(asked).toBe(1234);
    expect(e.status).toBe(504);
    expect(e.code).toBe('start_failed');
  });

  it('healthy by waitHealthy but not by the view: 503 not_ready, counted as an error', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    rig.ops.waitHealthy = () => Promise.resolve();
    const e = await rejection(scheduler.acquire(r, [r]));
    expect(e.status).toBe(503);
    expect(e.code).toBe('not_ready');
    expect(e.message).toContain('starting');
    expect(scheduler.countsOf('a')).toMatchObject({ inFlight: 0, queued: 0, errors: 1 });
  });

  it('placements run one at a time: the second fit check waits for the first start to finish', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a');
    const b = route('b');
    const gate = deferred();
    rig.startHook = (name) => (name === 'a' ? gate.promise : Promise.resolve());
    const pa = scheduler.acquire(a, [a, b]);
    const pb = scheduler.acquire(b, [a, b]);
    await settle();
    expect(rig.calls).toEqual(['fit a', 'start a (on-demand)']);
    gate.resolve();
    await Promise.all([pa, pb]);
    expect(rig.calls).toEqual(['fit a', 'start a (on-demand)', 'fit b', 'start b (on-demand)']);
  });

  it('a failed placement does not block the next one', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a');
    const b = route('b');
    rig.startHook = (name) => (name === 'a' ? Promise.reject(new Error('port taken')) : Promise.resolve());
    const [ra, rb] = await Promise.allSettled([scheduler.acquire(a, [a, b]), scheduler.acquire(b, [a, b])]);
    expect(ra.status).toBe('rejected');
    expect(rb.status).toBe('fulfilled');
  });

  it('an instance an operator started while the placement waited is not started again', async () => {
    const { rig, scheduler } = setup();
    const a = route('a');
    rig.fitFn = () => {
      rig.starting('a');
      return { fits: true };
    };
    const b = route('b');
    // b's placement runs first and, while it runs, a is started by someone else.
    const gate = deferred();
    rig.startHook = () => gate.promise;
    const pb = track(scheduler.acquire(b, [a, b]));
    const pa = track(scheduler.acquire(a, [a, b]));
    await settle();
    gate.resolve();
    await settle();
    expect(rig.calls.filter((c) => c.startsWith('start'))).toEqual(['start b (on-demand)']);
    rig.healthy('a');
    rig.healthy('b');
    await settle();
    expect(pa.value()?.port).toBe(rig.portOf('a'));
    expect(pb.value()?.port).toBe(rig.portOf('b'));
  });
});

describe('the client leaving', () => {
  it('a queued request whose client aborts rejects with 499; the start goes on and serves the next request', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    const ac = new AbortController();
    const left = scheduler.acquire(r, [r], ac.signal);
    const stays = track(scheduler.acquire(r, [r]));
    await settle();
    expect(scheduler.countsOf('a').queued).toBe(2);
    ac.abort();
    const e = await rejection(left);
    expect(e.status).toBe(499);
    expect(scheduler.countsOf('a').queued).toBe(1);
    expect(rig.calls).toEqual(['fit a', 'start a (on-demand)']);
    expect(stays.done()).toBe(false);

    rig.healthy('a');
    await settle();
    expect(stays.value()?.port).toBe(rig.portOf('a'));
    const later = await scheduler.acquire(r, [r]);
    expect(later.port).toBe(rig.portOf('a'));
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);
    expect(scheduler.countsOf('a')).toMatchObject({ queued: 0, inFlight: 2, starts: 1 });
  });

  it('the only waiter leaving does not cancel the start', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    const ac = new AbortController();
    const left = scheduler.acquire(r, [r], ac.signal);
    await settle();
    ac.abort();
    expect((await rejection(left)).status).toBe(499);
    expect(scheduler.idle('a')).toBe(false); // the start is still under way
    rig.healthy('a');
    await settle();
    expect(scheduler.idle('a')).toBe(true);
    expect(rig.views.get('a')?.healthy).toBe(true);
    await scheduler.acquire(r, [r]);
    expect(rig.calls.filter((c) => c.startsWith('start'))).toHaveLength(1);
  });

  it('an aborted signal does not matter to a healthy instance: there is nothing to wait for', async () => {
    const { rig, scheduler } = setup();
    rig.running('a');
    const r = route('a');
    const ac = new AbortController();
    ac.abort();
    const lease = await scheduler.acquire(r, [r], ac.signal);
    expect(lease.port).toBe(rig.portOf('a'));
    lease.release(true);
  });

  // An already aborted waiter leaves the start's failure handled: never an unhandled rejection.
  it('an already aborted request for a start that then fails leaves no unhandled rejection', async () => {
    const { rig, scheduler } = setup();
    const r = route('a');
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const gate = deferred();
      rig.startHook = () => gate.promise;
      const ac = new AbortController();
      ac.abort();
      expect((await rejection(scheduler.acquire(r, [r], ac.signal))).status).toBe(499);
      gate.reject(new UserError('a failed to start: no such file'));
      await settle();
      await settle();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('eviction by memory', () => {
  it('stops the least recently used idle holder, checks the fit again, then starts', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const [x, y, z] = [route('x'), route('y'), route('z')];
    const all = [x, y, z];
    rig.running('x', 1_000);
    rig.running('y', 1_000);
    // y served last an hour ago, x a minute ago: y is the least recently used.
    rig.now = 5_000_000;
    (await scheduler.acquire(y, all)).release(true);
    rig.now = 8_000_000;
    (await scheduler.acquire(x, all)).release(true);
    slots(rig, ['x', 'y'], 1);
    rig.now = 8_100_000;
    const lease = await scheduler.acquire(z, all);
    expect(lease.port).toBe(rig.portOf('z'));
    expect(rig.calls).toEqual(['fit z', 'stop y (evicted for z)', 'fit z', 'start z (on-demand)']);
    expect(rig.runningNow().sort()).toEqual(['x', 'z']);
    expect(scheduler.countsOf('y').evictions).toBe(1);
    expect(scheduler.countsOf('x').evictions).toBe(0);
    expect(scheduler.countsOf('z')).toMatchObject({ starts: 1, evictions: 0 });
    expect(rig.events.some((e) => e.startsWith('info y evict:') && e.includes('for z'))).toBe(true);
  });

  it('the order of the holders does not matter: the other way round, the other one goes', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const [x, y, z] = [route('x'), route('y'), route('z')];
    const all = [x, y, z];
    rig.running('x', 1_000);
    rig.running('y', 1_000);
    rig.now = 5_000_000;
    (await scheduler.acquire(x, all)).release(true);
    rig.now = 8_000_000;
    (await scheduler.acquire(y, all)).release(true);
    slots(rig, ['x', 'y'], 1);
    await scheduler.acquire(z, all);
    expect(rig.calls).toEqual(['fit z', 'stop x (evicted for z)', 'fit z', 'start z (on-demand)']);
  });

  it('with no request yet, the run that started earlier is the least recently used', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const [x, y, z] = [route('x'), route('y'), route('z')];
    rig.running('x', 3_000);
    rig.running('y', 2_000);
    slots(rig, ['x', 'y'], 1);
    await scheduler.acquire(z, [x, y, z]);
    expect(rig.calls).toEqual(['fit z', 'stop y (evicted for z)', 'fit z', 'start z (on-demand)']);
  });

  it('stops as many as it takes, one at a time, re-checking after each', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const [x, y, w, z] = [route('x'), route('y'), route('w'), route('z')];
    rig.running('x', 3_000);
    rig.running('y', 1_000);
    rig.running('w', 2_000);
    slots(rig, ['x', 'y', 'w'], 1);
    await scheduler.acquire(z, [x, y, w, z]);
    expect(rig.calls).toEqual([
      'fit z',
      'stop y (evicted for z)',
      'fit z',
      'stop w (evicted for z)',
      'fit z',
      'start z (on-demand)',
    ]);
    expect(scheduler.countsOf('y').evictions + scheduler.countsOf('w').evictions).toBe(2);
  });

  it('never stops a holder with a request in flight: the idle one goes even though it was used later', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const [x, y, z] = [route('x'), route('y'), route('z')];
    const all = [x, y, z];
    rig.running('x', 1_000);
    rig.running('y', 1_000);
    rig.now = 2_000_000;
    const busy = await scheduler.acquire(x, all); // in flight, never released during the start
    rig.now = 3_000_000;
    (await scheduler.acquire(y, all)).release(true);
    slots(rig, ['x', 'y'], 1);
    await scheduler.acquire(z, all);
    expect(rig.calls).toEqual(['fit z', 'stop y (evicted for z)', 'fit z', 'start z (on-demand)']);
    expect(rig.views.get('x')?.running).toBe(true);
    busy.release(true);
  });

  it('nothing evictable (one in flight, one queued): 503 does_not_fit with the message, nothing stopped or started', async () => {
    const { rig, scheduler } = setup();
    const [x, y, z] = [route('x'), route('y'), route('z')];
    const all = [x, y, z];
    rig.running('x', 1_000);
    const busy = await scheduler.acquire(x, all);
    rig.starting('y'); // loading: its request waits (queued)
    const queued = track(scheduler.acquire(y, all));
    await settle();
    expect(scheduler.countsOf('y').queued).toBe(1);
    slots(rig, ['x', 'y'], 1, 'GPU 0: needs 6.0 GiB, 1.5 GiB free');
    const e = await rejection(scheduler.acquire(z, all));
    expect(e.status).toBe(503);
    expect(e.code).toBe('does_not_fit');
    expect(e.message).toContain('z does not fit: GPU 0: needs 6.0 GiB, 1.5 GiB free');
    expect(e.message).toMatch(/not stopped \(serving, or on_demand false\): (x, y|y, x)/);
    expect(rig.calls).toEqual(['fit z']);
    expect(rig.runningNow().sort()).toEqual(['x', 'y']);
    expect(scheduler.countsOf('z')).toMatchObject({ starts: 0, errors: 1, queued: 0 });
    busy.release(true);
    rig.healthy('y');
    await settle();
    expect(queued.value()?.port).toBe(rig.portOf('y'));
  });

  it('holders whose route has on_demand false are never evicted', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const x = route('x', { onDemand: false });
    const [y, z] = [route('y'), route('z')];
    rig.running('x', 1_000); // least recently used, but pinned
    rig.running('y', 9_000);
    slots(rig, ['x', 'y'], 1);
    await scheduler.acquire(z, [x, y, z]);
    expect(rig.calls).toEqual(['fit z', 'stop y (evicted for z)', 'fit z', 'start z (on-demand)']);

    // With only the pinned one holding memory: 503, and x keeps running.
    const w = route('w');
    slots(rig, ['x', 'z'], 0);
    rig.calls.length = 0;
    const busyZ = await scheduler.acquire(z, [x, y, z, w]); // z busy, x pinned
    const e = await rejection(scheduler.acquire(w, [x, y, z, w]));
    expect(e.code).toBe('does_not_fit');
    expect(e.message).toMatch(/not stopped \(serving, or on_demand false\): (x, z|z, x)/);
    expect(rig.calls).toEqual(['fit w']);
    busyZ.release(true);
  });

  it('a holder that is not a route (a broken config) is never evicted', async () => {
    const { rig, scheduler } = setup();
    const z = route('z');
    rig.running('ghost', 1);
    slots(rig, ['ghost'], 0);
    const e = await rejection(scheduler.acquire(z, [z]));
    expect(e.code).toBe('does_not_fit');
    expect(rig.calls).toEqual(['fit z']);
  });

  it('stopped some and it still does not fit: the message names what was stopped and what was not', async () => {
    const { rig, scheduler } = setup();
    const [x, y, z] = [route('x'), route('y'), route('z')];
    const all = [x, y, z];
    rig.running('x', 1_000);
    rig.running('y', 1_000);
    const busy = await scheduler.acquire(y, all);
    slots(rig, ['x', 'y'], 0, 'GPU 0: needs 20 GiB, 0.5 GiB free');
    const e = await rejection(scheduler.acquire(z, all));
    expect(e.code).toBe('does_not_fit');
    expect(e.message).toContain('stopped x and it still does not fit');
    expect(e.message).toContain('not stopped (serving, or on_demand false): y');
    expect(rig.calls).toEqual(['fit z', 'stop x (evicted for z)', 'fit z']);
    busy.release(true);
  });

  // Each holder is stopped at most once per placement, then does_not_fit (the fake's fit gives up after 25 calls).
  it('an instance already stopped for this start is not chosen again (no endless eviction loop)', async () => {
    const { rig, scheduler } = setup();
    const [x, z] = [route('x'), route('z')];
    rig.running('x', 1_000);
    let fits = 0;
    rig.fitFn = () => {
      if (++fits > 25) throw new Error('fit checked 25 times: the eviction loops');
      return { fits: false, message: 'GPU 0: held by a foreign process', holders: ['x'] };
    };
    rig.stopHook = (name) => {
      queueMicrotask(() => rig.running(name, 1_000)); // x comes straight back (or never left)
      return Promise.resolve();
    };
    const e = await rejection(scheduler.acquire(z, [x, z]));
    expect(e.code).toBe('does_not_fit');
    expect(rig.calls.filter((c) => c.startsWith('stop'))).toHaveLength(1);
  });

  it('a failed stop during eviction answers 503 and starts nothing', async () => {
    const { rig, scheduler } = setup();
    const [x, z] = [route('x'), route('z')];
    rig.running('x', 1_000);
    slots(rig, ['x'], 0);
    rig.stopHook = () => Promise.reject(new UserError('x: the state database is locked', ExitCode.stateUnavailable));
    const e = await rejection(scheduler.acquire(z, [x, z]));
    expect(e.status).toBe(503);
    expect(e.message).toContain('locked');
    expect(rig.calls).toEqual(['fit z', 'stop x (evicted for z)']);
    expect(scheduler.countsOf('x').evictions).toBe(0);
  });
});

describe('groups', () => {
  it('starting a member stops an idle running member of the same group first', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { group: 'big' });
    const b = route('b', { group: 'big' });
    const c = route('c', { group: 'other' });
    const d = route('d');
    const all = [a, b, c, d];
    rig.running('a');
    rig.running('c');
    rig.running('d');
    (await scheduler.acquire(a, all)).release(true);
    const lease = await scheduler.acquire(b, all);
    expect(lease.port).toBe(rig.portOf('b'));
    expect(rig.calls).toEqual(['stop a (group big: b starts)', 'fit b', 'start b (on-demand)']);
    expect(rig.runningNow().sort()).toEqual(['b', 'c', 'd']);
    expect(rig.events.some((e) => e.startsWith('info a group:') && e.includes('stopped for b'))).toBe(true);
    // A group stop is not a memory eviction.
    expect(scheduler.countsOf('a').evictions).toBe(0);
  });

  it('a member with a request in flight: 503 group_busy, nothing stopped or started', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { group: 'big' });
    const b = route('b', { group: 'big' });
    rig.running('a');
    const busy = await scheduler.acquire(a, [a, b]);
    const e = await rejection(scheduler.acquire(b, [a, b]));
    expect(e.status).toBe(503);
    expect(e.code).toBe('group_busy');
    expect(e.message).toContain('a');
    expect(e.message).toContain('1 in flight');
    expect(rig.calls).toEqual([]);
    expect(rig.views.get('a')?.running).toBe(true);
    busy.release(true);
  });

  it('a member that is stopped is left alone', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { group: 'big' });
    const b = route('b', { group: 'big' });
    await scheduler.acquire(b, [a, b]);
    expect(rig.calls).toEqual(['fit b', 'start b (on-demand)']);
  });

  it('a member running with on_demand false is never stopped for another: 503 group_busy naming it', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { group: 'big', onDemand: false });
    const b = route('b', { group: 'big' });
    rig.running('a');
    const e = await rejection(scheduler.acquire(b, [a, b]));
    expect(e.status).toBe(503);
    expect(e.code).toBe('group_busy');
    expect(e.message).toBe('b shares group "big" with a, which runs with on_demand false: the proxy does not stop it');
    expect(rig.calls).toEqual([]);
  });

  // Only a start that failed is remembered (the failure memo): group_busy is a refusal for now.
  it('after group_busy, a retry once the member is idle starts the instance', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { group: 'big' });
    const b = route('b', { group: 'big' });
    rig.running('a');
    const busy = await scheduler.acquire(a, [a, b]);
    expect((await rejection(scheduler.acquire(b, [a, b]))).code).toBe('group_busy');
    busy.release(true);
    rig.now += 1_000;
    const lease = await scheduler.acquire(b, [a, b]);
    expect(lease.port).toBe(rig.portOf('b'));
  });
});

describe('idle unload', () => {
  const ttl = 60_000;

  it('stops an instance idle_ttl after its last request ended, not a millisecond before', async () => {
    const { rig, scheduler } = setup();
    const a = route('a', { idleTtlMs: ttl });
    rig.running('a', rig.now);
    rig.now += 5_000;
    (await scheduler.acquire(a, [a])).release(true);
    const ended = rig.now;
    rig.now = ended + ttl - 1;
    expect(await scheduler.sweepIdle([a])).toEqual([]);
    expect(rig.calls).toEqual([]);
    rig.now = ended + ttl;
    expect(await scheduler.sweepIdle([a])).toEqual(['a']);
    expect(rig.calls).toEqual(['stop a (idle_ttl)']);
    expect(scheduler.countsOf('a').idleStops).toBe(1);
    expect(rig.events.some((e) => e.startsWith('info a idle:') && e.includes('idle_ttl 60 s'))).toBe(true);
    // Stopped: the next sweep leaves it alone.
    rig.now += ttl * 10;
    expect(await scheduler.sweepIdle([a])).toEqual([]);
    expect(scheduler.countsOf('a').idleStops).toBe(1);
  });

  it('with no request, counts from the start of the run', async () => {
    const { rig, scheduler } = setup();
    const a = route('a', { idleTtlMs: ttl });
    const startedAt = rig.now + 30_000;
    rig.running('a', startedAt);
    rig.now = startedAt + ttl - 1;
    expect(await scheduler.sweepIdle([a])).toEqual([]);
    rig.now = startedAt + ttl;
    expect(await scheduler.sweepIdle([a])).toEqual(['a']);
  });

  it('a run older than the scheduler counts from the scheduler creation (the daemon start)', async () => {
    const { rig, scheduler } = setup();
    const booted = rig.now;
    const a = route('a', { idleTtlMs: ttl });
    const b = route('b', { idleTtlMs: ttl });
    rig.running('a', booted - 10 * ttl);
    rig.running('b', null);
    rig.now = booted + ttl - 1;
    expect(await scheduler.sweepIdle([a, b])).toEqual([]);
    rig.now = booted + ttl;
    expect((await scheduler.sweepIdle([a, b])).sort()).toEqual(['a', 'b']);
  });

  it('never stops an instance with a request in flight or queued', async () => {
    const { rig, scheduler } = setup();
    const a = route('a', { idleTtlMs: ttl });
    const b = route('b', { idleTtlMs: ttl });
    rig.running('a', rig.now);
    const lease = await scheduler.acquire(a, [a, b]);
    rig.starting('b');
    const waiting = track(scheduler.acquire(b, [a, b]));
    rig.now += ttl * 100;
    expect(await scheduler.sweepIdle([a, b])).toEqual([]);
    expect(rig.calls).toEqual([]);
    lease.release(true);
    // The ttl counts from that release.
    expect(await scheduler.sweepIdle([a])).toEqual([]);
    rig.now += ttl;
    expect(await scheduler.sweepIdle([a])).toEqual(['a']);
    rig.healthy('b');
    await settle();
    expect(waiting.value()).toBeDefined();
  });

  it('idle_ttl null: never stopped; an instance not running (or not in status running) is skipped', async () => {
    const { rig, scheduler } = setup();
    const a = route('a', { idleTtlMs: null });
    const b = route('b', { idleTtlMs: ttl });
    const c = route('c', { idleTtlMs: ttl });
    rig.running('a', 0);
    rig.views.set('b', { ...STOPPED, running: true, status: 'backoff', startedAt: 0 });
    rig.now += ttl * 100;
    expect(await scheduler.sweepIdle([a, b, c])).toEqual([]);
    expect(rig.calls).toEqual([]);
  });

  it('a failed stop is an event, not a count; the other instances are still swept', async () => {
    const { rig, scheduler } = setup();
    const a = route('a', { idleTtlMs: ttl });
    const b = route('b', { idleTtlMs: ttl });
    rig.running('a', 0);
    rig.running('b', 0);
    rig.stopHook = (name) => (name === 'a' ? Promise.reject(new Error('database is locked')) : Promise.resolve());
    rig.now += ttl;
    expect(await scheduler.sweepIdle([a, b])).toEqual(['b']);
    expect(scheduler.countsOf('a').idleStops).toBe(0);
    expect(scheduler.countsOf('b').idleStops).toBe(1);
    expect(rig.events.some((e) => e.startsWith('warn a idle:') && e.includes('database is locked'))).toBe(true);
  });
});

describe('stops of its own, reads, and clients the proxy does not see', () => {
  it('a request that arrives while its instance is being stopped (idle) waits for the stop, then starts it again', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { idleTtlMs: 1000 });
    rig.running('a', rig.now);
    const stop = deferred();
    rig.stopHook = () => stop.promise;
    rig.now += 5000;
    const sweep = scheduler.sweepIdle([a]);
    await settle();
    expect(rig.calls).toEqual(['stop a (idle_ttl)']);
    // The view still says running and healthy (the keeper has not written `stopping` yet).
    const req = track(scheduler.acquire(a, [a]));
    await settle();
    expect(req.done()).toBe(false);
    expect(scheduler.idle('a')).toBe(false);
    stop.resolve();
    await sweep;
    const lease = await waitDone(req);
    expect(rig.calls).toEqual(['stop a (idle_ttl)', 'fit a', 'start a (on-demand)']);
    expect(lease.port).toBe(rig.portOf('a'));
  });

  it('a read (start false) of a stopped instance is 503 not_running and starts nothing; touch false keeps the idle clock', async () => {
    const { rig, scheduler } = setup();
    const a = route('a', { idleTtlMs: 10_000 });
    const e = await rejection(scheduler.acquire(a, [a], undefined, { start: false, touch: false }));
    expect(e.status).toBe(503);
    expect(e.code).toBe('not_running');
    expect(rig.calls).toEqual([]);
    rig.running('a', rig.now);
    rig.now += 9_000;
    (await scheduler.acquire(a, [a], undefined, { start: false, touch: false })).release(true);
    rig.now += 1_000;
    // Ten seconds since the run started: the monitoring read did not count as use.
    expect(await scheduler.sweepIdle([a])).toEqual(['a']);
  });

  it('an instance its server says is busy with requests the proxy did not send is neither evicted nor stopped idle', async () => {
    const { rig, scheduler } = setup();
    rig.autoHealthy = true;
    const a = route('a', { idleTtlMs: 1000 });
    const b = route('b');
    rig.running('a', rig.now - 60_000);
    slots(rig, ['a', 'b'], 0);
    // The keeper's last scrape (after any proxied request of a) saw it processing.
    rig.views.set('a', { ...(rig.views.get('a') as InstanceView), servingAt: rig.now });
    const e = await rejection(scheduler.acquire(b, [a, b]));
    expect(e.code).toBe('does_not_fit');
    expect(e.message).toContain('not stopped (serving, or on_demand false): a');
    rig.now += 5000;
    expect(await scheduler.sweepIdle([a])).toEqual([]);
    expect(rig.calls.filter((c) => c.startsWith('stop'))).toEqual([]);
  });
});

async function waitDone<T>(t: { done: () => boolean; value: () => T | undefined; error: () => unknown }): Promise<T> {
  for (let i = 0; i < 100 && !t.done(); i++) await settle();
  if (t.error()) throw t.error() as Error;
  return t.value() as T;
}
