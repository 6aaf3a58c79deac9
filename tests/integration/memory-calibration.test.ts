import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, freePort, homePerTest, REPO, waitFor } from '../helpers/home.js';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';

// The estimate against reality through the CLI and a real keeper: a server that loads as the H200
// run's gpu-full did (its recorded stderr, tests/fixtures/real/h200/logs/gpu-full) and a fake
// nvidia-smi that reports its process at 2890 MiB, as the real one did right after that load.

const homes = homePerTest();
const H200 = path.join(REPO, 'tests/fixtures/real/h200');
const REPLAY = path.join(REPO, 'tests/fixtures/replay-load-server.mjs');
const FAKES = path.join(REPO, 'tests/fixtures/gpu');
const UUID = 'GPU-75b28ea6-512b-554d-eee8-44979478a66a';
const MiB = 1024 * 1024;

/** The H200 as nvidia-smi printed it, with `usedMiB` in use. */
const h200 = (usedMiB: number) => ['0', UUID, 'NVIDIA H200', '0', String(usedMiB), '143771', '40', '121.75', '700.00'];

describe('the estimate against the H200 run, end to end', () => {
  it('describe shows both figures, an event says so, and the next up counts the measured figure', async () => {
    const home = homes.make();
    const model = path.join(home.root, 'models', 'rand-small.gguf');
    const dims = { vocab: 32000, embd: 2048, ff: 8192, layers: 16, heads: 32, headsKv: 8, ctx: 8192 };
    const m = llamaModel({ ...dims, type: 'F16', name: 'rand-1b', byteTokens: true });
    writeGguf(model, m.metadata, m.tensors, { fill: 'sparse' });
    const pidFile = path.join(home.root, 'server.pid');
    fs.writeFileSync(pidFile, '1');
    const scenario = path.join(home.root, 'smi.json');
    const rig = (usedMiB: number, apps: string[][]) =>
      fs.writeFileSync(scenario, JSON.stringify({ gpus: [h200(usedMiB)], apps }));
    // nvidia-smi lists the server's process at 2890 MiB, as after the real load (until the server
    // writes its pid, the file names pid 1: a foreign process).
    rig(4569, [[`@${pidFile}`, '/opt/llama/llama-server', '2890', UUID]]);
    const env = {
      PATH: `${FAKES}:${process.env.PATH ?? ''}`,
      FAKE_SMI_SCENARIO: scenario,
      LLAMA_ORCH_ROCM_SMI: 'none',
    };
    const recorded = JSON.parse(fs.readFileSync(path.join(H200, 'instances/gpu-full/config.json'), 'utf8')) as {
      model: Record<string, unknown>;
      server: Record<string, unknown>;
    };
    const config = {
      ...recorded,
      model: { ...recorded.model, path: 'models/rand-small.gguf' },
      server: {
        ...recorded.server,
        port: freePort(),
        binary: REPLAY,
        env: { REPLAY_STDERR: path.join(H200, 'logs/gpu-full/stderr.log'), REPLAY_PID_FILE: pidFile },
      },
      healthcheck: { interval: 0.2, start_period: 10 },
    };
    home.addInstance('gpu-full', config);

    const up = await cli(home.root, ['up', 'gpu-full', '--wait', '20'], env);
    expect(up.code, up.stderr).toBe(0);
    const describe = async () =>
      JSON.parse((await cli(home.root, ['describe', 'gpu-full', '--json'], env)).stdout) as {
        memory: Record<string, unknown> | null;
        recent_events: Array<{ type: string; level: string; message: string }>;
      };
    // The keeper compares at its first healthy probe after the load facts say "loaded".
    const d = await waitFor(
      async () => {
        const r = await describe();
        return r.memory?.measured_bytes !== undefined && r.memory.measured_bytes !== null ? r : undefined;
      },
      10_000,
      'the measured figure in describe',
    ).catch(async (e: unknown) => {
      throw new Error(`${String(e)}\n${JSON.stringify((await describe()).memory)}`);
    });
    expect(d.memory).toMatchObject({
      loaded_bytes: 2413056492,
      measured_bytes: 2890 * MiB,
      differs: true,
      preflight_bytes: 2890 * MiB,
      per_device: [expect.objectContaining({ device: 'CUDA0', gpu: 0, measured_bytes: 2890 * MiB, differs: true })],
    });
    expect(typeof d.memory?.measured_at).toBe('string');
    const events = d.recent_events.filter((e) => e.type === 'memory');
    expect(events).toHaveLength(1);
    expect(events[0]?.level).toBe('warn');
    expect(events[0]?.message).toMatch(
      /^estimated 2\.5 GiB, loaded 2\.2 GiB, measured 2\.8 GiB on CUDA0 \(GPU 0\): 589 MiB outside/,
    );
    const text = await cli(home.root, ['describe', 'gpu-full'], env);
    expect(text.stdout).toMatch(
      /Memory fit: +estimated 2\.5 GiB, loaded 2\.2 GiB, measured 2\.8 GiB \(differs from the estimate\)/,
    );
    expect(text.stdout).toContain('Memory (estimate / server buffers / GPU tool):');
    expect(text.stdout).toMatch(
      / {2}CUDA0 \(GPU 0\) +estimated 2\.5 GiB .*measured 2\.8 GiB .*: differs: 11% against the estimate/,
    );
    const ev = await cli(home.root, ['events', 'gpu-full'], env);
    expect(ev.stdout).toMatch(
      /warn +gpu-full +memory +estimated 2\.5 GiB, loaded 2\.2 GiB, measured 2\.8 GiB on CUDA0/,
    );

    const down = await cli(home.root, ['down', 'gpu-full'], env);
    expect(down.code, down.stderr).toBe(0);
    // 2.7 GiB free: the estimate (2.5 GiB) would fit, what the last run took (2.8 GiB) does not.
    rig(143771 - 2765, []);
    const again = await cli(home.root, ['up', 'gpu-full'], env);
    expect(again.code, again.stdout).toBe(8);
    expect(again.stderr).toMatch(
      /gpu-full does not fit: gpu 0: needs 2\.8 GiB \(1\.9 weights \+ 0\.3 KV \+ 0\.1 compute \+ 0\.6 runtime, as measured on its last run\), 2\.7 GiB free/,
    );
  });
});
