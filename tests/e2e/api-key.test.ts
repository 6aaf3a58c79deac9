import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, freePort, psJson, waitFor, homePerTest } from '../helpers/home.js';
import { realConfig } from '../helpers/real-server.js';

const homes = homePerTest();

function allCmdlines(): string {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map((d) => {
      try {
        return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    })
    .join('\n');
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    // Regular files only: reading the servers' log FIFOs would block (and steal their output).
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('API key handling with the real llama-server', () => {
  it('is healthy with the key, and the key appears in no cmdline, JSON output, database or log', async () => {
    const home = homes.make();
    const canary = `canary-${Math.random().toString(36).slice(2)}-key`;
    const port = freePort();
    home.addInstance('secure', realConfig(port, { server: { api_key_env: 'SECURE_TEST_KEY' } }));
    const up = await cli(home.root, ['up', 'secure', '--wait', '20'], { SECURE_TEST_KEY: canary });
    expect(up.code, up.stderr).toBe(0);
    const row = (await psJson(home.root)).find((r) => r.name === 'secure');
    expect(row?.health).toBe('ok');
    // The server really requires it.
    const completion = `http://127.0.0.1:${port}/v1/models`;
    expect((await fetch(completion)).status).toBe(401);
    expect((await fetch(completion, { headers: { authorization: `Bearer ${canary}` } })).status).toBe(200);
    // Let a few more probes and log lines land.
    await waitFor(
      async () =>
        (
          JSON.parse((await cli(home.root, ['describe', 'secure', '--json'])).stdout) as {
            recent_health: unknown[];
          }
        ).recent_health.length >= 3 || undefined,
      10_000,
      'probes',
    );

    // The metrics scrape sends the key as the probes do: a refused one would leave slots unknown.
    await waitFor(
      async () => (await psJson(home.root)).find((r) => r.name === 'secure')?.slots_total === 2 || undefined,
      15_000,
      'the metrics read with the key',
    );
    // bench sends it too; without it in the shell, bench says which variable to set.
    const bench = await cli(
      home.root,
      ['bench', 'secure', '--requests', '2', '--prompt-tokens', '8', '--max-tokens', '8', '--json'],
      {
        SECURE_TEST_KEY: canary,
      },
    );
    expect(bench.code, bench.stderr).toBe(0);
    expect(JSON.parse(bench.stdout)).toMatchObject({ completed: 2, errors: 0 });
    const noKey = await cli(home.root, ['bench', 'secure'], { SECURE_TEST_KEY: '' });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toContain('SECURE_TEST_KEY is not set');

    expect(allCmdlines()).not.toContain(canary);
    const outputs = [
      (await cli(home.root, ['ps', '--json'])).stdout,
      (await cli(home.root, ['describe', 'secure', '--json'])).stdout,
      (await cli(home.root, ['--once', '--json'])).stdout,
      (await cli(home.root, ['events', '--json'])).stdout,
      (await cli(home.root, ['logs', 'secure', '-n', '1000'])).stdout,
    ];
    for (const o of outputs) expect(o).not.toContain(canary);
    for (const f of [...filesUnder(path.join(home.root, 'state')), ...filesUnder(path.join(home.root, 'logs'))]) {
      expect(fs.readFileSync(f).includes(canary), f).toBe(false);
    }
  });
});
