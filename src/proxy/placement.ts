import { ProxyError } from './errors.js';
import type { Route } from './routes.js';
import type { SchedulerOps } from './scheduler-ops.js';
import type { SchedulerState } from './scheduler-state.js';

// Placement of an on-demand start (docs/ARCHITECTURE.md, "Proxy and REST API"): the other members
// of its group are stopped, idle instances on the devices that are short are evicted (least
// recently used first, never one with requests in flight or queued), then the instance is started.
// The scheduler runs one placement at a time: two cold starts must not count the same free memory.

/** What a placement acts through: the engine, the scheduler's state, the command an operator types. */
export interface Placer {
  ops: SchedulerOps;
  state: SchedulerState;
  command: (args: string) => string;
}

/** A failure of `up` itself (not a refusal before it): remembered for the failure memo. */
export class StartFailure extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

/** Group exclusivity, eviction by memory, then `up`. Refusals are ProxyErrors; a failed `up` is a StartFailure. */
export async function placeNow(p: Placer, route: Route, all: readonly Route[]): Promise<void> {
  const name = route.name;
  if (p.ops.view(name).running) return; // started meanwhile (an operator, another placement)
  if (route.group) await stopGroupMembers(p, route, all);
  await evictUntilFits(p, route, all);
  p.ops.event(name, 'info', 'on-demand', `started on demand: a request names ${route.id}`);
  try {
    await p.ops.start(name, 'on-demand');
  } catch (e) {
    throw new StartFailure(e);
  }
  p.state.countsOf(name).starts++;
}

/** Stops the running members of the route's group (they never run together); refuses when one must stay. */
async function stopGroupMembers(p: Placer, route: Route, all: readonly Route[]): Promise<void> {
  const name = route.name;
  for (const other of all) {
    if (other.name === name || other.group !== route.group || !p.ops.view(other.name).running) continue;
    if (!other.onDemand) {
      throw new ProxyError(
        503,
        `${name} shares group "${route.group}" with ${other.name}, which runs with on_demand false: the proxy does not stop it`,
        'server_error',
        'group_busy',
        `stop it by hand ("${p.command(`down ${other.name}`)}") to let ${name} start`,
      );
    }
    if (!p.state.idle(other.name)) {
      const c = p.state.countsOf(other.name);
      throw new ProxyError(
        503,
        `${name} shares group "${route.group}" with ${other.name}, which is serving (${c.inFlight} in flight, ${c.queued} queued): try again when it is idle`,
        'server_error',
        'group_busy',
      );
    }
    p.ops.event(other.name, 'info', 'group', `stopped for ${name} (group "${route.group}": they never run together)`);
    await p.state.stopOwn(other.name, `group ${route.group}: ${name} starts`);
  }
}

/** Evicts one instance at a time until the route's instance fits; refuses when none is left to evict. */
async function evictUntilFits(p: Placer, route: Route, all: readonly Route[]): Promise<void> {
  const name = route.name;
  const evicted: string[] = [];
  for (;;) {
    const fit = await p.ops.fit(name);
    if (fit.fits) break;
    const byName = new Map(all.map((r) => [r.name, r]));
    const choice = chooseVictim(
      name,
      fit.holders,
      evicted,
      (h) => !!byName.get(h)?.onDemand && p.state.idle(h) && !p.state.servedDirectly(h),
      (h) => p.state.lastUsed(h),
    );
    if (!('victim' in choice)) {
      throw new ProxyError(
        503,
        `${name} does not fit: ${fit.message}` +
          (evicted.length ? `; stopped ${evicted.join(', ')} and it still does not fit` : '') +
          (choice.busy.length ? `; not stopped (serving, or on_demand false): ${choice.busy.join(', ')}` : ''),
        'server_error',
        'does_not_fit',
      );
    }
    const victim = choice.victim;
    p.ops.event(
      victim,
      'info',
      'evict',
      `stopped to free memory for ${name} (idle, least recently used): ${fit.message}`,
    );
    await p.state.stopOwn(victim, `evicted for ${name}`);
    p.state.countsOf(victim).evictions++;
    evicted.push(victim);
  }
}

/**
 * The eviction decision: among the holders of the devices that are short (other than `name` and
 * those stopped already), the evictable one used least recently. None: the holders that stay
 * (`busy`: serving, on_demand false, or stopped already and still counted).
 */
export function chooseVictim(
  name: string,
  holders: readonly string[],
  evicted: readonly string[],
  evictable: (holder: string) => boolean,
  lastUsed: (holder: string) => number,
): { victim: string } | { busy: string[] } {
  const candidates = holders
    .filter((h) => h !== name && !evicted.includes(h) && evictable(h))
    .sort((a, b) => lastUsed(a) - lastUsed(b));
  const victim = candidates[0];
  if (victim !== undefined) return { victim };
  return { busy: holders.filter((h) => h !== name && !candidates.includes(h)) };
}
