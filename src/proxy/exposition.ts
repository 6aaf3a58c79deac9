import type { GpuInfo } from '../domain/gpu.js';
import type { InstanceSnapshot } from '../domain/snapshot.js';
import { STATUSES } from '../domain/status.js';
import type { InstanceCounts } from './scheduler-state.js';
import { labelSafe } from '../domain/sanitize.js';

/** Upper bounds (seconds) of the proxy's request-duration histogram: a tokenize call to a long generation. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** A Prometheus histogram (cumulative buckets, sum, count). */
export class Histogram {
  readonly counts = new Array<number>(DURATION_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    const i = DURATION_BUCKETS.findIndex((b) => seconds <= b);
    if (i >= 0) this.counts[i] = (this.counts[i] as number) + 1;
  }
}

/** What the proxy counts beyond the scheduler: answers by status code, and durations, per instance. */
export class ProxyCounters {
  readonly responses = new Map<string, Map<number, number>>();
  readonly durations = new Map<string, Histogram>();

  /** Forgets instances that are no longer configured. */
  retain(names: ReadonlySet<string>): void {
    for (const map of [this.responses, this.durations]) {
      for (const n of [...map.keys()]) if (!names.has(n)) map.delete(n);
    }
  }

  record(instance: string, status: number, seconds: number): void {
    const byCode = this.responses.get(instance) ?? new Map<number, number>();
    byCode.set(status, (byCode.get(status) ?? 0) + 1);
    this.responses.set(instance, byCode);
    const h = this.durations.get(instance) ?? new Histogram();
    h.observe(seconds);
    this.durations.set(instance, h);
  }
}

/** A label value as the exposition format writes it (format/sanitize.ts: its escapes, no control characters). */
const label = labelSafe;

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

class Writer {
  readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter' | 'histogram', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Record<string, string>, value: number): void {
    const ls = Object.entries(labels)
      .map(([k, v]) => `${k}="${label(v)}"`)
      .join(',');
    this.lines.push(`${name}${ls ? `{${ls}}` : ''} ${num(value)}`);
  }
}

export interface ExpositionInput {
  instances: InstanceSnapshot[];
  gpus: GpuInfo[];
  counts: Map<string, InstanceCounts>;
  counters: ProxyCounters;
  /** What the proxy's bounds on clients turned away (proxy/bodies.ts, proxy.max_connections). */
  pressure?: ProxyPressure;
}

export interface ProxyPressure {
  connectionsDropped: number;
  bodiesBytes: number;
  bodiesRefusedFull: number;
  bodiesTimedOut: number;
}

/** GET /metrics: Prometheus text exposition format 0.0.4 (README, "Prometheus metrics"). */
export function exposition({ instances, gpus, counts, counters, pressure }: ExpositionInput): string {
  const w = new Writer();
  const each = (
    name: string,
    type: 'gauge' | 'counter',
    help: string,
    value: (i: InstanceSnapshot) => number | null | undefined,
  ) => {
    w.family(name, type, help);
    for (const i of instances) {
      const v = value(i);
      if (v !== null && v !== undefined) w.sample(name, { name: i.name }, v);
    }
  };
  w.family('llama_orch_instance_state', 'gauge', 'The instance state: 1 for the current one (stateset).');
  for (const i of instances) {
    for (const s of [...STATUSES, 'orphaned', 'invalid']) {
      w.sample('llama_orch_instance_state', { name: i.name, state: s }, i.state === s ? 1 : 0);
    }
  }
  each('llama_orch_instance_healthy', 'gauge', 'Health ok (1) or not (0).', (i) => (i.health === 'ok' ? 1 : 0));
  each('llama_orch_instance_restarts_total', 'counter', "Restarts by the instance's keeper.", (i) => i.restarts);
  each('llama_orch_instance_uptime_seconds', 'gauge', "Seconds since the current run's server started.", (i) =>
    i.uptime_s === null ? null : i.uptime_s,
  );
  each(
    'llama_orch_instance_tokens_per_second',
    'gauge',
    'Generated tokens per second (server metrics).',
    (i) => i.tokens_per_s,
  );
  each(
    'llama_orch_instance_prompt_tokens_per_second',
    'gauge',
    'Prompt tokens per second (server metrics).',
    (i) => i.prompt_tokens_per_s,
  );
  each('llama_orch_instance_vram_bytes', 'gauge', 'GPU memory the server holds.', (i) => i.vram_bytes);
  each('llama_orch_instance_slots_busy', 'gauge', 'Slots processing a request.', (i) => i.slots_busy);
  each('llama_orch_instance_slots_total', 'gauge', 'Slots of the server.', (i) => i.slots_total);
  each(
    'llama_orch_instance_requests_deferred',
    'gauge',
    'Requests the server deferred (no free slot).',
    (i) => i.requests_deferred,
  );
  const count = (name: string, type: 'gauge' | 'counter', help: string, value: (c: InstanceCounts) => number) => {
    w.family(name, type, help);
    for (const [n, c] of [...counts].sort(([a], [b]) => a.localeCompare(b))) w.sample(name, { name: n }, value(c));
  };
  count(
    'llama_orch_proxy_requests_in_flight',
    'gauge',
    'Proxied requests the instance is answering.',
    (c) => c.inFlight,
  );
  count(
    'llama_orch_proxy_requests_queued',
    'gauge',
    'Proxied requests waiting for the instance to start.',
    (c) => c.queued,
  );
  w.family('llama_orch_proxy_requests_total', 'counter', 'Proxied requests answered, by HTTP status.');
  for (const [n, byCode] of [...counters.responses].sort(([a], [b]) => a.localeCompare(b))) {
    for (const [code, v] of [...byCode].sort(([a], [b]) => a - b)) {
      w.sample('llama_orch_proxy_requests_total', { name: n, code: String(code) }, v);
    }
  }
  w.family(
    'llama_orch_proxy_request_duration_seconds',
    'histogram',
    'Time from a request to the end of its answer, start waits included.',
  );
  for (const [n, h] of [...counters.durations].sort(([a], [b]) => a.localeCompare(b))) {
    let acc = 0;
    DURATION_BUCKETS.forEach((b, idx) => {
      acc += h.counts[idx] as number;
      w.sample('llama_orch_proxy_request_duration_seconds_bucket', { name: n, le: String(b) }, acc);
    });
    w.sample('llama_orch_proxy_request_duration_seconds_bucket', { name: n, le: '+Inf' }, h.count);
    w.sample('llama_orch_proxy_request_duration_seconds_sum', { name: n }, h.sum);
    w.sample('llama_orch_proxy_request_duration_seconds_count', { name: n }, h.count);
  }
  if (pressure) {
    const one = (name: string, type: 'gauge' | 'counter', help: string, v: number) => {
      w.family(name, type, help);
      w.sample(name, {}, v);
    };
    one(
      'llama_orch_proxy_connections_dropped_total',
      'counter',
      'Connections closed at once because proxy.max_connections were open.',
      pressure.connectionsDropped,
    );
    one(
      'llama_orch_proxy_body_bytes',
      'gauge',
      'Bytes of request bodies held in memory now (bounded by proxy.max_bodies_bytes).',
      pressure.bodiesBytes,
    );
    w.family(
      'llama_orch_proxy_bodies_refused_total',
      'counter',
      'Request bodies refused: "full" (proxy.max_bodies_bytes, 503) or "timeout" (proxy.body_timeout, 408).',
    );
    w.sample('llama_orch_proxy_bodies_refused_total', { reason: 'full' }, pressure.bodiesRefusedFull);
    w.sample('llama_orch_proxy_bodies_refused_total', { reason: 'timeout' }, pressure.bodiesTimedOut);
  }
  count(
    'llama_orch_proxy_on_demand_starts_total',
    'counter',
    'Starts made because a request named the instance.',
    (c) => c.starts,
  );
  count(
    'llama_orch_proxy_evictions_total',
    'counter',
    'Stops made to free memory for another instance.',
    (c) => c.evictions,
  );
  count('llama_orch_proxy_idle_stops_total', 'counter', 'Stops made because idle_ttl passed.', (c) => c.idleStops);
  const gpu = (name: string, help: string, value: (g: GpuInfo) => number | null) => {
    w.family(name, 'gauge', help);
    for (const g of gpus) {
      const v = value(g);
      if (v !== null) w.sample(name, { gpu: String(g.index), gpu_name: g.name ?? '' }, v);
    }
  };
  gpu('llama_orch_gpu_utilization_ratio', 'GPU load, 0 to 1.', (g) =>
    g.utilization_pct === null ? null : g.utilization_pct / 100,
  );
  gpu('llama_orch_gpu_memory_used_bytes', 'GPU memory in use.', (g) => g.memory_used_bytes);
  gpu('llama_orch_gpu_memory_total_bytes', 'GPU memory in all.', (g) => g.memory_total_bytes);
  gpu('llama_orch_gpu_temperature_celsius', 'GPU temperature.', (g) => g.temperature_c);
  return w.lines.join('\n') + '\n';
}
