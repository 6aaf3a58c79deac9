import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, isAlive, REPO, waitFor } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';

// The daemon's proxy in front of the real llama-server (tiny model): the `openai` npm client, on-demand
// start, idle unload, eviction by memory (a fake nvidia-smi says how much GPU memory there is), and
// the faults: an upstream killed mid-stream, a client that leaves mid-stream, a hanging upstream.

const homes = homePerTest();
const daemons: Array<{ root: string; env: Record<string, string> }> = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await cli(d.root, ['daemon', 'stop'], d.env);
});

async function startDaemon(root: string, env: Record<string, string> = {}): Promise<string> {
  const port = freePort();
  const r = await cli(root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--no-autostart'], env);
  expect(r.code, r.stderr).toBe(0);
  daemons.push({ root, env });
  return `http://127.0.0.1:${port}`;
}

type Row = Record<string, unknown>;
async function row(root: string, name: string, env: Record<string, string> = {}): Promise<Row> {
  const r = await cli(root, ['ps', '--json'], env);
  return (JSON.parse(r.stdout) as Row[]).find((x) => x.name === name) as Row;
}

function events(root: string, name: string, type: string): Promise<Array<{ message: string }>> {
  return cli(root, ['events', name, '-n', '200', '--json']).then((r) =>
    (JSON.parse(r.stdout) as Array<{ event_type: string; message: string }>).filter((e) => e.event_type === type),
  );
}

/**
 * For streams that last seconds: a generated model (zero weights) trained for a long context, so a
 * slot holds 8192 tokens (the tiny model's 256 would end a stream in a fraction of a second). Its
 * tokenizer makes nothing of text: prompts are token ids.
 */
function longConfig(home: { root: string }, port: number, alias: string, extra: Record<string, unknown> = {}) {
  const file = path.join(home.root, 'models', 'long.gguf');
  if (!fs.existsSync(file)) {
    const m = llamaModel({ vocab: 256, embd: 64, ff: 128, layers: 2, heads: 2, ctx: 65536, name: 'long' });
    writeGguf(file, m.metadata, m.tensors);
  }
  return realConfig(port, {
    model: { path: 'models/long.gguf', alias, context_size: 8192 },
    server: { parallel: 1, extra_args: ['--metrics'] },
    ...extra,
  });
}

async function openStream(base: string, model: string, nPredict = 6000) {
  const res = await request(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: [5, 6, 7], max_tokens: nPredict, stream: true, ignore_eos: true }),
  });
  expect(res.statusCode).toBe(200);
  const it = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await it.next();
  expect(String(first.value)).toContain('data: ');
  return { res, it };
}

describe('the proxy with the real llama-server', () => {
  it('serves the openai client: list, chat, streamed chat, unknown model; a cold model starts once for 8 requests', async () => {
    const home = homes.make();
    home.addInstance(
      'chat',
      realConfig(freePort(), { model: { path: 'models/tiny.gguf', alias: 'tiny-chat', context_size: 256 } }),
    );
    home.addInstance(
      'cold',
      realConfig(freePort(), {
        model: { path: 'models/tiny.gguf', alias: 'tiny-cold', aliases: ['cold-2'], context_size: 256 },
      }),
    );
    const base = await startDaemon(home.root);
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });

    const models = await client.models.list();
    const ids = models.data.map((m) => m.id).sort();
    expect(ids).toEqual(['tiny-chat', 'tiny-cold']);
    expect((models.data.find((m) => m.id === 'tiny-cold') as unknown as Row).state).toBe('stopped');

    // A stopped instance is started by the request that names it.
    const chat = await client.chat.completions.create({
      model: 'tiny-chat',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 8,
    });
    expect(chat.choices[0]?.message.role).toBe('assistant');
    expect(chat.usage?.completion_tokens).toBeGreaterThan(0);
    expect((await row(home.root, 'chat')).state).toBe('running');

    const stream = await client.chat.completions.create({
      model: 'tiny-chat',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 16,
      stream: true,
    });
    let chunks = 0;
    let text = '';
    for await (const c of stream) {
      chunks++;
      text += c.choices[0]?.delta.content ?? '';
    }
    expect(chunks).toBeGreaterThan(3);
    expect(text.length).toBeGreaterThan(0);

    await expect(
      client.chat.completions.create({ model: 'no-such', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
      message: expect.stringContaining('known models: tiny-chat, tiny-cold') as unknown,
    });

    // 8 concurrent requests for a cold model (by its second alias): one start, one server, 8 answers.
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => client.completions.create({ model: 'cold-2', prompt: 'x', max_tokens: 2 })),
    );
    expect(answers.every((a) => a.choices.length === 1)).toBe(true);
    expect(await events(home.root, 'cold', 'spawn')).toHaveLength(1);
    expect(await events(home.root, 'cold', 'on-demand')).toHaveLength(1);
    // ps shows the daemon's counts as written (at most every 250 ms).
    const cold = await waitFor(
      async () => {
        const r = await row(home.root, 'cold');
        return r.proxy_in_flight === 0 && r.proxy_queued === 0 ? r : undefined;
      },
      3000,
      'the counts back to 0',
    );
    expect(cold).toMatchObject({ state: 'running', health: 'ok' });

    // The REST API and /metrics see the same.
    const api = (await (await fetch(`${base}/api/instances`)).json()) as Row[];
    expect(api.find((r) => r.name === 'cold')).toMatchObject({ state: 'running', proxy_in_flight: 0 });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('llama_orch_proxy_requests_total{name="cold",code="200"} 8');
    expect(metrics).toContain('llama_orch_proxy_on_demand_starts_total{name="cold"} 1');
    const status = await cli(home.root, ['daemon', 'status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, proxy: base });
  }, 90_000);

  it('idle_ttl stops an instance after its last request; the next request starts it again', async () => {
    const home = homes.make();
    home.addInstance('idle', realConfig(freePort(), { idle_ttl: 2 }));
    const base = await startDaemon(home.root);
    const ask = () =>
      request(`${base}/v1/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 2 }),
      }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
    expect((await ask()).status).toBe(200);
    const stoppedAt = await waitFor(
      async () => ((await row(home.root, 'idle')).state === 'stopped' ? Date.now() : undefined),
      15_000,
      'the idle stop',
    );
    expect(stoppedAt).toBeGreaterThan(0);
    const idle = await events(home.root, 'idle', 'idle');
    expect(idle[0]?.message).toMatch(/no request for \d+ s \(idle_ttl 2 s\): stopped/);
    expect((await ask()).status).toBe(200);
    expect(await events(home.root, 'idle', 'spawn')).toHaveLength(2);
  }, 60_000);

  it('evicts the least recently used idle instance when memory is short, never one that is streaming', async () => {
    const home = homes.make();
    // One GPU of 500 MiB: each instance needs about 330 MiB of it (weights, KV, compute and the
    // runtime's 300 MiB), so one fits and two do not.
    const scenario = path.join(home.root, 'smi.json');
    const uuid = 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77';
    fs.writeFileSync(
      scenario,
      JSON.stringify({
        gpus: [['0', uuid, 'NVIDIA GeForce RTX 4090', '0', '0', '500', '40', '50.00', '450.00']],
        apps: [],
      }),
    );
    const env = {
      PATH: `${path.join(REPO, 'tests/fixtures/gpu')}:${process.env.PATH ?? ''}`,
      FAKE_SMI_SCENARIO: scenario,
      LLAMA_ORCH_ROCM_SMI: 'none',
    };
    const gpu = { gpu: { backend: 'cuda', devices: [0] } };
    for (const name of ['g1', 'g2']) {
      const cfg = longConfig(home, freePort(), name, gpu) as { model: Record<string, unknown> };
      cfg.model.n_gpu_layers = 99;
      home.addInstance(name, cfg);
    }
    const base = await startDaemon(home.root, env);
    const ask = (model: string) =>
      request(`${base}/v1/completions`, {
        method: 'POST',
        body: JSON.stringify({ model, prompt: [5, 6], max_tokens: 2 }),
      }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
    expect((await ask('g1')).status).toBe(200);
    // g2 does not fit beside g1: g1 (idle) is stopped first.
    const second = await ask('g2');
    expect(second.status, second.body).toBe(200);
    expect((await row(home.root, 'g1', env)).state).toBe('stopped');
    const evict = await events(home.root, 'g1', 'evict');
    expect(evict[0]?.message).toMatch(/stopped to free memory for g2 \(idle, least recently used\): gpu 0: needs/);

    // While g2 streams, g1 cannot have its memory: 503 with the numbers, and g2 keeps streaming.
    const { res, it: chunks } = await openStream(base, 'g2');
    const refused = await ask('g1');
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({
      error: {
        code: 'does_not_fit',
        message: expect.stringMatching(
          /g1 does not fit: gpu 0: needs .* of 500 MiB; not stopped \(serving, or on_demand false\): g2/,
        ) as unknown,
      },
    });
    expect((await row(home.root, 'g2', env)).state).toBe('running');
    const next = await chunks.next();
    expect(next.done).toBe(false);
    res.body.destroy();
  }, 90_000);
});

describe('proxy faults with the real llama-server', () => {
  it('an upstream killed mid-stream ends the stream with an error event; its keeper restarts it', async () => {
    const home = homes.make();
    home.addInstance('victim', longConfig(home, freePort(), 'victim'));
    const base = await startDaemon(home.root);
    const { it: chunks } = await openStream(base, 'victim');
    const pid = (await row(home.root, 'victim')).pid as number;
    process.kill(pid, 'SIGKILL');
    let tail = '';
    for (;;) {
      const n = await chunks.next();
      if (n.done) break;
      tail += String(n.value);
    }
    expect(tail).toMatch(
      /data: \{"error":\{"message":"victim failed: .*","type":"server_error","code":"upstream_error"\}\}\n\n$/,
    );
    // The keeper restarts it as usual, and the next request is served by the new server.
    await waitFor(
      async () => {
        const r = await row(home.root, 'victim');
        return r.health === 'ok' && r.pid !== pid ? r : undefined;
      },
      30_000,
      'the restart',
    );
    const again = await request(`${base}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'victim', prompt: [5, 6], max_tokens: 2 }),
    });
    expect(again.statusCode).toBe(200);
    await again.body.text();
  }, 60_000);

  it('a client that leaves mid-stream frees the upstream slot (checked on /slots)', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance('slot', longConfig(home, port, 'slot'));
    const base = await startDaemon(home.root);
    const { res } = await openStream(base, 'slot', 8000);
    const busy = (await (await fetch(`http://127.0.0.1:${port}/slots`)).json()) as Array<{ is_processing: boolean }>;
    expect(busy[0]?.is_processing).toBe(true);
    res.body.destroy();
    await waitFor(
      async () => {
        const s = (await (await fetch(`http://127.0.0.1:${port}/slots`)).json()) as Array<{ is_processing: boolean }>;
        return s[0]?.is_processing === false ? true : undefined;
      },
      3000,
      'the slot to be freed',
    );
    // The daemon writes its counts at most every 250 ms: the request is out of them soon after.
    await waitFor(
      async () => ((await row(home.root, 'slot')).proxy_in_flight === 0 ? true : undefined),
      3000,
      'in flight 0',
    );
  }, 60_000);

  it('a hanging upstream is answered 504 after upstream_timeout; a malformed body is 400 and never forwarded', async () => {
    const home = homes.make();
    fs.writeFileSync(path.join(home.root, 'llama-orch.json'), JSON.stringify({ proxy: { upstream_timeout: 1.5 } }));
    home.addInstance('hang', {
      ...fakeConfig(freePort(), { FAKE_HANG_COMPLETION: '1' }),
      model: { path: 'models/fake.gguf', alias: 'hang' },
    });
    const base = await startDaemon(home.root);
    const t0 = Date.now();
    const r = await request(`${base}/completion`, {
      method: 'POST',
      body: JSON.stringify({ model: 'hang', prompt: 'x' }),
    });
    expect(r.statusCode).toBe(504);
    expect(JSON.parse(await r.body.text())).toMatchObject({
      error: { code: 'upstream_timeout', message: 'hang did not answer within 1.5 s' },
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    const bad = await request(`${base}/v1/chat/completions`, { method: 'POST', body: '{"model": "hang", ' });
    expect(bad.statusCode).toBe(400);
    expect(await bad.body.text()).toContain('request body is not valid JSON');
    expect(isAlive((await row(home.root, 'hang')).pid as number)).toBe(true);
    // Only the timed-out request reached the instance; the malformed one was answered by the proxy.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics.split('\n').filter((l) => l.startsWith('llama_orch_proxy_requests_total{name="hang"'))).toEqual([
      'llama_orch_proxy_requests_total{name="hang",code="504"} 1',
    ]);
  }, 60_000);
});
