// Out of memory, as real servers print it (tests/fixtures/real/): the reason a start failure or a
// crash carries into last_error and the events, and the free memory it names.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeOutOfMemory, nonRetryableReason, outOfMemory } from '../../src/keeper/classify.js';
import { memoryNote, physicalGpu } from '../../src/keeper/oom-note.js';
import { largestPart, memoryAdvice } from '../../src/engine/memory-advice.js';
import { InstanceConfigSchema } from '../../src/config/schema.js';
import type { GpuSample } from '../../src/domain/gpu.js';

const REAL = path.resolve(import.meta.dirname, '../fixtures/real');
/** The last 40 lines, as the keeper keeps them (keeper/output.ts). */
const tail = (rel: string) => fs.readFileSync(path.join(REAL, rel), 'utf8').split('\n').filter(Boolean).slice(-40);

const config = (devices: Array<number | string> = []) =>
  InstanceConfigSchema.parse({ model: { path: 'm.gguf' }, server: { port: 8080 }, gpu: { backend: 'cuda', devices } });

const sample = (gpus: Array<{ index: number; uuid: string; used: number; total: number }>): GpuSample => ({
  at: 0,
  vendor: 'nvidia',
  gpus: gpus.map((g) => ({
    index: g.index,
    uuid: g.uuid,
    name: 'NVIDIA H200',
    utilization_pct: 0,
    memory_used_bytes: g.used * 1024 * 1024,
    memory_total_bytes: g.total * 1024 * 1024,
    temperature_c: null,
    power_w: null,
    power_limit_w: null,
  })),
  processes: [],
  processes_at: 0,
  error: null,
  interval_ms: 0,
});

describe('out of memory in real logs', () => {
  it('an H200 loading an 83B F16 model: the model buffer, a start failure not worth a retry', () => {
    const t = tail('h200/logs/gpu-oom/stderr.log');
    expect(outOfMemory(t)).toEqual({
      device: 'CUDA0',
      gpu: true,
      bytes: Math.round(157178.03 * 1024 * 1024),
      what: 'model',
    });
    const reason = 'out of GPU memory on CUDA0 (tried to allocate 157178 MiB for the model)';
    expect(nonRetryableReason(t, false)).toBe(reason);
  });

  it("the issue's example (llama.cpp thread): 144817 MiB on CUDA0", () => {
    expect(nonRetryableReason(tail('llama-server/cuda-oom-at-load.log'), false)).toBe(
      'out of GPU memory on CUDA0 (tried to allocate 144817 MiB for the model)',
    );
  });

  it('an H200 asked for an 8M-token KV cache: the KV cache, at load', () => {
    const oom = outOfMemory(tail('h200/kv-oom.err'));
    expect(oom).toEqual({ device: 'CUDA0', gpu: true, bytes: 262144 * 1024 * 1024, what: 'KV cache' });
    expect(nonRetryableReason(tail('h200/kv-oom.err'), false)).toBe(
      'out of GPU memory on CUDA0 (tried to allocate 262144 MiB for the KV cache)',
    );
  });

  it('the CPU build: host memory, for the model and for the KV cache', () => {
    expect(describeOutOfMemory(outOfMemory(tail('cpu/model-oom.log'))!)).toBe(
      'out of host memory (tried to allocate 156806 MiB for the model)',
    );
    expect(describeOutOfMemory(outOfMemory(tail('cpu/kv-oom.err'))!)).toBe(
      'out of host memory (tried to allocate 65536 MiB for the KV cache)',
    );
  });

  it('at run time: the device, no size; a server that had been healthy is restarted, not failed', () => {
    for (const f of ['llama-server/cuda-runtime-oom.log', 'llama-server/cuda-runtime-oom-assert.log']) {
      const t = tail(f);
      expect(outOfMemory(t)).toEqual({ device: 'CUDA0', gpu: true, bytes: null, what: null });
      expect(nonRetryableReason(t, true)).toBeUndefined();
    }
  });

  it('logs without an out-of-memory give none', () => {
    expect(outOfMemory(tail('h200/logs/gpu-full/stderr.log'))).toBeUndefined();
    expect(outOfMemory(tail('llama-server/no-usable-gpu-bad-argument.log'))).toBeUndefined();
  });
});

describe('the free memory an out-of-memory names', () => {
  const oom = { device: 'CUDA0', gpu: true, bytes: 1, what: 'model' as const };
  // The H200 run's reading after the failed server exited (tests/fixtures/real/h200/after-query-gpu.out).
  const h200 = sample([{ index: 0, uuid: 'GPU-75b28ea6-512b-554d-eee8-44979478a66a', used: 0, total: 143771 }]);

  it('the only GPU of the rig, or the pinned one by index or uuid', () => {
    expect(memoryNote(oom, config(), h200)).toBe('GPU 0 has 143771 MiB free of 143771 MiB (nvidia-smi)');
    const rig = sample([
      { index: 0, uuid: 'GPU-aaaaaaaa-0000', used: 1000, total: 24000 },
      { index: 1, uuid: 'GPU-bbbbbbbb-0000', used: 23000, total: 24000 },
    ]);
    expect(physicalGpu('CUDA0', config([1]), rig)?.index).toBe(1);
    expect(physicalGpu('CUDA1', config([1, 'GPU-aaaaaaaa-0000']), rig)?.index).toBe(0);
    expect(memoryNote(oom, config([1]), rig)).toBe('GPU 1 has 1000 MiB free of 24000 MiB (nvidia-smi)');
  });

  it('unknown where CUDA numbering is not ours to know, or the tool had nothing', () => {
    const rig = sample([
      { index: 0, uuid: 'GPU-aaaaaaaa-0000', used: 0, total: 24000 },
      { index: 1, uuid: 'GPU-bbbbbbbb-0000', used: 0, total: 24000 },
    ]);
    expect(memoryNote(oom, config(), rig)).toBeUndefined();
    expect(memoryNote(oom, config(), undefined)).toBeUndefined();
    expect(memoryNote({ ...oom, device: 'CUDA3' }, config([0]), rig)).toBeUndefined();
  });

  it('host memory: what the host has available', () => {
    expect(memoryNote({ ...oom, device: 'CPU', gpu: false }, config(), undefined, () => 8192 * 1024 * 1024)).toBe(
      'the host has 8192 MiB available',
    );
  });
});

describe('what to change so that it fits', () => {
  it('by the part that did not fit', () => {
    expect(memoryAdvice('model', true)).toBe(
      'offload fewer layers (lower model.n_gpu_layers) or use a smaller quantization',
    );
    expect(memoryAdvice('KV cache', true)).toMatch(
      /^lower model.context_size or server.parallel, or quantize the KV cache/,
    );
    expect(memoryAdvice('compute buffers', false)).toBe('lower model.batch_size (and -ub in server.extra_args)');
    expect(memoryAdvice(null, false)).toBe('lower model.context_size or server.parallel');
  });

  it("the preflight's largest part among the instances to start", () => {
    const share = (name: string, running: boolean, weights: number, kv: number) => ({
      name,
      running,
      weights,
      kv,
      compute: 1,
      margin: 0,
      total: weights + kv + 1,
    });
    expect(largestPart([share('a', false, 10, 80)])).toBe('KV cache');
    expect(largestPart([share('a', true, 10, 80), share('b', false, 50, 8)])).toBe('model');
    expect(largestPart([])).toBeNull();
  });
});

describe('out-of-memory lines that are not why a server died', () => {
  it('a compute buffer llama.cpp retried without pipeline parallelism, then loaded', () => {
    const tail = [
      'ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4096.00 MiB on device 1: cudaMalloc failed: out of memory',
      'ggml_gallocr_reserve_n: failed to allocate CUDA1 buffer of size 4294967296',
      'graph_reserve: failed to allocate compute buffers',
      'llama_init_from_model: compute buffer allocation failed, retrying without pipeline parallelism',
      'srv  load_model: initializing slots, n_slots = 1',
      'GGML_ASSERT(ctx) failed', // a later crash of another cause
    ];
    expect(outOfMemory(tail)).toBeUndefined();
    expect(nonRetryableReason(tail, false)).toBeUndefined();
  });

  it('an allocation that failed before the server listened, then a crash while serving', () => {
    const tail = [
      'alloc_tensor_range: failed to allocate CUDA0 buffer of size 1024',
      'main: model loaded',
      'srv  update_slots: all slots are idle',
      'Segmentation fault',
    ];
    expect(outOfMemory(tail)).toBeUndefined();
  });

  it("a ROCm build's ggml says cudaMalloc: the buffer's name gives the backend; the run-time device is read", () => {
    expect(
      outOfMemory([
        'ggml_backend_cuda_buffer_type_alloc_buffer: allocating 30000.00 MiB on device 1: cudaMalloc failed: out of memory',
        'alloc_tensor_range: failed to allocate ROCm1 buffer of size 31457280000',
        'llama_model_load: error loading model: unable to allocate ROCm1 buffer',
      ]),
    ).toEqual({ device: 'ROCm1', gpu: true, bytes: 30000 * 1024 * 1024, what: 'model' });
    expect(
      outOfMemory(['ROCm error: out of memory', '  current device: 1, in function ggml_cuda_pool_malloc']),
    ).toEqual({
      device: 'ROCm1',
      gpu: true,
      bytes: null,
      what: null,
    });
    expect(outOfMemory(['MUSA error: out of memory'])?.device).toBe('MUSA0');
  });
});
