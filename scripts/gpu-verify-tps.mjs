// Streamed generation speed of one model, straight to its llama-server and through the daemon's
// proxy, alternating (scripts/gpu-verify.sh). Plain Node (global fetch), no dependencies.
// Usage: node scripts/gpu-verify-tps.mjs --model ID --direct URL --proxy URL [--runs N] [--max-tokens N]
// Prints one JSON object: per side the median decode tokens/s (first to last token), the median
// end-to-end tokens/s (request sent to last token), the median time to first token, and the runs.
import { TextDecoder } from 'node:util';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const model = opt('model');
const sides = { direct: opt('direct'), proxy: opt('proxy') };
const runs = Number(opt('runs', '5'));
const maxTokens = Number(opt('max-tokens', '256'));
if (!model || !sides.direct) {
  process.stderr.write('usage: gpu-verify-tps.mjs --model ID --direct URL [--proxy URL] [--runs N] [--max-tokens N]\n');
  process.exit(2);
}

async function once(base) {
  const t0 = performance.now();
  const res = await fetch(`${base.replace(/\/$/, '')}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      prompt: 't1 t2 t3 t4 t5 t6 t7 t8',
      max_tokens: maxTokens,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    }),
    signal: AbortSignal.timeout(120_000),
  });
  if (!res.ok || !res.body) throw new Error(`${base}: HTTP ${res.status} ${await res.text()}`);
  let first = null;
  let last = t0;
  let tokens = 0;
  let rest = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    rest += dec.decode(chunk, { stream: true });
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
      if (!line.startsWith('data:') || line === 'data: [DONE]') continue;
      let ev;
      try {
        ev = JSON.parse(line.slice(5));
      } catch {
        continue;
      }
      if (ev.choices?.[0]?.text !== undefined && ev.choices[0].finish_reason == null) {
        const now = performance.now();
        first ??= now;
        last = now;
        tokens++;
      }
    }
  }
  return {
    tokens,
    ttft_ms: first === null ? null : +(first - t0).toFixed(1),
    decode_tps: first !== null && tokens > 1 ? +((tokens - 1) / ((last - first) / 1000)).toFixed(1) : null,
    e2e_tps: tokens > 0 ? +(tokens / ((last - t0) / 1000)).toFixed(1) : null,
  };
}

const median = (xs) => {
  const v = xs.filter((x) => x !== null).sort((a, b) => a - b);
  return v.length === 0 ? null : v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

const out = { model, runs, max_tokens: maxTokens };
const results = {};
const order = Object.keys(sides).filter((k) => sides[k]);
for (const k of order) {
  results[k] = [];
  await once(sides[k]); // warm-up (the first request on a slot pays for CUDA graphs and caches)
}
for (let i = 0; i < runs; i++) {
  for (const k of i % 2 ? [...order].reverse() : order) results[k].push(await once(sides[k]));
}
for (const k of order) {
  const r = results[k];
  out[k] = {
    url: sides[k],
    decode_tps: median(r.map((x) => x.decode_tps)),
    e2e_tps: median(r.map((x) => x.e2e_tps)),
    ttft_ms: median(r.map((x) => x.ttft_ms)),
    tokens: median(r.map((x) => x.tokens)),
    runs: r,
  };
}
if (out.direct && out.proxy && out.direct.decode_tps && out.proxy.decode_tps) {
  out.proxy_over_direct = +(out.proxy.decode_tps / out.direct.decode_tps).toFixed(3);
}
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
