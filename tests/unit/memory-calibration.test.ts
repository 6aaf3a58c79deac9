import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceConfigSchema, type InstanceConfig } from '../../src/config/schema.js';
import type { GpuSample, LoadFacts } from '../../src/domain/gpu.js';
import { homeAt } from '../../src/domain/home.js';
import {
  compareMemory,
  differsBy,
  estimateInputFor,
  gpuDevices,
  measurementOf,
  measuredShare,
  memoryEventText,
  memoryFlagsKey,
  modelIdentity,
  withPeak,
  type MemoryComparison,
} from '../../src/engine/memory-calibration.js';
import { checkMemoryFit, fitReportFor, type FitInstance } from '../../src/engine/memory-fit.js';
import { memoryLines } from '../../src/format/describe.js';
import { emptyLoadFacts, scanLoadLine } from '../../src/keeper/load-facts.js';
import { memoryCheckTask } from '../../src/keeper/memory-check.js';
import { StateWriter } from '../../src/keeper/state-writer.js';
import { estimateMemory, GPU_MARGIN } from '../../src/models/estimate.js';
import { readGguf, type GgufInfo } from '../../src/models/gguf.js';
import { parseAppLines, parseGpuLines } from '../../src/platform/gpu/nvidia.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';

// The estimate against reality, with what the real run on an H200 recorded (tests/fixtures/real/h200,
// 2026-12-04): gpu-full is the 1.1B F16 model, -c 8192 -np 2 -ngl 99 on CUDA0.

const H200 = path.join(__dirname, '../fixtures/real/h200');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const read = (f: string) => fs.readFileSync(path.join(H200, f), 'utf8');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memory-calibration-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The load facts keeper/load-facts.ts reads from a recorded stderr.log. */
function factsOf(instance: string): LoadFacts {
  const facts = emptyLoadFacts();
  for (const line of read(`logs/${instance}/stderr.log`).split('\n')) scanLoadLine(facts, line);
  return facts;
}

/** The recorded config, with the model where this test wrote the same one. */
function configOf(instance: string, model: string): InstanceConfig {
  const raw = JSON.parse(read(`instances/${instance}/config.json`)) as { model: Record<string, unknown> };
  return InstanceConfigSchema.parse({ ...raw, model: { ...raw.model, path: model } });
}

/** What nvidia-smi said at one moment of the run (`loaded`: right after the load; `busy`: during the bench). */
function sampleAt(moment: 'loaded' | 'busy', at = Date.now()): GpuSample {
  return {
    at,
    vendor: 'nvidia',
    gpus: parseGpuLines(read(`${moment}-query-gpu.out`)),
    processes: parseAppLines(read(`${moment}-query-apps.out`)),
    processes_at: at,
    error: null,
    interval_ms: 0,
  };
}

let modelPath: string;
let info: GgufInfo;
beforeAll(async () => {
  // The same model gpu-verify.sh wrote (scripts/gpu-verify.sh, DIMS for a GPU run), sparse: only the header matters.
  const dims = { vocab: 32000, embd: 2048, ff: 8192, layers: 16, heads: 32, headsKv: 8, ctx: 8192 };
  const m = llamaModel({ ...dims, type: 'F16', name: 'rand-1b', byteTokens: true });
  modelPath = path.join(dir, 'rand-small.gguf');
  writeGguf(modelPath, m.metadata, m.tensors, { fill: 'sparse' });
  info = await readGguf(modelPath);
});

describe('the estimate against the H200 run', () => {
  it('is the model the H200 run loaded: models info estimated 3377197056 B for its defaults there', () => {
    const recorded = JSON.parse(read('models-info-small.out')) as { size: number; estimate: { total_bytes: number } };
    expect(info.size).toBe(recorded.size);
    expect(estimateMemory(info, { gpus: 0 }).total).toBe(recorded.estimate.total_bytes);
  });

  it("for the instance's real flags the buffers are estimated within 0.1 %, but the runtime allowance is half of what nvidia-smi shows", () => {
    const facts = factsOf('gpu-full');
    expect(gpuDevices(facts)).toEqual(['CUDA0']);
    const config = configOf('gpu-full', modelPath);
    const est = estimateMemory(info, estimateInputFor(config, 1, info));
    const gpu = est.devices.find((d) => d.device === 0);
    if (!gpu) throw new Error('no GPU share');
    // CUDA0: model 1981.26 + KV 256.00 + compute 64.01 MiB = 2301 MiB, what --fit projected too.
    const loaded = facts.buffers.filter((b) => b.device === 'CUDA0').reduce((a, b) => a + b.bytes, 0);
    expect(Math.round(loaded / MiB)).toBe(2301);
    expect(facts.fit_projected_bytes).toBe(2301 * MiB);
    expect(Math.abs(gpu.total - gpu.margin - loaded) / loaded).toBeLessThan(0.001);
    // The weights to the byte (the log prints MiB with two decimals).
    const printed = facts.buffers.find((b) => b.device === 'CUDA0' && b.kind === 'model')?.bytes ?? 0;
    expect(Math.abs(gpu.weights - printed)).toBeLessThan(0.005 * MiB);
    expect(gpu.kv).toBe(256 * MiB);
    // The estimate allows 300 MiB for the CUDA context and libraries; the tool shows 589 MiB after
    // the load and 693 MiB after the bench outside the buffers.
    expect(gpu.margin).toBe(GPU_MARGIN);
    const measured = sampleAt('loaded').processes?.find((p) => p.pid === 5514)?.memory_bytes;
    expect(measured).toBe(2890 * MiB);
    expect(Math.round(((measured as number) - loaded) / MiB)).toBe(589);
    expect(differsBy(gpu.total, measured as number)).toBe(true);
    expect(differsBy(gpu.total - gpu.margin, loaded)).toBe(false);
  });

  it('gpu-partial (-ngl 8): its GPU buffers are within 3 %, its measured figure 23 % above the estimate', () => {
    const facts = factsOf('gpu-partial');
    const est = estimateMemory(info, estimateInputFor(configOf('gpu-partial', modelPath), 1, info));
    const cmp = compareMemory({
      estimate: est,
      facts,
      devices: gpuDevices(facts),
      measured: new Map([['CUDA0', { gpu: 0, bytes: 1664 * MiB }]]),
      measuredAt: 1,
    });
    const d = cmp.per_device[0];
    expect(d?.loaded_bytes).toBe(1127345029);
    expect(Math.abs((d?.estimated_bytes ?? 0) - GPU_MARGIN - 1127345029) / 1127345029).toBeLessThan(0.03);
    expect(d?.differs).toBe(true);
    expect(cmp.host?.loaded_bytes).toBeGreaterThan(1300 * MiB);
  });
});

describe('compareMemory, the event and the peak', () => {
  const fullCmp = (moment: 'loaded' | 'busy'): MemoryComparison => {
    const facts = factsOf('gpu-full');
    const est = estimateMemory(info, estimateInputFor(configOf('gpu-full', modelPath), 1, info));
    const bytes = sampleAt(moment).processes?.find((p) => p.pid === 5514)?.memory_bytes ?? null;
    return compareMemory({
      estimate: est,
      facts,
      devices: ['CUDA0'],
      measured: new Map([['CUDA0', { gpu: 0, bytes }]]),
      measuredAt: 1000,
    });
  };

  it('gives both figures per GPU and says they differ', () => {
    const cmp = fullCmp('loaded');
    expect(cmp).toMatchObject({
      loaded_bytes: 2413056492,
      measured_bytes: 3030384640,
      differs: true,
      preflight_bytes: 3030384640,
      measured_at: 1000,
    });
    expect(cmp.per_device).toEqual([
      expect.objectContaining({
        device: 'CUDA0',
        gpu: 0,
        estimated_runtime_bytes: GPU_MARGIN,
        loaded_bytes: 2413056492,
        loaded_model_bytes: 2077501686,
        loaded_kv_bytes: 268435456,
        loaded_compute_bytes: 67119350,
        measured_bytes: 3030384640,
        runtime_bytes: 3030384640 - 2413056492,
        differs: true,
      }),
    ]);
    expect(cmp.host?.loaded_bytes).toBe(131072000 + 251658 + 12593398);
    expect(memoryEventText(cmp)).toEqual({
      level: 'warn',
      message:
        "estimated 2.5 GiB, loaded 2.2 GiB, measured 2.8 GiB on CUDA0 (GPU 0): 589 MiB outside the server's buffers, the estimate allows 300 MiB; the next preflight of this model with these flags counts 2.8 GiB",
    });
  });

  it('without the tool, the buffers alone are compared: they match the estimate, no event', () => {
    const facts = factsOf('gpu-full');
    const est = estimateMemory(info, estimateInputFor(configOf('gpu-full', modelPath), 1, info));
    const cmp = compareMemory({ estimate: est, facts, devices: ['CUDA0'], measured: new Map(), measuredAt: null });
    expect(cmp.differs).toBe(false);
    expect(cmp.measured_bytes).toBeNull();
    expect(cmp.preflight_bytes).toBe(2413056492 + GPU_MARGIN);
    expect(memoryEventText(cmp)).toBeNull();
  });

  it('keeps the largest figure of a run: 2994 MiB after the bench', () => {
    const peak = withPeak(fullCmp('busy'), fullCmp('loaded'));
    expect(peak.measured_bytes).toBe(2994 * MiB);
    expect(peak.per_device[0]?.measured_bytes).toBe(2994 * MiB);
    const after = withPeak(fullCmp('loaded'), peak);
    expect(after.measured_bytes).toBe(2994 * MiB);
    expect(after.preflight_bytes).toBe(2994 * MiB);
  });

  it("describe's lines", () => {
    const lines = memoryLines({ ...fullCmp('loaded'), measured_at: '2026-12-04T17:00:33.000Z' });
    expect(lines).toEqual([
      '  CUDA0 (GPU 0)  estimated 2.5 GiB (300 MiB of it runtime), loaded 2.2 GiB, measured 2.8 GiB (589 MiB outside the buffers): differs: 11% against the estimate',
      '  host           estimated 125 MiB, loaded 137 MiB',
      '  the next preflight of this model with these flags counts 2.8 GiB on the GPUs (the measured figure)',
    ]);
  });

  it('a CPU run has no GPU figures, only the host share', () => {
    const facts: LoadFacts = {
      ...emptyLoadFacts(),
      loaded: true,
      buffers: [
        { device: 'CPU_Mapped', kind: 'model', bytes: 100 * MiB },
        { device: 'CPU', kind: 'kv', bytes: 8 * MiB },
      ],
    };
    const est = estimateMemory(info, { gpus: 0, contextSize: 256, parallel: 1 });
    const cmp = compareMemory({
      estimate: est,
      facts,
      devices: gpuDevices(facts),
      measured: new Map(),
      measuredAt: null,
    });
    expect(cmp).toMatchObject({
      estimated_bytes: null,
      loaded_bytes: null,
      measured_bytes: null,
      per_device: [],
      differs: false,
    });
    expect(cmp.host).toEqual({ estimated_bytes: est.total, loaded_bytes: 108 * MiB });
    expect(memoryEventText(cmp)).toBeNull();
  });

  it('differs: more than 10 % or more than 512 MiB', () => {
    expect(differsBy(1000 * MiB, 1099 * MiB)).toBe(false);
    expect(differsBy(1000 * MiB, 1101 * MiB)).toBe(true);
    expect(differsBy(1000 * MiB, 899 * MiB)).toBe(true);
    expect(differsBy(60 * GiB, 60 * GiB + 511 * MiB)).toBe(false);
    expect(differsBy(60 * GiB, 60 * GiB + 513 * MiB)).toBe(true);
  });
});

describe('which runs are the same: model file and memory flags', () => {
  const base = () => configOf('gpu-full', '/m.gguf');
  const withArgs = (args: string[]) => {
    const c = base();
    return { ...c, server: { ...c.server, extra_args: args } };
  };

  it('flags that change memory change the key; others do not', () => {
    const key = memoryFlagsKey(base());
    expect(memoryFlagsKey(withArgs(['--metrics', '--alias', 'x', '-t', '8']))).toBe(key);
    for (const args of [
      ['-ctk', 'q8_0'],
      ['--cache-type-v=q4_0'],
      ['-ub', '256'],
      ['-fa', 'off'],
      ['--fit', 'off'],
      ['-kvu'],
      ['-nkvo'],
      ['-ts', '3,1'],
      ['-ot', 'exps=CPU'],
      ['--mmproj', 'mmproj.gguf'],
      ['-md', 'draft.gguf'],
      ['-ngld', '99'],
      ['--lora', 'adapter.gguf'],
    ]) {
      expect(memoryFlagsKey(withArgs(args)), args.join(' ')).not.toBe(key);
    }
    const c = base();
    expect(memoryFlagsKey({ ...c, model: { ...c.model, context_size: 4096 } })).not.toBe(key);
    expect(memoryFlagsKey({ ...c, server: { ...c.server, parallel: 4 } })).not.toBe(key);
    expect(memoryFlagsKey({ ...c, model: { ...c.model, n_gpu_layers: 8 } })).not.toBe(key);
    expect(memoryFlagsKey({ ...c, model: { ...c.model, batch_size: 512 } })).not.toBe(key);
    expect(memoryFlagsKey(withArgs(['-ctk', 'q8_0']))).toBe(memoryFlagsKey(withArgs(['--cache-type-k', 'q8_0'])));
    // Flags given through the environment count too; logging does not.
    const env = (e: Record<string, string>) => memoryFlagsKey({ ...c, server: { ...c.server, env: e } });
    expect(env({ LLAMA_ARG_CACHE_TYPE_K: 'q8_0' })).not.toBe(key);
    expect(env({ GGML_CUDA_ENABLE_UNIFIED_MEMORY: '1' })).not.toBe(key);
    expect(env({ LLAMA_ARG_LOG_COLORS: 'off', OTHER: 'x' })).toBe(key);
  });

  it('the model file is its path, size and modification time', () => {
    const id = modelIdentity(modelPath, info.size);
    expect(id).toEqual({ path: modelPath, size: info.size, mtime_ms: Math.floor(fs.statSync(modelPath).mtimeMs) });
    expect(modelIdentity(path.join(dir, 'missing.gguf'), 1)).toBeUndefined();
  });
});

describe('the preflight counts the measured figure', () => {
  const gpuWithFree = (free: number) => [
    {
      index: 0,
      uuid: 'GPU-75b28ea6-512b-554d-eee8-44979478a66a',
      name: 'NVIDIA H200',
      utilization_pct: 0,
      memory_used_bytes: 143771 * MiB - free,
      memory_total_bytes: 143771 * MiB,
      temperature_c: 40,
      power_w: 120,
      power_limit_w: 700,
    },
  ];
  const host = { total: 128 * GiB, available: 120 * GiB };

  it('2.7 GiB free: the estimate (2.5 GiB) fits, the measured 2.9 GiB does not, and the message says so', () => {
    const config = configOf('gpu-full', modelPath);
    const inst = { name: 'gpu-full', file: '/x/config.json', config };
    const plain = checkMemoryFit([{ inst, model: info, running: false }], gpuWithFree(2.7 * GiB), host);
    expect(plain.devices.find((d) => d.device === 0)?.fits).toBe(true);

    const busy = withPeak(
      compareMemory({
        estimate: estimateMemory(info, estimateInputFor(config, 1, info)),
        facts: factsOf('gpu-full'),
        devices: ['CUDA0'],
        measured: new Map([['CUDA0', { gpu: 0, bytes: 2994 * MiB }]]),
        measuredAt: 1,
      }),
      null,
    );
    const model = modelIdentity(modelPath, info.size);
    if (!model) throw new Error('no identity');
    const measured = measurementOf(busy, {
      model,
      flags: memoryFlagsKey(config),
      instance: 'gpu-full',
      server: '/bin/s',
      now: 1,
    });
    if (!measured) throw new Error('no measurement');
    expect(measuredShare(measured, 0)).toEqual({
      weights: 2077501686,
      kv: 268435456,
      compute: 2413056492 - 2077501686 - 268435456,
      margin: 2994 * MiB - 2413056492,
      total: 2994 * MiB,
    });
    const report = checkMemoryFit([{ inst, model: info, running: false, measured }], gpuWithFree(2.7 * GiB), host);
    const g0 = report.devices.find((d) => d.device === 0);
    expect(g0?.fits).toBe(false);
    expect(g0?.message).toBe(
      'gpu 0: needs 2.9 GiB (1.9 weights + 0.3 KV + 0.1 compute + 0.7 runtime, as measured on its last run), 2.7 GiB free',
    );
    // Measured on two GPUs, started on one: the figures do not apply.
    const two = { ...measured, devices: [...measured.devices, ...measured.devices] };
    const other = checkMemoryFit([{ inst, model: info, running: false, measured: two }], gpuWithFree(2.7 * GiB), host);
    expect(other.devices.find((d) => d.device === 0)?.fits).toBe(true);
  });
});

describe('the keeper compares after the load, records, and the next preflight finds it', () => {
  it('one event a run; the table keeps the peak; fitReportFor looks the measurement up', async () => {
    const home = homeAt(fs.mkdtempSync(path.join(dir, 'home-')));
    fs.mkdirSync(home.stateDir, { recursive: true });
    const store = new Store(openDatabase(home.dbPath).db);
    const config = configOf('gpu-full', modelPath);
    store.ensureInstance('gpu-full', '/x/config.json');
    store.recordSpawn('gpu-full', {
      pid: 5514,
      pgid: 5514,
      starttime: 1,
      port: 18301,
      cmdline: '[]',
      startedAt: Date.now(),
      attempt: 0,
    });
    let clock = Date.now();
    const state = new StateWriter(store, { name: 'gpu-full', now: () => clock, log: () => undefined });
    let moment: 'loaded' | 'busy' = 'loaded';
    let reads = 0;
    const task = memoryCheckTask('gpu-full', 5514, config, '/opt/llama/llama-server', {
      home,
      state,
      procs: { stat: () => undefined, cmdline: () => undefined },
      now: () => clock,
      gpuSample: () => {
        reads++;
        return Promise.resolve(sampleAt(moment, clock));
      },
      nsPids: () => [],
    });
    const settle = () => new Promise((r) => setTimeout(r, 50));
    // Healthy before the load facts say loaded: nothing yet.
    task.afterOk();
    await settle();
    expect(store.getRuntime('gpu-full')?.memory).toBeNull();
    store.recordLoadFacts('gpu-full', 5514, factsOf('gpu-full'));
    task.afterOk();
    await settle();
    const first = JSON.parse(store.getRuntime('gpu-full')?.memory ?? 'null') as MemoryComparison;
    expect(first).toMatchObject({ measured_bytes: 2890 * MiB, differs: true });
    const events = () => store.listEvents('gpu-full').filter((e) => e.event_type === 'memory');
    expect(events().map((e) => [e.level, e.message])).toEqual([
      [
        'warn',
        "estimated 2.5 GiB, loaded 2.2 GiB, measured 2.8 GiB on CUDA0 (GPU 0): 589 MiB outside the server's buffers, the estimate allows 300 MiB; the next preflight of this model with these flags counts 2.8 GiB",
      ],
    ]);
    expect(JSON.parse(events()[0]?.meta_json ?? '{}')).toMatchObject({
      measured_bytes: 2890 * MiB,
      loaded_bytes: 2413056492,
      devices: ['CUDA0'],
    });
    // Not yet due: no reading.
    const before = reads;
    clock += 10_000;
    task.afterOk();
    await settle();
    expect(reads).toBe(before);
    // 30 s on, during the bench: the peak grows, the event is not repeated.
    moment = 'busy';
    clock += 20_000;
    task.afterOk();
    await settle();
    expect(reads).toBe(before + 1);
    expect(JSON.parse(store.getRuntime('gpu-full')?.memory ?? 'null')).toMatchObject({ measured_bytes: 2994 * MiB });
    expect(events()).toHaveLength(1);
    const kept = store.listMemoryMeasurements();
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({
      flags: memoryFlagsKey(config),
      model: { path: modelPath, size: info.size },
      measured_bytes: 2994 * MiB,
      loaded_bytes: 2413056492,
      instance: 'gpu-full',
      server: '/opt/llama/llama-server',
    });
    // A new run of the same build measured right after its load keeps the larger figure.
    store.recordSpawn('gpu-full', {
      pid: 6000,
      pgid: 6000,
      starttime: 2,
      port: 18301,
      cmdline: '[]',
      startedAt: clock,
      attempt: 1,
    });
    expect(store.getRuntime('gpu-full')?.memory).toBeNull();
    const again = measurementOf(first, {
      model: kept[0]?.model ?? { path: '', size: 0, mtime_ms: 0 },
      flags: memoryFlagsKey(config),
      instance: 'gpu-full',
      server: '/opt/llama/llama-server',
      now: clock,
    });
    store.recordMemory('gpu-full', 6000, { comparison: JSON.stringify(first), measurement: again, event: null });
    expect(store.listMemoryMeasurements()[0]?.measured_bytes).toBe(2994 * MiB);
    // Another llama-server build: its figure replaces the old one.
    store.recordMemory('gpu-full', 6000, {
      comparison: JSON.stringify(first),
      measurement: again && { ...again, server: '/new/llama-server' },
      event: null,
    });
    expect(store.listMemoryMeasurements()[0]?.measured_bytes).toBe(2890 * MiB);
    // A write for a run that is over is ignored.
    store.recordMemory('gpu-full', 5514, {
      comparison: '{}',
      measurement: null,
      event: { level: 'info', message: 'x', meta: {} },
    });
    expect(store.getRuntime('gpu-full')?.memory).toBe(JSON.stringify(first));
    task.stop();

    // The next `up`'s preflight: found by model file and flags, counted instead of the estimate.
    const inst: FitInstance = {
      inst: { name: 'gpu-full', file: '/x/config.json', config },
      model: info,
      running: false,
    };
    const report = await fitReportFor(
      {
        home,
        store,
        procs: { stat: () => undefined } as never,
        env: {},
        now: () => clock,
        gpuSample: () =>
          Promise.resolve({
            ...sampleAt('loaded'),
            gpus: [{ ...sampleAt('loaded').gpus[0]!, memory_used_bytes: 143771 * MiB - 2.8 * GiB }],
          }),
        hostMemory: () => ({ total: 128 * GiB, available: 120 * GiB }),
      },
      [inst],
    );
    expect(report.devices.find((d) => d.device === 0)?.shares[0]).toMatchObject({ measured: true, total: 2890 * MiB });
    expect(report.devices.find((d) => d.device === 0)?.fits).toBe(false);
    // Other flags: the estimate.
    const q8 = { ...config, server: { ...config.server, extra_args: ['-ctk', 'q8_0'] } };
    const other = await fitReportFor(
      {
        home,
        store,
        procs: {} as never,
        env: {},
        now: () => clock,
        gpuSample: () => Promise.resolve(sampleAt('loaded')),
        hostMemory: () => ({ total: 128 * GiB, available: 120 * GiB }),
      },
      [{ ...inst, inst: { ...inst.inst, config: q8 } }],
    );
    expect(other.devices.find((d) => d.device === 0)?.shares[0]?.measured).toBeUndefined();
    store.close();
  });

  it('keeps the newest measurements (500 by default)', () => {
    const store = new Store(openDatabase(path.join(fs.mkdtempSync(path.join(dir, 'db-')), 'state.db')).db, Date.now, {
      memoryMeasurements: 3,
    });
    store.ensureInstance('a', '/x');
    store.recordSpawn('a', { pid: 1, pgid: 1, starttime: 1, port: 1, cmdline: '[]', startedAt: 0, attempt: 0 });
    for (let i = 0; i < 5; i++) {
      store.recordMemory('a', 1, {
        comparison: '{}',
        measurement: {
          model: { path: `/m${i}.gguf`, size: 1, mtime_ms: 1 },
          flags: '{}',
          devices: [],
          estimated_bytes: 1,
          loaded_bytes: 1,
          measured_bytes: 2,
          instance: 'a',
          server: null,
          measured_at: i,
        },
        event: null,
      });
    }
    store.prune();
    expect(store.listMemoryMeasurements().map((m) => m.model.path)).toEqual(['/m4.gguf', '/m3.gguf', '/m2.gguf']);
  });
});
