// The dashboard's memory over time while it follows a busy instance's log: one fake server writing a
// request line to stderr every 100 ms (the log pane gets new lines on every poll, ~2 a second) and 15
// quiet ones, the dashboard in tmux 140x40 with the log pane open on the busy one. Its private
// memory (Private_Dirty) and RSS every SAMPLE_S, for MINUTES. With the stock Ink (build with
// LLAMA_ORCH_STOCK_INK=1) every log pane ever shown stays in Ink's caches.
// Usage: [MINUTES=10] [SAMPLE_S=60] node bench/dashboard-memory.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { CLI, addInstance, cli, fakeInstance, fmt, machine, makeHome, privateMiB, rssMiB, sleep } from './lib.mjs';

const MINUTES = Number(process.env.MINUTES ?? 10);
const SAMPLE_S = Number(process.env.SAMPLE_S ?? 60);
const SESSION = `bench-dash-mem-${process.pid}`;

const root = makeHome('bench-dash-mem-');
for (let i = 0; i < 16; i++)
  addInstance(root, `inst-${String(i).padStart(2, '0')}`, {
    ...fakeInstance(23600 + i, i === 0 ? { FAKE_LOG_EVERY_MS: '100' } : {}),
    healthcheck: { interval: 5, timeout: 3, start_period: 5 },
  });
const samples = [];
let following = false;
try {
  cli(root, ['up', '--all', '--wait', '30']);
  execFileSync('tmux', ['new-session', '-d', '-s', SESSION, '-x', '140', '-y', '40', `node ${CLI} --home ${root}`]);
  await sleep(15_000);
  const pid = Number(
    execFileSync('tmux', ['list-panes', '-t', SESSION, '-F', '#{pane_pid}'], { encoding: 'utf8' }).trim(),
  );
  const t0 = Date.now();
  for (;;) {
    samples.push({ min: (Date.now() - t0) / 60_000, priv: privateMiB(pid), rss: rssMiB(pid) });
    if (Date.now() - t0 >= MINUTES * 60_000) break;
    await sleep(SAMPLE_S * 1000);
  }
  const screen = execFileSync('tmux', ['capture-pane', '-p', '-t', SESSION], { encoding: 'utf8' });
  following = /log_server_r: request/.test(screen);
} finally {
  try {
    execFileSync('tmux', ['kill-session', '-t', SESSION], { stdio: 'ignore' });
  } catch {
    // not started
  }
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
}
console.log(machine());
// Which Ink the bundle holds: the patched one calls the row cache.
const chunks = fileURLToPath(new URL('../dist/bundle/chunks/', import.meta.url));
const patched = fs
  .readdirSync(chunks)
  .some((f) => f.startsWith('dashboard-') && fs.readFileSync(path.join(chunks, f), 'utf8').includes('rowText('));
console.log(
  `${patched ? 'patched' : 'stock'} Ink; the log pane followed the busy instance: ${following ? 'yes' : 'NO'}`,
);
console.log(samples.map((s) => `${fmt(s.min, 1)} min: private ${fmt(s.priv)} MiB, rss ${fmt(s.rss)} MiB`).join('\n'));
const first = samples[1] ?? samples[0];
const last = samples.at(-1);
console.log(
  `private memory from minute ${fmt(first.min, 1)} to ${fmt(last.min, 1)}: ${fmt(first.priv)} -> ${fmt(last.priv)} MiB ` +
    `(${fmt(((last.priv - first.priv) / Math.max(0.1, last.min - first.min)) * 60, 1)} MiB an hour)`,
);
