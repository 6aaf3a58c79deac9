// Dashboard CPU and RSS while idle, with 16 running instances (fake servers probed every 5 s by their
// keepers, as with default settings), measured from /proc over a 30 s window in a real tmux terminal.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { CLI, addInstance, cli, cpuTicks, fakeInstance, fmt, makeHome, rssMiB, sleep, stats } from './lib.mjs';

const N = 16;
const WINDOW_S = Number(process.env.WINDOW_S ?? 30);
const RUNS = Number(process.env.RUNS ?? 3);
const SESSION = `bench-dash-${process.pid}`;

export async function run() {
  const root = makeHome('bench-dash-');
  for (let i = 0; i < N; i++)
    addInstance(root, `inst-${String(i).padStart(2, '0')}`, {
      ...fakeInstance(23500 + i),
      healthcheck: { interval: 5, timeout: 3, start_period: 5 },
    });
  cli(root, ['up', '--all', '--wait', '30']);
  const cpu = [];
  const rss = [];
  for (let r = 0; r < RUNS; r++) {
    execFileSync('tmux', ['new-session', '-d', '-s', SESSION, '-x', '140', '-y', '40', `node ${CLI} --home ${root}`]);
    // Start-up is not idle: module compilation, the first log reads and JIT warm-up take a few
    // seconds of CPU. WARMUP_S=4 reproduces the first published figure.
    await sleep(Number(process.env.WARMUP_S ?? 15) * 1000);
    const pid = Number(
      execFileSync('tmux', ['list-panes', '-t', SESSION, '-F', '#{pane_pid}'], { encoding: 'utf8' }).trim(),
    );
    const t0 = cpuTicks(pid);
    await sleep(WINDOW_S * 1000);
    const ticks = cpuTicks(pid) - t0;
    cpu.push((ticks / 100 / WINDOW_S) * 100);
    rss.push(rssMiB(pid));
    const rows = execFileSync('tmux', ['capture-pane', '-p', '-t', SESSION], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => /inst-\d\d\s+running\s+ok/.test(l)).length;
    if (rows !== N) console.error(`warning: only ${rows} rows showed running ok`);
    execFileSync('tmux', ['send-keys', '-t', SESSION, 'q']);
    await sleep(500);
    try {
      execFileSync('tmux', ['kill-session', '-t', SESSION], { stdio: 'ignore' });
    } catch {
      // exited on q
    }
  }
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  const c = stats(cpu);
  const m = stats(rss);
  return {
    name: 'dashboard idle',
    lines: [
      `${N} running instances, ${RUNS} runs of a ${WINDOW_S} s window after ${process.env.WARMUP_S ?? 15} s of warm-up (tmux 140x40, default 5 s health interval): CPU p50 ${fmt(c.p50, 2)}% of one core (max ${fmt(c.max, 2)}%, target <= 2%), RSS p50 ${fmt(m.p50, 1)} MiB.`,
    ],
    raw: { cpu: c, rss: m },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
