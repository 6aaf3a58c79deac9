import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cli,
  fakeConfig,
  freePort,
  isAlive,
  makeHome,
  psJson,
  waitFor,
  waitForRow,
  type TestHome,
} from '../helpers/home.js';

let home: TestHome | undefined;
afterEach(async () => {
  if (home) await cli(home.root, ['daemon', 'stop']);
  await home?.cleanup();
  home = undefined;
});

type Ev = { event_type: string; message: string; ts: string; instance_name: string | null };
const events = async (h: TestHome, name?: string): Promise<Ev[]> =>
  JSON.parse((await cli(h.root, ['events', ...(name ? [name] : []), '--json', '-n', '500'])).stdout) as Ev[];

describe('daemon', () => {
  it('start / status / stop, one daemon per home', async () => {
    home = makeHome();
    const start = await cli(home.root, ['daemon', 'start', '--interval', '0.5']);
    expect(start.code, start.stderr).toBe(0);
    expect(start.stdout).toMatch(/daemon started \(pid \d+\)/);
    expect((await cli(home.root, ['daemon', 'status'])).code).toBe(0);
    const second = await cli(home.root, ['daemon', 'start']);
    expect(second.code).toBe(10);
    expect(second.stderr).toContain('already running');
    const once = JSON.parse((await cli(home.root, ['--once', '--json'])).stdout) as { daemon: { running: boolean } };
    expect(once.daemon.running).toBe(true);
    const stop = await cli(home.root, ['daemon', 'stop']);
    expect(stop.code).toBe(0);
    const status = await cli(home.root, ['daemon', 'status']);
    expect(status.code).not.toBe(0);
    expect(status.stdout).toContain('not running');
    expect(fs.readFileSync(path.join(home.root, 'logs', 'daemon.log'), 'utf8')).toContain('daemon stopped');
  });

  it('autostarts exactly the autostart instances, staggered, in order', async () => {
    home = makeHome();
    home.addInstance('a1', fakeConfig(freePort(), {}, { autostart: true }));
    home.addInstance('a2', fakeConfig(freePort(), {}, { autostart: true }));
    home.addInstance('manual', fakeConfig(freePort()));
    expect((await cli(home.root, ['daemon', 'start', '--interval', '0.5', '--stagger', '0.7'])).code).toBe(0);
    await waitFor(
      async () => {
        const ps = await psJson((home as TestHome).root);
        return ps.filter((r) => r.health === 'ok').length === 2 ? true : undefined;
      },
      10_000,
      'two autostarted',
    );
    const ps = await psJson(home.root);
    expect(ps.find((r) => r.name === 'manual')?.state).toBe('stopped');
    const auto = (await events(home)).filter((e) => e.event_type === 'autostart');
    expect(auto.map((e) => e.instance_name)).toEqual(['a1', 'a2']);
    expect(Date.parse(auto[1]?.ts ?? '') - Date.parse(auto[0]?.ts ?? '')).toBeGreaterThanOrEqual(650);
  });

  it("respects an operator's down across a daemon restart: only up starts the instance again", async () => {
    home = makeHome();
    home.addInstance('auto', fakeConfig(freePort(), {}, { autostart: true }));
    expect((await cli(home.root, ['daemon', 'start', '--interval', '0.5'])).code).toBe(0);
    await waitForRow(home.root, 'auto', (r) => r.health === 'ok', 10_000, 'autostarted');
    expect((await cli(home.root, ['down', 'auto'])).code).toBe(0);
    expect((await cli(home.root, ['daemon', 'stop'])).code).toBe(0);
    expect((await cli(home.root, ['daemon', 'start', '--interval', '0.5'])).code).toBe(0);
    await new Promise((r) => setTimeout(r, 2500)); // several reconcile passes
    expect((await psJson(home.root))[0]?.state).toBe('stopped');
    expect(fs.readFileSync(path.join(home.root, 'logs', 'daemon.log'), 'utf8')).toContain(
      'autostart: auto skipped (stopped by the operator',
    );
    expect((await cli(home.root, ['up', 'auto', '--wait', '10'])).code).toBe(0);
  });

  it('replaces a keeper killed with -9 by one that re-attaches to the same server; stopping the daemon stops no instance', async () => {
    home = makeHome();
    home.addInstance('kept', fakeConfig(freePort(), {}, { restart: { initial_delay: 0.3 } }));
    expect((await cli(home.root, ['up', 'kept', '--wait', '10'])).code).toBe(0);
    expect((await cli(home.root, ['daemon', 'start', '--interval', '0.5'])).code).toBe(0);
    const before = (await psJson(home.root))[0] as Record<string, unknown>;
    process.kill(before.keeper_pid as number, 'SIGKILL');
    const t0 = Date.now();
    const after = await waitFor(
      async () => {
        const r = (await psJson((home as TestHome).root))[0] as Record<string, unknown>;
        return r.health === 'ok' && r.keeper_pid !== before.keeper_pid && r.keeper_pid ? r : undefined;
      },
      10_000,
      'new keeper',
    );
    // one loop (0.5 s) + keeper start-up and probe margin
    expect(Date.now() - t0).toBeLessThan(500 + 2500);
    // Adopted, not restarted: the same server, never reloaded.
    expect(after.pid).toBe(before.pid);
    expect(isAlive(before.pid as number)).toBe(true);
    const servers = fs.readdirSync('/proc').filter((d) => {
      try {
        return (
          /^\d+$/.test(d) && fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(`${home?.root}/models/fake.gguf`)
        );
      } catch {
        return false;
      }
    });
    expect(servers).toHaveLength(1);
    const evs = await events(home, 'kept');
    expect(evs.find((e) => e.event_type === 'daemon-restart')?.message).toContain(
      `a new one takes over server pid ${String(before.pid)}`,
    );
    // The new keeper records its adoption as it re-attaches; under load that may land a moment after
    // the row already reads healthy (the health column is the server's, unchanged by the swap).
    await waitFor(
      async () => ((await events(home as TestHome, 'kept')).some((e) => e.event_type === 'adopt') ? true : undefined),
      5000,
      'the adopt event',
    );
    const stop = await cli(home.root, ['daemon', 'stop']);
    expect(stop.code).toBe(0);
    const still = (await psJson(home.root))[0] as Record<string, unknown>;
    expect(still.pid).toBe(after.pid);
    expect(isAlive(after.pid as number)).toBe(true);
  });

  it('stops within 5 s while every instance hangs on /health, and every instance keeps its pid', async () => {
    home = makeHome();
    for (let i = 0; i < 3; i++)
      home.addInstance(
        `hang${i}`,
        fakeConfig(
          freePort(),
          { FAKE_HANG_HEALTH: '1' },
          { healthcheck: { timeout: 3, interval: 1, retries: 100, start_period: 0 } },
        ),
      );
    expect((await cli(home.root, ['up', '--all'])).code).toBe(0);
    expect((await cli(home.root, ['daemon', 'start', '--interval', '0.5'])).code).toBe(0);
    const pids = (await psJson(home.root)).map((r) => r.pid);
    await new Promise((r) => setTimeout(r, 1500));
    const stop = await cli(home.root, ['daemon', 'stop']);
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(5000);
    expect((await psJson(home.root)).map((r) => r.pid)).toEqual(pids);
  });
});

describe('service', () => {
  it('prints a user unit named after the home, with absolute paths and the linger hint, on --dry-run', async () => {
    home = makeHome('llama-orch-rig-');
    const unit = new RegExp(`llama-orch-${path.basename(home.root).toLowerCase()}-[0-9a-f]{8}\\.service`);
    const r = await cli(home.root, ['service', 'install', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    const name = unit.exec(r.stdout)?.[0] as string;
    expect(name).toBeDefined();
    expect(r.stdout).toContain(`# would write ${path.join(os.homedir(), '.config/systemd/user', name)}:`);
    expect(r.stdout).toMatch(new RegExp(`ExecStart=/\\S*node /\\S+/bin/llama-orch.cjs daemon run --home ${home.root}`));
    expect(r.stdout).toContain('Restart=on-failure');
    expect(r.stdout).toContain('KillMode=process');
    expect(r.stdout).toContain('WantedBy=default.target');
    // The user manager has no network-online.target: a user unit does not wait for it.
    expect(r.stdout).not.toContain('network-online.target');
    expect(r.stdout).toContain(`systemctl --user enable --now ${name}`);
    expect(r.stdout).toContain(`run once: loginctl enable-linger ${os.userInfo().username}`);

    const sys = await cli(home.root, ['service', 'install', '--system', '--dry-run']);
    expect(sys.stdout).toContain(`/etc/systemd/system/${name}`);
    expect(sys.stdout).toMatch(/User=\S+/);
    expect(sys.stdout).toContain('WantedBy=multi-user.target');
    expect(sys.stdout).toContain('After=network-online.target');
    expect(sys.stdout).not.toContain('enable-linger');

    // Another home, another unit; --name chooses one.
    const other = makeHome('llama-orch-rig-');
    try {
      const r2 = await cli(other.root, ['service', 'install', '--dry-run']);
      const name2 = /llama-orch-\S+\.service/.exec(r2.stdout.split('\n')[0] ?? '')?.[0];
      expect(name2).toMatch(/^llama-orch-llama-orch-rig-/);
      expect(name2).not.toBe(name);
    } finally {
      await other.cleanup();
    }
    const named = await cli(home.root, ['service', 'uninstall', '--dry-run', '--name', 'gpu-box']);
    expect(named.stdout).toBe(
      `# would run: systemctl --user disable --now gpu-box.service\n# would remove ${path.join(os.homedir(), '.config/systemd/user/gpu-box.service')}`,
    );
    const bad = await cli(home.root, ['service', 'install', '--dry-run', '--name', 'a b']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--name "a b" is not a unit name');
  });

  it('keeps acting on an llama-orch.service installed for this home before units were named per home', async () => {
    home = makeHome();
    const userHome = path.join(home.root, 'user-home');
    const dir = path.join(userHome, '.config/systemd/user');
    fs.mkdirSync(dir, { recursive: true });
    const legacy = (root: string) =>
      `[Service]\nExecStart=/usr/bin/node /x/bin/llama-orch.cjs daemon run --home ${root}\n`;
    fs.writeFileSync(path.join(dir, 'llama-orch.service'), legacy(home.root));
    const r = await cli(home.root, ['service', 'uninstall', '--dry-run'], { HOME: userHome });
    expect(r.stdout).toContain('systemctl --user disable --now llama-orch.service');
    // One installed for another home is left alone.
    fs.writeFileSync(path.join(dir, 'llama-orch.service'), legacy('/srv/elsewhere'));
    const other = await cli(home.root, ['service', 'uninstall', '--dry-run'], { HOME: userHome });
    expect(other.stdout).not.toContain('llama-orch.service');
    expect(other.stdout).toMatch(/disable --now llama-orch-[a-z0-9_-]+-[0-9a-f]{8}\.service/);
  });

  it("install and uninstall --name refuse a unit file of another home or not llama-orch's, and a name systemctl reads as an option", async () => {
    home = makeHome();
    const userHome = path.join(home.root, 'user-home');
    const dir = path.join(userHome, '.config/systemd/user');
    fs.mkdirSync(dir, { recursive: true });
    const env = { HOME: userHome };
    const unitFile = path.join(dir, 'box.service');
    const tries = async (expected: RegExp, hint?: RegExp) => {
      const before = fs.readFileSync(unitFile, 'utf8');
      for (const args of [
        ['service', 'install', '--name', 'box'],
        ['service', 'install', '--name', 'box', '--dry-run'],
        ['service', 'uninstall', '--name', 'box'],
        ['service', 'uninstall', '--name', 'box.service', '--dry-run'],
      ]) {
        const r = await cli(home!.root, args, env);
        expect(r.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(10);
        expect(r.stderr).toMatch(expected);
        expect(r.stdout).toBe('');
        if (hint && args[1] === 'uninstall') expect(r.stderr).toMatch(hint);
      }
      expect(fs.readFileSync(unitFile, 'utf8')).toBe(before);
    };

    // Not llama-orch's at all, though it says "daemon run --home".
    fs.writeFileSync(unitFile, '[Service]\nExecStart=/usr/bin/backup-job daemon run --home /srv/rig\n');
    await tries(
      /error: \S+box\.service is not a llama-orch unit \(ExecStart=\/usr\/bin\/backup-job daemon run --home \/srv\/rig\): will not (overwrite|remove) it/,
    );
    // llama-orch's, for another home: which one it serves is said, and where it is removed from.
    fs.writeFileSync(
      unitFile,
      '[Service]\nExecStart=/usr/bin/node "/opt/my tools/bin/llama-orch.cjs" daemon run --home /srv/other-rig\n',
    );
    await tries(
      new RegExp(`runs the llama-orch daemon of another home \\(/srv/other-rig\\), not of ${home.root}: will not`),
      /hint: it is removed from its own home: "llama-orch service uninstall --name box(\.service)? --home \/srv\/other-rig"/,
    );

    // This home's: uninstall goes ahead (here as far as systemd, which this machine may not run).
    fs.writeFileSync(
      unitFile,
      `[Service]\nExecStart=/usr/bin/node /x/bin/llama-orch.cjs daemon run --home ${home.root}\n`,
    );
    const ours = await cli(home.root, ['service', 'uninstall', '--name', 'box', '--dry-run'], env);
    expect(ours.code, ours.stderr).toBe(0);
    expect(ours.stdout).toContain(`# would remove ${unitFile}`);
    const over = await cli(home.root, ['service', 'install', '--name', 'box', '--dry-run'], env);
    expect(over.code, over.stderr).toBe(0);
    expect(over.stdout).toContain(`# would write ${unitFile}:`);

    for (const name of ['-x', '--now', '-x.service']) {
      for (const cmd of ['install', 'uninstall', 'status']) {
        const r = await cli(home.root, ['service', cmd, '--dry-run', '--name', name], env);
        expect(r.code, `${cmd} --name ${name}: ${r.stderr}`).toBe(1);
        expect(r.stderr).toContain(`--name "${name}" is not a unit name: it must not start with "-"`);
      }
    }
  });

  it('says clearly when systemd is not there', async () => {
    if (fs.existsSync('/run/systemd/system')) return; // a machine with systemd: nothing to check here
    home = makeHome();
    const r = await cli(home.root, ['service', 'install']);
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('systemd is not available');
    expect(r.stderr).toContain(`hint: run "llama-orch daemon start --home ${home.root}" from your init system`);
  });
});

describe('init', () => {
  for (const profile of ['cpu', 'cuda', 'vulkan', 'rocm']) {
    it(`the ${profile} profile writes a config that passes config lint`, async () => {
      home = makeHome();
      const bin = path.join(home.root, 'llama-server');
      fs.writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
      const args = [
        'init',
        `m-${profile}`,
        '--profile',
        profile,
        '--model',
        path.join(home.root, 'models', 'fake.gguf'),
        '--port',
        String(freePort()),
      ];
      if (profile !== 'cpu') args.push('--gpu', '0', '--ctx', '32768');
      const r = await cli(home.root, args, { LLAMA_SERVER: bin });
      expect(r.code, r.stderr).toBe(0);
      const cfg = JSON.parse(
        fs.readFileSync(path.join(home.root, 'instances', `m-${profile}`, 'config.json'), 'utf8'),
      ) as {
        model: { path: string; context_size: number };
        gpu: { backend: string; devices: number[] };
        server: { extra_args: string[] };
      };
      expect(cfg.model.path).toBe('models/fake.gguf');
      expect(cfg.gpu.backend).toBe(profile);
      if (profile !== 'cpu') expect(cfg).toMatchObject({ model: { context_size: 32768 }, gpu: { devices: [0] } });
      if (profile === 'cuda' || profile === 'rocm') expect(cfg.server.extra_args).toEqual(['--flash-attn', 'on']);
      const lint = await cli(home.root, ['config', 'lint'], { LLAMA_SERVER: bin });
      expect(lint.code, lint.stderr).toBe(0);
      const again = await cli(home.root, args, { LLAMA_SERVER: bin });
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('already exists');
    });
  }

  it('refuses a missing model and writes nothing', async () => {
    home = makeHome();
    const r = await cli(home.root, ['init', 'nomodel', '--profile', 'cpu', '--model', '/nope.gguf', '--port', '1234']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('/nope.gguf does not exist');
    expect(fs.existsSync(path.join(home.root, 'instances', 'nomodel'))).toBe(false);
  });
});
