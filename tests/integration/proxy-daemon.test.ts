import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, waitFor } from '../helpers/home.js';

// The daemon's proxy as an operator meets it: where it listens, a taken port, a key, --no-proxy,
// the REST API's actions, and the counts in ps. The fake server stands in for llama-server here
// (tests/e2e/proxy.test.ts runs the real one).

const homes = homePerTest();
const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

function daemonStop(root: string, env: Record<string, string> = {}) {
  stops.push(() => cli(root, ['daemon', 'stop'], env));
}

describe('daemon with its proxy', () => {
  it('a taken port is exit 4 naming the holder; a bad listen address or settings file is exit 1 naming it', async () => {
    const home = homes.make();
    const port = freePort();
    const holder = http.createServer(() => undefined);
    await new Promise<void>((r) => holder.listen(port, '127.0.0.1', r));
    stops.push(() => new Promise((r) => holder.close(r)));
    const taken = await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`]);
    expect(taken.code).toBe(4);
    expect(taken.stderr).toContain(`the proxy's port ${port} is held by pid ${process.pid}`);
    expect(fs.existsSync(path.join(home.root, 'state', 'daemon.pid'))).toBe(false);
    // `daemon run` (systemd's way) says the same and leaves no pid file behind.
    const run = await cli(home.root, ['daemon', 'run', '--listen', `127.0.0.1:${port}`]);
    expect(run.code).toBe(4);
    expect(run.stderr).toContain(`port ${port} is held by pid ${process.pid}`);
    expect(fs.existsSync(path.join(home.root, 'state', 'daemon.pid'))).toBe(false);

    const bad = await cli(home.root, ['daemon', 'start', '--listen', 'localhost']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--listen: "localhost" is not HOST:PORT');
    fs.writeFileSync(path.join(home.root, 'llama-orch.json'), JSON.stringify({ proxy: { listn: '1.2.3.4:5' } }));
    const settings = await cli(home.root, ['daemon', 'start']);
    expect(settings.code).toBe(1);
    expect(settings.stderr).toContain('llama-orch.json: $.proxy: unknown key "listn" (did you mean "listen"?)');
    // --no-proxy gets past a broken settings file: supervision and autostart need none of it.
    const noProxy = await cli(home.root, ['daemon', 'start', '--no-proxy']);
    expect(noProxy.code, noProxy.stderr).toBe(0);
    await cli(home.root, ['daemon', 'stop']);
  });

  it('an address the daemon cannot bind (not on this machine) is a failed start with the reason, not a success', async () => {
    const home = homes.make();
    fs.writeFileSync(path.join(home.root, 'llama-orch.json'), JSON.stringify({ proxy: { api_key_env: 'ORCH_KEY' } }));
    const env = { ORCH_KEY: 'k' };
    const r = await cli(home.root, ['daemon', 'start', '--listen', `10.254.254.254:${freePort()}`], env);
    expect(r.code).toBe(10);
    expect(r.stderr).toMatch(
      /the daemon did not start: the proxy cannot listen on 10\.254\.254\.254:\d+: .*EADDRNOTAVAIL/,
    );
    expect((await cli(home.root, ['daemon', 'status'], env)).code).toBe(1);
  });

  it('not loopback needs a key; with a key every route wants it; the key is never logged', async () => {
    const home = homes.make();
    const port = freePort();
    const open = await cli(home.root, ['daemon', 'start', '--listen', `0.0.0.0:${port}`]);
    expect(open.code).toBe(10);
    expect(open.stderr).toContain('is not loopback, and no key is configured');
    fs.writeFileSync(path.join(home.root, 'llama-orch.json'), JSON.stringify({ proxy: { api_key_env: 'ORCH_KEY' } }));
    const unset = await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`], { ORCH_KEY: '' });
    expect(unset.code).toBe(10);
    expect(unset.stderr).toContain('names ORCH_KEY, which is not set (or empty)');
    const env = { ORCH_KEY: 'sekret-123' };
    const ok = await cli(home.root, ['daemon', 'start', '--listen', `0.0.0.0:${port}`], env);
    expect(ok.code, ok.stderr).toBe(0);
    daemonStop(home.root, env);
    const base = `http://127.0.0.1:${port}`;
    for (const p of ['/v1/models', '/api/instances', '/metrics']) {
      expect((await fetch(`${base}${p}`)).status).toBe(401);
      expect((await fetch(`${base}${p}`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      expect((await fetch(`${base}${p}`, { headers: { authorization: 'Bearer sekret-123' } })).status).toBe(200);
    }
    const logs = fs.readFileSync(path.join(home.root, 'logs', 'daemon.log'), 'utf8');
    expect(logs).not.toContain('sekret-123');
  });

  it('daemon status, ps and the REST API: start, stop, events; --no-proxy serves nothing', async () => {
    const home = homes.make();
    home.addInstance('f1', { ...fakeConfig(freePort()), model: { path: 'models/fake.gguf', alias: 'fake-one' } });
    const port = freePort();
    const start = await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--no-autostart']);
    expect(start.code, start.stderr).toBe(0);
    expect(start.stdout).toContain(`proxy: http://127.0.0.1:${port}`);
    daemonStop(home.root);
    const base = `http://127.0.0.1:${port}`;
    const status = await cli(home.root, ['daemon', 'status']);
    expect(status.stdout).toContain(`proxy http://127.0.0.1:${port}`);
    const ps = JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(ps[0]).toMatchObject({ name: 'f1', proxy_in_flight: 0, proxy_queued: 0 });
    const once = JSON.parse((await cli(home.root, ['--once', '--json'])).stdout) as { daemon: unknown };
    expect(once.daemon).toMatchObject({ running: true, proxy: `http://127.0.0.1:${port}` });

    const before = ((await (await fetch(`${base}/api/events?limit=1`)).json()) as Array<{ id: number }>)[0]?.id ?? 0;
    const started = await fetch(`${base}/api/instances/f1/start?wait=20`, { method: 'POST' });
    expect(started.status).toBe(200);
    const first = (await started.json()) as Record<string, unknown>;
    expect(first).toMatchObject({
      name: 'f1',
      ok: true,
      status: 'running',
      health: 'ok',
      keeper_pid: expect.any(Number) as unknown,
      config_changed: false,
      warnings: [],
    });
    const again = await fetch(`${base}/api/instances/f1/start`, { method: 'POST' });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({
      error: { code: 'already_running', message: expect.stringContaining('f1 is already running') as unknown },
    });
    // With a wait, as `up --wait` does, the running instance is joined: no second start, no 409.
    const joined = await fetch(`${base}/api/instances/f1/start?wait=20`, { method: 'POST' });
    expect(joined.status).toBe(200);
    expect(await joined.json()).toMatchObject({
      name: 'f1',
      ok: true,
      joined: true,
      health: 'ok',
      keeper_pid: first.keeper_pid,
      warnings: [],
    });
    const unknown = await fetch(`${base}/api/instances/nope/stop`, { method: 'POST' });
    expect(unknown.status).toBe(404);
    const described = (await (await fetch(`${base}/api/instances/f1`)).json()) as Record<string, unknown>;
    expect(described).toMatchObject({
      name: 'f1',
      state: 'running',
      config_path: expect.stringContaining('f1/config.json') as unknown,
    });
    const evs = (await (await fetch(`${base}/api/events?since=${before}&instance=f1`)).json()) as Array<{
      id: number;
      type: string;
    }>;
    expect(evs.length).toBeGreaterThan(0);
    expect(evs.every((e) => e.id > before)).toBe(true);
    expect(evs.map((e) => e.type)).toContain('spawn');
    const stopped = await fetch(`${base}/api/instances/f1/stop`, { method: 'POST' });
    expect(await stopped.json()).toMatchObject({ name: 'f1', ok: true, was_running: true });
    expect((await fetch(`${base}/api/nothing`)).status).toBe(404);
    expect((await fetch(`${base}/api/instances`, { method: 'POST' })).status).toBe(405);

    await cli(home.root, ['daemon', 'stop']);
    const noProxy = await cli(home.root, ['daemon', 'start', '--no-proxy', '--listen', `127.0.0.1:${port}`]);
    expect(noProxy.code, noProxy.stderr).toBe(0);
    expect(noProxy.stdout).not.toContain('proxy:');
    const st = JSON.parse((await cli(home.root, ['daemon', 'status', '--json'])).stdout) as Record<string, unknown>;
    expect(st).toMatchObject({ running: true, proxy: null });
    await expect(fetch(`${base}/v1/models`)).rejects.toThrow();
    const ps2 = JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(ps2[0]).toMatchObject({ proxy_in_flight: null, proxy_queued: null });
  });

  it('a running instance whose file is edited into an invalid state keeps its route; a claimed id is said by up and the log', async () => {
    const home = homes.make();
    const file = home.addInstance('f1', {
      ...fakeConfig(freePort()),
      model: { path: 'models/fake.gguf', alias: 'one' },
    });
    const port = freePort();
    expect((await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--no-autostart'])).code).toBe(0);
    daemonStop(home.root);
    expect((await cli(home.root, ['up', 'f1', '--wait', '20'])).code).toBe(0);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"alias"', '"alais"'));
    await new Promise((r) => setTimeout(r, 600)); // the route table is rebuilt every 0.5 s
    const r = await fetch(`http://127.0.0.1:${port}/completion`, {
      method: 'POST',
      body: JSON.stringify({ model: 'one', prompt: 'x' }),
    });
    expect(r.status).toBe(200);
    await r.text();
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"alais"', '"alias"'));
    // Another instance claiming the same id: `up` says so (and starts it), the daemon's log names it.
    home.addInstance('f2', { ...fakeConfig(freePort()), model: { path: 'models/fake.gguf', alias: 'f1' } });
    const up = await cli(home.root, ['up', 'f2']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toContain('model id "f1" is also routed to f1: the proxy needs each id to name one instance');
    // The route table is at most 0.5 s old: a request in that window after f2 appeared still finds f1
    // alone (the order of `up` and the daemon's last rebuild decides), so the 409 is waited for.
    await waitFor(
      async () => {
        const clash = await fetch(`http://127.0.0.1:${port}/completion`, {
          method: 'POST',
          body: JSON.stringify({ model: 'f1', prompt: 'x' }),
        });
        await clash.text();
        return clash.status === 409;
      },
      3000,
      'a 409 for the id claimed twice',
    );
    await waitFor(
      () =>
        fs
          .readFileSync(path.join(home.root, 'logs', 'daemon.log'), 'utf8')
          .includes('model "f1" is claimed by instances f1 and f2'),
      3000,
      'the conflict in daemon.log',
    );
  });

  it('an instance whose model file is missing: 503 naming the file and model.path, nothing started', async () => {
    const home = homes.make();
    home.addInstance('nofile', { ...fakeConfig(freePort()), model: { path: 'models/gone.gguf', alias: 'gone' } });
    const port = freePort();
    expect((await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--no-autostart'])).code).toBe(0);
    daemonStop(home.root);
    const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gone', prompt: 'x' }),
    });
    expect(r.status).toBe(503);
    const body = (await r.json()) as { error: { message: string; code: string } };
    expect(body.error.message).toMatch(/^nofile: model file .*models\/gone\.gguf does not exist \(\$\.model\.path in /);
    expect(body.error.code).not.toBe('internal_error');
    const ps = JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(ps[0]).toMatchObject({ name: 'nofile', state: 'stopped', keeper_pid: null });
  });

  it('a request for an instance whose model cannot load is 503 with the reason, once per failure memo', async () => {
    const home = homes.make();
    home.addInstance('broken', {
      ...fakeConfig(
        freePort(),
        {
          FAKE_STDERR: 'llama_model_load: error loading model: tensor data is not within file bounds',
          FAKE_CRASH_AFTER_MS: '300',
          // Loading (503) until it dies: it never looks healthy, as a model that does not load.
          FAKE_LOAD_MS: '10000',
        },
        { restart: { max_retries: 0 } },
      ),
      model: { path: 'models/fake.gguf', alias: 'broken' },
    });
    const port = freePort();
    expect((await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--no-autostart'])).code).toBe(0);
    daemonStop(home.root);
    const t0 = Date.now();
    const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'broken', prompt: 'x' }),
    });
    expect(r.status).toBe(503);
    const body = (await r.json()) as { error: { message: string; code: string } };
    expect(body.error.code).toBe('start_failed');
    expect(body.error.message).toMatch(/broken did not become healthy: failed/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    // Within the memo the answer comes at once, without another start.
    const t1 = Date.now();
    const again = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'broken', prompt: 'x' }),
    });
    expect(again.status).toBe(503);
    expect(Date.now() - t1).toBeLessThan(1000);
    await waitFor(
      async () => (await cli(home.root, ['events', 'broken', '--json'])).stdout.includes('on-demand'),
      5000,
      'the on-demand event',
    );
  });
});
