// kill -9 of a real llama-server -> exit recorded in SQLite by its keeper (the event's timestamp).
import path from 'node:path';
import Database from 'better-sqlite3';
import { addInstance, cli, fmt, makeRealHome, sleep, stats } from './lib.mjs';
import fs from 'node:fs';

const KILLS = Number(process.env.KILLS ?? 20);

export async function run() {
  const { root, bin } = await makeRealHome('bench-crash-');
  addInstance(root, 'victim', {
    model: { path: 'models/tiny.gguf', context_size: 256 },
    server: { binary: bin, port: 23300 },
    healthcheck: { interval: 1, start_period: 10 },
    restart: { initial_delay: 0.2, jitter: 0, max_retries: 1000, multiplier: 1 },
  });
  cli(root, ['up', 'victim', '--wait', '30']);
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  const pidOf = () => db.prepare(`SELECT pid FROM runtime WHERE name = 'victim'`).get().pid;
  const latencies = [];
  for (let k = 0; k < KILLS; k++) {
    let pid = pidOf();
    while (!pid) {
      await sleep(20);
      pid = pidOf();
    }
    await sleep(300);
    const lastId = db.prepare(`SELECT coalesce(max(id), 0) AS id FROM events`).get().id;
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    let ev;
    while (!ev) {
      ev = db.prepare(`SELECT ts FROM events WHERE id > ? AND event_type = 'exit' LIMIT 1`).get(lastId);
      if (!ev) await sleep(1);
    }
    latencies.push(ev.ts - t0);
    // wait for the restart
    while (pidOf() === pid || !pidOf()) await sleep(20);
  }
  db.close();
  cli(root, ['down', 'victim']);
  fs.rmSync(root, { recursive: true, force: true });
  const s = stats(latencies);
  return {
    name: 'kill -9 -> exit recorded',
    lines: [
      `${KILLS} kills of a real llama-server: p50 ${fmt(s.p50, 0)} ms, p95 ${fmt(s.p95, 0)} ms, max ${fmt(s.max, 0)} ms (target p50 <= 100 ms). Resolution 1 ms (Date.now in the keeper).`,
    ],
    raw: s,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
