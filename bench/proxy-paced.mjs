// Streamed tokens/s through the daemon's proxy at the pace of a real model, beside the same server
// direct and beside a raw TCP relay (socket.pipe both ways: the cost of any extra hop, with no HTTP
// parsing at all). bench/proxy.mjs streams the tiny model at ~2000 tokens/s, where every microsecond
// the relay spends is taken from the server on this 2-core machine; a served model (a 7B on a GPU,
// a small one on a CPU) streams at tens to a few hundred tokens/s. Here: a zero-weight F16 model
// of ~100M parameters, written into the temp home (its tokenizer makes nothing of text: prompts are
// token ids), RUNS streams of MAX_TOKENS each, direct / raw relay / proxy in turn.
// Env: RUNS (9), MAX_TOKENS (128), EMBD (1024), LAYERS (6).
// Usage: env -u NODE_EXTRA_CA_CERTS node bench/proxy-paced.mjs
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { llamaModel, writeGguf } from '../tests/fixtures/gguf-writer.mjs';
import { addInstance, cli, fmt, machine, makeRealHome } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 9);
const MAX_TOKENS = Number(process.env.MAX_TOKENS ?? 128);
const EMBD = Number(process.env.EMBD ?? 1024);
const LAYERS = Number(process.env.LAYERS ?? 6);
delete process.env.NODE_EXTRA_CA_CERTS;

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

/** One stream: tokens (events carrying text) per second of wall time, and whether it ended with [DONE]. */
async function stream(port) {
  const t0 = performance.now();
  const r = await request(`http://127.0.0.1:${port}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'paced', prompt: [5, 6, 7], max_tokens: MAX_TOKENS, ignore_eos: true, stream: true }),
  });
  if (r.statusCode !== 200) throw new Error(`HTTP ${r.statusCode}: ${await r.body.text()}`);
  let text = '';
  for await (const c of r.body) text += c;
  const tokens = (text.match(/"text":/g) ?? []).length;
  return { rate: (tokens * 1000) / (performance.now() - t0), tokens, done: text.includes('data: [DONE]') };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

export async function run() {
  const { root, bin } = await makeRealHome('bench-proxy-paced-');
  const m = llamaModel({ vocab: 32000, embd: EMBD, ff: EMBD * 3, layers: LAYERS, heads: 16, ctx: 4096, type: 'F16' });
  writeGguf(path.join(root, 'models', 'paced.gguf'), m.metadata, m.tensors);
  const serverPort = await freePort();
  const proxyPort = await freePort();
  addInstance(root, 'paced', {
    model: { path: 'models/paced.gguf', alias: 'paced', context_size: 1024 },
    server: { binary: bin, port: serverPort, parallel: 1 },
    healthcheck: { interval: 2, timeout: 3, start_period: 30 },
    stop_timeout: 5,
  });
  const relay = net.createServer((c) => {
    const u = net.connect(serverPort, '127.0.0.1');
    c.setNoDelay(true);
    u.setNoDelay(true);
    c.pipe(u);
    u.pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  await new Promise((r) => relay.listen(0, '127.0.0.1', r));
  const relayPort = relay.address().port;
  try {
    cli(root, ['daemon', 'start', '--listen', `127.0.0.1:${proxyPort}`]);
    cli(root, ['up', 'paced', '--wait', '120']);
    const sides = { direct: serverPort, relay: relayPort, proxy: proxyPort };
    const rates = { direct: [], relay: [], proxy: [] };
    let short = 0;
    for (const port of Object.values(sides)) await stream(port); // warm-up
    for (let i = 0; i < RUNS; i++) {
      // The order turns every run, so no side always follows another.
      const order = Object.keys(sides);
      for (let k = 0; k < i % 3; k++) order.push(order.shift());
      for (const side of order) {
        const r = await stream(sides[side]);
        // The last event carries no text but the finish reason: MAX_TOKENS + 1 events.
        if (!r.done || r.tokens !== MAX_TOKENS + 1) short++;
        rates[side].push(r.rate);
      }
    }
    const d = median(rates.direct);
    const raw = {
      machine: machine(),
      date: new Date().toISOString().slice(0, 10),
      model: `zero-weight llama, F16, embd ${EMBD}, ${LAYERS} layers, vocab 32000`,
      runs: RUNS,
      max_tokens: MAX_TOKENS,
      tok_s: Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, Number(median(v).toFixed(1))])),
      ratio_relay: median(rates.relay) / d,
      ratio_proxy: median(rates.proxy) / d,
      short_streams: short,
    };
    const lines = [
      `| side | streamed tok/s (median of ${RUNS}, ${MAX_TOKENS} tokens) | of direct |`,
      '| ---- | ---: | ---: |',
      ...Object.keys(sides).map((s) => `| ${s} | ${fmt(median(rates[s]))} | ${fmt(median(rates[s]) / d, 3)} |`),
      '',
      `Model: ${raw.model}. Short streams: ${short}. Target (proxy >= 0.98 of direct): ${raw.ratio_proxy >= 0.98 ? 'met' : 'NOT met'}.`,
    ];
    return { name: "Proxy, streamed at a served model's pace", lines, raw };
  } finally {
    relay.close();
    try {
      cli(root, ['daemon', 'stop'], { stdio: 'ignore' });
      cli(root, ['down', '--all'], { stdio: 'ignore' });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await run();
  console.log(JSON.stringify(r.raw, null, 2));
  console.log(r.lines.join('\n'));
}
