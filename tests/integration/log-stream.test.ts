import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, waitFor, type TestHome } from '../helpers/home.js';

// GET /api/instances/NAME/logs (README, "REST API"): a log read and followed through the daemon, the
// way another rig's CLI (`logs NAME --rig RIG -f`) and the fleet dashboard read it. Real daemon,
// keeper and fake server; the server floods numbered lines through several rotations while a client
// follows: every line arrives, once, in order.

const homes = homePerTest();
const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

async function daemonWith(home: TestHome, port: number, extra: Record<string, unknown> = {}) {
  fs.writeFileSync(
    path.join(home.root, 'llama-orch.json'),
    JSON.stringify({ proxy: { listen: `127.0.0.1:${port}` }, rig: { name: 'here' }, ...extra }),
  );
  const d = await cli(home.root, ['daemon', 'start']);
  expect(d.code, d.stderr).toBe(0);
  stops.push(() => cli(home.root, ['daemon', 'stop']));
}

/** Follows the stream, collecting the parsed lines; `close` ends it. */
function follow(url: string, accept = 'application/x-ndjson') {
  const got: Array<{ name: string; stream: string; line: string }> = [];
  let raw = '';
  let status = 0;
  let ended = false;
  let partial = '';
  const req = http.get(url, { headers: { accept } }, (res) => {
    status = res.statusCode ?? 0;
    res.setEncoding('utf8');
    res.on('data', (t: string) => {
      raw += t;
      const lines = (partial + t).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        const body = l.startsWith('data: ') ? l.slice(6) : l;
        if (body.trim() && !body.startsWith(':')) got.push(JSON.parse(body) as (typeof got)[number]);
      }
    });
    res.on('end', () => (ended = true));
  });
  req.on('error', () => (ended = true));
  return {
    got,
    status: () => status,
    raw: () => raw,
    ended: () => ended,
    close: () => req.destroy(),
  };
}

describe('the REST API log stream', () => {
  it('follows a log through rotations: every flooded line once, in order; n, stream, errors; SSE', async () => {
    const home = homes.make();
    const serverPort = freePort();
    home.addInstance('f', { ...fakeConfig(serverPort), logs: { max_bytes: 64 * 1024, backups: 50 } });
    const up = await cli(home.root, ['up', 'f', '--wait', '20']);
    expect(up.code, up.stderr).toBe(0);
    const port = freePort();
    await daemonWith(home, port);
    const base = `http://127.0.0.1:${port}/api/instances/f/logs`;

    const s = follow(`${base}?stream=stdout&n=0&follow=1`);
    await waitFor(() => (s.status() === 200 ? true : undefined), 5000, 'the stream open');
    // ~1.4 MB of numbered lines: some 20 rotations of 64 KiB while the client reads.
    await fetch(`http://127.0.0.1:${serverPort}/flood?n=25000&tag=ls`);
    await waitFor(
      () => (s.got.filter((l) => l.line.startsWith('flood ls ')).length >= 25000 ? true : undefined),
      30_000,
      'every flooded line',
    );
    const numbers = s.got.filter((l) => l.line.startsWith('flood ls ')).map((l) => Number(l.line.split(' ')[2]));
    expect(numbers).toEqual(Array.from({ length: 25000 }, (_, i) => i));
    expect(s.got.every((l) => l.name === 'f' && l.stream === 'stdout')).toBe(true);
    const rotated = fs.readdirSync(path.join(home.root, 'logs', 'f')).filter((f) => /^stdout\.log\.\d+$/.test(f));
    expect(rotated.length).toBeGreaterThanOrEqual(10);
    s.close();

    // Not following: the last n lines, then the end. SSE on request.
    const last = await fetch(`${base}?stream=stdout&n=3`);
    expect(last.status).toBe(200);
    expect(last.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = (await last.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: string });
    expect(lines.map((l) => l.line.split(' ')[2])).toEqual(['24997', '24998', '24999']);
    const sse = await fetch(`${base}?stream=stdout&n=1`, { headers: { accept: 'text/event-stream' } });
    expect(sse.headers.get('content-type')).toBe('text/event-stream');
    expect(await sse.text()).toMatch(/^data: \{"name":"f","stream":"stdout","line":"flood ls 24999 x+"\}\n\n$/);

    for (const [q, why] of [
      ['stream=both', /stream must be stderr or stdout/],
      ['n=-1', /n must be a whole number/],
      ['follow=yes', /follow must be/],
    ] as const) {
      const bad = await fetch(`${base}?${q}`);
      expect(bad.status, q).toBe(400);
      expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(why);
    }
    const unknown = await fetch(`http://127.0.0.1:${port}/api/instances/ghost/logs`);
    expect(unknown.status).toBe(404);

    // A following stream ends when the daemon stops (cleanly, not after the grace period).
    const t = follow(`${base}?follow=1&n=0`);
    await waitFor(() => (t.status() === 200 ? true : undefined), 5000, 'the stream open');
    const started = Date.now();
    expect((await cli(home.root, ['daemon', 'stop'])).code).toBe(0);
    await waitFor(() => (t.ended() ? true : undefined), 5000, 'the stream ended');
    expect(Date.now() - started).toBeLessThan(1900);
  });

  it("logs NAME --rig RIG: another rig's log through its daemon, followed; errors name the rig", async () => {
    const far = homes.make();
    const farPort = freePort();
    const serverPort = freePort();
    far.addInstance('f', fakeConfig(serverPort));
    expect((await cli(far.root, ['up', 'f', '--wait', '20'])).code).toBe(0);
    await daemonWith(far, farPort);
    const near = homes.make();
    fs.writeFileSync(
      path.join(near.root, 'llama-orch.json'),
      JSON.stringify({
        proxy: { listen: `127.0.0.1:${freePort()}` },
        rig: { name: 'near' },
        fleet: { peers: [{ name: 'far', url: `http://127.0.0.1:${farPort}` }] },
      }),
    );
    await fetch(`http://127.0.0.1:${serverPort}/flood?n=5&tag=rig`);
    await waitFor(
      () =>
        fs.readFileSync(path.join(far.root, 'logs', 'f', 'stdout.log'), 'utf8').includes('flood rig 4')
          ? true
          : undefined,
      5000,
      'the lines in the far log',
    );
    const r = await cli(near.root, ['logs', 'f', '--rig', 'far', '--stdout', '-n', '5']);
    expect(r.code, r.stderr).toBe(0);
    expect(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[2]),
    ).toEqual(['0', '1', '2', '3', '4']);
    const json = await cli(near.root, ['logs', 'f', '--rig', 'far', '--stdout', '-n', '1', '--json']);
    expect(JSON.parse(json.stdout.trim())).toMatchObject({ rig: 'far', name: 'f', stream: 'stdout' });

    const ghost = await cli(near.root, ['logs', 'ghost', '--rig', 'far']);
    expect(ghost.code).toBe(2);
    expect(ghost.stderr).toMatch(/rig far \(http:\/\/127\.0\.0\.1:\d+\): unknown instance "ghost"/);
    const norig = await cli(near.root, ['logs', 'f', '--rig', 'nowhere']);
    expect(norig.code).toBe(2);
    expect(norig.stderr).toContain('no rig "nowhere" in the fleet (known: near, far)');
    await cli(far.root, ['daemon', 'stop']);
    const down = await cli(near.root, ['logs', 'f', '--rig', 'far']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/rig far \(http:\/\/127\.0\.0\.1:\d+\) is unreachable: connection refused/);
  });
});
