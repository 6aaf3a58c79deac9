import { describe, expect, it } from 'vitest';
import { cli, fakeConfig, freePort, homePerTest, isAlive, psJson } from '../helpers/home.js';

// --json on the commands that report a result, and `up --wait` as an operator sees it (#11).
const homes = homePerTest();

describe('--json results', () => {
  it('up, down and restart print one object per instance; errors are objects with their exit code', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort()));
    home.addInstance('b', fakeConfig(freePort()));
    const up = await cli(home.root, ['up', 'a', '--wait', '10', '--json']);
    expect(up.code, up.stderr).toBe(0);
    const [a] = JSON.parse(up.stdout) as Array<Record<string, unknown>>;
    expect(a).toMatchObject({ name: 'a', ok: true, status: 'running', health: 'ok', adopted: false, error: null });
    expect(a?.pid).toBe((await psJson(home.root)).find((r) => r.name === 'a')?.pid);

    // a is running: exit 3, reported in the array; b starts.
    const again = await cli(home.root, ['up', 'a', 'b', '--json']);
    expect(again.code).toBe(3);
    expect(again.stderr).toBe('');
    const results = JSON.parse(again.stdout) as Array<Record<string, unknown>>;
    expect(results[0]).toMatchObject({ name: 'a', ok: false, exit_code: 3 });
    expect(results[0]?.error).toMatch(/a is already running/);
    expect(results[0]?.hint).toMatch(/restart a/);
    expect(results[1]).toMatchObject({ name: 'b', ok: true });

    // An unknown name is that name's failure (exit 2); the others are still acted on.
    const mixed = await cli(home.root, ['down', 'ghost', 'b', '--json']);
    expect(mixed.code).toBe(2);
    const m = JSON.parse(mixed.stdout) as Array<Record<string, unknown>>;
    expect(m.map((r) => [r.name, r.ok, r.exit_code ?? null])).toEqual([
      ['ghost', false, 2],
      ['b', true, null],
    ]);
    expect(m[0]?.error).toMatch(/unknown instance "ghost"/);

    const down = await cli(home.root, ['down', '--all', '--json']);
    expect(down.code).toBe(0);
    const stopped = JSON.parse(down.stdout) as Array<Record<string, unknown>>;
    expect(stopped.map((r) => [r.name, r.ok, r.was_running])).toEqual([
      ['a', true, true],
      ['b', true, false],
    ]);
    expect(isAlive(a?.pid as number)).toBe(false);
  });

  it('logs --json prints JSON lines; daemon status --json says whether it runs (exit 1 when not)', async () => {
    const home = homes.make();
    home.addInstance('a', fakeConfig(freePort(), { FAKE_STDERR: 'hello "quoted" line' }));
    expect((await cli(home.root, ['up', 'a', '--wait', '10'])).code).toBe(0);
    const logs = await cli(home.root, ['logs', 'a', '-n', '5', '--json']);
    expect(logs.code).toBe(0);
    const lines = logs.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { name: string; stream: string; line: string });
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.name === 'a' && l.stream === 'stderr')).toBe(true);
    expect(lines.some((l) => l.line.includes('hello "quoted" line'))).toBe(true);
    const st = await cli(home.root, ['daemon', 'status', '--json']);
    expect(st.code).toBe(1);
    expect(JSON.parse(st.stdout)).toMatchObject({ running: false, pid: null, home: home.root });
    await cli(home.root, ['down', 'a']);
  });
});

describe('up --wait', () => {
  it('shows progress while the model loads (plain lines when not a terminal), and a second up --wait joins', async () => {
    const home = homes.make();
    home.addInstance('slow', fakeConfig(freePort(), { FAKE_LOAD_MS: '2500' }, { healthcheck: { start_period: 5 } }));
    const first = cli(home.root, ['up', 'slow', '--wait', '20']);
    await new Promise((r) => setTimeout(r, 800));
    // Already starting: joins the wait instead of exiting 3.
    const second = await cli(home.root, ['up', 'slow', '--wait', '20']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/slow: already (starting|running); waiting for it to be healthy/);
    expect(second.stdout).toMatch(/slow: healthy \(pid \d+\)/);
    const r = await first;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^slow: running, loading.*\(\d+ s\)$/m);
    // One line per change, not one per second of loading.
    expect(r.stderr.split('\n').filter((l) => /loading/.test(l)).length).toBeLessThanOrEqual(2);
    // Without --wait, an instance already running is still exit 3.
    expect((await cli(home.root, ['up', 'slow'])).code).toBe(3);
    await cli(home.root, ['down', 'slow']);
  });
});
