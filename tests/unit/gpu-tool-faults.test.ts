// The GPU tool's output is bounded (issue #26, item 7): a loop printing without newlines, figures no
// GPU can report, a tool whose child holds its stdout or hangs, and the failure line that is shown.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { GpuSample } from '../../src/domain/gpu.js';
import { nvidiaFailure } from '../../src/platform/gpu/nvidia.js';
import { GpuSampler, sampleOnce } from '../../src/platform/gpu/sampler.js';
import { abortableSleep } from '../../src/platform/sleep.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A directory with an executable `nvidia-smi` running `body` (sh). */
function fakeSmi(body: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orch-smi-'));
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, 'nvidia-smi'), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return { dir, env: { PATH: `${dir}:/usr/bin:/bin` } };
}

const ROW = '0, GPU-aaaaaaaa-0000, NVIDIA H200, 40, 4569, 143771, 40, 121.75, 700.00';
/** Running (a zombie waiting for a reaper that never comes, in a container, is not). */
const alive = (pid: number) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

describe("the GPU tool's output is bounded", () => {
  it('a loop that prints without newlines is ended at 4 MiB as a tool fault, and started again', async () => {
    const { env } = fakeSmi(
      `case "$*" in *-lms*) head -c 6000000 /dev/zero | tr '\\\\0' x; sleep 30;; *query-gpu*) echo '${ROW}';; esac`,
    );
    const samples: GpuSample[] = [];
    const stop = new AbortController();
    const sampler = new GpuSampler({
      env,
      intervalMs: 100,
      processesMs: 60_000,
      timeoutMs: 5000,
      wait: abortableSleep,
      onSample: (s) => samples.push(s),
    });
    const running = sampler.run(stop.signal);
    await abortableSleep(2500);
    stop.abort();
    await running;
    const fault = samples.find((s) => s.error);
    expect(fault?.error).toMatch(/printed a line of over 4 MiB without a newline \(a tool fault; restarted\)/);
    // Started again after the fault: a later good reading.
    expect(samples.filter((s) => !s.error && s.gpus.length === 1).length).toBeGreaterThanOrEqual(2);
  });

  it('figures no GPU can report are unknown', async () => {
    const { env } = fakeSmi(`echo '0, GPU-aaaaaaaa-0000, NVIDIA H200, 150, -5, 0, 999, -1, 0'`);
    const s = await sampleOnce({ env, timeoutMs: 3000 });
    expect(s.gpus[0]).toMatchObject({
      utilization_pct: null,
      memory_used_bytes: null,
      memory_total_bytes: null,
      temperature_c: null,
      power_w: null,
      power_limit_w: null,
    });
    const sane = await sampleOnce({ env: fakeSmi(`echo '${ROW}'`).env, timeoutMs: 3000 });
    expect(sane.gpus[0]).toMatchObject({ utilization_pct: 40, temperature_c: 40, power_limit_w: 700 });
  });

  it('a tool that exits while a child of its own holds its output: read at once, the child ended', async () => {
    const { dir, env } = fakeSmi(`echo '${ROW}'; sleep 30 & echo $! > "$(dirname "$0")/child.pid"; exit 0`);
    const t0 = Date.now();
    const s = await sampleOnce({ env, timeoutMs: 5000 });
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(s.error).toBeNull();
    expect(s.gpus).toHaveLength(1);
    const child = Number(fs.readFileSync(path.join(dir, 'child.pid'), 'utf8'));
    await abortableSleep(200);
    expect(alive(child)).toBe(false);
  });

  it('a tool that hangs is killed at the deadline with everything it started', async () => {
    const { dir, env } = fakeSmi(`sleep 30 & echo $! > "$(dirname "$0")/child.pid"; sleep 30`);
    const s = await sampleOnce({ env, timeoutMs: 500 });
    expect(s.error).toMatch(/did not answer within 0.5 s \(killed\)/);
    const child = Number(fs.readFileSync(path.join(dir, 'child.pid'), 'utf8'));
    await abortableSleep(200);
    expect(alive(child)).toBe(false);
  });

  it("a lost GPU's failure shows the error line, not a healthy GPU's row printed before it", () => {
    const out = `${ROW}\nUnable to determine the device handle for GPU1: 0000:34:00.0: Unknown Error\n`;
    expect(nvidiaFailure(out, '')).toBe('Unable to determine the device handle for GPU1: 0000:34:00.0: Unknown Error');
    expect(nvidiaFailure(`${ROW}\nsomething else went wrong\n`, '')).toBe('something else went wrong');
  });
});
