// Soak: 4 real llama-servers under steady traffic, one of them kill -9'd at random every 45 s, for
// 15 minutes (SOAK_S to change it). Each server therefore crashes about every 3 minutes and is
// healthy in between: sporadic crashes, not a crash loop. With the default restart policy (min_uptime
// 30 s) no instance may be abandoned; keeper RSS and open files must stay flat.
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

const SOAK_S = Number(process.env.SOAK_S ?? 900);
const KILL_EVERY_S = Number(process.env.KILL_EVERY_S ?? 45);
const N = 4;

export async function run() {
  const { root, bin } = await makeRealHome('bench-soak-');
  const ports = Array.from({ length: N }, (_, i) => 23700 + i);
  ports.forEach((port, i) =>
    addInstance(root, `s${i}`, {
      model: { path: 'models/tiny.gguf', context_size: 256 },
      server: { binary: bin, port },
      healthcheck: { interval: 1, start_period: 10 },
      // The defaults of the restart policy: max_retries 5, min_uptime 30 s, reset_after 300 s.
    }),
  );
  // The keepers log their own view of their memory (V8 heap, external) every 5 minutes (MEMLOG_S).
  // GC=1: keepers run under --expose-gc, and their lines give the live heap (after a full collection).
  const env = { ...process.env, LLAMA_ORCH_MEMORY_LOG_S: process.env.MEMLOG_S ?? '300' };
  if (process.env.GC === '1') env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --expose-gc`.trim();
  cli(root, ['up', '--all', '--wait', '60'], { env });
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  const rows = () =>
    db.prepare(`SELECT name, status, keeper_pid, pid, restarts_total FROM runtime ORDER BY name`).all();
  const keepers = rows().map((r) => r.keeper_pid);
  const samples = []; // { t, rss[], fds[] }
  const sample = (t) =>
    samples.push({ t, rss: keepers.map(rssMiB), priv: keepers.map(privateMiB), fds: keepers.map(openFiles) });
  sample(0);

  const started = Date.now();
  const deadline = started + SOAK_S * 1000;
  let requests = 0;
  let answered = 0;
  let kills = 0;
  let stop = false;
  // Steady traffic: each server gets a short completion about once a second.
  const traffic = ports.map(async (port) => {
    while (!stop && Date.now() < deadline) {
      requests++;
      try {
        const r = await fetch(`http://127.0.0.1:${port}/completion`, {
          method: 'POST',
          body: JSON.stringify({ prompt: 'soak', n_predict: 4 }),
          signal: AbortSignal.timeout(5000),
        });
        if (r.ok) answered++;
        await r.arrayBuffer();
      } catch {
        // the server is being restarted
      }
      await sleep(1000);
    }
  });
  let nextKill = Date.now() + KILL_EVERY_S * 1000;
  let nextSample = Date.now() + 30_000;
  while (Date.now() < deadline) {
    await sleep(500);
    if (Date.now() >= nextKill) {
      const live = rows().filter((r) => r.pid);
      const victim = live[Math.floor(Math.random() * live.length)];
      if (victim) {
        try {
          process.kill(victim.pid, 'SIGKILL');
          kills++;
        } catch {
          // exited meanwhile
        }
      }
      nextKill += KILL_EVERY_S * 1000;
    }
    if (Date.now() >= nextSample) {
      sample(Math.round((Date.now() - started) / 1000));
      nextSample += 30_000;
    }
  }
  stop = true;
  await Promise.all(traffic);
  await sleep(5000); // the last restart settles
  sample(Math.round((Date.now() - started) / 1000));
  const end = rows();
  db.close();
  const memoryLines = keeperMemoryLines(
    root,
    end.map((r) => r.name),
  );
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });

  const abandoned = end.filter((r) => r.status === 'failed').length;
  const sameKeepers = end.every((r, i) => r.keeper_pid === keepers[i]);
  const first = samples[1] ?? samples[0];
  const last = samples[samples.length - 1];
  const avg = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    name: 'soak: sporadic crashes',
    lines: [
      `${N} real llama-servers for ${SOAK_S} s, steady traffic (one completion per server per second), a random server kill -9'd every ${KILL_EVERY_S} s (${kills} kills).`,
      `Abandoned (failed) at the end: ${abandoned} of ${N}; states: ${end.map((r) => `${r.name} ${r.status}`).join(', ')}; restarts: ${end.map((r) => r.restarts_total).join(', ')}; the same keepers throughout: ${sameKeepers ? 'yes' : 'no'}.`,
      `Requests answered: ${answered} of ${requests} (${fmt((100 * answered) / Math.max(1, requests), 1)}%).`,
      `Keeper memory (mean of ${N}) at 30 s: RSS ${fmt(avg(first.rss))} MiB, private ${fmt(avg(first.priv))} MiB; at the end: RSS ${fmt(avg(last.rss))} MiB, private ${fmt(avg(last.priv))} MiB. Open files per keeper at 30 s ${first.fds.join('/')}, at the end ${last.fds.join('/')}.`,
      `Samples (s: mean RSS MiB / mean private MiB, fds): ${samples.map((s) => `${s.t}: ${fmt(avg(s.rss))}/${fmt(avg(s.priv))}, ${s.fds.join('/')}`).join('; ')}.`,
      `What each keeper logged of its memory every ${process.env.MEMLOG_S ?? 300} s${process.env.GC === '1' ? ' after a full gc' : ''} (keeper.log):`,
      ...memoryLines,
    ],
    raw: { abandoned, kills, requests, answered, samples },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
