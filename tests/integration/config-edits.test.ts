import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cli,
  fakeConfig,
  freePort,
  isAlive,
  psJson,
  waitFor,
  waitForRow,
  type TestHome,
  homePerTest,
} from '../helpers/home.js';

// An operator edits or removes a config while its server runs: what runs keeps running and stays
// visible and stoppable; a restart onto a broken config is refused before anything is stopped.

const homes = homePerTest();

async function upHealthy(h: TestHome, name: string): Promise<number> {
  const up = await cli(h.root, ['up', name, '--wait', '10']);
  expect(up.code, up.stderr).toBe(0);
  return (await waitForRow(h.root, name, (r) => r.health === 'ok', 10_000, 'ok')).pid as number;
}

describe('config edits while an instance runs', () => {
  it('a broken file: ps shows the running config and the problem, restart is refused, down still works', async () => {
    const home = homes.make();
    const port = freePort();
    const file = home.addInstance('a', fakeConfig(port, {}, { model: { path: 'models/fake.gguf', alias: 'alpha' } }));
    const pid = await upHealthy(home, 'a');
    fs.writeFileSync(file, JSON.stringify({ model: { path: 'models/fake.gguf' }, server: { port, threads: -3 } }));

    const row = (await psJson(home.root)).find((r) => r.name === 'a') as Record<string, unknown>;
    expect(row).toMatchObject({ state: 'running', pid, port, backend: 'cpu', model: 'alpha' });
    expect(row.config_error).toMatch(/\$\.server: unknown key "threads"/);
    const text = await cli(home.root, ['ps']);
    expect(text.stdout).toMatch(
      /a: config problem \(the running server keeps the config it was started with\): \$\.server: unknown key "threads"/,
    );

    const restart = await cli(home.root, ['restart', 'a']);
    expect(restart.code).toBe(1);
    expect(restart.stderr).toContain('invalid config for "a"');
    expect(isAlive(pid)).toBe(true); // refused before anything was stopped
    expect((await psJson(home.root)).find((r) => r.name === 'a')).toMatchObject({ state: 'running', pid });

    const down = await cli(home.root, ['down', 'a']);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain(`a stopped (server pid ${pid})`);
    await waitFor(() => (isAlive(pid) ? undefined : true), 5000, 'server gone');
    expect((await psJson(home.root)).find((r) => r.name === 'a')).toMatchObject({ state: 'invalid', pid: null });
  });

  it('a removed instance dir: the server still shows in ps and down NAME / down --all stop it', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    home.addInstance('b', fakeConfig(freePort()));
    const a = await upHealthy(home, 'a');
    const b = await upHealthy(home, 'b');
    fs.rmSync(path.join(home.root, 'instances', 'a'), { recursive: true });
    fs.rmSync(path.join(home.root, 'instances', 'b'), { recursive: true });
    expect((await psJson(home.root)).map((r) => [r.name, r.state, r.pid])).toEqual([
      ['a', 'running', a],
      ['b', 'running', b],
    ]);

    const downA = await cli(home.root, ['down', 'a']);
    expect(downA.code, downA.stderr).toBe(0);
    const downAll = await cli(home.root, ['down', '--all']);
    expect(downAll.code, downAll.stderr).toBe(0);
    expect(downAll.stdout).toContain(`b stopped (server pid ${b})`);
    await waitFor(() => (isAlive(a) || isAlive(b) ? undefined : true), 5000, 'servers gone');
    // Nothing runs and nothing is configured: the instances are gone from ps.
    expect(await psJson(home.root)).toEqual([]);
    // A name that was never known is still an unknown instance.
    expect((await cli(home.root, ['down', 'nosuch'])).code).toBe(2);
  });

  it('restart checks the new config before stopping: a missing model is refused, the server keeps running', async () => {
    const home = homes.make();
    const port = freePort();
    const file = home.addInstance('a', fakeConfig(port));
    const pid = await upHealthy(home, 'a');
    fs.writeFileSync(file, JSON.stringify(fakeConfig(port, {}, { model: { path: 'models/missing.gguf' } })));
    const restart = await cli(home.root, ['restart', 'a']);
    expect(restart.code).toBe(1);
    expect(restart.stderr).toMatch(/model file .*missing\.gguf does not exist/);
    expect(isAlive(pid)).toBe(true);
    // Its own server holding the port is not a collision: a valid restart goes through.
    fs.writeFileSync(file, JSON.stringify(fakeConfig(port)));
    const ok = await cli(home.root, ['restart', 'a', '--wait', '10']);
    expect(ok.code, ok.stderr).toBe(0);
    const row = await waitForRow(home.root, 'a', (r) => r.health === 'ok' && r.pid !== pid, 10_000, 'new server');
    expect(row.port).toBe(port);
    expect(isAlive(pid)).toBe(false);
  });
});
