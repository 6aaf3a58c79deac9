// The daemon's OpenAI-compatible proxy (src/http) against calling the real llama-server directly,
// one instance of the tiny model (models/llama-dense.gguf), the daemon started with --listen:
//  1. Added latency: POST /tokenize (a few words, no generation), sequential, N direct and N
//     proxied requests interleaved (the order flips every pair) after WARMUP of each, one
//     kept-alive connection to each side; p50/p90/p99 of each and the difference of the p50s
//     (target: added p50 <= 1 ms). Also the daemon's CPU per proxied request.
//  2. Streamed throughput: a streamed /v1/completions of MAX_TOKENS tokens (temperature 0,
//     ignore_eos), RUNS direct and RUNS proxied alternating, a fresh connection each; tokens
//     received (SSE events carrying text) per second of wall time, the median of each, and the
//     ratio proxied / direct (target >= 0.98).
//  3. The daemon's RSS (VmRSS) idle after the instance is up (median over 2 s), and its peak while
//     CONC streams go through it at once (CONC_ROUNDS rounds, sampled every 50 ms), then again 3 s
//     after (median over 2 s); its open files before and after (a leak check). The same rounds
//     direct, for the aggregate tok/s. Also the daemon's CPU per relayed token.
// Env: N (500), WARMUP (50), RUNS (15), MAX_TOKENS (200), CONC (16), CONC_ROUNDS (3),
//      PARALLEL (server.parallel, default CONC), THREADS (model.threads; default llama-server's),
//      DAEMON_PROF=DIR (a CPU profile of the daemon), KEEP_HOME=1.
// Usage: env -u NODE_EXTRA_CA_CERTS node bench/proxy.mjs
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { setInterval, clearInterval } from 'node:timers';
import { Client } from 'undici';
import { CLI, addInstance, cli, cpuTicks, fmt, machine, makeRealHome, rssMiB, sleep } from './lib.mjs';

const N = Number(process.env.N ?? 500);
const WARMUP = Number(process.env.WARMUP ?? 50);
const RUNS = Number(process.env.RUNS ?? 15);
// The tiny model's context_length is 256, which caps each slot's context: 200 tokens fit after the prompt.
const MAX_TOKENS = Number(process.env.MAX_TOKENS ?? 200);
const CONC = Number(process.env.CONC ?? 16);
const CONC_ROUNDS = Number(process.env.CONC_ROUNDS ?? 3);
const PARALLEL = Number(process.env.PARALLEL ?? CONC);
const THREADS = process.env.THREADS ? Number(process.env.THREADS) : undefined;
const MODEL = 'tiny';
delete process.env.NODE_EXTRA_CA_CERTS; // the CLI and the daemon inherit this environment

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Quantile by nearest rank on a sorted copy. */
function quantiles(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return { n: s.length, min: s[0], p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1] };
}

const median = (xs) => quantiles(xs).p50;

function openFiles(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

async function json(client, p, body) {
  const r = await client.request({
    method: 'POST',
    path: p,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`${p}: HTTP ${r.statusCode}: ${text.slice(0, 300)}`);
  return text;
}

/**
 * One streamed completion on a fresh connection. Returns the wall time, the events carrying text,
 * the server's own count (timings.predicted_n of the last event) and the text.
 */
async function stream(origin, prompt, parse = true) {
  const client = new Client(origin);
  const body = JSON.stringify({
    model: MODEL,
    prompt,
    max_tokens: MAX_TOKENS,
    temperature: 0,
    ignore_eos: true,
    stream: true,
  });
  try {
    const t0 = performance.now();
    const r = await client.request({
      method: 'POST',
      path: '/v1/completions',
      headers: { 'content-type': 'application/json' },
      body,
    });
    if (r.statusCode !== 200) throw new Error(`stream: HTTP ${r.statusCode}: ${(await r.body.text()).slice(0, 300)}`);
    let buf = '';
    let tokens = 0;
    let predicted = null;
    let text = '';
    let done = false;
    let firstMs = null;
    for await (const chunk of r.body) {
      firstMs ??= performance.now() - t0;
      buf += chunk.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!ev.startsWith('data: ')) continue;
        const data = ev.slice(6);
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        if (!parse) {
          // Cheap count for the concurrent rounds: every event but the last carries a token.
          if (!data.includes('"finish_reason":"')) tokens++;
          continue;
        }
        const e = JSON.parse(data);
        if (e.error) throw new Error(`stream error event: ${data.slice(0, 300)}`);
        const t = e.choices?.[0]?.text;
        if (typeof t === 'string' && t.length > 0) {
          tokens++;
          text += t;
        }
        if (e.timings?.predicted_n !== undefined) predicted = e.timings.predicted_n;
      }
    }
    const ms = performance.now() - t0;
    return { ms, tokens, predicted, text, done, firstMs };
  } finally {
    await client.close();
  }
}

/** The daemon's RSS, median of samples every 100 ms over `ms`. */
async function rssOver(pid, ms) {
  const xs = [];
  for (let t = 0; t < ms; t += 100) {
    xs.push(rssMiB(pid));
    await sleep(100);
  }
  return median(xs);
}

async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

export async function run() {
  const { root, bin } = await makeRealHome('bench-proxy-');
  const serverPort = await freePort();
  const proxyPort = await freePort();
  const direct = `http://127.0.0.1:${serverPort}`;
  const proxied = `http://127.0.0.1:${proxyPort}`;
  addInstance(root, MODEL, {
    model: { path: 'models/tiny.gguf', alias: MODEL, context_size: PARALLEL * 256, threads: THREADS },
    server: { binary: bin, port: serverPort, parallel: PARALLEL, extra_args: ['--metrics'] },
    healthcheck: { interval: 1, timeout: 2, start_period: 10 },
    stop_timeout: 5,
  });
  const clients = [];
  let daemonStarted = false;
  const notes = [];
  let cleaned = false;
  // Synchronous, so that it also runs from a signal handler: the daemon, the instance, the home.
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    if (daemonStarted) {
      try {
        cli(root, ['daemon', 'stop'], { stdio: 'ignore' });
      } catch (e) {
        console.error(`daemon stop failed: ${e.message}`);
      }
    }
    try {
      cli(root, ['down', '--all'], { stdio: 'ignore' });
    } catch (e) {
      console.error(`down --all failed: ${e.message}`);
    }
    if (process.env.KEEP_HOME) console.error(`home kept at ${root}`);
    else fs.rmSync(root, { recursive: true, force: true });
  };
  const onSignal = (sig) => {
    cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (process.env.DAEMON_PROF) {
      // DAEMON_PROF=DIR: the daemon in the foreground under --cpu-prof (not allowed in NODE_OPTIONS),
      // detached; `daemon stop` ends it with SIGTERM and the profile lands in DIR.
      const d = path.resolve(process.env.DAEMON_PROF);
      const args = ['--cpu-prof', `--cpu-prof-dir=${d}`, CLI, 'daemon', 'run', '--home', root, '--listen'];
      spawn('node', [...args, `127.0.0.1:${proxyPort}`], { detached: true, stdio: 'ignore' }).unref();
      daemonStarted = true;
      await waitFor(() => JSON.parse(cli(root, ['daemon', 'status', '--json'])).proxy, 10_000, 'the daemon');
    } else cli(root, ['daemon', 'start', '--listen', `127.0.0.1:${proxyPort}`]);
    daemonStarted = true;
    const status = JSON.parse(cli(root, ['daemon', 'status', '--json']));
    const pid = status.pid;
    if (!pid) throw new Error(`daemon status: ${JSON.stringify(status)}`);
    cli(root, ['up', MODEL, '--wait', '60']);
    const pc = new Client(proxied, { keepAliveTimeout: 30_000 });
    const dc = new Client(direct, { keepAliveTimeout: 30_000 });
    clients.push(pc, dc);
    await waitFor(
      async () => JSON.parse(await json(pc, '/tokenize', { model: MODEL, content: 'x' })).tokens.length > 0,
      30_000,
      'the proxy to route to the instance',
    );
    // Idle: the instance up, the proxy has routed one request; 3 s to settle.
    await sleep(3000);
    const idleRss = await rssOver(pid, 2000);
    const idleFds = openFiles(pid);

    // 1. Added latency, sequential, interleaved.
    const tokBody = { model: MODEL, content: 'The quick brown fox jumps over the lazy dog.' };
    const expected = await json(dc, '/tokenize', tokBody);
    const lat = { direct: [], proxied: [] };
    let mismatches = 0;
    const one = async (c, side, keep) => {
      const t0 = performance.now();
      const text = await json(c, '/tokenize', tokBody);
      const ms = performance.now() - t0;
      if (text !== expected) mismatches++;
      if (keep) lat[side].push(ms);
    };
    for (let i = 0; i < WARMUP + N; i++) {
      const keep = i >= WARMUP;
      if (keep && i === WARMUP) lat.cpu0 = cpuTicks(pid);
      if (i % 2) {
        await one(pc, 'proxied', keep);
        await one(dc, 'direct', keep);
      } else {
        await one(dc, 'direct', keep);
        await one(pc, 'proxied', keep);
      }
    }
    const daemonCpuMsPerReq = ((cpuTicks(pid) - lat.cpu0) * 10) / N;
    const ld = quantiles(lat.direct);
    const lp = quantiles(lat.proxied);

    // 2. Streamed tokens/s, alternating, a fresh connection each.
    const prompt = 'Once upon a time';
    await stream(direct, prompt);
    await stream(proxied, prompt);
    const st = { direct: [], proxied: [] };
    const texts = { direct: new Set(), proxied: new Set() };
    let shortStreams = 0;
    const streamCpu0 = cpuTicks(pid);
    for (let i = 0; i < RUNS; i++) {
      for (const [side, origin] of i % 2
        ? [
            ['proxied', proxied],
            ['direct', direct],
          ]
        : [
            ['direct', direct],
            ['proxied', proxied],
          ]) {
        const r = await stream(origin, prompt);
        if (!r.done || (r.predicted !== null && r.predicted !== MAX_TOKENS)) shortStreams++;
        st[side].push(r);
        texts[side].add(r.text);
      }
    }
    // The daemon's CPU (user + system, 10 ms ticks) over the phase, per token it relayed.
    const streamCpuUsPerToken = ((cpuTicks(pid) - streamCpu0) * 10_000) / st.proxied.reduce((n, r) => n + r.tokens, 0);
    const rate = (r) => (r.tokens * 1000) / r.ms;
    const sd = median(st.direct.map(rate));
    const sp = median(st.proxied.map(rate));
    const tokensSeen = [...new Set([...st.direct, ...st.proxied].map((r) => r.tokens))];
    const predictedSeen = [...new Set([...st.direct, ...st.proxied].map((r) => r.predicted))];
    if (texts.direct.size !== 1 || texts.proxied.size !== 1 || [...texts.direct][0] !== [...texts.proxied][0])
      notes.push(
        `the streamed texts differed: ${texts.direct.size} distinct direct, ${texts.proxied.size} proxied, same first: ${[...texts.direct][0] === [...texts.proxied][0]}`,
      );

    // 3. Daemon RSS under CONC concurrent streams through the proxy (and the same rounds direct).
    const conc = { direct: [], proxied: [] };
    let peak = 0;
    const samples = [];
    let concFailed = 0;
    let concShort = 0;
    for (let round = 0; round < CONC_ROUNDS; round++) {
      for (const [side, origin] of [
        ['direct', direct],
        ['proxied', proxied],
      ]) {
        const timer =
          side === 'proxied'
            ? setInterval(() => {
                const v = rssMiB(pid);
                samples.push(v);
                if (v > peak) peak = v;
              }, 50)
            : null;
        const t0 = performance.now();
        const rs = await Promise.allSettled(
          Array.from({ length: CONC }, (_, k) => stream(origin, `${prompt} ${k}`, false)),
        );
        const ms = performance.now() - t0;
        if (timer) clearInterval(timer);
        let tokens = 0;
        for (const r of rs) {
          if (r.status === 'rejected') {
            concFailed++;
            notes.push(`concurrent ${side} stream failed: ${r.reason?.message ?? r.reason}`);
            continue;
          }
          tokens += r.value.tokens;
          if (!r.value.done || r.value.tokens !== MAX_TOKENS) concShort++;
        }
        conc[side].push((tokens * 1000) / ms);
      }
    }
    await sleep(3000);
    const afterRss = await rssOver(pid, 2000);
    const afterFds = openFiles(pid);
    let inFlight = null;
    try {
      const m = await (await pc.request({ method: 'GET', path: '/metrics' })).body.text();
      inFlight = m
        .split('\n')
        .filter((l) => /^llama_orch_proxy_requests_(in_flight|queued|total)\b/.test(l))
        .join('; ');
    } catch (e) {
      notes.push(`GET /metrics failed: ${e.message}`);
    }

    const summary = {
      machine: machine(),
      date: new Date().toISOString(),
      llama_server: bin,
      instance: { parallel: PARALLEL, context_size: PARALLEL * 256, threads: THREADS ?? 'default' },
      latency_ms: {
        request: 'POST /tokenize of a 44-character sentence, sequential, interleaved, kept-alive',
        n: N,
        warmup: WARMUP,
        direct: ld,
        proxied: lp,
        added_p50: lp.p50 - ld.p50,
        added_p90: lp.p90 - ld.p90,
        added_p99: lp.p99 - ld.p99,
        answer_mismatches: mismatches,
        daemon_cpu_ms_per_proxied_request: daemonCpuMsPerReq,
      },
      stream: {
        request: `POST /v1/completions stream, max_tokens ${MAX_TOKENS}, ignore_eos, temperature 0, fresh connection`,
        runs: RUNS,
        direct_tok_s: quantiles(st.direct.map(rate)),
        proxied_tok_s: quantiles(st.proxied.map(rate)),
        ratio: sp / sd,
        ttft_ms: { direct: median(st.direct.map((r) => r.firstMs)), proxied: median(st.proxied.map((r) => r.firstMs)) },
        tokens_counted: tokensSeen,
        server_predicted_n: predictedSeen,
        short_streams: shortStreams,
        daemon_cpu_us_per_proxied_token: streamCpuUsPerToken,
        per_run: {
          direct_tok_s: st.direct.map((r) => Math.round(rate(r))),
          proxied_tok_s: st.proxied.map((r) => Math.round(rate(r))),
          direct_ttft_ms: st.direct.map((r) => Number(r.firstMs.toFixed(1))),
          proxied_ttft_ms: st.proxied.map((r) => Number(r.firstMs.toFixed(1))),
        },
      },
      concurrent: {
        streams: CONC,
        rounds: CONC_ROUNDS,
        aggregate_tok_s: { direct: median(conc.direct), proxied: median(conc.proxied) },
        per_round: { direct: conc.direct.map(Math.round), proxied: conc.proxied.map(Math.round) },
        failed: concFailed,
        short: concShort,
      },
      daemon: {
        pid,
        rss_idle_mib: idleRss,
        rss_peak_mib: peak,
        rss_samples: samples.length,
        rss_after_mib: afterRss,
        fds_idle: idleFds,
        fds_after: afterFds,
        proxy_counts_after: inFlight,
      },
      notes,
    };
    const row = (label, d, p) => `| ${label.padEnd(34)} | ${d.padStart(10)} | ${p.padStart(10)} |`;
    const f2 = (x) => fmt(x, 2);
    const lines = [
      `Machine: ${summary.machine}; instance parallel ${PARALLEL}, context ${PARALLEL * 256}.`,
      '',
      row('', 'direct', 'proxied'),
      `| ${'-'.repeat(34)} | ${'-'.repeat(10)} | ${'-'.repeat(10)} |`,
      row(`/tokenize p50 (ms, n=${N})`, f2(ld.p50), f2(lp.p50)),
      row('/tokenize p90 (ms)', f2(ld.p90), f2(lp.p90)),
      row('/tokenize p99 (ms)', f2(ld.p99), f2(lp.p99)),
      row(`streamed tok/s, median of ${RUNS}`, fmt(sd), fmt(sp)),
      row('streamed time to first byte (ms)', f2(summary.stream.ttft_ms.direct), f2(summary.stream.ttft_ms.proxied)),
      row(`${CONC} streams at once, agg. tok/s`, fmt(median(conc.direct)), fmt(median(conc.proxied))),
      '',
      `Added p50: ${fmt((lp.p50 - ld.p50) * 1000, 0)} us (target <= 1 ms: ${lp.p50 - ld.p50 <= 1 ? 'met' : 'NOT met'}); added p90 ${fmt((lp.p90 - ld.p90) * 1000, 0)} us, p99 ${fmt((lp.p99 - ld.p99) * 1000, 0)} us; daemon CPU ${f2(daemonCpuMsPerReq)} ms per proxied request.`,
      `Streamed ratio proxied/direct: ${fmt(sp / sd, 3)} (target >= 0.98: ${sp / sd >= 0.98 ? 'met' : 'NOT met'}); tokens counted per stream ${tokensSeen.join(',')}, server predicted_n ${predictedSeen.join(',')}, short streams ${shortStreams}; daemon CPU ${fmt(streamCpuUsPerToken, 0)} us per relayed token.`,
      `Daemon RSS: idle ${fmt(idleRss)} MiB, peak under ${CONC} streams ${fmt(peak)} MiB (${samples.length} samples at 50 ms), 3 s after ${fmt(afterRss)} MiB; open files ${idleFds} -> ${afterFds}; concurrent failures ${concFailed}, short ${concShort}; answer mismatches ${mismatches}.`,
      ...(inFlight ? [`Proxy counts after: ${inFlight}`] : []),
      ...notes.map((n) => `Note: ${n}`),
    ];
    return { name: 'proxy', lines, raw: summary };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await Promise.all(clients.map((c) => c.destroy().catch(() => undefined)));
    cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await run();
  console.log(JSON.stringify(r.raw, null, 2));
  console.log(`\n${r.lines.join('\n')}`);
}
