// kill -9 of the keeper of a healthy real llama-server, then `llama-orch up`: how long until the new
// keeper has re-attached (the command returns then), and whether the server and its logs survived
// (same pid, never reloaded, the next request's log lines in stderr.log).
import fs from 'node:fs';
import path from 'node:path';
import { CLI, addInstance, cli, fmt, makeRealHome, sleep, stats, timeCmd } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 10);
const PORT = 23400;

async function complete() {
  const r = await fetch(`http://127.0.0.1:${PORT}/completion`, {
    method: 'POST',
    body: JSON.stringify({ prompt: 'hello', n_predict: 2 }),
  });
  return r.status;
}

export async function run() {
  const { root, bin } = await makeRealHome('bench-adopt-');
  addInstance(root, 'kept', {
    model: { path: 'models/tiny.gguf', context_size: 256 },
    server: { binary: bin, port: PORT },
    healthcheck: { interval: 1, start_period: 10 },
  });
  const stderrLog = path.join(root, 'logs', 'kept', 'stderr.log');
  const times = [];
  let samePid = 0;
  let logsResumed = 0;
  let served = 0;
  try {
    cli(root, ['up', 'kept', '--wait', '30']);
    const first = JSON.parse(cli(root, ['ps', '--json']))[0];
    for (let r = 0; r < RUNS; r++) {
      const row = JSON.parse(cli(root, ['ps', '--json']))[0];
      process.kill(row.keeper_pid, 'SIGKILL');
      await sleep(200);
      if ((await complete()) === 200) served++; // while nobody reads its logs
      times.push(timeCmd('node', [CLI, 'up', 'kept', '--home', root]));
      const after = JSON.parse(cli(root, ['ps', '--json']))[0];
      if (after.pid === first.pid && after.state === 'running') samePid++;
      const before = fs.statSync(stderrLog).size;
      await complete();
      for (let t = 0; t < 100; t++) {
        const fd = fs.openSync(stderrLog, 'r');
        const buf = Buffer.alloc(Math.max(0, fs.fstatSync(fd).size - before));
        fs.readSync(fd, buf, 0, buf.length, before);
        fs.closeSync(fd);
        if (/release|print_timing/.test(buf.toString())) {
          logsResumed++;
          break;
        }
        await sleep(20);
      }
    }
    const spawns = JSON.parse(cli(root, ['events', 'kept', '--json', '-n', '500'])).filter(
      (e) => e.event_type === 'spawn',
    ).length;
    const s = stats(times);
    return {
      name: 're-attach after kill -9 of the keeper',
      lines: [
        `${RUNS} kill -9 of the keeper of a healthy real llama-server, each followed by \`llama-orch up\`: the command took p50 ${fmt(s.p50, 0)} ms, p95 ${fmt(s.p95, 0)} ms, max ${fmt(s.max, 0)} ms (it returns once the new keeper has re-attached).`,
        `Served while no keeper ran: ${served}/${RUNS}. Same server pid afterwards: ${samePid}/${RUNS}; spawns in total: ${spawns} (1 = never reloaded). Log lines of the next request in stderr.log: ${logsResumed}/${RUNS}.`,
      ],
      raw: { s, samePid, logsResumed, served, spawns },
    };
  } finally {
    cli(root, ['down', 'kept']);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
