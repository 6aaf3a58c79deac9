import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, freePort, makeHome, waitFor, type TestHome } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

// The fleet endpoint (README, "Several rigs": one endpoint) with the real llama-server and the openai
// client: rig A's daemon (127.0.0.2) serves no model itself; rigs B (127.0.0.3) and C (127.0.0.4) each
// run `tiny`, replicas. A routes to the least busy, fails over when a rig's daemon dies, never loops.

interface Rig {
  name: string;
  home: TestHome;
  listen: string;
}
const rigs: Rig[] = [];
const a = () => rigs[0] as Rig;
const b = () => rigs[1] as Rig;
const c = () => rigs[2] as Rig;

function client(rig: Rig) {
  return new OpenAI({ baseURL: `http://${rig.listen}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60_000 });
}

async function ask(rig: Rig, maxTokens = 4) {
  const r = await client(rig)
    .chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens })
    .withResponse();
  return { rigName: r.response.headers.get('x-llama-orch-rig'), text: r.data.choices[0]?.message.content };
}

beforeAll(async () => {
  for (const [name, ip] of [
    ['rig-a', '127.0.0.2'],
    ['rig-b', '127.0.0.3'],
    ['rig-c', '127.0.0.4'],
  ] as const) {
    const home = makeHome('llama-orch-fleet-ep-');
    rigs.push({ name, home, listen: `${ip}:${freePort()}` });
    if (name !== 'rig-a') home.addInstance(`${name.slice(-1)}1`, realConfig(freePort()));
  }
  for (const r of rigs) {
    const fleet =
      r === a() ? { peers: [b(), c()].map((p) => ({ name: p.name, url: `http://${p.listen}` })) } : { peers: [] };
    fs.writeFileSync(
      path.join(r.home.root, 'llama-orch.json'),
      JSON.stringify({ proxy: { listen: r.listen }, rig: { name: r.name }, fleet }),
    );
    if (r !== a()) {
      const up = await cli(r.home.root, ['up', '--all', '--wait', '60']);
      expect(up.code, up.stderr).toBe(0);
    }
    const d = await cli(r.home.root, ['daemon', 'start']);
    expect(d.code, d.stderr).toBe(0);
  }
  // A reads the other rigs every 2 s.
  await waitFor(
    async () => {
      const m = (await (await fetch(`http://${a().listen}/v1/models`)).json()) as {
        data: Array<{ id: string; rigs: Array<{ rig: string; state: string }> }>;
      };
      const tiny = m.data.find((x) => x.id === 'tiny');
      return tiny?.rigs.filter((x) => x.state === 'running').length === 2 ? true : undefined;
    },
    20_000,
    'rig A to see tiny running on B and C',
  );
}, 180_000);

afterAll(async () => {
  for (const r of rigs) {
    await cli(r.home.root, ['daemon', 'stop']);
    await r.home.cleanup();
  }
}, 120_000);

describe('the fleet endpoint (real daemons and llama-servers, the openai client)', () => {
  it('/v1/models lists the fleet once, with its rigs; a request is served by a replica and says which', async () => {
    const m = (await client(a()).models.list()).data as unknown as Array<{ id: string; rigs: Array<{ rig: string }> }>;
    const tiny = m.filter((x) => x.id === 'tiny');
    expect(tiny).toHaveLength(1);
    expect(tiny[0]?.rigs.map((x) => x.rig).sort()).toEqual(['rig-b', 'rig-c']);
    const r = await ask(a());
    expect(['rig-b', 'rig-c']).toContain(r.rigName);
    expect(typeof r.text).toBe('string');
  });

  it('a replica picked by load: while one rig streams a long answer, the next request goes to the other', async () => {
    const stream = await client(a())
      .chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'count' }],
        max_tokens: 2000,
        stream: true,
      })
      .withResponse();
    const busy = stream.response.headers.get('x-llama-orch-rig');
    const next = await ask(a());
    expect(next.rigName).not.toBe(busy);
    for await (const chunk of stream.data) void chunk; // drain it
  });

  it('no loop: a model no rig has is a 404 naming the rigs; a forwarded request is never forwarded again', async () => {
    const r = await fetch(`http://${a().listen}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'nowhere', messages: [] }),
    });
    expect(r.status).toBe(404);
    const body = (await r.json()) as { error: { message: string } };
    expect(body.error.message).toContain('model "nowhere" cannot be served by any rig of the fleet');
    expect(body.error.message).toContain('rig-b: not configured there');
    const hop = await fetch(`http://${a().listen}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-llama-orch-hop': 'rig-x' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
    });
    // Marked as forwarded: A serves it itself or refuses; it has no tiny of its own.
    expect(hop.status).toBe(404);
  });

  it("a rig's daemon killed (kill -9): the next requests are served by the replica at once", async () => {
    const pid = Number(fs.readFileSync(path.join(b().home.root, 'state', 'daemon.pid'), 'utf8').split(/\s+/)[0]);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => (fs.existsSync(`/proc/${pid}`) ? undefined : true), 5000, 'the daemon gone');
    const started = Date.now();
    const served: Array<string | null> = [];
    for (let i = 0; i < 4; i++) served.push((await ask(a(), 2)).rigName);
    expect(served).toEqual(['rig-c', 'rig-c', 'rig-c', 'rig-c']);
    expect(Date.now() - started).toBeLessThan(4000);
    const metrics = await (await fetch(`http://${a().listen}/metrics`)).text();
    expect(metrics).toContain('llama_orch_fleet_rig_up{rig="rig-b"} 0');
    expect(metrics).toContain('llama_orch_fleet_rig_up{rig="rig-c"} 1');
    expect(metrics).toMatch(/llama_orch_fleet_requests_total\{rig="rig-c",code="200"\} \d+/);
  });
});
