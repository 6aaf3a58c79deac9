// A GPU that is lost or unreadable (issue "Real GPUs", part 2): flagged in `gpus --json` (state), the
// other GPUs' readings kept, its instances warned; and a new server's memory listed without waiting.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { GpuSample } from '../../src/domain/gpu.js';
import { UnlistedServers } from '../../src/daemon/gpu-service.js';
import { attributeGpus, instanceGpuFacts } from '../../src/engine/gpus.js';
import { gpuLines } from '../../src/format/gpu.js';
import { parseGpuLine, parseGpuLines, parseList, parseLostLine } from '../../src/platform/gpu/nvidia.js';
import { GpuSampler, sampleOnce } from '../../src/platform/gpu/sampler.js';
import { abortableSleep } from '../../src/platform/sleep.js';

const REAL = path.resolve(import.meta.dirname, '../fixtures/real/nvidia-smi');
const read = (f: string) => fs.readFileSync(path.join(REAL, f), 'utf8');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('nvidia-smi: lost and unreadable GPUs', () => {
  it('the lost GPU gets a reading of its own, in its place; the others keep theirs', () => {
    const gpus = parseGpuLines(read('gpu-lost-others-printed-rebuilt.txt'));
    expect(gpus.map((g) => [g.index, g.state ?? 'ok'])).toEqual([
      [0, 'ok'],
      [1, 'lost'],
      [2, 'ok'],
      [3, 'ok'],
    ]);
    expect(gpus[1]).toMatchObject({ uuid: null, memory_used_bytes: null, memory_total_bytes: null });
    expect(gpus[1]?.state_detail).toBe(
      'nvidia-smi: unable to determine the device handle for 0000:34:00.0: Unknown Error',
    );
    expect(gpus[0]?.memory_used_bytes).toBe(88450 * 1024 * 1024);
  });

  it('the older form names only the bus: a one-GPU rig whose GPU fell off it', () => {
    expect(parseLostLine('Unable to determine the device handle for GPU 0000:0B:00.0: Unknown Error')).toEqual({
      index: null,
      bus: '0000:0B:00.0',
      why: 'Unknown Error',
    });
    const gpus = parseGpuLines(read('gpu-fell-off-bus-smi.txt'));
    expect(gpus).toHaveLength(1);
    expect(gpus[0]).toMatchObject({ index: 0, state: 'lost' });
    expect(
      parseLostLine('Unable to determine the device handle for gpu 0000:01:00.0: GPU is lost.  Reboot the system'),
    ).toEqual({ index: null, bus: '0000:01:00.0', why: 'GPU is lost' });
  });

  it('a row of [GPU is lost] is lost; a row with nothing readable is unreadable; [N/A] alone is fine', () => {
    expect(
      parseGpuLine(
        '0, GPU-abc12345-0000, Tesla T4, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]',
      )?.state,
    ).toBe('lost');
    const perm = parseGpuLine(
      '0, MIG-GPU-abc12345-0000, NVIDIA A100-SXM4-80GB, [N/A], [Insufficient Permissions], [Insufficient Permissions], 47, [N/A], [N/A]',
    );
    expect(perm).toMatchObject({ state: 'unreadable', temperature_c: 47 });
    // MIG's [N/A] utilisation and GB10's [N/A] memory are what those GPUs are: readable.
    expect(
      parseGpuLine('0, GPU-abc12345-0000, NVIDIA H100, [N/A], 1000, 81559, 40, 100.00, 700.00')?.state,
    ).toBeUndefined();
    expect(parseGpuLine('0, GPU-abc12345-0000, NVIDIA GB10, 3, [N/A], [N/A], 40, 10.00, [N/A]')?.state).toBeUndefined();
  });

  it('nvidia-smi exiting non-zero for the lost GPU: the sample keeps the others, no error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-lost-'));
    dirs.push(dir);
    const out = path.join(dir, 'out.txt');
    fs.writeFileSync(out, read('gpu-lost-others-printed-rebuilt.txt'));
    // What a driver does with a GPU off the bus: the rows it can print, and a non-zero exit (15).
    fs.writeFileSync(
      path.join(dir, 'nvidia-smi'),
      `#!/bin/sh\ncase "$*" in *query-gpu*) cat '${out}'; exit 15;; *) exit 0;; esac\n`,
      { mode: 0o755 },
    );
    const s = await sampleOnce({ env: { PATH: `${dir}:/usr/bin:/bin` }, timeoutMs: 3000 });
    expect(s.error).toBeNull();
    expect(s.gpus.map((g) => g.state ?? 'ok')).toEqual(['ok', 'lost', 'ok', 'ok']);
  });
});

describe('what the operator sees of a lost GPU', () => {
  const lost = parseGpuLines(read('gpu-lost-others-printed-rebuilt.txt'));
  const sample: GpuSample = {
    at: 0,
    vendor: 'nvidia',
    gpus: lost,
    processes: [],
    processes_at: 0,
    error: null,
    interval_ms: 2000,
  };
  const view = attributeGpus(sample, [], {
    procs: { stat: () => undefined, cmdline: () => undefined },
    nsPids: () => [],
  });

  it('gpus --json: state and state_detail on every GPU, a warning on the lost one', () => {
    expect(view.gpus.map((g) => g.state)).toEqual(['ok', 'lost', 'ok', 'ok']);
    expect(view.gpus[0]?.state_detail).toBeNull();
    expect(view.gpus[1]?.warnings).toEqual([
      'GPU 1 is lost (nvidia-smi: unable to determine the device handle for 0000:34:00.0: Unknown Error)',
    ]);
    expect(gpuLines(view.gpus, 100)[1]).toMatch(/^GPU 1 {2}LOST {2}! GPU 1 is lost/);
  });

  it('an instance pinned to it, or unpinned on a GPU backend, is warned; others are not', () => {
    const facts = (backend: string, devices: Array<number | string>) =>
      instanceGpuFacts(view, { name: 'a', running: true, backend, devices }, null).warnings;
    expect(facts('cuda', [1])).toEqual([
      'GPU 1 is lost (the instance is pinned to it): nvidia-smi: unable to determine the device handle for 0000:34:00.0: Unknown Error',
    ]);
    expect(facts('cuda', [])[0]).toMatch(/^GPU 1 is lost: /);
    expect(facts('cuda', [0])).toEqual([]);
    expect(facts('cpu', [])).toEqual([]);
  });
});

describe('a new server is listed without waiting for the slow cadence', () => {
  const at = (t: number, pids: number[]): GpuSample => ({
    at: t,
    vendor: 'nvidia',
    gpus: [],
    processes: pids.map((pid) => ({ pid, gpu_uuid: null, gpu_index: 0, memory_bytes: 1, name: null })),
    processes_at: t,
    error: null,
    interval_ms: 2000,
  });

  it('due while a running server is missing from the listing, for a minute at most', () => {
    const u = new UnlistedServers();
    expect(u.due(at(0, []), [])).toBe(false);
    expect(u.due(at(1000, []), [{ pid: 5514 }])).toBe(true); // just started, not listed yet
    expect(u.due(at(3000, [5514]), [{ pid: 5514 }])).toBe(false); // listed: the usual cadence
    expect(u.due(at(5000, []), [{ pid: 7000 }])).toBe(true);
    expect(u.due(at(65_001, []), [{ pid: 7000 }])).toBe(false); // a CPU server never holds GPU memory
  });
});

describe('MIG devices, devices of their own', () => {
  it('nvidia-smi -L on a real H200 in MIG mode: five devices, their profiles and memory', () => {
    const list = parseList(read('capture-h200-mig-590.48.01-list.txt'));
    expect(list.mig.map((m) => [m.device, m.profile, m.memory_gb])).toEqual([
      [0, '1c.3g.71gb', 71],
      [1, '2c.3g.71gb', 71],
      [2, '2g.35gb', 35],
      [3, '1g.18gb', 18],
      [4, '1g.18gb', 18],
    ]);
    expect(list.mig[0]).toMatchObject({ gpu: 0, uuid: 'MIG-00000000-0000-0000-0000-000000000000' });
  });

  it('a GPU that reads like MIG mode ([N/A] utilisation) gets its MIG devices in gpus --json', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-mig-'));
    dirs.push(dir);
    const list = path.join(dir, 'list.txt');
    fs.writeFileSync(list, read('capture-h200-mig-590.48.01-list.txt'));
    // The H200 MIG capture's readings in the project's field order (its query-gpu section).
    const row = '0, GPU-00000000-0000-0000-0000-000000000000, NVIDIA H200, [N/A], 16959, 143771, 36, 295.01, 700.00';
    fs.writeFileSync(
      path.join(dir, 'nvidia-smi'),
      `#!/bin/sh\ncase "$*" in *query-gpu*) echo '${row}';; -L) cat '${list}';; *) exit 0;; esac\n`,
      { mode: 0o755 },
    );
    const s = await sampleOnce({ env: { PATH: `${dir}:/usr/bin:/bin` }, timeoutMs: 3000 });
    expect(s.mig).toHaveLength(5);
    const view = attributeGpus(s, [], { procs: { stat: () => undefined, cmdline: () => undefined }, nsPids: () => [] });
    expect(view.gpus[0]?.mig_devices[2]).toEqual({
      device: 2,
      uuid: 'MIG-00000002-0000-0000-0000-000000000002',
      profile: '2g.35gb',
      memory_gb: 35,
    });
  });
});

describe("the daemon's sampler with a lost GPU", () => {
  it('reads one-shot at the interval (the loop would exit): every sample has the lost GPU, no error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-lost-loop-'));
    dirs.push(dir);
    const out = path.join(dir, 'out.txt');
    fs.writeFileSync(out, read('gpu-fell-off-bus-smi.txt'));
    const calls = path.join(dir, 'calls');
    fs.writeFileSync(
      path.join(dir, 'nvidia-smi'),
      `#!/bin/sh\necho "$*" >> '${calls}'\ncase "$*" in *query-gpu*) cat '${out}'; exit 15;; *) exit 0;; esac\n`,
      { mode: 0o755 },
    );
    const samples: GpuSample[] = [];
    const stop = new AbortController();
    const sampler = new GpuSampler({
      env: { PATH: `${dir}:/usr/bin:/bin` },
      intervalMs: 100,
      processesMs: 10_000,
      timeoutMs: 2000,
      wait: abortableSleep,
      onSample: (s) => samples.push(s),
    });
    const running = sampler.run(stop.signal);
    await new Promise((r) => setTimeout(r, 700));
    stop.abort();
    await running;
    expect(samples.length).toBeGreaterThanOrEqual(3);
    expect(samples.every((s) => s.error === null && s.gpus[0]?.state === 'lost')).toBe(true);
    expect(fs.readFileSync(calls, 'utf8')).not.toContain('-lms');
  });
});
