// Resident memory of a keeper supervising a real llama-server (healthy, probed every second), after
// warm-up and after 10 restarts.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { addInstance, cli, fmt, makeRealHome, rssMiB, sleep, stats } from './lib.mjs';

export async function run() {
  const { root, bin } = await makeRealHome('bench-rss-');
  const samples = [];
  for (let i = 0; i < 3; i++) {
    addInstance(root, `k${i}`, {
      model: { path: 'models/tiny.gguf', context_size: 256 },
      server: { binary: bin, port: 23600 + i },
      healthcheck: { interval: 1, start_period: 10 },
      restart: { initial_delay: 0.1, multiplier: 1, jitter: 0, max_retries: 100 },
    });
  }
  cli(root, ['up', '--all', '--wait', '30']);
  await sleep(10_000);
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  const rows = () => db.prepare(`SELECT name, keeper_pid, pid FROM runtime ORDER BY name`).all();
  const warm = rows().map((r) => rssMiB(r.keeper_pid));
  for (let k = 0; k < 10; k++) {
    for (const r of rows()) if (r.pid) process.kill(r.pid, 'SIGKILL');
    await sleep(1500);
  }
  await sleep(3000);
  const after = rows().map((r) => rssMiB(r.keeper_pid));
  samples.push(...warm);
  db.close();
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  const w = stats(warm);
  const a = stats(after);
  return {
    name: 'keeper RSS',
    lines: [
      `3 keepers of real llama-servers: RSS after 10 s healthy p50 ${fmt(w.p50, 1)} MiB (max ${fmt(w.max, 1)}); after 10 kill -9 restarts each p50 ${fmt(a.p50, 1)} MiB (max ${fmt(a.max, 1)}). Target <= 60 MB.`,
    ],
    raw: { warm: w, after: a },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
