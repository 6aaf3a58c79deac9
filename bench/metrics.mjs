// Serving metrics (#13): what a scrape costs a keeper, keeper memory with scraping on, and how far
// `llama-orch bench` is from the server's own timings on the same requests.
//
// 1. CPU per scrape, in isolation: a node process runs the keeper's ServingScraper against a real
//    llama-server SCRAPES times (after 50 for warm-up) and reads process.cpuUsage() around them.
// 2. Keepers with scraping on and off: 4 real servers each, health every 1 s (so a scrape a second),
//    keeper CPU over WINDOW_S from /proc and RSS at the end.
// 3. bench: BENCH_RUNS runs of `bench --requests 100 --concurrency 1 --max-tokens 128`; the client's
//    aggregate (tokens / wall time) against the server's (predicted_n / (prompt_ms + predicted_ms)):
//    the difference is what bench and HTTP add.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { CLI, addInstance, cli, cpuTicks, fmt, makeRealHome, rssMiB, sleep, stats } from './lib.mjs';

const WINDOW_S = Number(process.env.WINDOW_S ?? 60);
const SCRAPES = Number(process.env.SCRAPES ?? 500);
const BENCH_RUNS = Number(process.env.BENCH_RUNS ?? 5);
// Enough requests that the CLI's cold start (JIT) is a small part of a run.
const BENCH_REQUESTS = Number(process.env.BENCH_REQUESTS ?? 100);
const PROMPT_TOKENS = Number(process.env.PROMPT_TOKENS ?? 64);
const MAX_TOKENS = Number(process.env.MAX_TOKENS ?? 128);
const N = 4;

async function homeWith(metrics, basePort, threads = undefined) {
  const { root, bin } = await makeRealHome(`bench-metrics-${metrics ? 'on' : 'off'}-`);
  for (let i = 0; i < N; i++) {
    addInstance(root, `m${i}`, {
      model: { path: 'models/tiny.gguf', context_size: 256, threads },
      server: { binary: bin, port: basePort + i, parallel: 2 },
      healthcheck: { interval: 1, start_period: 10 },
      metrics,
    });
  }
  cli(root, ['up', '--all', '--wait', '30']);
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  const rows = db.prepare(`SELECT name, keeper_pid, pid FROM runtime ORDER BY name`).all();
  db.close();
  return { root, rows };
}

async function keeperCost(metrics, basePort) {
  const { root, rows } = await homeWith(metrics, basePort);
  await sleep(10_000);
  const t0 = rows.map((r) => cpuTicks(r.keeper_pid));
  await sleep(WINDOW_S * 1000);
  const ticks = rows.map((r, i) => cpuTicks(r.keeper_pid) - t0[i]);
  const rss = rows.map((r) => rssMiB(r.keeper_pid));
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  // USER_HZ is 100: a tick is 10 ms.
  const cpuPct = ticks.map((t) => ((t * 10) / (WINDOW_S * 1000)) * 100);
  return { cpu: stats(cpuPct), rss: stats(rss), ticks };
}

async function scrapeCpu(basePort) {
  const { root, rows } = await homeWith(true, basePort);
  const port = basePort;
  const script = `
    const { ServingScraper } = await import(${JSON.stringify(path.resolve('dist/src/metrics/scrape.js'))});
    const s = new ServingScraper({ host: '127.0.0.1', port: ${port} }, 3000);
    for (let i = 0; i < 50; i++) await s.scrape();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < ${SCRAPES}; i++) { const r = await s.scrape(); if (!r.ok) throw new Error(r.error); }
    const c = process.cpuUsage(c0);
    console.log(JSON.stringify({ cpuMs: (c.user + c.system) / 1000 / ${SCRAPES}, wallMs: (performance.now() - t0) / ${SCRAPES} }));
  `;
  const out = execFileSync('node', ['--input-type=module', '-e', script], { encoding: 'utf8' });
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  void rows;
  return JSON.parse(out.trim());
}

/**
 * The floor for a client: the same requests (same prompt size, stream, ignore_eos) sent one after
 * another with bare node:http from a fresh node process, as bench is one, the body read as text and
 * not parsed. Generated tokens / wall time.
 */
function rawClient(port) {
  const script = `
    const http = require('node:http');
    const words = 'the quick brown fox jumps over the lazy dog while a slow river runs past old stone walls'.split(' ');
    const filler = Array.from({ length: ${PROMPT_TOKENS} }, (_, i) => words[i % words.length]).join(' ');
    const one = (i) => new Promise((resolve, reject) => {
      const body = JSON.stringify({ model: 'm0', messages: [{ role: 'user', content: i + ' ' + filler }], max_tokens: ${MAX_TOKENS}, stream: true, ignore_eos: true, cache_prompt: false });
      const req = http.request({ host: '127.0.0.1', port: ${port}, method: 'POST', path: '/v1/chat/completions', agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.on('data', (c) => c.toString());
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end(body);
    });
    (async () => {
      const t0 = performance.now();
      for (let i = 0; i < ${BENCH_REQUESTS}; i++) await one(i);
      console.log((${BENCH_REQUESTS} * ${MAX_TOKENS} * 1000) / (performance.now() - t0));
    })();
  `;
  return Number(execFileSync('node', ['-e', script], { encoding: 'utf8' }).trim());
}

async function benchVsServer(basePort) {
  // THREADS=1: the server generates on one core and the client has the other (on a 2-core machine
  // the client's CPU otherwise slows the server's generation threads; on a GPU rig it does not).
  const { root } = await homeWith(true, basePort, process.env.THREADS ? Number(process.env.THREADS) : undefined);
  const runs = [];
  for (let i = 0; i < BENCH_RUNS; i++) {
    const raw = rawClient(basePort);
    const out = execFileSync(
      'node',
      [
        CLI,
        'bench',
        'm0',
        '--requests',
        String(BENCH_REQUESTS),
        '--concurrency',
        '1',
        '--prompt-tokens',
        String(PROMPT_TOKENS),
        '--max-tokens',
        String(MAX_TOKENS),
        '--json',
        '--home',
        root,
      ],
      { encoding: 'utf8' },
    );
    const r = JSON.parse(out);
    const serverAgg = (r.server.predicted_n * 1000) / (r.server.prompt_ms + r.server.predicted_ms);
    runs.push({
      client: r.tokens_per_s.aggregate,
      server: serverAgg,
      ratio: r.tokens_per_s.aggregate / serverAgg,
      p50: r.tokens_per_s.p50,
      serverP50: r.server.tokens_per_s_p50,
      ttft: r.ttft_ms.p50,
      mismatches: r.token_count_mismatches,
      raw,
    });
  }
  cli(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  return runs;
}

export async function run() {
  // ONLY=bench: the bench comparison alone.
  const only = process.env.ONLY === 'bench';
  const none = { cpu: {}, rss: {}, ticks: [] };
  const scrape = only ? {} : await scrapeCpu(23800);
  const off = only ? none : await keeperCost(false, 23810);
  const on = only ? none : await keeperCost(true, 23820);
  const b = await benchVsServer(23830);
  const ratio = stats(b.map((r) => r.ratio));
  const vsRaw = stats(b.map((r) => r.client / r.raw));
  const perReq = stats(b.map((r) => r.p50 / r.serverP50));
  const lines = [
    `one scrape (/metrics + /slots of a real llama-server, in-process, ${SCRAPES} after warm-up): CPU ${fmt(scrape.cpuMs, 2)} ms, wall ${fmt(scrape.wallMs, 2)} ms`,
    `${N} keepers, health every 1 s, ${WINDOW_S} s: metrics off CPU p50 ${fmt(off.cpu.p50, 2)}% (ticks ${off.ticks.join(',')}), RSS p50 ${fmt(off.rss.p50, 1)} MiB; metrics on CPU p50 ${fmt(on.cpu.p50, 2)}% (ticks ${on.ticks.join(',')}), RSS p50 ${fmt(on.rss.p50, 1)} MiB (max ${fmt(on.rss.max, 1)}). Target RSS <= 60 MB.`,
    `bench vs the server's timings (${BENCH_REQUESTS} requests, concurrency 1, ${PROMPT_TOKENS} prompt + ${MAX_TOKENS} generated tokens${process.env.THREADS ? `, server on ${process.env.THREADS} thread(s)` : ''}, ${BENCH_RUNS} runs): per-request generation p50 / the server's p50 ${fmt(perReq.p50, 3)} (min ${fmt(perReq.min, 3)}, max ${fmt(perReq.max, 3)}); client aggregate / server aggregate (predicted_n over prompt_ms + predicted_ms) p50 ${fmt(ratio.p50, 3)} (min ${fmt(ratio.min, 3)}, max ${fmt(ratio.max, 3)}); client aggregate / a bare node:http client's on the same requests p50 ${fmt(vsRaw.p50, 3)} (min ${fmt(vsRaw.min, 3)}, max ${fmt(vsRaw.max, 3)})`,
    ...b.map(
      (r, i) =>
        `  run ${i + 1}: client ${fmt(r.client, 1)} tok/s, bare client ${fmt(r.raw, 1)} tok/s, server ${fmt(r.server, 1)} tok/s (per request p50 ${fmt(r.p50, 1)} vs server p50 ${fmt(r.serverP50, 1)}), TTFT p50 ${fmt(r.ttft, 1)} ms, token count mismatches ${r.mismatches}`,
    ),
  ];
  return { name: 'serving metrics', lines, raw: { scrape, off, on, bench: b } };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
