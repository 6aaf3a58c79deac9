// Keeper memory under accelerated churn (#16): does a keeper's memory level off, and does it grow with
// restarts or with time (probes, scrapes, log lines)? Two keepers of real llama-servers side by side:
//   churn:  its server is kill -9'd as soon as it has been healthy for ~1.5 s, restarted at once
//           (hundreds of restarts in the time the hour-long soak makes 20);
//   steady: never killed, probed 10 times a second with metrics scraped on the same cadence.
// Both get a completion every 200 ms while up. Private memory (smaps_rollup Private_Dirty) is sampled
// every 30 s; with GC=1 the keepers run under --expose-gc and log their live heap (after a full
// collection) every MEMLOG_S seconds. CHURN_S sets the length (default 20 minutes).
// Traffic only goes to 127.0.0.1; every loop is bounded in count and time.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import {
  addInstance,
  cli,
  fmt,
  makeRealHome,
  keeperMemoryLines,
  openFiles,
  privateMiB,
  rssMiB,
  sleep,
} from './lib.mjs';

const CHURN_S = Number(process.env.CHURN_S ?? 1200);
const MEMLOG_S = Number(process.env.MEMLOG_S ?? 120);
const GC = process.env.GC === '1';

export async function run() {
  const { root, bin } = await makeRealHome('bench-churn-');
  const base = { model: { path: 'models/tiny.gguf', context_size: 256 }, metrics: true };
  addInstance(root, 'churn', {
    ...base,
    server: { binary: bin, port: 23750 },
    healthcheck: { interval: 0.2, start_period: 10 },
    restart: { initial_delay: 0.1, multiplier: 1, jitter: 0, min_uptime: 1, max_retries: 1000 },
  });
  addInstance(root, 'steady', {
    ...base,
    server: { binary: bin, port: 23751 },
    healthcheck: { interval: 0.1, start_period: 10 },
  });
  const env = { ...process.env, LLAMA_ORCH_MEMORY_LOG_S: String(MEMLOG_S) };
  if (GC) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --expose-gc`.trim();
  // SNAP=DIR: V8 heap snapshots of the churn keeper after 60 s and at the end land in DIR.
  const snapDir = process.env.SNAP;
  if (snapDir) {
    fs.mkdirSync(snapDir, { recursive: true });
    env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapDir}`.trim();
  }
  cli(root, ['up', '--all', '--wait', '60'], { env });
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  const rows = () =>
    db.prepare(`SELECT name, status, health, keeper_pid, pid, restarts_total FROM runtime ORDER BY name`).all();
  const keepers = rows().map((r) => r.keeper_pid); // [churn, steady]
  const samples = [];
  const sample = (t) =>
    samples.push({
      t,
      priv: keepers.map(privateMiB),
      rss: keepers.map(rssMiB),
      fds: keepers.map(openFiles),
      restarts: rows()[0].restarts_total,
    });
  sample(0);

  const started = Date.now();
  const deadline = started + CHURN_S * 1000;
  let stop = false;
  let requests = 0;
  const traffic = [23750, 23751].map(async (port) => {
    while (!stop && Date.now() < deadline) {
      requests++;
      try {
        const r = await fetch(`http://127.0.0.1:${port}/completion`, {
          method: 'POST',
          body: JSON.stringify({ prompt: 'churn', n_predict: 2 }),
          signal: AbortSignal.timeout(2000),
        });
        await r.arrayBuffer();
      } catch {
        // being restarted
      }
      await sleep(200);
    }
  });
  let kills = 0;
  let healthySince = 0;
  let nextSample = started + 30_000;
  let snapped = !snapDir;
  while (Date.now() < deadline) {
    if (!snapped && Date.now() - started >= 60_000) {
      process.kill(keepers[0], 'SIGUSR2');
      snapped = true;
    }
    await sleep(100);
    const churn = rows()[0];
    if (churn.status === 'running' && churn.health === 'ok' && churn.pid) {
      healthySince ||= Date.now();
      if (Date.now() - healthySince >= 1500) {
        try {
          process.kill(churn.pid, 'SIGKILL');
          kills++;
        } catch {
          // exited meanwhile
        }
        healthySince = 0;
      }
    } else healthySince = 0;
    if (Date.now() >= nextSample) {
      sample(Math.round((Date.now() - started) / 1000));
      nextSample += 30_000;
    }
  }
  stop = true;
  await Promise.all(traffic);
  await sleep(3000);
  if (snapDir) {
    process.kill(keepers[0], 'SIGUSR2');
    await sleep(5000); // writing a snapshot takes a moment
  }
  sample(Math.round((Date.now() - started) / 1000));
  const end = rows();
  db.close();
  const memoryLines = keeperMemoryLines(
    root,
    end.map((r) => r.name),
  );
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  return {
    name: 'keeper memory under churn',
    lines: [
      `${CHURN_S} s; churn: ${kills} kill -9s, restarts ${end[0].restarts_total}, ends ${end[0].status}; steady: ends ${end[1].status}, probed every 0.1 s with metrics; ${requests} requests; same keepers: ${end.every((r, i) => r.keeper_pid === keepers[i]) ? 'yes' : 'no'}.`,
      `Samples (s: restarts, private MiB churn/steady, RSS MiB churn/steady, fds churn/steady):`,
      ...samples.map(
        (s) =>
          `  ${s.t}: ${s.restarts}, ${fmt(s.priv[0])}/${fmt(s.priv[1])}, ${fmt(s.rss[0])}/${fmt(s.rss[1])}, ${s.fds.join('/')}`,
      ),
      `What the keepers logged of their memory${GC ? ' (after a full gc)' : ''}:`,
      ...memoryLines,
    ],
    raw: { kills, samples },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
