// `daemon stop` with 10 instances whose /health hangs: time to return, over 20 start/stop cycles,
// and whether every instance kept its pid.
import fs from 'node:fs';
import { CLI, addInstance, cli, fakeInstance, fmt, makeHome, stats, timeCmd } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 20);

export async function run() {
  const root = makeHome('bench-daemon-');
  for (let i = 0; i < 10; i++) {
    addInstance(root, `hang-${i}`, {
      ...fakeInstance(23900 + i, { FAKE_HANG_HEALTH: '1' }),
      healthcheck: { interval: 1, timeout: 3, retries: 1000, start_period: 0 },
    });
  }
  cli(root, ['up', '--all']);
  const pidsBefore = JSON.parse(cli(root, ['ps', '--json'])).map((r) => r.pid);
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    cli(root, ['daemon', 'start', '--interval', '1']);
    await new Promise((res) => setTimeout(res, 1500));
    times.push(timeCmd('node', [CLI, 'daemon', 'stop', '--home', root]));
  }
  const pidsAfter = JSON.parse(cli(root, ['ps', '--json'])).map((r) => r.pid);
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  const s = stats(times);
  const within = times.filter((t) => t <= 5000).length;
  const kept = pidsBefore.every((p, i) => p !== null && p === pidsAfter[i]);
  const sorted = [...times].sort((a, b) => a - b).map((t) => Math.round(t));
  return {
    name: 'daemon stop with hanging health',
    lines: [
      `10 instances whose /health never answers, ${RUNS} start/stop cycles: \`daemon stop\` returned in <= 5 s in ${within} of ${RUNS}; p50 ${fmt(s.p50, 0)} ms, p95 ${fmt(s.p95, 0)} ms, max ${fmt(s.max, 0)} ms. Every instance kept its pid: ${kept ? 'yes' : 'NO'}.`,
      '',
      `All times (ms, sorted): ${sorted.join(', ')}`,
    ],
    raw: s,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
