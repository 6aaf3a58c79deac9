import { describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest } from '../helpers/home.js';

const homes = homePerTest();

describe('--once and non-TTY output', () => {
  it('prints the table once (also without flags when stdout is not a terminal) and JSON for scripts', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance('one', fakeConfig(port));
    home.addInstance('two', fakeConfig(freePort()));
    await cli(home.root, ['up', 'one', '--wait', '10']);
    const once = await cli(home.root, ['--once']);
    expect(once.code).toBe(0);
    expect(once.stdout).toMatch(/NAME\s+STATE\s+HEALTH\s+PID\s+PORT\s+BACKEND\s+GPU\s+MODEL\s+UPTIME\s+RESTARTS/);
    expect(once.stdout).toMatch(new RegExp(`one\\s+running\\s+ok\\s+\\d+\\s+${port}\\s+cpu`));
    expect(once.stdout).toMatch(/two\s+stopped/);
    const plain = await cli(home.root, []);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('NAME');
    const json = JSON.parse((await cli(home.root, ['--once', '--json'])).stdout) as {
      daemon: { running: boolean };
      instances: Array<Record<string, unknown>>;
    };
    expect(json.daemon).toEqual({ running: false, pid: null, proxy: null });
    const one = json.instances.find((i) => i.name === 'one') as Record<string, unknown>;
    for (const k of [
      'name',
      'state',
      'health',
      'pid',
      'port',
      'backend',
      'gpus',
      'model',
      'started_at',
      'uptime_s',
      'restarts',
      'last_exit',
    ])
      expect(one).toHaveProperty(k);
    expect(one).toMatchObject({ state: 'running', health: 'ok', port, backend: 'cpu', gpus: [] });
  });

  it('shows an instance with a broken config as invalid, with the problem', async () => {
    const home = homes.make();
    home.addInstance('broken', { model: { path: 'x' }, server: { port: 'eighty' } });
    const r = JSON.parse((await cli(home.root, ['ps', '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(r[0]).toMatchObject({ name: 'broken', state: 'invalid' });
    expect(String(r[0]?.config_error)).toContain('$.server.port');
  });
});
