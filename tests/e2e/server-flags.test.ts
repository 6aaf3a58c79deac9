import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cli, freePort, homePerTest, isAlive, psJson, waitForRow } from '../helpers/home.js';
import { realConfig, realServer } from '../helpers/real-server.js';
import { parseServerHelp } from '../../src/config/server-flags.js';

// extra_args checked against the real llama-server's --help (the binary scripts/setup-llama-server.sh built).

const homes = homePerTest();

describe("the real llama-server's flags", () => {
  it('its --help parses into the flags it accepts, each with its values', () => {
    const text = execFileSync(realServer(), ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const flags = parseServerHelp(text);
    expect(flags).toBeDefined();
    expect(Object.keys(flags ?? {}).length).toBeGreaterThan(200);
    expect(flags).toMatchObject({
      '-m': 1,
      '--model': 1,
      '-ngl': 1,
      '--gpu-layers': 1,
      '--n-gpu-layers': 1,
      '--port': 1,
      '--metrics': 0,
      '-fa': 1,
      '--no-kv-offload': 0,
      '--control-vector-layer-range': 2,
    });
  });

  it('a running server is not restarted onto a flag the binary does not know', async () => {
    const home = homes.make();
    const file = home.addInstance(
      'r1',
      realConfig(freePort(), { server: { extra_args: ['--metrics', '-fa', 'auto', '--cache-type-k', 'f16'] } }),
    );
    const up = await cli(home.root, ['up', 'r1', '--wait', '30']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).not.toContain('warning');
    const before = await waitForRow(home.root, 'r1', (r) => r.health === 'ok', 30_000, 'healthy');

    const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as { server: { extra_args: string[] } };
    cfg.server.extra_args = ['--metrics', '--no-such-flag', '--gpu-layer', '0'];
    fs.writeFileSync(file, JSON.stringify(cfg));
    const r = await cli(home.root, ['restart', 'r1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('$.server.extra_args[1]: unknown llama-server flag "--no-such-flag"');
    expect(r.stderr).toContain(
      '$.server.extra_args[2]: unknown llama-server flag "--gpu-layer" (did you mean "--gpu-layers"?)',
    );
    const after = (await psJson(home.root)).find((x) => x.name === 'r1');
    expect(after).toMatchObject({ state: 'running', health: 'ok', pid: before.pid });
    expect(isAlive(before.pid as number)).toBe(true);

    const lint = await cli(home.root, ['config', 'lint']);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain('unknown llama-server flag "--no-such-flag"');
  });
});
