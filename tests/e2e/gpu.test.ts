import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, freePort, homePerTest, psJson, REPO, waitFor } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

// The real llama-server (a CPU build) under a `cuda` config, with the fake nvidia-smi of
// tests/fixtures/gpu on PATH printing the real formats: what an operator sees on a rig whose GPU
// the server cannot use, and how GPU memory is mapped to instances by the server's real pid.

const homes = homePerTest();
const FAKES = path.join(REPO, 'tests/fixtures/gpu');
const MIB = 1024 * 1024;
const GPU0 = 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77';
const GPU1 = 'GPU-7c1f0c8e-1b1a-4a0e-9a43-2a5b0f0e3c11';

function rig(root: string, scenario: object) {
  const file = path.join(root, 'smi-scenario.json');
  const write = (s: object) => fs.writeFileSync(file, JSON.stringify(s));
  write(scenario);
  const env = { PATH: `${FAKES}:${process.env.PATH ?? ''}`, FAKE_SMI_SCENARIO: file, LLAMA_ORCH_ROCM_SMI: 'none' };
  return { env, write };
}

const gpuRow = (i: number, uuid: string, used: number, temp = 45) => [
  String(i),
  uuid,
  'NVIDIA GeForce RTX 4090',
  '12',
  String(used),
  '24564',
  String(temp),
  '95.20',
  '450.00',
];

describe('GPU observability with the real llama-server and a fake nvidia-smi', () => {
  it('a cuda instance whose server finds no usable GPU is flagged; its load facts are the real ones', async () => {
    const home = homes.make();
    const { env } = rig(home.root, { gpus: [gpuRow(0, GPU0, 300)], apps: [] });
    home.addInstance(
      'gpu1',
      realConfig(freePort(), {
        gpu: { backend: 'cuda', devices: [0] },
        model: { path: 'models/tiny.gguf', n_gpu_layers: 99 },
      }),
    );
    const lint = await cli(home.root, ['config', 'lint'], env);
    expect(lint.code, lint.stderr).toBe(0);
    const up = await cli(home.root, ['up', 'gpu1', '--wait', '30'], env);
    expect(up.code, up.stderr).toBe(0);
    const row = await waitFor(
      async () => {
        const r = (await cli(home.root, ['ps', '--json'], env)).stdout;
        const inst = (JSON.parse(r) as Array<Record<string, unknown>>)[0];
        return (inst?.warnings as string[]).some((w) => w.includes('no usable GPU')) ? inst : undefined;
      },
      10_000,
      'the no-usable-GPU warning',
    );
    expect(row.warnings).toContain('backend cuda, but the server found no usable GPU: it runs on the CPU');
    expect(row).toMatchObject({ vram_bytes: 0, offload: null, on_gpus: [] });
    const d = JSON.parse((await cli(home.root, ['describe', 'gpu1', '--json'], env)).stdout) as {
      load: {
        n_ctx: number;
        n_ctx_slot: number;
        n_slots: number;
        buffers: Array<{ device: string; kind: string; bytes: number }>;
      };
      recent_events: Array<{ type: string; message: string }>;
    };
    // The real server's CPU buffers and the context it really uses: -c 256 with 2 slots is 256
    // per slot, 512 in all (this llama.cpp sizes the context per sequence).
    expect(d.load).toMatchObject({ n_ctx: 512, n_ctx_slot: 256 });
    expect(d.load.buffers.find((b) => b.device === 'CPU_Mapped' && b.kind === 'model')?.bytes).toBeGreaterThan(4 * MIB);
    expect(d.load.buffers.some((b) => b.device === 'CPU' && b.kind === 'kv')).toBe(true);
    expect(d.recent_events.some((e) => e.type === 'gpu' && /found no usable GPU/.test(e.message))).toBe(true);
    const text = await cli(home.root, ['describe', 'gpu1'], env);
    expect(text.stdout).toMatch(
      /Loaded \(from the server's log\):\n {2}no layers offloaded to a GPU, context 512, 2 slot\(s\) of 256/,
    );
  });

  it("maps GPU memory to the instance by its server's pid, shows foreign processes, and flags a wrong or full GPU", async () => {
    const home = homes.make();
    const { env, write } = rig(home.root, { gpus: [gpuRow(0, GPU0, 300), gpuRow(1, GPU1, 900)], apps: [] });
    home.addInstance('gpu1', realConfig(freePort(), { gpu: { backend: 'cuda', devices: [1] } }));
    const up = await cli(home.root, ['up', 'gpu1', '--wait', '30'], env);
    expect(up.code, up.stderr).toBe(0);
    const pid = (await psJson(home.root)).find((r) => r.name === 'gpu1')?.pid as number;
    // The server holds 1.5 GiB on GPU 0 although it is pinned to GPU 1; a training job fills GPU 1.
    write({
      gpus: [gpuRow(0, GPU0, 1800), gpuRow(1, GPU1, 23900, 87)],
      apps: [
        [String(pid), '/opt/llama/llama-server', '1536', GPU0],
        ['4242', '/usr/bin/python3', '23000', GPU1],
      ],
    });
    const gpus = await cli(home.root, ['gpus', '--json'], env);
    expect(gpus.code, gpus.stderr).toBe(0);
    const list = JSON.parse(gpus.stdout) as Array<Record<string, unknown>>;
    expect(list.map((g) => g.index)).toEqual([0, 1]);
    expect(list[0]).toMatchObject({
      uuid: GPU0,
      name: 'NVIDIA GeForce RTX 4090',
      utilization_pct: 12,
      memory_used_bytes: 1800 * MIB,
      memory_total_bytes: 24564 * MIB,
      temperature_c: 45,
      power_w: 95.2,
      processes: [{ pid, instance: 'gpu1', memory_bytes: 1536 * MIB, command: 'llama-server' }],
    });
    expect(list[1]?.processes).toEqual([{ pid: 4242, instance: null, memory_bytes: 23000 * MIB, command: 'python3' }]);
    expect(list[1]?.warnings).toEqual(['GPU 1 memory 97% used', 'GPU 1 at 87 C']);

    const row = (JSON.parse((await cli(home.root, ['ps', '--json'], env)).stdout) as Array<Record<string, unknown>>)[0];
    expect(row).toMatchObject({ vram_bytes: 1536 * MIB, on_gpus: [0] });
    expect(row?.warnings).toContain('uses memory on GPU 0, which it is not pinned to (gpu.devices: 1)');

    const ps = await cli(home.root, ['ps'], env);
    expect(ps.stdout).toMatch(/gpu1 .* 0 1\.5G/);
    const once = JSON.parse((await cli(home.root, ['--once', '--json'], env)).stdout) as {
      gpus: unknown[];
      gpu_error: null;
    };
    expect(once.gpus).toEqual(list);
    expect(once.gpu_error).toBeNull();
    const text = await cli(home.root, ['gpus'], env);
    expect(text.stdout).toMatch(/GPU 1 .*23\.3G\/24\.0G.*87C.*other: python3 22\.5G \(pid 4242\)/);
    expect(text.stdout).toContain(`pid ${String(pid).padEnd(8)} gpu1`);
  });
});
