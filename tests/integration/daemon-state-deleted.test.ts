import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, isAlive, waitFor } from '../helpers/home.js';

// #26, "state deleted under a running daemon": the database files removed (or the whole state/ folder)
// while the daemon serves the proxy. The daemon reopens the new file (by device and inode) and writes
// its pid file again: the proxy routes to what runs, `daemon status`, `stop` and `start` find it.

const homes = homePerTest();
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function api(port: number, p: string): Promise<{ status: number; body: unknown }> {
  const r = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: r.status, body: (await r.json().catch(() => null)) as unknown };
}

const k1Of = (body: unknown) => (body as Array<Record<string, unknown>>).find((i) => i.name === 'k1');

describe('the state database deleted under a running daemon', () => {
  it('the daemon reopens the new file: after down and up, the proxy routes to the new server; status and stop find it', async () => {
    const home = homes.make();
    home.addInstance('k1', fakeConfig(freePort()));
    const port = freePort();
    const start = await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--interval', '0.5']);
    expect(start.code, start.stderr).toBe(0);
    cleanups.push(() => cli(home.root, ['daemon', 'stop']));
    expect((await cli(home.root, ['up', 'k1', '--wait', '15'])).code).toBe(0);
    cleanups.push(() => cli(home.root, ['down', 'k1']));
    const daemonPid = Number(fs.readFileSync(path.join(home.root, 'state', 'daemon.pid'), 'utf8').split(/\s+/)[0]);

    for (const f of fs.readdirSync(path.join(home.root, 'state'))) {
      if (f.startsWith('llama-orch.db')) fs.rmSync(path.join(home.root, 'state', f));
    }
    // The daemon reads the new file (its `state-db` event is there: the deleted file, which it still
    // has open until then, would show k1 running too), and the keeper re-registered in it.
    await waitFor(
      async () => {
        const events = (await api(port, '/api/events')).body as Array<{ type: string }>;
        if (!events.some((e) => e.type === 'state-db')) return undefined;
        return k1Of((await api(port, '/api/instances')).body)?.state === 'running' ? true : undefined;
      },
      15_000,
      'the daemon to see k1 running in the new database',
    );
    const status = await cli(home.root, ['daemon', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`proxy http://127.0.0.1:${port}`);

    // down and up from the CLI: the proxy routes to the new server (it once answered 503 "port held").
    expect((await cli(home.root, ['down', 'k1'])).code).toBe(0);
    const up = await cli(home.root, ['up', 'k1', '--wait', '15']);
    expect(up.code, up.stderr).toBe(0);
    await waitFor(
      async () => ((await api(port, '/upstream/k1/health')).status === 200 ? true : undefined),
      5000,
      'the proxy to reach the new server',
    );
    const ps = JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(k1Of((await api(port, '/api/instances')).body)).toMatchObject({ state: 'running', pid: ps[0]?.pid });
    const events = (await api(port, '/api/events?n=200')).body as Array<Record<string, unknown>>;
    expect(JSON.stringify(events)).toMatch(/the daemon reopened it/);

    // The whole state/ folder: the pid file is written again, so the daemon is still found and stopped.
    fs.rmSync(path.join(home.root, 'state'), { recursive: true, force: true });
    await waitFor(
      () => (fs.existsSync(path.join(home.root, 'state', 'daemon.pid')) ? true : undefined),
      10_000,
      'the pid file written again',
    );
    const again = await cli(home.root, ['daemon', 'status']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain(`pid ${daemonPid}`);
    expect((await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`])).code).not.toBe(0);
    const stop = await cli(home.root, ['daemon', 'stop']);
    expect(stop.code, stop.stderr).toBe(0);
    await waitFor(() => (isAlive(daemonPid) ? undefined : true), 10_000, 'the daemon to exit');
    // The keeper re-registers in the new state/ within its 1 s check, so down finds and stops it (once,
    // with a 5 s check, down said "not running" here and the keeper outlived the test's home).
    await waitFor(
      async () =>
        (JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<{ state: string }>)[0]?.state ===
        'running'
          ? true
          : undefined,
      3000,
      'the keeper re-registered',
    );
    const serverPid = (JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<{ pid: number }>)[0]?.pid;
    expect((await cli(home.root, ['down', 'k1'])).stdout).toContain('k1 stopped');
    expect(isAlive(serverPid as number)).toBe(false);
  }, 90_000);
});
