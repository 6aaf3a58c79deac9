import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, REPO, waitFor } from '../helpers/home.js';

// The GPU commands and checks as an operator meets them, with the fake vendor tools of
// tests/fixtures/gpu (the real formats): a CPU-only rig, a driver that does not answer, a hung
// nvidia-smi, device ids that do not exist, and the daemon's sampler feeding ps without a spawn.

const homes = homePerTest();
const FAKES = path.join(REPO, 'tests/fixtures/gpu');
const GPU0 = 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77';
const ONE_GPU = {
  gpus: [['0', GPU0, 'NVIDIA GeForce RTX 4090', '3', '300', '24564', '40', '30.00', '450.00']],
  apps: [],
};

function rig(root: string, scenario: object | null) {
  const file = path.join(root, 'smi-scenario.json');
  const calls = path.join(root, 'smi-calls.log');
  const write = (s: object) => fs.writeFileSync(file, JSON.stringify({ calls, ...s }));
  if (scenario) write(scenario);
  // No scenario: the fakes are not on PATH at all (a CPU-only rig).
  const bin = scenario ? `${FAKES}:` : '';
  const env = {
    PATH: `${bin}${path.dirname(process.execPath)}:/usr/bin:/bin`,
    FAKE_SMI_SCENARIO: file,
    LLAMA_ORCH_ROCM_SMI: 'none',
  };
  const spawns = () => (fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8').trim().split('\n').filter(Boolean) : []);
  return { env, write, spawns };
}

describe('llama-orch gpus', () => {
  it('on a CPU-only rig: says so plainly and exits 0; --json is []', async () => {
    const home = homes.make();
    const { env } = rig(home.root, null);
    // Neither tool on PATH (the rig's env turns rocm-smi off; here it is simply absent).
    const text = await cli(home.root, ['gpus'], { ...env, LLAMA_ORCH_ROCM_SMI: '' });
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('no GPU found: this rig is CPU-only (neither nvidia-smi nor rocm-smi is on PATH)');
    // Turned off is not the same as CPU-only: it says so.
    const off = await cli(home.root, ['gpus'], { ...env, LLAMA_ORCH_ROCM_SMI: '', LLAMA_ORCH_NVIDIA_SMI: 'none' });
    expect(off.stdout).toContain(
      'GPUs not read: GPU reading turned off (LLAMA_ORCH_NVIDIA_SMI=none; no rocm-smi on PATH)',
    );
    const json = await cli(home.root, ['gpus', '--json'], env);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([]);
    const once = JSON.parse((await cli(home.root, ['--once', '--json'], env)).stdout) as Record<string, unknown>;
    expect(once).toMatchObject({ gpus: [], gpu_error: null });
  });

  it("a driver that does not answer: exit 1 with nvidia-smi's words; ps still works and says why", async () => {
    const home = homes.make();
    const { env } = rig(home.root, { mode: 'driver-failure' });
    const r = await cli(home.root, ['gpus'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: cannot read the GPUs: nvidia-smi exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/,
    );
    expect(r.stderr).toContain('hint: check the NVIDIA driver');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const ps = await cli(home.root, ['ps'], env);
    expect(ps.code).toBe(0);
    expect(ps.stderr).toMatch(/warning: GPUs not read: nvidia-smi exited with code 9/);
  });

  it('a hung nvidia-smi is killed at the deadline: gpus fails in ~5 s, ps answers in ~2 s', async () => {
    const home = homes.make();
    const { env } = rig(home.root, { mode: 'hang' });
    const ps = await cli(home.root, ['--once', '--json'], env);
    expect(ps.code).toBe(0);
    expect(ps.ms).toBeLessThan(4500);
    expect((JSON.parse(ps.stdout) as { gpu_error: string }).gpu_error).toBe(
      'nvidia-smi did not answer within 2 s (killed)',
    );
    const r = await cli(home.root, ['gpus'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: cannot read the GPUs: nvidia-smi did not answer within 5 s (killed)');
    expect(r.ms).toBeLessThan(8000);
  });
});

describe('device checks', () => {
  it('init --gpu 9 on a one-GPU rig is refused; lint and up refuse a device that is not there', async () => {
    const home = homes.make();
    const { env } = rig(home.root, ONE_GPU);
    const model = path.join(home.root, 'models', 'fake.gguf');
    const init = await cli(
      home.root,
      ['init', 'g9', '--profile', 'cuda', '--gpu', '9', '--model', model, '--port', String(freePort())],
      env,
    );
    expect(init.code).toBe(1);
    expect(init.stderr).toContain('error: not written: GPU 9 does not exist: nvidia-smi lists 1 GPU(s): 0');
    expect(fs.existsSync(path.join(home.root, 'instances', 'g9'))).toBe(false);

    home.addInstance('bad', fakeConfig(freePort(), {}, { gpu: { backend: 'cuda', devices: [0, 3, 'GPU-deadbeef'] } }));
    const lint = await cli(home.root, ['config', 'lint'], env);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain('$.gpu.devices[1]: GPU 3 does not exist: nvidia-smi lists 1 GPU(s): 0');
    expect(lint.stderr).toContain(`$.gpu.devices[2]: GPU-deadbeef is not a GPU or MIG device of this machine`);
    const up = await cli(home.root, ['up', 'bad'], env);
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/^error: bad: GPU 3 does not exist/);
    expect(up.stderr).toContain('hint: fix gpu.devices');
    expect((await cli(home.root, ['ps', '--json'], env)).stdout).toContain('"state": "stopped"');
  });

  it('a UUID and a MIG device of the rig pass; a cuda config on a rig with no NVIDIA GPU is a warning', async () => {
    const home = homes.make();
    const { env } = rig(home.root, { ...ONE_GPU, mig: { 0: ['MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f'] } });
    home.addInstance('u', fakeConfig(freePort(), {}, { gpu: { backend: 'cuda', devices: [GPU0] } }));
    home.addInstance(
      'm',
      fakeConfig(freePort(), {}, { gpu: { backend: 'cuda', devices: ['MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f'] } }),
    );
    const lint = await cli(home.root, ['config', 'lint'], env);
    expect(lint.code, lint.stderr).toBe(0);
    const none = await cli(home.root, ['config', 'lint'], { ...env, LLAMA_ORCH_NVIDIA_SMI: 'none' });
    expect(none.code).toBe(0);
    expect(none.stderr).toMatch(
      /warning: \S+\/instances\/m\/config.json: \$\.gpu\.backend: backend "cuda" but no NVIDIA GPU was found: nvidia-smi is not on PATH \(nor set in LLAMA_ORCH_NVIDIA_SMI\) and there is no \/dev\/nvidiactl; llama-server would run on the CPU/,
    );
  });
});

describe('the daemon samples; readers use its sample', () => {
  it('records samples every interval; ps and --once read them without spawning nvidia-smi', async () => {
    const home = homes.make();
    const { env, spawns } = rig(home.root, ONE_GPU);
    const start = await cli(home.root, ['daemon', 'start', '--interval', '0.5'], env);
    expect(start.code, start.stderr).toBe(0);
    try {
      await waitFor(
        () => spawns().some((c) => c.includes('-lms 2000')) || undefined,
        10_000,
        'the loop-mode nvidia-smi',
      );
      // Let a sample or two land.
      await waitFor(
        async () => {
          const once = JSON.parse((await cli(home.root, ['--once', '--json'], env)).stdout) as { gpus: unknown[] };
          return once.gpus.length === 1 || undefined;
        },
        10_000,
        'a sample',
      );
      const before = spawns().length;
      for (let i = 0; i < 3; i++) {
        const ps = await cli(home.root, ['ps', '--json'], env);
        expect(ps.code).toBe(0);
      }
      const gpus = JSON.parse((await cli(home.root, ['gpus', '--json'], env)).stdout) as Array<{ name: string }>;
      expect(gpus[0]?.name).toBe('NVIDIA GeForce RTX 4090');
      // Only the daemon's own per-process listing (every 10 s) may have run meanwhile.
      const after = spawns().slice(before);
      expect(after.filter((c) => !c.startsWith('--query-compute-apps'))).toEqual([]);
    } finally {
      await cli(home.root, ['daemon', 'stop'], env);
    }
    // The loop-mode nvidia-smi went with the daemon.
    const loops = () =>
      fs
        .readdirSync('/proc')
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
            return (
              cmd.includes('-lms') && fs.readFileSync(`/proc/${d}/environ`, 'utf8').includes(env.FAKE_SMI_SCENARIO)
            );
          } catch {
            return false;
          }
        });
    await waitFor(() => loops().length === 0 || undefined, 5000, 'the loop-mode nvidia-smi to exit');
  });
});
