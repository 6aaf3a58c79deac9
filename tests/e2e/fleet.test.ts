import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, cli, freePort, makeHome, waitFor, type TestHome } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';
import { ensureDnsmasq, startDns } from '../helpers/dnsmasq.js';

// The fleet view (README, "Several rigs") as an operator meets it: three rigs on this machine, on
// 127.0.0.2, 127.0.0.3 and 127.0.0.4, each with its own home, daemon, real llama-server and fake
// nvidia-smi (different free memory). Rig A's CLI asks B and C through their daemons' REST API.

const SMI = path.join(REPO, 'tests/fixtures/gpu/nvidia-smi');
const KEY = `fleet-key-${Math.random().toString(36).slice(2)}`;

interface Rig {
  name: string;
  home: TestHome;
  ip: string;
  port: number;
  env: Record<string, string>;
}

const rigs: Rig[] = [];
const stopped: number[] = [];

function scenario(home: TestHome, usedMiB: number, totalMiB: number): string {
  const file = path.join(home.root, 'smi.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      mode: 'ok',
      gpus: [
        [
          '0',
          `GPU-${path.basename(home.root)}`,
          'NVIDIA H100 80GB HBM3',
          '3',
          usedMiB,
          totalMiB,
          '41',
          '71.5',
          '700.00',
        ],
      ],
      apps: [],
    }),
  );
  return file;
}

function settings(rig: Rig, extra: Record<string, unknown> = {}, proxy: Record<string, unknown> = {}) {
  fs.writeFileSync(
    path.join(rig.home.root, 'llama-orch.json'),
    JSON.stringify(
      { proxy: { listen: `${rig.ip}:${rig.port}`, ...proxy }, rig: { name: rig.name }, ...extra },
      null,
      2,
    ),
  );
}

const a = () => rigs[0] as Rig;
const b = () => rigs[1] as Rig;
const c = () => rigs[2] as Rig;

function daemonPid(rig: Rig): number {
  return Number(
    fs
      .readFileSync(path.join(rig.home.root, 'state', 'daemon.pid'), 'utf8')
      .trim()
      .split(/\s+/)[0],
  );
}

async function fleet(args: string[], env: Record<string, string> = { RIG_C_KEY: KEY }) {
  const started = Date.now();
  const r = await cli(a().home.root, args, { ...a().env, ...env });
  return { ...r, ms: Date.now() - started };
}

beforeAll(async () => {
  const spec: Array<[string, string, number, number]> = [
    ['rig-a', '127.0.0.2', 70_000, 81_559],
    ['rig-b', '127.0.0.3', 10_000, 81_559],
    ['rig-c', '127.0.0.4', 40_000, 81_559],
  ];
  // B and C listen on one port number (each on its own address), as the rigs DNS lists do.
  const shared = freePort();
  for (const [name, ip, used, total] of spec) {
    const home = makeHome('llama-orch-fleet-');
    const rig: Rig = { name, home, ip, port: name === 'rig-a' ? freePort() : shared, env: {} };
    rig.env = { LLAMA_ORCH_NVIDIA_SMI: SMI, FAKE_SMI_SCENARIO: scenario(home, used, total) };
    home.addInstance(`${name.slice(-1)}1`, realConfig(freePort()));
    rigs.push(rig);
  }
  settings(a(), {
    fleet: {
      peers: [
        { name: 'rig-b', url: `http://${b().ip}:${b().port}` },
        { name: 'rig-c', url: `http://${c().ip}:${c().port}`, api_key_env: 'RIG_C_KEY' },
      ],
    },
  });
  settings(b());
  settings(c(), {}, { api_key_env: 'C_DAEMON_KEY' });
  c().env.C_DAEMON_KEY = KEY;
  await Promise.all(
    rigs.map(async (rig) => {
      const up = await cli(rig.home.root, ['up', '--all', '--wait', '60'], rig.env);
      expect(up.code, up.stderr).toBe(0);
    }),
  );
  for (const rig of [b(), c()]) {
    const d = await cli(rig.home.root, ['daemon', 'start'], rig.env);
    expect(d.code, d.stderr).toBe(0);
  }
}, 180_000);

afterAll(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone
    }
  }
  for (const rig of rigs) {
    await cli(rig.home.root, ['daemon', 'stop'], rig.env);
    await rig.home.cleanup();
  }
}, 120_000);

describe('the fleet view over three rigs (real daemons and llama-servers)', () => {
  it('ps --fleet --json: every rig, each row with its rig; the text has a RIG column', async () => {
    const r = await fleet(['ps', '--fleet', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((x) => [x.rig, x.name, x.state, x.health, x.rig_state])).toEqual([
      ['rig-a', 'a1', 'running', 'ok', 'ok'],
      ['rig-b', 'b1', 'running', 'ok', 'ok'],
      ['rig-c', 'c1', 'running', 'ok', 'ok'],
    ]);
    expect(rows.every((x) => typeof x.rig_seen_at === 'string' && typeof x.pid === 'number')).toBe(true);
    const text = await fleet(['ps', '--fleet']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split('\n')[0]).toMatch(/^RIG\s+NAME\s+STATE/);
    expect(text.stdout).toMatch(/^rig-b\s+b1\s+running\s+ok/m);
    // The key went in a header only: nothing printed carries it.
    expect(r.stdout + r.stderr + text.stdout + text.stderr).not.toContain(KEY);
  });

  it('--once --fleet, gpus --fleet and events --fleet: each rig whole, its GPUs (own free memory), its events', async () => {
    const once = await fleet(['--once', '--fleet', '--json']);
    expect(once.code, once.stderr).toBe(0);
    const doc = JSON.parse(once.stdout) as { rigs: Array<Record<string, unknown>> };
    expect(doc.rigs.map((x) => [x.rig, x.state, (x.instances as unknown[]).length])).toEqual([
      ['rig-a', 'ok', 1],
      ['rig-b', 'ok', 1],
      ['rig-c', 'ok', 1],
    ]);
    expect((doc.rigs[0]?.daemon as { running: boolean }).running).toBe(false);
    const gpus = await fleet(['gpus', '--fleet', '--json']);
    expect(gpus.code, gpus.stderr).toBe(0);
    const list = JSON.parse(gpus.stdout) as Array<{ rig: string; memory_used_bytes: number }>;
    expect(list.map((g) => [g.rig, g.memory_used_bytes / 2 ** 20])).toEqual([
      ['rig-a', 70_000],
      ['rig-b', 10_000],
      ['rig-c', 40_000],
    ]);
    const text = await fleet(['gpus', '--fleet']);
    expect(text.stdout).toMatch(/^rig rig-b {2}http:\/\/127\.0\.0\.3:\d+$/m);
    const events = await fleet(['events', '--fleet', '--json', '-n', '200']);
    expect(events.code, events.stderr).toBe(0);
    const ev = JSON.parse(events.stdout) as Array<{ rig: string; instance: string; ts: string }>;
    for (const [rig, inst] of [
      ['rig-a', 'a1'],
      ['rig-b', 'b1'],
      ['rig-c', 'c1'],
    ]) {
      expect(ev.some((e) => e.rig === rig && e.instance === inst)).toBe(true);
    }
    expect(new Set(ev.map((e) => e.rig))).toEqual(new Set(['rig-a', 'rig-b', 'rig-c']));
    expect(ev.map((e) => e.ts)).toEqual([...ev.map((e) => e.ts)].sort());
  });

  it('a wrong key is `unauthorized`, an unset key variable is `refused`: both with the rows last seen', async () => {
    const wrong = await fleet(['ps', '--fleet', '--json'], { RIG_C_KEY: 'not-the-key' });
    expect(wrong.code).toBe(0);
    const rows = JSON.parse(wrong.stdout) as Array<Record<string, unknown>>;
    const c1 = rows.find((x) => x.rig === 'rig-c');
    expect(c1).toMatchObject({ name: 'c1', rig_state: 'unauthorized', state: 'running' });
    expect(typeof c1?.rig_seen_at).toBe('string');
    expect(wrong.stderr).toMatch(/warning: rig rig-c \(http:\/\/127\.0\.0\.4:\d+\): unauthorized \(it refused our key/);
    expect(wrong.stderr).not.toContain('not-the-key');
    const unset = await fleet(['ps', '--fleet'], {});
    expect(unset.code).toBe(0);
    expect(unset.stdout).toMatch(/^rig-c \(refused\)\s+c1/m);
    expect(unset.stdout).toContain('rig rig-c (http://127.0.0.4');
    expect(unset.stdout).toContain('its key variable RIG_C_KEY is not set in this environment');
  });

  it("remote down, up --wait, restart and logs through the rigs' daemons (--rig)", async () => {
    const down = await fleet(['down', 'b1', '--rig', 'rig-b']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/^rig-b\/b1: /);
    const rows = JSON.parse((await fleet(['ps', '--fleet', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(rows.find((x) => x.rig === 'rig-b')).toMatchObject({ name: 'b1', state: 'stopped', rig_state: 'ok' });
    const up = await fleet(['up', 'b1', '--rig', 'rig-b', '--wait', '60', '--json']);
    expect(up.code, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject([{ rig: 'rig-b', name: 'b1', ok: true, health: 'ok' }]);
    // The keyed rig, with its key; an unknown instance is exit 2 naming the rig.
    const restart = await fleet(['restart', 'c1', '--rig', 'rig-c', '--wait', '60']);
    expect(restart.code, restart.stderr).toBe(0);
    expect(restart.stdout).toMatch(/^rig-c\/c1: running \(pid \d+\), health ok$/m);
    const ghost = await fleet(['up', 'ghost', '--rig', 'rig-c']);
    expect(ghost.code).toBe(2);
    expect(ghost.stderr).toContain('error: rig rig-c: unknown instance "ghost"');
    const logs = await fleet(['logs', 'c1', '--rig', 'rig-c', '-n', '200']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('llama_model_loader');
    const local = await fleet(['down', 'a1', '--rig', 'rig-a']);
    expect(local.code).toBe(1);
    expect(local.stderr).toContain('--rig rig-a is this rig: run "down" without --rig');
  });

  it('fleet.discover: every A record of a name is a rig; a rig added to DNS or removed from it is followed', async (ctx) => {
    const dnsmasq = ensureDnsmasq();
    if ('why' in dnsmasq) {
      console.warn(`skipped: ${dnsmasq.why}`);
      ctx.skip();
      return;
    }
    // Not under the home (0700): dnsmasq reads its hosts file again as nobody.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-orch-dns-'));
    const dns = await startDns(dnsmasq.bin, dir, freePort());
    const peersFile = path.join(a().home.root, 'llama-orch.json');
    const before = fs.readFileSync(peersFile, 'utf8');
    try {
      settings(a(), {
        fleet: {
          discover: { dns: 'rigs.fleet.test', port: b().port, server: dns.server, api_key_env: 'RIG_C_KEY' },
        },
      });
      const lint = await fleet(['config', 'lint']);
      expect(lint.stderr).not.toContain('fleet');
      const seen = async () =>
        (JSON.parse((await fleet(['ps', '--fleet', '--json'])).stdout) as Array<Record<string, unknown>>).map(
          (x) => `${String(x.rig)}/${String(x.name)}/${String(x.rig_state)}`,
        );
      await dns.records('rigs.fleet.test', [b().ip]);
      expect(await seen()).toEqual(['rig-a/a1/ok', '127.0.0.3/b1/ok']);
      await dns.records('rigs.fleet.test', [b().ip, c().ip]);
      expect(await seen()).toEqual(['rig-a/a1/ok', '127.0.0.3/b1/ok', '127.0.0.4/c1/ok']);
      await dns.records('rigs.fleet.test', [c().ip]);
      expect(await seen()).toEqual(['rig-a/a1/ok', '127.0.0.4/c1/ok']);
      // A name DNS does not know: this rig alone, and a warning naming the name.
      await dns.records('rigs.fleet.test', []);
      const none = await fleet(['ps', '--fleet', '--json']);
      expect(none.code).toBe(0);
      expect(none.stderr).toContain('warning: fleet.discover: rigs.fleet.test has no A or AAAA record');
    } finally {
      dns.stop();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.writeFileSync(peersFile, before);
    }
  });

  it('a daemon killed (kill -9) and one stopped (SIGSTOP): answers within the deadline, the others unaffected', async () => {
    // What each rig answers now is what the fleet remembers of it (b1 runs again since the test above).
    const now = JSON.parse((await fleet(['ps', '--fleet', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(now.map((x) => x.state)).toEqual(['running', 'running', 'running']);
    const bPid = daemonPid(b());
    process.kill(bPid, 'SIGKILL');
    await waitFor(() => (fs.existsSync(`/proc/${bPid}`) ? undefined : true), 5000, 'the daemon gone');
    const killed = await fleet(['ps', '--fleet', '--json']);
    expect(killed.code).toBe(0);
    expect(killed.ms).toBeLessThan(2000);
    const rows = JSON.parse(killed.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((x) => [x.rig, x.rig_state])).toEqual([
      ['rig-a', 'ok'],
      ['rig-b', 'unreachable'],
      ['rig-c', 'ok'],
    ]);
    expect(rows[1]).toMatchObject({ name: 'b1', state: 'running' });
    expect(killed.stderr).toMatch(/rig rig-b .*: unreachable \(connection refused\); rows as last seen/);

    const cPid = daemonPid(c());
    process.kill(cPid, 'SIGSTOP');
    stopped.push(cPid);
    const silent = await fleet(['ps', '--fleet', '--json']);
    expect(silent.code).toBe(0);
    // 2 s deadline for C, asked at the same time as B: not 4 s, and not forever.
    expect(silent.ms).toBeGreaterThanOrEqual(1900);
    expect(silent.ms).toBeLessThan(4500);
    const after = JSON.parse(silent.stdout) as Array<Record<string, unknown>>;
    expect(after.map((x) => [x.rig, x.rig_state])).toEqual([
      ['rig-a', 'ok'],
      ['rig-b', 'unreachable'],
      ['rig-c', 'unreachable'],
    ]);
    expect(silent.stderr).toContain('no answer in 2000 ms');
    process.kill(cPid, 'SIGCONT');
    const back = await fleet(['ps', '--fleet', '--json']);
    expect((JSON.parse(back.stdout) as Array<Record<string, unknown>>).map((x) => x.rig_state)).toEqual([
      'ok',
      'unreachable',
      'ok',
    ]);
  });
});
