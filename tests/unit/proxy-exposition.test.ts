import { describe, expect, it } from 'vitest';
import type { LoadResult } from '../../src/config/load.js';
import { InstanceConfigSchema } from '../../src/config/schema.js';
import { SettingsSchema, type ProxySettings } from '../../src/config/settings.js';
import { ExitCode, UserError } from '../../src/domain/errors.js';
import type { GpuInfo } from '../../src/domain/gpu.js';
import type { InstanceSnapshot } from '../../src/domain/snapshot.js';
import { asProxyError, ProxyError } from '../../src/proxy/errors.js';
import { DURATION_BUCKETS, exposition, Histogram, ProxyCounters } from '../../src/proxy/exposition.js';
import { buildRoutes, routeSource } from '../../src/proxy/routes.js';
import type { InstanceCounts } from '../../src/proxy/scheduler-state.js';
import { snapshotFixture } from '../helpers/snapshot.js';

// ---------------------------------------------------------------------------------------------
// A strict reader of the Prometheus text format 0.0.4: anything it does not know is an error.
// ---------------------------------------------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: string;
  samples: Sample[];
}

const METRIC_NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL_NAME = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const LABEL_PAIR = `${LABEL_NAME}=${LABEL_VALUE}`;
const NUMBER = '(?:[+-]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]Inf|NaN)';
const SAMPLE_LINE = new RegExp(
  `^(${METRIC_NAME})(?:\\{((?:${LABEL_PAIR})(?:,${LABEL_PAIR})*)?\\})? (${NUMBER})(?: -?\\d+)?$`,
);
const PAIR = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})(,|$)`, 'y');
const COMMENT = new RegExp(`^# (HELP|TYPE) (${METRIC_NAME}) (.*)$`);
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function unescapeLabel(quoted: string): string {
  return quoted.slice(1, -1).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

function parseNumber(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

function seriesKey(s: Sample): string {
  return `${s.name}{${Object.entries(s.labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',')}}`;
}

/** Parses the page; throws on the first line that breaks the grammar or the family rules. */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the page must end with a newline');
  const families = new Map<string, Family>();
  const series = new Set<string>();
  let current: Family | undefined;
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const where = `line ${i + 1} ${JSON.stringify(line)}`;
      if (line.startsWith('#')) {
        const m = COMMENT.exec(line);
        if (!m) throw new Error(`${where}: a comment that is neither # HELP nor # TYPE`);
        const [, kind, name, rest] = m as unknown as [string, string, string, string];
        if (kind === 'HELP') {
          if (families.has(name)) throw new Error(`${where}: family ${name} declared twice`);
          if (!/^(?:[^\\\n]|\\[\\n])*$/.test(rest)) throw new Error(`${where}: HELP text badly escaped`);
          current = { name, help: rest, type: '', samples: [] };
          families.set(name, current);
        } else {
          if (current?.name !== name) throw new Error(`${where}: TYPE without its HELP just before`);
          if (current.type) throw new Error(`${where}: second TYPE for ${name}`);
          if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${rest}`);
          current.type = rest;
        }
        return;
      }
      const m = SAMPLE_LINE.exec(line);
      if (!m) throw new Error(`${where}: not name{label="value",...} number`);
      const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
      if (!current?.type) throw new Error(`${where}: sample before its family's HELP and TYPE`);
      const allowed =
        current.type === 'histogram'
          ? [`${current.name}_bucket`, `${current.name}_sum`, `${current.name}_count`]
          : [current.name];
      if (!allowed.includes(name)) throw new Error(`${where}: sample outside its family ${current.name}`);
      const labels: Record<string, string> = {};
      if (labelText) {
        PAIR.lastIndex = 0;
        while (PAIR.lastIndex < labelText.length) {
          const p = PAIR.exec(labelText);
          if (!p) throw new Error(`${where}: labels do not parse`);
          const [, k, v] = p as unknown as [string, string, string];
          if (k in labels) throw new Error(`${where}: label ${k} twice`);
          labels[k] = unescapeLabel(v);
        }
      }
      if (current.type === 'histogram' && name.endsWith('_bucket') && !('le' in labels)) {
        throw new Error(`${where}: bucket without le`);
      }
      const sample = { name, labels, value: parseNumber(valueText) };
      const key = seriesKey(sample);
      if (series.has(key)) throw new Error(`${where}: series ${key} twice`);
      series.add(key);
      current.samples.push(sample);
    });
  for (const f of families.values()) if (!f.type) throw new Error(`family ${f.name} has no TYPE`);
  return families;
}

/** Every histogram of the page: buckets ascending by le, cumulative, ending at +Inf = _count. */
function checkHistograms(families: Map<string, Family>): void {
  for (const f of families.values()) {
    if (f.type !== 'histogram') continue;
    const groups = new Map<string, { buckets: Sample[]; sum?: Sample; count?: Sample }>();
    for (const s of f.samples) {
      const rest = { ...s.labels };
      delete rest.le;
      const key = seriesKey({ name: '', labels: rest, value: 0 });
      const g = groups.get(key) ?? { buckets: [] };
      if (s.name.endsWith('_bucket')) g.buckets.push(s);
      else if (s.name.endsWith('_sum')) g.sum = s;
      else g.count = s;
      groups.set(key, g);
    }
    for (const [key, g] of groups) {
      expect(g.sum, `${f.name}${key} has _sum`).toBeDefined();
      expect(g.count, `${f.name}${key} has _count`).toBeDefined();
      const les = g.buckets.map((b) => parseNumber(b.labels.le as string));
      for (let i = 1; i < les.length; i++) expect(les[i]).toBeGreaterThan(les[i - 1] as number);
      for (let i = 1; i < g.buckets.length; i++) {
        expect(g.buckets[i]?.value).toBeGreaterThanOrEqual(g.buckets[i - 1]?.value as number);
      }
      const last = g.buckets.at(-1);
      expect(last?.labels.le).toBe('+Inf');
      expect(last?.value).toBe(g.count?.value);
    }
  }
}

function samplesOf(families: Map<string, Family>, name: string): Sample[] {
  const f = families.get(name);
  if (!f) throw new Error(`no family ${name}`);
  return f.samples;
}

function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  const family = name.replace(/_(bucket|sum|count)$/, '');
  const f = families.get(name) ?? families.get(family);
  return f?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

// ---------------------------------------------------------------------------------------------

/** A stopped instance: nothing running, nothing read. */
const snap = (name: string, over: Partial<InstanceSnapshot> = {}): InstanceSnapshot =>
  snapshotFixture(name, {
    state: 'stopped',
    health: null,
    health_latency_ms: null,
    pid: null,
    keeper_pid: null,
    port: 8081,
    model: 'm',
    model_path: '/m.gguf',
    uptime_s: null,
    tokens_per_s: null,
    prompt_tokens_per_s: null,
    slots_busy: null,
    slots_total: null,
    requests_processing: null,
    requests_deferred: null,
    ctx_size: null,
    ...over,
  });

function gpu(index: number, over: Partial<GpuInfo> = {}): GpuInfo {
  return {
    index,
    uuid: `GPU-${index}`,
    name: 'NVIDIA H100',
    utilization_pct: 50,
    memory_used_bytes: 1024,
    memory_total_bytes: 4096,
    temperature_c: 40,
    power_w: null,
    power_limit_w: null,
    vendor: 'nvidia',
    state: 'ok',
    state_detail: null,
    mig_devices: [],
    processes: [],
    warnings: [],
    ...over,
  };
}

function counts(over: Partial<InstanceCounts> = {}): InstanceCounts {
  return {
    inFlight: 0,
    queued: 0,
    requests: 0,
    errors: 0,
    lastEnd: 0,
    lastRequestAt: null,
    starts: 0,
    evictions: 0,
    idleStops: 0,
    ...over,
  };
}

const ALL_STATES = ['stopped', 'starting', 'running', 'stopping', 'backoff', 'failed', 'orphaned', 'invalid'];

describe('GET /metrics exposition', () => {
  it('a busy rig: the page parses strictly and says what the inputs say', () => {
    const counters = new ProxyCounters();
    for (const [inst, code, s] of [
      ['alpha', 200, 0.003],
      ['alpha', 200, 0.02],
      ['alpha', 200, 0.02],
      ['alpha', 503, 7],
      ['alpha', 200, 1000],
      ['beta', 404, 0.5],
    ] as const) {
      counters.record(inst, code, s);
    }
    const page = exposition({
      instances: [
        snap('alpha', {
          state: 'running',
          health: 'ok',
          uptime_s: 3600,
          restarts: 2,
          tokens_per_s: 41.5,
          prompt_tokens_per_s: 812.25,
          vram_bytes: 6 * 1024 ** 3,
          slots_busy: 1,
          slots_total: 4,
          requests_deferred: 0,
        }),
        snap('beta', { state: 'failed', health: 'unhealthy' }),
      ],
      gpus: [gpu(0), gpu(1, { utilization_pct: null, temperature_c: null, name: null })],
      counts: new Map([
        ['beta', counts({ starts: 1, idleStops: 2 })],
        ['alpha', counts({ inFlight: 3, queued: 2, starts: 4, evictions: 1 })],
      ]),
      counters,
    });
    const f = parseExposition(page);
    checkHistograms(f);

    // The stateset: one state is 1, every other known state 0.
    for (const [inst, state] of [
      ['alpha', 'running'],
      ['beta', 'failed'],
    ]) {
      const rows = samplesOf(f, 'llama_orch_instance_state').filter((s) => s.labels.name === inst);
      expect(rows.map((r) => r.labels.state).sort()).toEqual([...ALL_STATES].sort());
      expect(rows.filter((r) => r.value === 1).map((r) => r.labels.state)).toEqual([state]);
      expect(rows.filter((r) => r.value !== 0 && r.value !== 1)).toEqual([]);
    }
    expect(f.get('llama_orch_instance_state')?.type).toBe('gauge');
    expect(valueOf(f, 'llama_orch_instance_healthy', { name: 'alpha' })).toBe(1);
    expect(valueOf(f, 'llama_orch_instance_healthy', { name: 'beta' })).toBe(0);
    expect(valueOf(f, 'llama_orch_instance_restarts_total', { name: 'alpha' })).toBe(2);
    expect(f.get('llama_orch_instance_restarts_total')?.type).toBe('counter');
    expect(valueOf(f, 'llama_orch_instance_uptime_seconds', { name: 'alpha' })).toBe(3600);
    // Unknown is absent, not 0.
    expect(valueOf(f, 'llama_orch_instance_uptime_seconds', { name: 'beta' })).toBeUndefined();
    expect(valueOf(f, 'llama_orch_instance_tokens_per_second', { name: 'alpha' })).toBe(41.5);
    expect(valueOf(f, 'llama_orch_instance_tokens_per_second', { name: 'beta' })).toBeUndefined();
    expect(valueOf(f, 'llama_orch_instance_prompt_tokens_per_second', { name: 'alpha' })).toBe(812.25);
    expect(valueOf(f, 'llama_orch_instance_vram_bytes', { name: 'alpha' })).toBe(6 * 1024 ** 3);
    expect(valueOf(f, 'llama_orch_instance_slots_busy', { name: 'alpha' })).toBe(1);
    expect(valueOf(f, 'llama_orch_instance_slots_total', { name: 'alpha' })).toBe(4);
    expect(valueOf(f, 'llama_orch_instance_requests_deferred', { name: 'alpha' })).toBe(0);

    // The scheduler's counts.
    expect(valueOf(f, 'llama_orch_proxy_requests_in_flight', { name: 'alpha' })).toBe(3);
    expect(valueOf(f, 'llama_orch_proxy_requests_queued', { name: 'alpha' })).toBe(2);
    expect(valueOf(f, 'llama_orch_proxy_requests_in_flight', { name: 'beta' })).toBe(0);
    expect(valueOf(f, 'llama_orch_proxy_on_demand_starts_total', { name: 'alpha' })).toBe(4);
    expect(valueOf(f, 'llama_orch_proxy_on_demand_starts_total', { name: 'beta' })).toBe(1);
    expect(valueOf(f, 'llama_orch_proxy_evictions_total', { name: 'alpha' })).toBe(1);
    expect(valueOf(f, 'llama_orch_proxy_idle_stops_total', { name: 'beta' })).toBe(2);
    for (const n of ['starts', 'evictions', 'idle_stops']) {
      const name = n === 'starts' ? 'llama_orch_proxy_on_demand_starts_total' : `llama_orch_proxy_${n}_total`;
      expect(f.get(name)?.type).toBe('counter');
    }

    // Answers by status.
    expect(valueOf(f, 'llama_orch_proxy_requests_total', { name: 'alpha', code: '200' })).toBe(4);
    expect(valueOf(f, 'llama_orch_proxy_requests_total', { name: 'alpha', code: '503' })).toBe(1);
    expect(valueOf(f, 'llama_orch_proxy_requests_total', { name: 'beta', code: '404' })).toBe(1);
    expect(samplesOf(f, 'llama_orch_proxy_requests_total')).toHaveLength(3);

    // Durations: 0.003 | 0.02 0.02 | 7 | 1000 (beyond the last bound: only in +Inf).
    const H = 'llama_orch_proxy_request_duration_seconds';
    expect(f.get(H)?.type).toBe('histogram');
    const bucket = (le: string) => valueOf(f, `${H}_bucket`, { name: 'alpha', le });
    expect(bucket('0.005')).toBe(1);
    expect(bucket('0.01')).toBe(1);
    expect(bucket('0.025')).toBe(3);
    expect(bucket('5')).toBe(3);
    expect(bucket('10')).toBe(4);
    expect(bucket('300')).toBe(4);
    expect(bucket('+Inf')).toBe(5);
    expect(valueOf(f, `${H}_count`, { name: 'alpha' })).toBe(5);
    expect(valueOf(f, `${H}_sum`, { name: 'alpha' })).toBeCloseTo(1007.043, 6);
    expect(valueOf(f, `${H}_bucket`, { name: 'beta', le: '0.25' })).toBe(0);
    expect(valueOf(f, `${H}_bucket`, { name: 'beta', le: '0.5' })).toBe(1);
    expect(samplesOf(f, H).filter((s) => s.name === `${H}_bucket` && s.labels.name === 'alpha')).toHaveLength(
      DURATION_BUCKETS.length + 1,
    );

    // GPUs: a ratio, and an unknown reading left out.
    expect(valueOf(f, 'llama_orch_gpu_utilization_ratio', { gpu: '0', gpu_name: 'NVIDIA H100' })).toBe(0.5);
    expect(valueOf(f, 'llama_orch_gpu_utilization_ratio', { gpu: '1' })).toBeUndefined();
    expect(valueOf(f, 'llama_orch_gpu_memory_used_bytes', { gpu: '1', gpu_name: '' })).toBe(1024);
    expect(valueOf(f, 'llama_orch_gpu_memory_total_bytes', { gpu: '0' })).toBe(4096);
    expect(valueOf(f, 'llama_orch_gpu_temperature_celsius', { gpu: '0' })).toBe(40);
    expect(valueOf(f, 'llama_orch_gpu_temperature_celsius', { gpu: '1' })).toBeUndefined();
  });

  it('nothing to report: every family is still declared, with no samples, and the page is valid', () => {
    const page = exposition({ instances: [], gpus: [], counts: new Map(), counters: new ProxyCounters() });
    const f = parseExposition(page);
    expect(f.size).toBeGreaterThanOrEqual(20);
    for (const fam of f.values()) {
      expect(fam.help.length, `${fam.name} has help text`).toBeGreaterThan(0);
      expect(fam.samples).toEqual([]);
      expect(fam.name).toMatch(/^llama_orch_/);
    }
  });

  it('label values with quotes, backslashes and newlines are escaped and read back as they were', () => {
    const weird = 'RTX "4090" C:\\gpu\\0\nsecond line';
    const inst = 'a"b\\c\nd';
    const counters = new ProxyCounters();
    counters.record(inst, 200, 0.1);
    const page = exposition({
      instances: [snap(inst, { state: 'running', health: 'ok' })],
      gpus: [gpu(0, { name: weird })],
      counts: new Map([[inst, counts({ inFlight: 1 })]]),
      counters,
    });
    // Raw text: no bare newline inside a label value, the escapes as the format spells them.
    expect(page).toContain('gpu_name="RTX \\"4090\\" C:\\\\gpu\\\\0\\nsecond line"');
    const f = parseExposition(page);
    checkHistograms(f);
    expect(valueOf(f, 'llama_orch_gpu_memory_used_bytes', { gpu_name: weird })).toBe(1024);
    expect(valueOf(f, 'llama_orch_instance_healthy', { name: inst })).toBe(1);
    expect(valueOf(f, 'llama_orch_proxy_requests_in_flight', { name: inst })).toBe(1);
    expect(valueOf(f, 'llama_orch_proxy_request_duration_seconds_count', { name: inst })).toBe(1);
  });

  it('special values are written as the format spells them', () => {
    const page = exposition({
      instances: [snap('a', { tokens_per_s: NaN, vram_bytes: Infinity, prompt_tokens_per_s: 1e21, restarts: 0 })],
      gpus: [],
      counts: new Map(),
      counters: new ProxyCounters(),
    });
    const f = parseExposition(page);
    expect(valueOf(f, 'llama_orch_instance_tokens_per_second', { name: 'a' })).toBeNaN();
    expect(valueOf(f, 'llama_orch_instance_vram_bytes', { name: 'a' })).toBe(Infinity);
    expect(valueOf(f, 'llama_orch_instance_prompt_tokens_per_second', { name: 'a' })).toBe(1e21);
    expect(page).toContain('llama_orch_instance_tokens_per_second{name="a"} NaN\n');
    expect(page).toContain('llama_orch_instance_vram_bytes{name="a"} +Inf\n');
  });

  it('the strict reader itself refuses broken pages', () => {
    const ok = '# HELP x_total a\n# TYPE x_total counter\nx_total{a="1"} 2\n';
    expect(() => parseExposition(ok)).not.toThrow();
    for (const bad of [
      'x_total 1\n', // no HELP/TYPE
      '# HELP x a\n# TYPE x gauge\nx{a="1\nb"} 2\n', // raw newline in a value
      '# HELP x a\n# TYPE x gauge\nx{a="1"b"} 2\n', // raw quote
      '# HELP x a\n# TYPE x gauge\nx{a="1"} two\n',
      '# HELP x a\n# TYPE x gauge\ny 1\n', // outside its family
      '# HELP x a\n# TYPE x gauge\nx 1\nx 2\n', // the same series twice
      '# HELP x a\n# TYPE x gauge\nx 1', // no final newline
      '# HELP x a\n# TYPE x gauge\n\nx 1\n', // blank line
      '# HELP x a\n# TYPE x gauge\n# HELP x b\n# TYPE x gauge\n',
    ]) {
      expect(() => parseExposition(bad), JSON.stringify(bad)).toThrow();
    }
    const h = (lines: string[]) =>
      checkHistograms(parseExposition(['# HELP h a', '# TYPE h histogram', ...lines].join('\n') + '\n'));
    expect(() => h(['h_bucket{le="1"} 2', 'h_bucket{le="+Inf"} 1', 'h_sum 1', 'h_count 1'])).toThrow();
    expect(() => h(['h_bucket{le="1"} 1', 'h_bucket{le="+Inf"} 2', 'h_sum 1', 'h_count 3'])).toThrow();
    expect(() => h(['h_bucket{le="1"} 1', 'h_bucket{le="2"} 2', 'h_sum 1', 'h_count 2'])).toThrow();
    expect(() => h(['h_bucket{le="1"} 1', 'h_bucket{le="+Inf"} 2', 'h_sum 1', 'h_count 2'])).not.toThrow();
  });
});

describe('the duration histogram', () => {
  it('a value on a bound falls in that bucket; beyond the last bound only in the count', () => {
    const h = new Histogram();
    h.observe(0.005);
    h.observe(0.0051);
    h.observe(300);
    h.observe(300.1);
    expect(h.counts[0]).toBe(1);
    expect(h.counts[1]).toBe(1);
    expect(h.counts[DURATION_BUCKETS.length - 1]).toBe(1);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(3);
    expect(h.count).toBe(4);
    expect(h.sum).toBeCloseTo(600.1101, 6);
  });

  it('the bounds ascend', () => {
    for (let i = 1; i < DURATION_BUCKETS.length; i++) {
      expect(DURATION_BUCKETS[i]).toBeGreaterThan(DURATION_BUCKETS[i - 1] as number);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The route table.
// ---------------------------------------------------------------------------------------------

function ok(name: string, model: Record<string, unknown> = {}, rest: Record<string, unknown> = {}): LoadResult {
  const { server, ...top } = rest as { server?: Record<string, unknown> };
  const config = InstanceConfigSchema.parse({
    model: { path: `${name}.gguf`, ...model },
    server: { port: 8081, ...server },
    ...top,
  });
  return { ok: true, instance: { name, file: `/home/instances/${name}/config.json`, config } };
}

function broken(name: string, messages: string[]): LoadResult {
  const file = `/home/instances/${name}/config.json`;
  return { ok: false, name, file, problems: messages.map((message) => ({ file, jsonPath: '$', message })) };
}

const settings = (proxy: Record<string, unknown> = {}): ProxySettings => SettingsSchema.parse({ proxy }).proxy;

describe('buildRoutes', () => {
  it('the id is model.alias, else the instance name; every alias and the name route to it', () => {
    const t = buildRoutes(
      [ok('qwen', { alias: 'qwen2.5-7b', aliases: ['gpt-4o', 'qwen2.5-7b'] }), ok('tiny')],
      settings(),
    );
    const qwen = t.routes.find((r) => r.name === 'qwen');
    expect(qwen?.id).toBe('qwen2.5-7b');
    expect(qwen?.ids).toEqual(['qwen2.5-7b', 'gpt-4o', 'qwen']);
    expect(t.routes.find((r) => r.name === 'tiny')).toMatchObject({ id: 'tiny', ids: ['tiny'] });
    expect(Object.fromEntries(t.byId)).toEqual({
      'qwen2.5-7b': 'qwen',
      'gpt-4o': 'qwen',
      qwen: 'qwen',
      tiny: 'tiny',
    });
    expect(t.conflicts.size).toBe(0);
    expect(t.broken.size).toBe(0);
  });

  it('an id claimed by two instances is a conflict naming both, and routes to neither', () => {
    const t = buildRoutes(
      [ok('b', { aliases: ['llama', 'shared'] }), ok('a', { alias: 'llama' }), ok('c', { aliases: ['shared'] })],
      settings(),
    );
    expect(t.byId.has('llama')).toBe(false);
    expect(t.byId.has('shared')).toBe(false);
    expect(t.conflicts.get('llama')).toContain('a and b');
    expect(t.conflicts.get('shared')).toContain('b and c');
    expect(t.conflicts.get('llama')).toContain('model.alias');
    // The rest of each instance still routes, and each is still listed.
    expect(t.byId.get('a')).toBe('a');
    expect(t.byId.get('b')).toBe('b');
    expect(t.byId.get('c')).toBe('c');
    expect(t.routes.map((r) => r.name)).toEqual(['a', 'b', 'c']);
  });

  it("an alias that is another instance's name is a conflict too", () => {
    const t = buildRoutes([ok('qwen'), ok('other', { aliases: ['qwen'] })], settings());
    expect(t.byId.has('qwen')).toBe(false);
    expect(t.conflicts.get('qwen')).toContain('other and qwen');
  });

  it('a broken config is not routable: named in broken with its first problem', () => {
    const t = buildRoutes(
      [ok('good'), broken('bad', ['$.server.port: required number is missing', 'second']), broken('worse', [])],
      settings(),
    );
    expect(t.routes.map((r) => r.name)).toEqual(['good']);
    expect(t.byId.has('bad')).toBe(false);
    expect(t.broken.get('bad')).toBe('$.server.port: required number is missing');
    expect(t.broken.get('worse')).toBe('invalid config');
  });

  it('settings give the defaults: on_demand true and no idle_ttl when unset', () => {
    const t = buildRoutes([ok('a')], settings());
    expect(t.routes[0]).toMatchObject({ onDemand: true, idleTtlMs: null, group: null, apiKeyEnv: null });
  });

  it('settings defaults apply to every instance that does not set its own; an instance overrides them', () => {
    const t = buildRoutes(
      [
        ok('plain'),
        ok('pinned', {}, { on_demand: true, idle_ttl: 30 }),
        ok('never', {}, { on_demand: false }),
        ok('grouped', {}, { group: 'big', server: { api_key_env: 'GROUPED_KEY' } }),
      ],
      settings({ on_demand: false, idle_ttl: 600 }),
    );
    const by = Object.fromEntries(t.routes.map((r) => [r.name, r]));
    expect(by.plain).toMatchObject({ onDemand: false, idleTtlMs: 600_000 });
    expect(by.pinned).toMatchObject({ onDemand: true, idleTtlMs: 30_000 });
    expect(by.never).toMatchObject({ onDemand: false, idleTtlMs: 600_000 });
    expect(by.grouped).toMatchObject({ group: 'big', apiKeyEnv: 'GROUPED_KEY', onDemand: false });
  });

  it('routes are sorted by instance name', () => {
    const t = buildRoutes([ok('zeta'), ok('alpha'), ok('mid')], settings());
    expect(t.routes.map((r) => r.name)).toEqual(['alpha', 'mid', 'zeta']);
  });
});

describe('routeSource', () => {
  it('rebuilds at most every maxAgeMs; refresh rebuilds at once', () => {
    let now = 1000;
    let reads = 0;
    let results = [ok('a')];
    const src = routeSource(
      () => {
        reads++;
        return results;
      },
      settings(),
      () => now,
      500,
    );
    expect(src.table().routes.map((r) => r.name)).toEqual(['a']);
    expect(reads).toBe(1);
    results = [ok('a'), ok('b')];
    now += 499;
    expect(src.table().routes.map((r) => r.name)).toEqual(['a']);
    expect(reads).toBe(1);
    now += 1;
    expect(src.table().routes.map((r) => r.name)).toEqual(['a', 'b']);
    expect(reads).toBe(2);
    results = [ok('c')];
    expect(src.refresh().routes.map((r) => r.name)).toEqual(['c']);
    expect(src.table().routes.map((r) => r.name)).toEqual(['c']);
    expect(reads).toBe(3);
  });

  it('uses the settings it was given', () => {
    const src = routeSource(
      () => [ok('a')],
      settings({ idle_ttl: 5 }),
      () => 0,
    );
    expect(src.table().routes[0]?.idleTtlMs).toBe(5000);
  });
});

// ---------------------------------------------------------------------------------------------
// Errors as HTTP answers.
// ---------------------------------------------------------------------------------------------

describe('asProxyError', () => {
  it.each([
    ['general', ExitCode.general, 422, 'unprocessable'],
    ['notFound', ExitCode.notFound, 404, 'not_found'],
    ['alreadyRunning', ExitCode.alreadyRunning, 409, 'already_running'],
    ['portCollision', ExitCode.portCollision, 409, 'port_in_use'],
    ['executableNotFound', ExitCode.executableNotFound, 422, 'executable_not_found'],
    ['stateUnavailable', ExitCode.stateUnavailable, 503, 'state_unavailable'],
    ['notRunning', ExitCode.notRunning, 409, 'not_running'],
    ['doesNotFit', ExitCode.doesNotFit, 409, 'does_not_fit'],
    ['download', ExitCode.download, 502, 'download_failed'],
    ['daemon', ExitCode.daemon, 503, 'daemon'],
  ])('UserError %s (exit %i) is HTTP %i %s', (_label, exit, status, code) => {
    const e = asProxyError(new UserError('it went wrong', exit, 'do this'));
    expect(e).toBeInstanceOf(ProxyError);
    expect(e.status).toBe(status);
    expect(e.code).toBe(code);
    expect(e.message).toBe('it went wrong');
    expect(e.hint).toBe('do this');
    expect(e.type).toBe(status >= 500 ? 'server_error' : 'invalid_request_error');
  });

  it('every exit code but ok is mapped (a new exit code needs its HTTP status)', () => {
    for (const [key, exit] of Object.entries(ExitCode)) {
      if (exit === ExitCode.ok) continue;
      expect(asProxyError(new UserError('x', exit)).code, key).not.toBe('error');
    }
  });

  it('the status given wins over the mapping, and sets the type', () => {
    const e = asProxyError(new UserError('x', ExitCode.notFound), 503);
    expect(e.status).toBe(503);
    expect(e.code).toBe('not_found');
    expect(e.type).toBe('server_error');
  });

  it('anything else is a 500 internal_error carrying its message; a ProxyError passes as it is', () => {
    const plain = asProxyError(new Error('kaboom'));
    expect(plain).toMatchObject({ status: 500, code: 'internal_error', type: 'server_error', message: 'kaboom' });
    expect(asProxyError('a string')).toMatchObject({ status: 500, message: 'a string' });
    expect(asProxyError(new Error('x'), 502).status).toBe(502);
    const pe = new ProxyError(418, 'teapot', undefined, 'teapot');
    expect(asProxyError(pe, 500)).toBe(pe);
  });

  it("ProxyError.body is OpenAI's error shape; the hint only when there is one", () => {
    expect(JSON.parse(new ProxyError(404, 'no such model', undefined, 'model_not_found').body())).toEqual({
      error: { message: 'no such model', type: 'invalid_request_error', code: 'model_not_found' },
    });
    expect(JSON.parse(new ProxyError(503, 'down', undefined, null, 'start it').body())).toEqual({
      error: { message: 'down', type: 'server_error', code: null, hint: 'start it' },
    });
  });
});
