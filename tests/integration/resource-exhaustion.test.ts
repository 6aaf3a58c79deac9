import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, psJson, waitFor } from '../helpers/home.js';

// #26, "resource exhaustion is not death": a daemon out of file descriptors (a real `prlimit` on the
// running daemon, real idle connections to its proxy) cannot read /proc. That is not the death of
// the instances it supervises: no keeper-lost, no stop, no restart, before or after the pressure.

const homes = homePerTest();
const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function hasPrlimit(): boolean {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

type Ev = { event_type: string; message: string };
const eventsOf = async (root: string, name: string): Promise<Ev[]> =>
  JSON.parse((await cli(root, ['events', name, '-n', '200', '--json'])).stdout) as Ev[];

/** Opens `n` idle connections to the port, each held until the cleanup. */
async function hold(port: number, n: number): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    socks.push(s);
  }
  await new Promise((r) => setTimeout(r, 500));
  cleanups.push(() => socks.forEach((s) => s.destroy()));
  return socks;
}

describe.skipIf(!hasPrlimit())('a daemon out of file descriptors', () => {
  it('keeps every instance running: /proc read errors are unknown, never dead', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    // Connections are the pressure here, so the proxy's own cap is set above the descriptor limit.
    fs.writeFileSync(path.join(home.root, 'llama-orch.json'), JSON.stringify({ proxy: { max_connections: 5000 } }));
    const port = freePort();
    const started = await cli(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--interval', '0.5']);
    expect(started.code, started.stderr).toBe(0);
    cleanups.push(() => cli(home.root, ['daemon', 'stop']));
    const up = await cli(home.root, ['up', 'a', '--wait', '15']);
    expect(up.code, up.stderr).toBe(0);
    cleanups.push(() => cli(home.root, ['down', 'a']));
    const daemonPid = Number(fs.readFileSync(path.join(home.root, 'state', 'daemon.pid'), 'utf8').split(/\s+/)[0]);
    const before = (await psJson(home.root))[0] as Record<string, unknown>;

    // Every descriptor the daemon may have is taken by idle clients.
    const open = fs.readdirSync(`/proc/${daemonPid}/fd`).length;
    // The soft limit only: the hard one stays, so the pressure can be lifted again.
    const soft = /^Max open files\s+(\d+)/m.exec(fs.readFileSync(`/proc/${daemonPid}/limits`, 'utf8'))?.[1] as string;
    execFileSync('prlimit', ['--pid', String(daemonPid), `--nofile=${open + 20}:`]);
    await hold(port, 60);
    // Several supervision rounds (every 0.5 s) under the pressure.
    await new Promise((r) => setTimeout(r, 3000));
    const proof = fs.readFileSync(path.join(home.root, 'logs', 'daemon.log'), 'utf8');

    const during = (await psJson(home.root))[0] as Record<string, unknown>;
    expect(during).toMatchObject({ state: 'running', pid: before.pid, keeper_pid: before.keeper_pid });
    // The pressure ends: the daemon still sees the instance as running, and has recorded no loss.
    for (const c of cleanups.splice(cleanups.length - 1)) await c();
    execFileSync('prlimit', ['--pid', String(daemonPid), `--nofile=${soft}:`]);
    await waitFor(
      async () => ((await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.ok ? true : undefined),
      10_000,
      'the proxy to answer again',
    );
    const api = (await (await fetch(`http://127.0.0.1:${port}/api/instances`)).json()) as Array<
      Record<string, unknown>
    >;
    expect(
      api.find((i) => i.name === 'a'),
      proof.slice(-3000),
    ).toMatchObject({ state: 'running', pid: before.pid });
    const types = (await eventsOf(home.root, 'a')).map((e) => e.event_type);
    expect(types, proof.slice(-3000)).not.toContain('keeper-lost');
    expect(types).not.toContain('daemon-restart');
    const after = (await psJson(home.root))[0] as Record<string, unknown>;
    expect(after).toMatchObject({ state: 'running', health: 'ok', pid: before.pid, restarts: before.restarts });
  }, 60_000);
});
