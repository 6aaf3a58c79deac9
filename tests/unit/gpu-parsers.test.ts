import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpuBufferBytes, isGpuBuffer } from '../../src/domain/gpu.js';
import { LoadFactsScanner, emptyLoadFacts, scanLoadLine } from '../../src/keeper/load-facts.js';
import { nvidiaFailure, parseAppLines, parseGpuLines, parseList } from '../../src/platform/gpu/nvidia.js';
import { parseRocmGpus, parseRocmPidGpus, parseRocmPids } from '../../src/platform/gpu/rocm.js';

const MIB = 1024 * 1024;
const fixture = (f: string) => fs.readFileSync(path.join(import.meta.dirname, '../fixtures/gpu', f), 'utf8');
const facts = (text: string) => {
  const f = emptyLoadFacts();
  for (const line of text.split('\n')) scanLoadLine(f, line);
  return f;
};

describe('nvidia-smi --query-gpu (csv,noheader,nounits)', () => {
  it('reads two GPUs, with the spaces after commas and fractional power', () => {
    const gpus = parseGpuLines(
      '0, GPU-1f3c2a4e-aaaa-bbbb-cccc-0123456789ab, NVIDIA GeForce RTX 4090, 97, 20980, 24564, 71, 312.45, 450.00\n' +
        '1, GPU-2e4d3b5f-aaaa-bbbb-cccc-0123456789ab, NVIDIA GeForce RTX 3090, 0, 4, 24576, 34, 21.07, 350.00\n',
    );
    expect(gpus).toHaveLength(2);
    expect(gpus[0]).toEqual({
      index: 0,
      uuid: 'GPU-1f3c2a4e-aaaa-bbbb-cccc-0123456789ab',
      name: 'NVIDIA GeForce RTX 4090',
      utilization_pct: 97,
      memory_used_bytes: 20980 * MIB,
      memory_total_bytes: 24564 * MIB,
      temperature_c: 71,
      power_w: 312.45,
      power_limit_w: 450,
    });
    expect(gpus[1]?.memory_used_bytes).toBe(4 * MIB);
  });

  it('takes [N/A], [Not Supported] and N/A as unknown, not as zero or an error', () => {
    const [g] = parseGpuLines(
      '0, GPU-abc12345-0000, NVIDIA A100-SXM4-40GB, [N/A], 0, 40960, 33, [Not Supported], [N/A]',
    );
    expect(g).toMatchObject({ utilization_pct: null, memory_used_bytes: 0, temperature_c: 33, power_w: null });
    expect(g?.power_limit_w).toBeNull();
    const [h] = parseGpuLines('0, GPU-abc12345-0000, Tesla T4, N/A, [Unknown Error], 15360, [GPU is lost], 27.5, 70');
    expect(h).toMatchObject({ utilization_pct: null, memory_used_bytes: null, temperature_c: null, power_w: 27.5 });
  });

  it('keeps a name with a comma whole, and skips lines that are not readings', () => {
    const gpus = parseGpuLines(
      'WARNING: infoROM is corrupted at gpu 0000:01:00.0\n0, GPU-abc12345-0000, Quadro RTX 6000, Max-Q, 5, 100, 24576, 40, 50, 250\n\n',
    );
    expect(gpus).toHaveLength(1);
    expect(gpus[0]?.name).toBe('Quadro RTX 6000, Max-Q');
    expect(gpus[0]?.utilization_pct).toBe(5);
  });
});

describe('nvidia-smi --query-compute-apps', () => {
  it('reads processes; an empty listing and "No running processes found" are no processes', () => {
    expect(parseAppLines('')).toEqual([]);
    expect(parseAppLines('No running processes found\n')).toEqual([]);
    const apps = parseAppLines(
      '4242, /usr/bin/python3, 12594, GPU-1f3c2a4e-aaaa\n31337, /opt/llama/bin/llama-server, 8090, GPU-2e4d3b5f-bbbb\n',
    );
    expect(apps).toEqual([
      {
        pid: 4242,
        name: '/usr/bin/python3',
        memory_bytes: 12594 * MIB,
        gpu_uuid: 'GPU-1f3c2a4e-aaaa',
        gpu_index: null,
      },
      {
        pid: 31337,
        name: '/opt/llama/bin/llama-server',
        memory_bytes: 8090 * MIB,
        gpu_uuid: 'GPU-2e4d3b5f-bbbb',
        gpu_index: null,
      },
    ]);
  });

  it('takes [Insufficient Permissions] memory (containers) as unknown, keeping the process', () => {
    const [a] = parseAppLines('17, [Insufficient Permissions], [Insufficient Permissions], GPU-1f3c2a4e-aaaa');
    expect(a).toEqual({ pid: 17, name: null, memory_bytes: null, gpu_uuid: 'GPU-1f3c2a4e-aaaa', gpu_index: null });
  });
});

describe('nvidia-smi -L and failures', () => {
  it('lists GPUs and the MIG devices under them', () => {
    const list = parseList(
      'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n' +
        '  MIG 1g.5gb      Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)\n' +
        '  MIG 1g.5gb      Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)\n' +
        'GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-7c1f0c8e-1b1a-4a0e-9a43-2a5b0f0e3c11)\n',
    );
    expect(list.gpus.map((g) => g.index)).toEqual([0, 1]);
    expect(list.gpus[1]?.uuid).toBe('GPU-7c1f0c8e-1b1a-4a0e-9a43-2a5b0f0e3c11');
    expect(list.mig.map(({ gpu, uuid }) => ({ gpu, uuid }))).toEqual([
      { gpu: 0, uuid: 'MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f' },
      { gpu: 0, uuid: 'MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb' },
    ]);
  });

  it("explains a driver failure in nvidia-smi's own words", () => {
    const said = nvidiaFailure(
      "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
      '',
    );
    expect(said).toMatch(/^NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/);
  });
});

describe('rocm-smi --json', () => {
  it('reads cards under the key names of older and newer releases', () => {
    const gpus = parseRocmGpus(
      JSON.stringify({
        card1: {
          'GPU use (%)': '3',
          'VRAM Total Memory (B)': '21458059264',
          'VRAM Total Used Memory (B)': '27856896',
          'Temperature (Sensor edge) (C)': '31.0',
          'Current Socket Graphics Package Power (W)': '7.222',
          'Card Series': 'Radeon RX 7900 XT',
          'Unique ID': '0x9246a1c2e1d0b3f2',
        },
        card0: {
          'GPU use (%)': '100',
          'VRAM Total Memory (B)': '17163091968',
          'VRAM Total Used Memory (B)': '17000000000',
          'Temperature (Sensor edge) (c)': '88.0',
          'Average Graphics Package Power (W)': '222.0',
          'Device Name': 'Navi 21',
        },
        system: { 'Driver version': '6.8.0' },
      }),
    );
    expect(gpus.map((g) => g.index)).toEqual([0, 1]);
    expect(gpus[0]).toMatchObject({ name: 'Navi 21', utilization_pct: 100, temperature_c: 88, power_w: 222 });
    expect(gpus[1]).toMatchObject({
      name: 'Radeon RX 7900 XT',
      uuid: '0x9246a1c2e1d0b3f2',
      memory_used_bytes: 27856896,
      memory_total_bytes: 21458059264,
      power_w: 7.222,
    });
  });

  it('takes "Unique ID" for the uuid, never "GUID" (a KFD node id); reads the DCU fork\'s MiB keys', () => {
    const [guidOnly, dcu] = parseRocmGpus(
      JSON.stringify({
        card0: { GUID: '26967', 'Card Series': 'Radeon RX 7900 XT', 'VRAM Total Memory (B)': '1024' },
        card1: {
          'Unique ID': '7100fa8866904061',
          GUID: '11131',
          'DCU use (%)': '12',
          'vram Total Memory (MiB)': '65520',
          'vram Total Used Memory (MiB)': '2',
        },
      }),
    );
    expect(guidOnly).toMatchObject({ uuid: null, memory_total_bytes: 1024, memory_used_bytes: null });
    expect(dcu).toMatchObject({
      uuid: '7100fa8866904061',
      utilization_pct: 12,
      memory_total_bytes: 65520 * MIB,
      memory_used_bytes: 2 * MIB,
    });
  });

  it('reads --showpids (name, gpu count, vram bytes, ...), on the one GPU when there is one', () => {
    const out = JSON.stringify({
      system: { PID4242: 'python3, 1, 4370464768, 0, 0', PID17: 'llama-server, 1, 8589934592, 0, 0' },
    });
    expect(parseRocmPids(out, 1)).toEqual([
      { pid: 4242, name: 'python3', gpu_uuid: null, gpu_index: 0, memory_bytes: 4370464768 },
      { pid: 17, name: 'llama-server', gpu_uuid: null, gpu_index: 0, memory_bytes: 8589934592 },
    ]);
    expect(parseRocmPids(out, 2)[0]?.gpu_index).toBeNull();
    expect(parseRocmPids('{}', 1)).toEqual([]);
    expect(() => parseRocmGpus('ERROR: GPU[0] : Unable to get GPU memory use')).toThrow(/no JSON/);
  });

  it('reads --showpidgpus (text: its --json form carries no mapping): the GPUs each process uses', () => {
    const out = [
      '',
      '============================ ROCm System Management Interface ============================',
      '================================== GPUs Indexed by PID ===================================',
      'PID 4242 is using 1 DRM device(s):',
      '1 ',
      'PID 17 is using 2 DRM device(s):',
      '0 1 ',
      'PID 99 is using 0 DRM device(s)',
      '==========================================================================================',
      '================================== End of ROCm SMI Log ===================================',
    ].join('\n');
    expect([...parseRocmPidGpus(out)]).toEqual([
      [4242, [1]],
      [17, [0, 1]],
      [99, []],
    ]);
    expect(parseRocmPidGpus('No KFD PIDs currently running\n').size).toBe(0);
  });
});

describe('load facts from llama-server stderr', () => {
  it('reads the real CPU build here: buffers, context in use, slots, and its no-usable-GPU warning', () => {
    const f = facts(fixture('cpu-load.txt'));
    expect(f.buffers).toEqual(
      expect.arrayContaining([
        { device: 'CPU_Mapped', kind: 'model', bytes: Math.round(4.52 * MIB) },
        { device: 'CPU', kind: 'kv', bytes: 8 * MIB },
        { device: 'CPU', kind: 'compute', bytes: Math.round(7.51 * MIB) },
      ]),
    );
    expect(f).toMatchObject({ n_ctx: 4096, n_ctx_slot: 256, n_slots: 4, offload: null, loaded: true });
    expect(f.devices).toEqual([
      { name: 'CPU', description: 'AMD EPYC', total_bytes: 24105 * MIB, free_bytes: 24105 * MIB },
    ]);
    expect(f.warnings).toContain('no usable GPU found: running on the CPU');
    expect(f.warnings).toContain("context 4096 per slot capped to the model's training context 256");
    expect(gpuBufferBytes(f)).toBeNull();
  });

  it('reads a CUDA load split over two GPUs', () => {
    const f = facts(fixture('cuda-load.txt'));
    expect(f.offload).toEqual({ layers: 33, total: 33 });
    expect(f.devices.map((d) => d.name)).toEqual(['CUDA0', 'CUDA1', 'CPU']);
    expect(f.devices[0]).toMatchObject({ description: 'NVIDIA GeForce RTX 4090', total_bytes: 24056 * MIB });
    expect(f.n_ctx).toBe(16384);
    expect(f.fit_projected_bytes).toBe(9734 * MIB);
    // GPU memory: CUDA0/1 model + KV + compute; CUDA_Host and CPU_Mapped are host memory.
    const expected = [2464.53, 2276.21, 1088, 960, 560.01, 560.02].reduce((a, b) => a + Math.round(b * MIB), 0);
    expect(gpuBufferBytes(f)).toBe(expected);
    expect(f.warnings).toEqual([]);
  });

  it('reads a partial Vulkan offload and a ROCm load whose context --fit reduced', () => {
    const v = facts(fixture('vulkan-load.txt'));
    expect(v.offload).toEqual({ layers: 20, total: 33 });
    expect(v.devices[0]).toMatchObject({ name: 'Vulkan0', free_bytes: 24560 * MIB, total_bytes: null });
    expect(gpuBufferBytes(v)).toBe(Math.round(2744.06 * MIB) + 640 * MIB + 560 * MIB);
    const r = facts(fixture('rocm-load.txt'));
    expect(r.offload).toEqual({ layers: 49, total: 49 });
    expect(r.warnings).toEqual(['--fit reduced the context from 131072 to 65536']);
    expect(r.n_ctx).toBe(65536);
  });

  it('reads each line without colours, the router child [pid], timestamp and level, whichever are printed', () => {
    const esc = '\x1b';
    const f = facts(
      [
        `[4242] ${esc}[34m0.00.200.887${esc}[0m ${esc}[32mI ${esc}[0mload_tensors: offloaded 3/5 layers to GPU`,
        `${esc}[32mI ${esc}[0mllama_init_from_model: n_ctx         = 4096`,
        `[4242] W llm_load_tensors:      CUDA0 buffer size =   100.00 MiB`,
        `0.00.300.000 I srv    load_model: initializing slots, n_slots = 2`,
        `0.00.300.001 I slot         init: id  0 | task -1 | new slot n_ctx_slot = 2048`,
      ].join('\n'),
    );
    expect(f).toMatchObject({ offload: { layers: 3, total: 5 }, n_ctx: 4096, n_slots: 2, n_ctx_slot: 2048 });
    expect(f.buffers).toEqual([{ device: 'CUDA0', kind: 'model', bytes: 100 * MIB }]);
  });

  it('names the devices of a "found N <backend> devices" list after its backend; a Device line alone is not read', () => {
    const f = facts(
      [
        '  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes',
        'ggml_cuda_init: found 1 MUSA devices:',
        '  Device 0: MTT S80, compute capability 2.1, VMM: yes',
        'build: 1 (abc) with cc',
        '  Device 1: MTT S80, compute capability 2.1, VMM: yes',
        'ggml_cuda_init: found 1 CUDA devices (Total VRAM: 24080 MiB):',
        '  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes, VRAM: 24080 MiB',
        'llama_model_load_from_file_impl: using device CUDA0 (NVIDIA GeForce RTX 4090) (0000:01:00.0) - 23500 MiB free',
      ].join('\n'),
    );
    expect(f.devices).toEqual([
      { name: 'MUSA0', description: 'MTT S80', total_bytes: null, free_bytes: null },
      { name: 'CUDA0', description: 'NVIDIA GeForce RTX 4090', total_bytes: 24080 * MIB, free_bytes: 23500 * MIB },
    ]);
  });

  it("counts Metal's mapped model buffers as GPU memory, host and CPU mappings not", () => {
    for (const d of ['MTL0_Mapped', 'Metal_Mapped', 'MTL0', 'Metal', 'CUDA0', 'ROCm1', 'Vulkan0', 'CUDA_Split']) {
      expect(isGpuBuffer(d)).toBe(true);
    }
    for (const d of ['CPU_Mapped', 'CPU', 'CUDA_Host', 'ROCm_Host', 'Vulkan_Host', 'RPC[10.0.0.2:50052]']) {
      expect(isGpuBuffer(d)).toBe(false);
    }
  });

  it('keeps the last size of a buffer (-v prints a dry pass at 0.00 MiB first) and stops looking after the load', () => {
    const seen: number[] = [];
    const s = new LoadFactsScanner((f) => seen.push(f.buffers.length));
    s.push(Buffer.from('load_tensors:        CUDA0 model buffer size =     0.00 MiB\nload_tensors:        CUDA0 mod'));
    s.push(Buffer.from('el buffer size =  100.00 MiB\nsrv  llama_server: model loaded\n'));
    expect(s.facts.buffers).toEqual([{ device: 'CUDA0', kind: 'model', bytes: 100 * MIB }]);
    s.push(Buffer.from('x\n'.repeat(60)));
    expect(s.scanning).toBe(false);
    s.push(Buffer.from('load_tensors: offloaded 1/2 layers to GPU\n'));
    expect(s.facts.offload).toBeNull();
  });
});
