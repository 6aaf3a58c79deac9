import React from 'react';
import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import { GpuPanel, gpuLine } from '../../components/GpuPanel.js';
import { gpuPanelHeight } from '../../components/layout.js';
import type { GpuInfo, GpuSample } from '../../src/domain/gpu.js';
import { attributeGpus, instanceGpuFacts } from '../../src/engine/gpus.js';
import { isFresh } from '../../src/app/gpu-source.js';
import type { ProcStat } from '../../src/platform/proc.js';
import { toolsTurnedOff } from '../../src/platform/gpu/tool.js';

const GIB = 1024 ** 3;
// eslint-disable-next-line no-control-regex
const plain = (s: string | undefined) => (s ?? '').replace(/\u001b\[[0-9;]*m/g, '');

function sample(over: Partial<GpuSample> = {}): GpuSample {
  return {
    at: 1000,
    vendor: 'nvidia',
    gpus: [
      {
        index: 0,
        uuid: 'GPU-a',
        name: 'NVIDIA GeForce RTX 4090',
        utilization_pct: 40,
        memory_used_bytes: 8 * GIB,
        memory_total_bytes: 24 * GIB,
        temperature_c: 67,
        power_w: 285,
        power_limit_w: 450,
      },
      {
        index: 1,
        uuid: 'GPU-b',
        name: 'NVIDIA GeForce RTX 4090',
        utilization_pct: 100,
        memory_used_bytes: 23.5 * GIB,
        memory_total_bytes: 24 * GIB,
        temperature_c: 88,
        power_w: 440,
        power_limit_w: 450,
      },
    ],
    processes: [
      { pid: 101, gpu_uuid: 'GPU-a', gpu_index: null, memory_bytes: 7.9 * GIB, name: '/opt/llama-server' },
      { pid: 202, gpu_uuid: 'GPU-b', gpu_index: null, memory_bytes: 2 * GIB, name: null },
      { pid: 4242, gpu_uuid: 'GPU-b', gpu_index: null, memory_bytes: 12.3 * GIB, name: '/usr/bin/python3' },
      { pid: 90001, gpu_uuid: 'GPU-b', gpu_index: null, memory_bytes: 1 * GIB, name: 'llama-server' },
    ],
    processes_at: 1000,
    error: null,
    interval_ms: 2000,
    ...over,
  };
}

// A process table: 100 is alpha's server, 201 bravo's, 202 a child of 201; 555 is a server in a
// container that nvidia-smi (on the host) knows as 90001.
const table: Record<number, Partial<ProcStat>> = {
  101: { ppid: 100 },
  100: { ppid: 1 },
  201: { ppid: 1 },
  202: { ppid: 201 },
  4242: { ppid: 1 },
  555: { ppid: 1 },
};
const deps = {
  procs: {
    stat: (pid: number) => (table[pid] ? ({ pid, ...table[pid] } as ProcStat) : undefined),
    cmdline: (pid: number) => (pid === 202 ? ['/usr/bin/llama-server', '-m', 'x'] : undefined),
  },
  nsPids: (pid: number) => (pid === 555 ? [90001, 555] : [pid]),
};
const servers = [
  { name: 'alpha', pid: 100 },
  { name: 'bravo', pid: 201 },
  { name: 'boxed', pid: 555 },
];

describe('attributing GPU processes to instances', () => {
  it('by server pid or descendant, by NSpid for a host pid; the rest is foreign', () => {
    const view = attributeGpus(sample(), servers, deps);
    expect(view.gpus[0]?.processes).toEqual([
      { pid: 101, instance: 'alpha', memory_bytes: 7.9 * GIB, command: 'llama-server' },
    ]);
    expect(view.gpus[1]?.processes).toEqual([
      { pid: 4242, instance: null, memory_bytes: 12.3 * GIB, command: 'python3' },
      { pid: 202, instance: 'bravo', memory_bytes: 2 * GIB, command: 'llama-server' },
      { pid: 90001, instance: 'boxed', memory_bytes: 1 * GIB, command: 'llama-server' },
    ]);
    expect(view.byInstance.get('alpha')).toEqual({ vendorBytes: 7.9 * GIB, gpus: [0] });
    expect(view.gpus[1]?.warnings).toEqual(['GPU 1 memory 98% used', 'GPU 1 at 88 C']);
    expect(view.gpus[0]?.warnings).toEqual([]);
  });

  it("an instance's VRAM, warnings for a wrong GPU and a full one, and 0 when the listing has none of it", () => {
    const view = attributeGpus(sample(), servers, deps);
    const bravo = instanceGpuFacts(view, { name: 'bravo', running: true, backend: 'cuda', devices: [0] }, null);
    expect(bravo.vram_bytes).toBe(2 * GIB);
    expect(bravo.on_gpus).toEqual([1]);
    expect(bravo.warnings).toEqual([
      'uses memory on GPU 1, which it is not pinned to (gpu.devices: 0)',
      'GPU 1 memory 98% used',
      'GPU 1 at 88 C',
    ]);
    const byUuid = instanceGpuFacts(view, { name: 'bravo', running: true, backend: 'cuda', devices: ['GPU-b'] }, null);
    expect(byUuid.warnings.some((w) => w.includes('not pinned'))).toBe(false);
    const idle = instanceGpuFacts(view, { name: 'idle', running: true, backend: 'cuda', devices: [] }, null);
    expect(idle.vram_bytes).toBe(0);
    const stopped = instanceGpuFacts(view, { name: 'alpha', running: false, backend: 'cuda', devices: [] }, null);
    expect(stopped).toEqual({ vram_bytes: null, on_gpus: [], warnings: [] });
    // Without a listing (a failed one, Vulkan): the server's own GPU buffers.
    const noList = attributeGpus(sample({ processes: null }), servers, deps);
    const facts = {
      devices: [],
      offload: { layers: 33, total: 33 },
      buffers: [
        { device: 'Vulkan0', kind: 'model' as const, bytes: GIB },
        { device: 'CPU_Mapped', kind: 'model' as const, bytes: GIB },
      ],
      n_ctx: 4096,
      n_ctx_slot: 4096,
      n_slots: 1,
      fit_projected_bytes: null,
      warnings: [],
      loaded: true,
    };
    expect(
      instanceGpuFacts(noList, { name: 'v', running: true, backend: 'vulkan', devices: [] }, facts).vram_bytes,
    ).toBe(GIB);
    expect(
      instanceGpuFacts(noList, { name: 'v', running: true, backend: 'vulkan', devices: [] }, null).vram_bytes,
    ).toBeNull();
  });

  it('a sample is fresh for three intervals (at least 5 s)', () => {
    expect(isFresh(sample(), 6000)).toBe(true);
    expect(isFresh(sample(), 7001)).toBe(false);
    expect(isFresh(sample({ interval_ms: 0 }), 1000)).toBe(false);
  });
});

describe('GpuPanel', () => {
  const gpus: GpuInfo[] = attributeGpus(sample(), servers, deps).gpus;

  it('draws a line per GPU: bars, memory, temperature, power, who holds the memory', () => {
    // ink-testing-library's terminal is 100 columns wide.
    const { lastFrame } = render(<GpuPanel gpus={gpus} error={null} cpuOnly={false} width={100} height={2} />);
    const lines = plain(lastFrame()).split('\n');
    expect(lines[0]).toMatch(/^GPU 0 {2}██░░░░ {2}40% {2}██░░░░ 8\.0G\/24\.0G {2}67C {2}285\/450W {2}alpha 7\.9G/);
    expect(lines[1]).toMatch(/^GPU 1 {2}██████ 100% .* 23\.5G\/24\.0G {2}88C .*bravo 2\.0G, boxed 1\.0G, other: pyth/);
  });

  it('one line is one string with its colours inline, the memory holders cut at the width', () => {
    const line = gpuLine(gpus[1] as GpuInfo, 10, 90);
    expect(line.startsWith('\u001b[1mGPU 1\u001b[22m')).toBe(true);
    expect(line).toContain('\u001b[31m23.5G/24.0G\u001b[39m'); // above 95% memory
    expect(line).toContain('\u001b[31m88C\u001b[39m'); // hot
    expect(plain(line).length).toBeLessThanOrEqual(90);
    expect(plain(line)).toMatch(/bravo 2\.0G, boxed .*…$/);
  });

  it('drops the bars, then the tail, on a narrow terminal; one line each at most a quarter of the screen', () => {
    const { lastFrame } = render(<GpuPanel gpus={gpus} error={null} cpuOnly={false} width={60} height={1} />);
    const lines = plain(lastFrame()).split('\n');
    expect(lines[0]).toMatch(/^GPU 0 {3}40% {2}8\.0G\/24\.0G {2}67C/);
    expect(lines[0]?.length).toBeLessThanOrEqual(60);
    expect(lines).toHaveLength(1);
    const three = render(<GpuPanel gpus={[...gpus, ...gpus]} error={null} cpuOnly={false} width={60} height={3} />);
    expect(plain(three.lastFrame()).split('\n')[2]).toBe('+2 more GPU(s): llama-orch gpus');
    expect(gpuPanelHeight({ gpus, error: null, cpuOnly: false }, 24)).toBe(2);
    expect(gpuPanelHeight({ gpus, error: null, cpuOnly: false }, 6)).toBe(1);
  });

  it('says plainly when the rig is CPU-only, or why the GPUs could not be read', () => {
    const cpu = render(<GpuPanel gpus={[]} error={null} cpuOnly width={100} height={1} />);
    expect(plain(cpu.lastFrame())).toBe('GPUs: none — a CPU-only rig (no nvidia-smi or rocm-smi on PATH)');
    // Turned off by the environment: the session says so (src/app/dashboard.ts gpuToolsOff), the model passes it on.
    const turnedOff = toolsTurnedOff({ LLAMA_ORCH_NVIDIA_SMI: 'none', LLAMA_ORCH_ROCM_SMI: 'none' });
    const off = render(<GpuPanel gpus={[]} error={null} cpuOnly off={turnedOff} width={120} height={1} />);
    expect(plain(off.lastFrame())).toBe(
      'GPUs: not read — GPU reading turned off (LLAMA_ORCH_NVIDIA_SMI=none, LLAMA_ORCH_ROCM_SMI=none)',
    );
    const err = render(
      <GpuPanel
        gpus={[]}
        error="nvidia-smi did not answer within 2 s (killed)"
        cpuOnly={false}
        width={100}
        height={1}
      />,
    );
    expect(plain(err.lastFrame())).toBe('GPUs not read: nvidia-smi did not answer within 2 s (killed)');
  });
});
