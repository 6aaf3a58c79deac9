import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, cli, fakeConfig, freePort, homePerTest } from '../helpers/home.js';

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
