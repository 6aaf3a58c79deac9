import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { GpuSample } from '../../src/domain/gpu.js';
import { GpuSampler, sampleOnce } from '../../src/platform/gpu/sampler.js';
import { findVendor } from '../../src/platform/gpu/tool.js';
import { abortableSleep } from '../../src/platform/sleep.js';

// The vendor tools are the fakes in tests/fixtures/gpu, which print the real formats.
const FAKES = path.join(import.meta.dirname, '../fixtures/gpu');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function scenario(s: object): { env: NodeJS.ProcessEnv; file: string; calls: string; set: (s: object) => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-gpu-'));
  dirs.push(dir);
  const file = path.join(dir, 'scenario.json');
  const calls = path.join(dir, 'calls.log');
  const set = (x: object) => fs.writeFileSync(file, JSON.stringify({ calls, ...x }));
  set(s);
  // The fake reads its scenario from the environment it inherits.
  process.env.FAKE_SMI_SCENARIO = file;
  return { env: { PATH: `${FAKES}:/usr/bin:/bin`, FAKE_SMI_SCENARIO: file }, file, calls, set };
}

const TWO = [
  ['0', 'GPU-aaaaaaaa-0000', 'NVIDIA GeForce RTX 4090', '40', '8123', '24564', '67', '285.50', '450.00'],
  ['1', 'GPU-bbbbbbbb-1111', 'NVIDIA GeForce RTX 4090', '[N/A]', '23900', '24564', '86', '[N/A]', '450.00'],
];

describe('finding the vendor tools', () => {
  it('looks on PATH without spawning; an override path or "none" wins', () => {
    expect(findVendor({ PATH: '/usr/bin:/bin' })).toBeUndefined();
    expect(findVendor({ PATH: FAKES })).toEqual({ vendor: 'nvidia', tool: path.join(FAKES, 'nvidia-smi') });
    expect(findVendor({ PATH: FAKES, LLAMA_ORCH_NVIDIA_SMI: 'none' })).toEqual({
      vendor: 'amd',
      tool: path.join(FAKES, 'rocm-smi'),
    });
  });
});

describe('sampleOnce', () => {
  it('a CPU-only rig: an empty sample, nothing spawned', async () => {
    const s = await sampleOnce({ env: { PATH: '/usr/bin:/bin' }, timeoutMs: 1000 });
    expect(s).toMatchObject({ vendor: null, gpus: [], processes: [], error: null });
  });

  it('reads GPUs and processes from nvidia-smi', async () => {
    const sc = scenario({ gpus: TWO, apps: [['4242', '/usr/bin/python3', '12594', 'GPU-bbbbbbbb-1111']] });
    const s = await sampleOnce({ env: sc.env, timeoutMs: 3000 });
    expect(s.error).toBeNull();
    expect(s.gpus.map((g) => g.index)).toEqual([0, 1]);
    expect(s.gpus[1]).toMatchObject({ utilization_pct: null, temperature_c: 86 });
    expect(s.processes).toEqual([
      expect.objectContaining({ pid: 4242, gpu_uuid: 'GPU-bbbbbbbb-1111', memory_bytes: 12594 * 1024 * 1024 }),
    ]);
  });

  it('reports a driver failure in nvidia-smi words, and a missing override', async () => {
    const sc = scenario({ mode: 'driver-failure' });
    const s = await sampleOnce({ env: sc.env, timeoutMs: 3000 });
    expect(s.gpus).toEqual([]);
    expect(s.error).toMatch(/exited with code 9: NVIDIA-SMI has failed because it couldn't communicate/);
    const m = await sampleOnce({ env: { LLAMA_ORCH_NVIDIA_SMI: '/nonexistent/nvidia-smi' }, timeoutMs: 1000 });
    expect(m.error).toMatch(/\/nonexistent\/nvidia-smi: not found/);
  });

  it('kills a hung nvidia-smi at the deadline and says so', async () => {
    const sc = scenario({ mode: 'hang' });
    const t0 = Date.now();
    const s = await sampleOnce({ env: sc.env, timeoutMs: 600 });
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(s.error).toBe('nvidia-smi did not answer within 0.6 s (killed)');
  });

  it('reads rocm-smi when it is the tool there', async () => {
    const sc = scenario({
      gpu_json: { card0: { 'GPU use (%)': '12', 'VRAM Total Memory (B)': '100', 'VRAM Total Used Memory (B)': '96' } },
      pids: [['77', 'llama-server, 1, 50, 0, 0']],
    });
    const s = await sampleOnce({ env: { ...sc.env, LLAMA_ORCH_NVIDIA_SMI: 'none' }, timeoutMs: 3000 });
    expect(s.vendor).toBe('amd');
    expect(s.gpus[0]).toMatchObject({ index: 0, utilization_pct: 12, memory_used_bytes: 96 });
    expect(s.processes).toEqual([expect.objectContaining({ pid: 77, gpu_index: 0, memory_bytes: 50 })]);
  });

  it('on several AMD GPUs, places each process with --showpidgpus (one GPU: that one; several: unknown)', async () => {
    const card = { 'GPU use (%)': '1', 'VRAM Total Memory (B)': '100', 'VRAM Total Used Memory (B)': '10' };
    const sc = scenario({
      gpu_json: { card0: card, card1: card },
      pids: [
        ['77', 'llama-server, 1, 50, 0, 0'],
        ['88', 'python3, 2, 60, 0, 0'],
      ],
      pid_gpus: [
        ['77', [1]],
        ['88', [0, 1]],
      ],
    });
    const s = await sampleOnce({ env: { ...sc.env, LLAMA_ORCH_NVIDIA_SMI: 'none' }, timeoutMs: 3000 });
    expect(s.processes).toEqual([
      expect.objectContaining({ pid: 77, gpu_index: 1, memory_bytes: 50 }),
      expect.objectContaining({ pid: 88, gpu_index: null, memory_bytes: 60 }),
    ]);
  });
});

describe('GpuSampler (loop mode)', () => {
  async function collect(env: NodeJS.ProcessEnv, ms: number, timeoutMs = 1000): Promise<GpuSample[]> {
    const samples: GpuSample[] = [];
    const ac = new AbortController();
    const sampler = new GpuSampler({
      env,
      intervalMs: 100,
      processesMs: 200,
      timeoutMs,
      onSample: (s) => samples.push(s),
      wait: (t, signal) => abortableSleep(t, signal),
    });
    const done = sampler.run(ac.signal);
    await abortableSleep(ms);
    ac.abort();
    await done;
    return samples;
  }

  it('runs ONE nvidia-smi in loop mode and turns its stream into samples of all GPUs', async () => {
    const sc = scenario({ gpus: TWO, apps: [] });
    const samples = await collect(sc.env, 1500);
    expect(samples.length).toBeGreaterThanOrEqual(5);
    for (const s of samples) expect(s.gpus.map((g) => g.index)).toEqual([0, 1]);
    const calls = fs.readFileSync(sc.calls, 'utf8').trim().split('\n');
    const loops = calls.filter((c) => c.includes('-lms 100'));
    expect(loops).toHaveLength(1);
    // One first reading, and the process listing at its slower cadence.
    expect(calls.filter((c) => c.startsWith('--query-gpu') && !c.includes('-lms'))).toHaveLength(1);
    expect(samples.at(-1)?.processes).toEqual([]);
  });

  it('a loop that goes silent is killed after the timeout, reported, and started again', async () => {
    const sc = scenario({ mode: 'hang-loop', gpus: TWO });
    // Long enough for two loops when the machine is busy (each fake nvidia-smi is a Node start).
    const samples = await collect(sc.env, 3500, 500);
    const errors = samples.filter((s) => s.error);
    expect(errors[0]?.error).toMatch(/nvidia-smi printed nothing for 1 s \(hung; killed\)/);
    const loops = fs
      .readFileSync(sc.calls, 'utf8')
      .split('\n')
      .filter((c) => c.includes('-lms'));
    expect(loops.length).toBeGreaterThanOrEqual(2);
  });

  it('a CPU-only rig gives a sample with no vendor, and spawns nothing', async () => {
    const samples = await collect({ PATH: '/usr/bin:/bin' }, 300);
    expect(samples[0]).toMatchObject({ vendor: null, gpus: [], error: null });
  });
});
