import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FAKE_SERVER,
  cli,
  fakeConfig,
  freePort,
  homePerTest,
  isAlive,
  psJson,
  waitForRow,
  type TestHome,
} from '../helpers/home.js';

// extra_args are checked against the flags the configured llama-server lists in its --help, before
// anything is stopped or started; the parsed list is cached per binary version in state/.

const homes = homePerTest();

function editConfig(file: string, edit: (cfg: { server: Record<string, unknown> }) => void): void {
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as { server: Record<string, unknown> };
  edit(cfg);
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
}

/** A copy of the fake server in the home, so a test may change "the binary" (its size and mtime). */
function ownBinary(home: TestHome): string {
  const bin = path.join(home.root, 'bin', 'llama-server');
  fs.mkdirSync(path.dirname(bin));
  fs.copyFileSync(FAKE_SERVER, bin);
  fs.chmodSync(bin, 0o755);
  return bin;
}

const helpRuns = (log: string) =>
  (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : []).length;

describe('extra_args against the binary', () => {
  it('restart of a running instance onto an unknown flag is refused; the server keeps its pid', async () => {
    const home = homes.make();
    const file = home.addInstance('m1', fakeConfig(freePort()));
    const up = await cli(home.root, ['up', 'm1', '--wait', '10']);
    expect(up.code, up.stderr).toBe(0);
    const before = await waitForRow(home.root, 'm1', (r) => r.health === 'ok', 10_000, 'healthy');
    editConfig(file, (cfg) => (cfg.server.extra_args = ['--metrics', '--no-such-flag']));

    const r = await cli(home.root, ['restart', 'm1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `${file}: $.server.extra_args[1]: unknown llama-server flag "--no-such-flag": ${FAKE_SERVER} --help does not list it`,
    );
    expect(r.stderr).toContain(`hint: fix server.extra_args in ${file}`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const after = (await psJson(home.root)).find((row) => row.name === 'm1');
    expect(after).toMatchObject({ state: 'running', pid: before.pid, keeper_pid: before.keeper_pid });
    expect(isAlive(before.pid as number)).toBe(true);

    // config lint says the same, with the closest flag for a misspelling, exit 1.
    editConfig(file, (cfg) => (cfg.server.extra_args = ['--metric']));
    const lint = await cli(home.root, ['config', 'lint', '--json']);
    expect(lint.code).toBe(1);
    expect(JSON.parse(lint.stdout)).toMatchObject({
      checked: 1,
      problems: [
        {
          file,
          jsonPath: '$.server.extra_args[0]',
          message: expect.stringContaining(
            'unknown llama-server flag "--metric" (did you mean "--metrics"?)',
          ) as unknown,
        },
      ],
      warnings: [],
    });
  });

  it('up refuses before starting anything; values of flags are not flags', async () => {
    const home = homes.make();
    home.addInstance(
      'm2',
      fakeConfig(freePort(), {}, { server: { extra_args: ['--seed', '-1', '--ctx-sise', '4096'] } }),
    );
    const r = await cli(home.root, ['up', 'm2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      '$.server.extra_args[2]: unknown llama-server flag "--ctx-sise" (did you mean "--ctx-size"?)',
    );
    expect(r.stderr).not.toContain('extra_args[0]');
    expect(r.stderr).not.toContain('extra_args[3]');
    const row = (await psJson(home.root)).find((x) => x.name === 'm2');
    expect(row).toMatchObject({ state: 'stopped', pid: null, keeper_pid: null });
    expect(fs.existsSync(path.join(home.root, 'logs', 'm2', 'keeper.log'))).toBe(false);
  });

  it('runs --help once per binary version: up, down, up and config lint read the cache', async () => {
    const home = homes.make();
    const bin = ownBinary(home);
    const log = path.join(home.root, 'help-runs.log');
    home.addInstance(
      'm3',
      fakeConfig(
        freePort(),
        { FAKE_HELP_LOG: log },
        { server: { binary: bin, extra_args: ['--cache-type-k', 'q8_0', '-fa', 'on', '--metrics'] } },
      ),
    );
    expect((await cli(home.root, ['up', 'm3'])).code).toBe(0);
    expect(helpRuns(log)).toBe(1);
    expect((await cli(home.root, ['down', 'm3'])).code).toBe(0);
    const again = await cli(home.root, ['up', 'm3']);
    expect(again.code, again.stderr).toBe(0);
    const lint = await cli(home.root, ['config', 'lint']);
    expect(lint.code, lint.stderr).toBe(0);
    expect(helpRuns(log)).toBe(1);
    expect(fs.existsSync(path.join(home.root, 'state', 'server-flags.json'))).toBe(true);

    // A rebuilt binary (new mtime) is read again; restart checks it before stopping.
    fs.utimesSync(bin, new Date(), new Date(Date.now() + 10_000));
    const restart = await cli(home.root, ['restart', 'm3']);
    expect(restart.code, restart.stderr).toBe(0);
    expect(helpRuns(log)).toBe(2);
  });

  it('a binary whose --help fails does not block starting: one warning, then silence', async () => {
    const home = homes.make();
    home.addInstance(
      'm4',
      fakeConfig(freePort(), { FAKE_HELP: 'fail' }, { server: { binary: ownBinary(home), extra_args: ['--metrics'] } }),
    );
    const first = await cli(home.root, ['up', 'm4']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(
      `warning: m4: server.extra_args not checked: "${path.join(home.root, 'bin', 'llama-server')} --help" exited with code 1`,
    );
    await waitForRow(home.root, 'm4', (r) => r.state === 'running', 10_000, 'running');
    expect((await cli(home.root, ['down', 'm4'])).code).toBe(0);
    const second = await cli(home.root, ['up', 'm4']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toContain('warning');
    // config lint, where checks are asked for, says it each time (exit 0: a warning).
    const lint = await cli(home.root, ['config', 'lint']);
    expect(lint.code, lint.stderr).toBe(0);
    expect(lint.stderr).toContain('warning: ');
    expect(lint.stderr).toContain('$.server.extra_args: server.extra_args not checked');
  });
});

describe('--help that gives no lasting answer', () => {
  it('a --help that does not exit within 5 s is not cached: up warns, starts, and the next command asks again', async () => {
    const home = homes.make();
    const bin = ownBinary(home);
    const log = path.join(home.root, 'help-runs.log');
    const file = home.addInstance(
      'h1',
      fakeConfig(freePort(), { FAKE_HELP_LOG: log }, { server: { binary: bin, extra_args: ['--metrics'] } }),
    );
    // The environment of this one command only: the binary answers the next time.
    const first = await cli(home.root, ['up', 'h1'], { FAKE_HELP: 'hang' });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(
      `warning: h1: server.extra_args not checked: "${bin} --help" did not exit within 5 s (not cached: tried again next time)`,
    );
    expect(first.stderr.match(/warning:/g)).toHaveLength(1);
    const cache = path.join(home.root, 'state', 'server-flags.json');
    const cached = fs.existsSync(cache) ? fs.readFileSync(cache, 'utf8') : '';
    expect(cached).not.toContain('did not exit');
    await waitForRow(home.root, 'h1', (r) => r.state === 'running', 10_000, 'running');
    expect((await cli(home.root, ['down', 'h1'])).code).toBe(0);

    // Asked again: now it answers, and an unknown flag is found before anything starts.
    editConfig(file, (cfg) => (cfg.server.extra_args = ['--metrics', '--no-such-flag']));
    const second = await cli(home.root, ['up', 'h1']);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('$.server.extra_args[1]: unknown llama-server flag "--no-such-flag"');
    expect(helpRuns(log)).toBe(2);
    // That answer is cached.
    expect((await cli(home.root, ['config', 'lint'])).code).toBe(1);
    expect(helpRuns(log)).toBe(2);
  });

  it("one instance's server.env does not decide how another instance's extra_args are checked", async () => {
    const home = homes.make();
    const bin = ownBinary(home);
    // The same binary; with a's environment its --help prints no flag list (as a missing library
    // path would make it fail), with b's it answers.
    const a = home.addInstance(
      'a',
      fakeConfig(freePort(), { FAKE_HELP: 'garbage' }, { server: { binary: bin, extra_args: ['--metrics'] } }),
    );
    const b = home.addInstance(
      'b',
      fakeConfig(freePort(), {}, { server: { binary: bin, extra_args: ['--no-such-flag'] } }),
    );
    for (let i = 0; i < 2; i++) {
      // The second time from the cache: same answers.
      const lint = await cli(home.root, ['config', 'lint', '--json']);
      expect(lint.code).toBe(1);
      const report = JSON.parse(lint.stdout) as {
        problems: Array<{ file: string; message: string }>;
        warnings: Array<{ file: string; message: string }>;
      };
      expect(report.problems).toEqual([
        expect.objectContaining({
          file: b,
          message: expect.stringContaining('unknown llama-server flag "--no-such-flag"'),
        }),
      ]);
      expect(report.warnings).toEqual([
        expect.objectContaining({ file: a, message: expect.stringContaining('printed no llama-server flag list') }),
      ]);
    }
    const up = await cli(home.root, ['up', 'b']);
    expect(up.code).toBe(1);
    expect(up.stderr).toContain('unknown llama-server flag "--no-such-flag"');
  });
});
