import type { InstanceConfig } from '../config/schema.js';
import { stepHealth, type HealthState, type ProbeOutcome } from './machine.js';
import type { Store } from '../store/store.js';

/** Where the keeper's writes go: applied at once, or kept in order while the database refuses them. */
export interface StateWrites {
  write(what: string, fn: (s: Store) => void): void;
}

export interface HealthLoopDeps {
  state: StateWrites;
  env: NodeJS.ProcessEnv;
  now: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  probe: (
    hc: InstanceConfig['healthcheck'],
    target: { host: string; port: number; apiKey?: string },
  ) => Promise<ProbeOutcome>;
}

/** The health of the current run: written by the loop, read by the keeper when the run ends. */
export interface HealthCell {
  get: () => HealthState;
  set: (h: HealthState) => void;
}

/**
 * Probes one run of the server until `signal` aborts (then it never resolves: the run ended some
 * other way) or the health machine asks for a restart (resolves with the reason). Probes quickly
 * while the server starts or loads, then at the configured interval. `afterOk` is called after each
 * healthy probe and not awaited.
 */
export async function healthLoop(
  name: string,
  config: InstanceConfig,
  deps: HealthLoopDeps,
  cell: HealthCell,
  signal: AbortSignal,
  afterOk?: () => void,
): Promise<{ kind: 'health'; reason: string }> {
  const hc = config.healthcheck;
  const apiKey = config.server.api_key_env ? deps.env[config.server.api_key_env] : undefined;
  const target = { host: config.server.host, port: config.server.port, apiKey };
  await deps.sleep(100, signal);
  while (!signal.aborted) {
    const outcome = await deps.probe(hc, target);
    if (signal.aborted) break;
    const prev = cell.get();
    const t = deps.now();
    const step = stepHealth(prev, outcome, t, hc);
    cell.set(step.state);
    recordProbe(deps.state, name, config, prev, step.state, outcome, t);
    if (step.restart) return { kind: 'health', reason: step.restart };
    // Whatever follows the health cadence (the metrics scrape) runs beside the loop, never in it.
    if (step.state.health === 'ok') afterOk?.();
    const fast = step.state.health === 'starting' || step.state.health === 'loading';
    await deps.sleep(fast ? Math.min(hc.interval * 1000, 250) : hc.interval * 1000, signal);
  }
  return new Promise(() => undefined);
}

/** One probe's result, handed to the store's intent (it writes the row, the history and the events). */
function recordProbe(
  state: StateWrites,
  name: string,
  config: InstanceConfig,
  prev: HealthState,
  s: HealthState,
  outcome: ProbeOutcome,
  t: number,
): void {
  const record = {
    at: t,
    result: outcome.kind,
    latencyMs: 'latencyMs' in outcome && outcome.latencyMs !== undefined ? outcome.latencyMs : null,
    detail: 'detail' in outcome ? outcome.detail : null,
    before: prev.health,
    health: s.health,
    healthDetail: s.detail,
    failures: s.failures,
    // A run healthy for min_uptime is no crash loop: its restart count starts over.
    resetAttempts: s.okSince !== null && t - s.okSince >= config.restart.min_uptime * 1000,
  };
  state.write('probe', (store) => store.recordProbe(name, record));
}
