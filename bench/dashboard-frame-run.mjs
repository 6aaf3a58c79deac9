// One run of bench/dashboard-frame.mjs, bundled by it with or without scripts/ink-patches.mjs (as
// the CLI's bundle is): the App drawn by Ink into an in-memory terminal, 16 instances, a 2-GPU panel
// and a log pane of the real llama-server's stderr, then FRAMES new states that differ only in
// uptimes and the clock. Prints one JSON line: CPU ms per frame (React and Ink together, from
// process.cpuUsage), Ink's render time (its onRender hook), bytes per frame, and the live heap's
// growth under --expose-gc. PROF=DIR writes a CPU profile; LOG=1 adds a log line every frame.
import fs from 'node:fs';
import path from 'node:path';
import { Session } from 'node:inspector/promises';
import React from 'react';
import { render } from 'ink';
import { App } from '../components/App.js';
import { snapshotFixture } from '../tests/helpers/snapshot.js';
import { FakeTerminal, fakeStdin } from '../tests/helpers/ink-terminal.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stderr = fs
  .readFileSync(path.join(process.env.REPO, 'tests/fixtures/gpu/cpu-load.txt'), 'utf8')
  .split('\n')
  .filter(Boolean);
const FRAMES = Number(process.env.FRAMES ?? 300);
const COLS = Number(process.env.COLS ?? 140);
const ROWS = Number(process.env.ROWS ?? 40);
const GiB = 1024 ** 3;
// The wait after each new state; with LOG=1, 110 ms lets every frame's line reach the pane (the log
// tail flushes every 100 ms).
const GAP_MS = Number(process.env.GAP_MS ?? 2);

function instance(i, t0) {
  return snapshotFixture(`inst-${String(i).padStart(2, '0')}`, {
    health_latency_ms: 2,
    pid: 40000 + i,
    keeper_pid: 39000 + i,
    port: 23500 + i,
    backend: 'cuda',
    gpus: [String(i % 2)],
    model: `qwen2.5-7b-instruct-q4_k_m-${i}`,
    model_path: `/models/qwen2.5-7b-instruct-q4_k_m-${i}.gguf`,
    started_at: t0 - 30_000 - i * 700,
    uptime_s: 30 + i,
    vram_bytes: (700 + i) * 1024 ** 2,
    offload: { layers: 29, total: 29 },
    on_gpus: [String(i % 2)],
    tokens_per_s: null,
    prompt_tokens_per_s: null,
    slots_busy: 0,
    requests_processing: 0,
  });
}

function gpu(i, instances) {
  return {
    index: i,
    uuid: `GPU-0000000${i}-aaaa-bbbb-cccc-0123456789ab`,
    name: 'NVIDIA GeForce RTX 4090',
    utilization_pct: 37,
    memory_used_bytes: 9000 * 1024 ** 2,
    memory_total_bytes: 24 * GiB,
    temperature_c: 61,
    power_w: 210.4,
    power_limit_w: 450,
    vendor: 'nvidia',
    processes: instances
      .filter((x) => x.on_gpus[0] === String(i))
      .map((x) => ({ pid: x.pid, instance: x.name, memory_bytes: x.vram_bytes, command: 'llama-server' })),
    warnings: [],
  };
}

function makeState(now) {
  const instances = Array.from({ length: 16 }, (_, i) => instance(i, now));
  return {
    now,
    host: 'rig-01',
    home: '/srv/llama-orch',
    daemon: { running: true, pid: 1234, proxy: 'http://127.0.0.1:18180' },
    instances,
    events: [],
    error: null,
    gpus: [gpu(0, instances), gpu(1, instances)],
    gpuError: null,
    cpuOnly: false,
  };
}

async function oneRun(profile) {
  let state = makeState(Date.now());
  const listeners = new Set();
  const model = {
    subscribe: (fn) => (listeners.add(fn), () => listeners.delete(fn)),
    getSnapshot: () => state,
  };
  // LOG=1: the selected instance writes a line every frame (a server under load logs each request).
  let logLine = () => {};
  const logs = {
    follow: (_n, _s, _k, onLines) => {
      onLines(stderr.slice(-200));
      let n = 0;
      logLine = () => onLines([`srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 200 (#${n++})`]);
      return () => {};
    },
  };
  const actions = { run: async () => 'ok', describe: () => [] };
  let bytes = 0;
  const stdout = new FakeTerminal(COLS, ROWS, (s) => (bytes += Buffer.byteLength(s)));
  const inkMs = [];
  const app = render(React.createElement(App, { model, logs, actions }), {
    stdout,
    stdin: fakeStdin(),
    maxFps: 1000,
    incrementalRendering: false,
    exitOnCtrlC: false,
    patchConsole: false,
    onRender: ({ renderTime }) => inkMs.push(renderTime),
  });
  // The log tail flushes after 100 ms; warm the JIT with the same frames as measured.
  const step = () => {
    const now = state.now + 2000;
    state = { ...state, now, instances: state.instances.map((x) => ({ ...x, uptime_s: x.uptime_s + 2 })) };
    if (process.env.LOG) logLine();
    for (const fn of listeners) fn();
  };
  await sleep(300);
  for (let i = 0; i < 100; i++) {
    step();
    await sleep(2);
  }
  inkMs.length = 0;
  const bytes0 = bytes;
  let session;
  if (profile) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  // Idle gaps between frames are not counted: cpuUsage is the process's CPU, not wall time.
  const heap = () => (globalThis.gc?.(), process.memoryUsage().heapUsed / 2 ** 20);
  const heap0 = heap();
  const c0 = process.cpuUsage();
  for (let i = 0; i < FRAMES; i++) {
    step();
    await sleep(GAP_MS);
  }
  const c = process.cpuUsage(c0);
  if (session) {
    const { profile: p } = await session.post('Profiler.stop');
    fs.mkdirSync(profile, { recursive: true });
    fs.writeFileSync(path.join(profile, `frame-${Date.now()}.cpuprofile`), JSON.stringify(p));
    session.disconnect();
  }
  const heapGrowth = heap() - heap0;
  app.unmount();
  return {
    heapGrowth,
    cpuMs: (c.user + c.system) / 1000 / FRAMES,
    inkMs: p50(inkMs),
    frames: inkMs.length,
    bytes: (bytes - bytes0) / Math.max(1, inkMs.length),
  };
}

const r = await oneRun(process.env.PROF);
console.log(JSON.stringify(r));
