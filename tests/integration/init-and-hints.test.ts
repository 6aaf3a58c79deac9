import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, cli, fakeConfig, freePort, homePerTest, waitFor } from '../helpers/home.js';

const homes = homePerTest();

/** The CLI as an operator runs it: from `cwd`, with no --home unless given, LLAMA_ORCH_HOME as given. */
async function run(cwd: string, args: string[], env: Record<string, string | undefined> = {}) {
  const r = await execa('node', [CLI, ...args], {
    cwd,
    reject: false,
    env: { ...process.env, LLAMA_ORCH_HOME: undefined, ...env },
    extendEnv: false,
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const initArgs = (name: string, root: string, ...more: string[]) => [
  'init',
  name,
  '--model',
  path.join(root, 'models', 'fake.gguf'),
  '--port',
  String(freePort()),
  ...more,
];

describe('init', () => {
  it('a --model that does not exist is named as read from the current directory, and nothing is written', async () => {
    const home = homes.make();
    // Typed from the repository, meaning the home's models/tiny.gguf: resolved against the cwd, as a shell would.
    const r = await run(os.tmpdir(), [
      'init',
      'm',
      '--profile',
      'cpu',
      '--model',
      'models/tiny.gguf',
      '--port',
      '1',
      '--home',
      home.root,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: not written: model file ${path.join(os.tmpdir(), 'models', 'tiny.gguf')} does not exist (--model models/tiny.gguf is read from the current directory ${os.tmpdir()})`,
    );
    expect(r.stderr).not.toContain('relative to the home');
    expect(fs.existsSync(path.join(home.root, 'instances', 'm'))).toBe(false);
  });

  it('refuses --gpu on the cpu and metal profiles and writes nothing', async () => {
    const home = homes.make();
    for (const profile of ['cpu', 'metal']) {
      const r = await cli(home.root, initArgs(`g-${profile}`, home.root, '--profile', profile, '--gpu', '0'));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`error: --gpu does not apply to the ${profile} profile`);
      expect(r.stderr).toContain('hint: drop --gpu');
      expect(fs.existsSync(path.join(home.root, 'instances', `g-${profile}`))).toBe(false);
    }
  });

  it('writes a metal config on Linux with a warning that it cannot run here; config lint warns too', async () => {
    const home = homes.make();
    const r = await cli(home.root, initArgs('mac', home.root, '--profile', 'metal'), { LLAMA_SERVER: '/bin/true' });
    expect(r.code, r.stderr).toBe(0);
    const cfg = JSON.parse(fs.readFileSync(path.join(home.root, 'instances', 'mac', 'config.json'), 'utf8')) as {
      gpu: unknown;
    };
    expect(cfg.gpu).toEqual({ backend: 'metal', devices: [] });
    const warning = `$.gpu.backend: "metal" is Apple's GPU API and cannot run on ${process.platform}`;
    expect(r.stderr).toContain(`warning: `);
    expect(r.stderr).toContain(warning);
    const lint = await cli(home.root, ['config', 'lint', '--json'], { LLAMA_SERVER: '/bin/true' });
    expect(lint.code, lint.stderr).toBe(0);
    const report = JSON.parse(lint.stdout) as { problems: unknown[]; warnings: Array<{ jsonPath: string }> };
    expect(report.problems).toEqual([]);
    expect(report.warnings.map((w) => w.jsonPath)).toEqual(['$.gpu.backend']);
  });

  it('--json: one object with the file, the schema written, the warnings and the command to start it', async () => {
    const home = homes.make();
    const r = await cli(home.root, [...initArgs('j', home.root, '--profile', 'metal'), '--json'], {
      LLAMA_SERVER: '/bin/true',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({
      name: 'j',
      file: path.join(home.root, 'instances', 'j', 'config.json'),
      profile: 'metal',
      schema_written: path.join(home.root, 'instances', 'config.schema.json'),
    });
    expect(out.warnings).toEqual([expect.stringContaining('cannot run on')]);
    expect(out.start_command).toMatch(/^llama-orch up j/);
    expect(fs.existsSync(out.file as string)).toBe(true);
  });

  it('writes the JSON schema its $schema names when it is missing, and never replaces one', async () => {
    const home = homes.make();
    const schema = path.join(home.root, 'instances', 'config.schema.json');
    expect(fs.existsSync(schema)).toBe(false);
    const r = await cli(home.root, initArgs('one', home.root, '--profile', 'cpu'), { LLAMA_SERVER: '/bin/true' });
    expect(r.code, r.stderr).toBe(0);
    const config = path.join(home.root, 'instances', 'one', 'config.json');
    const ref = (JSON.parse(fs.readFileSync(config, 'utf8')) as { $schema: string }).$schema;
    expect(path.resolve(path.dirname(config), ref)).toBe(schema);
    expect(JSON.parse(fs.readFileSync(schema, 'utf8'))).toMatchObject({ title: 'llama-orch instance config' });
    expect(r.stdout).toContain(`wrote ${schema}`);

    fs.writeFileSync(schema, '{"mine": true}\n');
    const two = await cli(home.root, initArgs('two', home.root, '--profile', 'cpu'), { LLAMA_SERVER: '/bin/true' });
    expect(two.code, two.stderr).toBe(0);
    expect(fs.readFileSync(schema, 'utf8')).toBe('{"mine": true}\n');
    expect(two.stdout).not.toContain('config.schema.json');
  });
});

describe('hints carry --home when the home is not the default one', () => {
  it('init: with --home from elsewhere, from the home itself, and through LLAMA_ORCH_HOME', async () => {
    const home = homes.make();
    const env = { LLAMA_SERVER: '/bin/true' };
    const away = await run(os.tmpdir(), [...initArgs('a1', home.root, '--profile', 'cpu'), '--home', home.root], env);
    expect(away.code, away.stderr).toBe(0);
    expect(away.stdout).toMatch(new RegExp(`^start it with: llama-orch up a1 --home ${home.root}$`, 'm'));
    const inside = await run(home.root, initArgs('a2', home.root, '--profile', 'cpu'), env);
    expect(inside.code, inside.stderr).toBe(0);
    expect(inside.stdout).toMatch(/start it with: llama-orch up a2$/m);
    const byEnv = await run(os.tmpdir(), initArgs('a3', home.root, '--profile', 'cpu'), {
      ...env,
      LLAMA_ORCH_HOME: home.root,
    });
    expect(byEnv.code, byEnv.stderr).toBe(0);
    expect(byEnv.stdout).toMatch(/start it with: llama-orch up a3$/m);
  });

  it('a home with a space is quoted so the hint can be pasted', async () => {
    const home = homes.make('llama orch hints ');
    const r = await cli(home.root, ['up', 'nothing']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `create one with: llama-orch init nothing --profile cpu --model PATH --port N --home '${home.root}'`,
    );
    const ps = await cli(home.root, ['ps']);
    expect(ps.stdout).toContain(`run "llama-orch init --home '${home.root}'"`);
  });

  it('up of a running instance points at restart in this home', async () => {
    const home = homes.make();
    home.addInstance('m1', fakeConfig(freePort()));
    expect((await cli(home.root, ['up', 'm1'])).code).toBe(0);
    const again = await cli(home.root, ['up', 'm1']);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain(`hint: use "llama-orch restart m1 --home ${home.root}" to restart it`);
  });
});

describe('hints written by the daemon and the keepers carry --home', () => {
  // Their directory and $LLAMA_ORCH_HOME are the home itself (systemd's unit sets both): a hint
  // without --home would work there, and nowhere an operator reads it.
  it("a keeper's last_error, read with ps --json from another directory", async () => {
    const home = homes.make();
    home.addInstance('k1', fakeConfig(freePort()));
    expect((await cli(home.root, ['up', 'k1'])).code).toBe(0);
    expect((await cli(home.root, ['down', 'k1'])).code).toBe(0);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(path.join(home.root, 'state', 'llama-orch.db'));
    try {
      // A keeper started with no validated config recorded (by hand, or by an older llama-orch):
      // it fails and says how to start the instance.
      db.prepare(`UPDATE instances SET config_json = NULL WHERE name = 'k1'`).run();
      const keeper = execa('node', [CLI, 'keeper', 'k1'], {
        cwd: home.root,
        reject: false,
        env: { ...process.env, LLAMA_ORCH_HOME: home.root },
        extendEnv: false,
      });
      db.prepare(`UPDATE runtime SET keeper_pid = ?, status = 'starting' WHERE name = 'k1'`).run(keeper.pid);
      expect((await keeper).exitCode).toBe(1);
    } finally {
      db.close();
    }
    const r = await run(os.tmpdir(), ['ps', '--json', '--home', home.root]);
    const row = (JSON.parse(r.stdout) as Array<Record<string, unknown>>)[0];
    expect(row).toMatchObject({ name: 'k1', state: 'failed' });
    expect(row?.last_error).toBe(
      `no validated config recorded for this instance: start it with "llama-orch up k1 --home ${home.root}"`,
    );
  });

  it("the daemon's log, for a daemon whose $LLAMA_ORCH_HOME is the home", async () => {
    const home = homes.make();
    home.addInstance('auto', fakeConfig(freePort(), {}, { autostart: true }));
    expect((await cli(home.root, ['up', 'auto'])).code).toBe(0);
    expect((await cli(home.root, ['down', 'auto'])).code).toBe(0);
    // The daemon inherits the environment of `daemon start`.
    const start = await run(home.root, ['daemon', 'start', '--interval', '0.5'], { LLAMA_ORCH_HOME: home.root });
    expect(start.code, start.stderr).toBe(0);
    try {
      const log = path.join(home.root, 'logs', 'daemon.log');
      const line = await waitFor(
        () =>
          fs.existsSync(log)
            ? fs
                .readFileSync(log, 'utf8')
                .split('\n')
                .find((l) => l.includes('autostart: auto skipped'))
            : undefined,
        10_000,
        'the autostart line',
      );
      expect(line).toContain(`"llama-orch up auto --home ${home.root}" starts it`);
    } finally {
      await cli(home.root, ['daemon', 'stop']);
    }
  });
});
