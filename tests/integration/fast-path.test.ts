import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, REPO, cli, fakeConfig, freePort, homePerTest } from '../helpers/home.js';

// bin/llama-orch.cjs answers ps / --once from dist/bundle/fast.cjs when it can. These tests prove
// that it answers (exit code from run(), 99 meaning "declined") and that what it prints is what the
// full CLI (dist/bundle/main.mjs, which never takes the fast path) prints.
const FAST = path.join(REPO, 'dist/bundle/fast.cjs');
const FULL = path.join(REPO, 'dist/bundle/main.mjs');

async function fast(root: string | undefined, args: string[]) {
  const argv = root === undefined ? args : [...args, '--home', root];
  // run() answers with a promise (a vendor tool may have to be read) or undefined (declined).
  const script = `Promise.resolve(require(${JSON.stringify(FAST)}).run(['node', 'llama-orch', ...${JSON.stringify(argv)}])).then((c) => (process.exitCode = c ?? 99))`;
  return execa('node', ['-e', script], { reject: false });
}

async function full(root: string, args: string[]) {
  return execa('node', [FULL, ...args, '--home', root], { reject: false });
}

/** Drops the fields that change between two calls a moment apart (uptime, the latest probe). */
function stable(list: Array<Record<string, unknown>>) {
  const volatile = /^(uptime_s|health_latency_ms)$/;
  return list.map((row) => Object.fromEntries(Object.entries(row).filter(([k]) => !volatile.test(k))));
}

const homes = homePerTest();

describe('the snapshot fast path', () => {
  it('answers ps and --once (text and JSON) exactly as the full CLI does, once configs are validated', async () => {
    const home = homes.make();
    const port = freePort();
    // Serving metrics off: a scrape between two reads would change TOK/S and metrics_at.
    home.addInstance('one', fakeConfig(port, {}, { metrics: false }));
    home.addInstance('two', fakeConfig(freePort(), {}, { metrics: false }));
    expect((await cli(home.root, ['up', 'one', '--wait', '10'])).code).toBe(0);
    expect((await full(home.root, ['ps'])).exitCode).toBe(0); // validates and caches both configs

    const fastJson = await fast(home.root, ['ps', '--json']);
    expect(fastJson.exitCode).toBe(0);
    const fullJson = await full(home.root, ['ps', '--json']);
    expect(stable(JSON.parse(fastJson.stdout) as Array<Record<string, unknown>>)).toEqual(
      stable(JSON.parse(fullJson.stdout) as Array<Record<string, unknown>>),
    );
    expect(JSON.parse(fastJson.stdout)).toContainEqual(
      expect.objectContaining({ name: 'one', state: 'running', health: 'ok', port }),
    );

    const noUptime = (s: string) => s.replace(/\b\d+s\b/g, 'Ns').replace(/\b\d+m\d+s\b/g, 'Ns');
    const fastPs = await fast(home.root, ['ps']);
    expect(fastPs.exitCode).toBe(0);
    expect(noUptime(fastPs.stdout)).toBe(noUptime((await full(home.root, ['ps'])).stdout));
    const fastOnce = await fast(home.root, ['--once']);
    expect(fastOnce.exitCode).toBe(0);
    expect(noUptime(fastOnce.stdout)).toBe(noUptime((await full(home.root, ['--once'])).stdout));

    const fastOnceJson = await fast(home.root, ['--once', '--json']);
    expect(fastOnceJson.exitCode).toBe(0);
    type Once = { generated_at: string; home: string; daemon: unknown; instances: [] };
    const a = JSON.parse(fastOnceJson.stdout) as Once;
    const b = JSON.parse((await full(home.root, ['--once', '--json'])).stdout) as Once;
    expect(Object.keys(a)).toEqual(Object.keys(b));
    expect({ ...a, generated_at: 0, instances: stable(a.instances) }).toEqual({
      ...b,
      generated_at: 0,
      instances: stable(b.instances),
    });
  });

  it('declines when a config changed since it was validated; the CLI then validates it and shows the problem', async () => {
    const home = homes.make();
    const file = home.addInstance('one', fakeConfig(freePort()));
    expect((await cli(home.root, ['ps'])).code).toBe(0);
    expect((await fast(home.root, ['ps', '--json'])).exitCode).toBe(0);

    // A broken edit: the fast path has no validator, so it leaves the command to the full CLI.
    fs.writeFileSync(file, JSON.stringify({ model: { path: 'models/fake.gguf' }, server: { port: 'eighty' } }));
    expect((await fast(home.root, ['ps', '--json'])).exitCode).toBe(99);
    const viaBin = await cli(home.root, ['ps', '--json']);
    expect(viaBin.code).toBe(0);
    const row = (JSON.parse(viaBin.stdout) as Array<Record<string, unknown>>)[0];
    expect(row).toMatchObject({ name: 'one', state: 'invalid' });
    // Validated (as invalid) and cached: the fast path answers again, with the same result.
    const again = await fast(home.root, ['ps', '--json']);
    expect(again.exitCode).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual(JSON.parse(viaBin.stdout));
  });

  it('declines on errors and unknown forms, so the full CLI reports them with its messages and exit codes', async () => {
    const missing = path.join(REPO, 'no-such-home-for-tests');
    expect((await fast(missing, ['ps'])).exitCode).toBe(99);
    const r = await execa('node', [CLI, 'ps', '--home', missing], { reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: home ${missing} does not exist`);
    expect(r.stderr).toContain('hint:');
    expect(r.stdout).toBe('');

    const home = homes.make();
    expect((await fast(home.root, ['ps', '--bogus'])).exitCode).toBe(99);
    const bogus = await execa('node', [CLI, 'ps', '--bogus', '--home', home.root], { reject: false });
    expect(bogus.exitCode).toBe(1);
    expect(bogus.stderr).toContain("unknown option '--bogus'");
    const help = await execa('node', [CLI, 'ps', '--help'], { reject: false });
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain('Usage: llama-orch ps');
  });
});
