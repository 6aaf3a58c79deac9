// What one dashboard frame costs, apart from everything else the dashboard does, with the stock Ink
// and with the bundle's patched Ink (scripts/ink-patches.mjs): bench/dashboard-frame-run.mjs bundled
// both ways as scripts/bundle.mjs bundles the CLI (production React), then RUNS alternating runs of
// each in a fresh process. The frames are the idle dashboard's while uptimes print seconds: every
// tick a new frame that differs from the last in the uptimes and the clock.
// Usage: [FRAMES=300] [RUNS=5] [COLS=140] [ROWS=40] [LOG=1] [GAP_MS=2] node bench/dashboard-frame.mjs
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
import { standaloneBundle } from '../scripts/ink-patches.mjs';
import { REPO, fmt, machine, stats } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 5);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-frame-'));
const variants = { stock: [], patched: [] };
for (const name of Object.keys(variants))
  await build(
    standaloneBundle({
      root: REPO,
      entry: 'bench/dashboard-frame-run.mjs',
      outdir: path.join(dir, name),
      patched: name === 'patched',
    }),
  );
const env = { ...process.env, REPO };
delete env.NODE_EXTRA_CA_CERTS;
for (let r = 0; r < RUNS; r++)
  for (const name of r % 2 ? ['patched', 'stock'] : ['stock', 'patched']) {
    const out = execFileSync(process.execPath, ['--expose-gc', path.join(dir, name, 'main.mjs')], {
      env,
      encoding: 'utf8',
    });
    variants[name].push(JSON.parse(out.trim().split('\n').at(-1)));
  }
fs.rmSync(dir, { recursive: true, force: true });
console.log(machine());
const cols = process.env.COLS ?? 140;
const rows = process.env.ROWS ?? 40;
for (const [name, runs] of Object.entries(variants)) {
  const cpu = stats(runs.map((r) => r.cpuMs));
  const ink = stats(runs.map((r) => r.inkMs));
  console.log(
    `${name.padEnd(7)} ${cols}x${rows}, ${process.env.FRAMES ?? 300} frames x ${RUNS} runs${process.env.LOG ? ', a log line a frame' : ''}: ` +
      `CPU per frame p50 ${fmt(cpu.p50, 2)} ms (max ${fmt(cpu.max, 2)}), Ink render p50 ${fmt(ink.p50, 2)} ms, ` +
      `${Math.round(runs[0].bytes)} bytes a frame, live heap growth ${runs.map((r) => fmt(r.heapGrowth, 2)).join('/')} MiB`,
  );
}
