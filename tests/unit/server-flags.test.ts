import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { homeAt } from '../../src/domain/home.js';
import {
  checkServerArgs,
  parseServerHelp,
  serverFlags,
  serverFlagsCacheFile,
  type ServerFlags,
} from '../../src/config/server-flags.js';
import { FAKE_SERVER } from '../helpers/home.js';

// The fake server prints lines copied from llama-server's own --help (llama.cpp de3ff81).
const fakeHelp = () => execFileSync('node', [FAKE_SERVER, '--help'], { encoding: 'utf8' });

describe("parsing llama-server's --help", () => {
  it('reads every name of a flag and how many values follow it', () => {
    const flags = parseServerHelp(fakeHelp()) as ServerFlags;
    expect(flags).toBeDefined();
    for (const f of ['-ngl', '--gpu-layers', '--n-gpu-layers', '-m', '--model', '--port', '-fa', '--flash-attn', '-sm'])
      expect(flags[f], f).toBe(1);
    for (const f of ['--metrics', '-cb', '-nocb', '--no-cont-batching', '--perf', '--no-perf', '-h', '--usage'])
      expect(flags[f], f).toBe(0);
    expect(flags['--control-vector-layer-range']).toBe(2);
    // Description lines ("- none: use one GPU only") and section rules are not flags.
    expect(Object.keys(flags).every((f) => /^--?[A-Za-z0-9]/.test(f))).toBe(true);
    expect(flags['-']).toBeUndefined();
  });

  it('is undefined for output that is not a llama-server flag list', () => {
    expect(parseServerHelp('')).toBeUndefined();
    expect(parseServerHelp('usage: something-else [-h] [--verbose]\n-v, --verbose  chatty\n')).toBeUndefined();
  });
});

describe('checking extra_args against the flags', () => {
  const flags = parseServerHelp(fakeHelp()) as ServerFlags;
  const check = (args: string[]) => checkServerArgs(args, flags, '/opt/llama-server');

  it('skips the values of flags, whatever they look like', () => {
    expect(check(['--cache-type-k', 'q8_0', '--seed', '-1', '--metrics', '-fa', 'on'])).toEqual([]);
    expect(check(['--control-vector-layer-range', '1', '-5', '--no-slots'])).toEqual([]);
  });

  it('names an unknown flag by index with the closest known one', () => {
    expect(check(['--metrics', '--metric'])).toEqual([
      {
        index: 1,
        message:
          'unknown llama-server flag "--metric" (did you mean "--metrics"?): /opt/llama-server --help does not list it',
      },
    ]);
    // A flag it is the start of; the unknown flag's value is not a second problem.
    expect(check(['--flash', 'on', '--metrics'])).toEqual([
      {
        index: 0,
        message:
          'unknown llama-server flag "--flash" (did you mean "--flash-attn"?): /opt/llama-server --help does not list it',
      },
    ]);
    const far = check(['--no-such-flag']);
    expect(far).toHaveLength(1);
    expect(far[0]?.message).toMatch(/^unknown llama-server flag "--no-such-flag"/);
  });

  it('tells a flag=value, a stray value and a missing value apart', () => {
    expect(check(['--flash-attn=on'])[0]?.message).toBe(
      'llama-server does not read "--flash-attn=on": write "--flash-attn" and "on" as two elements',
    );
    expect(check(['--metrics', '4096'])).toEqual([
      { index: 1, message: expect.stringContaining('"4096" is not a flag') as unknown },
    ]);
    expect(check(['--metrics', '--seed'])).toEqual([
      { index: 1, message: '"--seed" needs a value after it (the next element of extra_args)' },
    ]);
    expect(check(['--control-vector-layer-range', '1'])[0]?.message).toContain('needs 2 values');
  });
});

describe('the cache of parsed --help', () => {
  let root: string;
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('runs --help once per binary version, failures included', () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-orch-flags-'));
    const home = homeAt(root);
    const bin = path.join(root, 'llama-server');
    fs.writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
    let runs = 0;
    let text = fakeHelp();
    const run = () => {
      runs++;
      return { text };
    };
    const first = serverFlags(home, bin, {}, run);
    expect(first).toMatchObject({ fresh: true });
    expect(first.flags?.['--metrics']).toBe(0);
    expect(runs).toBe(1);
    expect(fs.statSync(serverFlagsCacheFile(home)).mode & 0o777).toBe(0o600);
    // Unchanged binary: not run again (another process reads the cache file: tests/integration).
    expect(serverFlags(home, bin, {}, run)).toMatchObject({ fresh: false, flags: first.flags });
    expect(runs).toBe(1);

    // A new build (another size and mtime) is read again; this one prints no flag list.
    text = 'not llama-server\n';
    fs.writeFileSync(bin, '#!/bin/sh\necho\n');
    fs.utimesSync(bin, new Date(), new Date(Date.now() + 5000));
    const broken = serverFlags(home, bin, {}, run);
    expect(runs).toBe(2);
    expect(broken.flags).toBeUndefined();
    expect(broken.failure).toBe(`"${bin} --help" printed no llama-server flag list (no --port in it)`);
    expect(broken.fresh).toBe(true);
    // Reported once: the failure is cached like a result.
    expect(serverFlags(home, bin, {}, run)).toMatchObject({ fresh: false, failure: broken.failure });
    expect(runs).toBe(2);
    const cached = JSON.parse(fs.readFileSync(serverFlagsCacheFile(home), 'utf8')) as {
      binaries: Record<string, { failure?: string }>;
    };
    expect(cached.binaries[fs.realpathSync(bin)]?.failure).toBe(broken.failure);
  });

  it('does not cache a run that did not end (timeout, spawn error, signal); asks once per process', () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-orch-flags-'));
    const home = homeAt(root);
    const bin = path.join(root, 'llama-server');
    fs.writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
    let runs = 0;
    const killed = () => {
      runs++;
      return { text: '', failure: 'was killed by SIGSEGV', transient: true };
    };
    const first = serverFlags(home, bin, {}, killed);
    expect(first).toMatchObject({
      fresh: true,
      failure: `"${bin} --help" was killed by SIGSEGV (not cached: tried again next time)`,
    });
    // The same process (restart checks, then starts) does not wait for it twice, nor warns twice.
    expect(serverFlags(home, bin, {}, killed)).toMatchObject({ fresh: false, failure: first.failure });
    expect(runs).toBe(1);
    expect(fs.existsSync(serverFlagsCacheFile(home))).toBe(false);
  });

  it('keys the cache by the binary and the instance environment --help ran with', () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-orch-flags-'));
    const home = homeAt(root);
    const bin = path.join(root, 'llama-server');
    fs.writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
    const seen: Array<string | undefined> = [];
    const run = (_b: string, env: NodeJS.ProcessEnv) => {
      seen.push(env.LD_LIBRARY_PATH);
      return env.LD_LIBRARY_PATH
        ? { text: fakeHelp() }
        : { text: 'error while loading shared libraries', failure: 'exited with code 127' };
    };
    expect(serverFlags(home, bin, { PATH: '/bin' }, run).flags).toBeUndefined();
    expect(serverFlags(home, bin, { PATH: '/bin' }, run, { LD_LIBRARY_PATH: '/opt/llama/lib' }).flags?.['--port']).toBe(
      1,
    );
    expect(seen).toEqual([undefined, '/opt/llama/lib']);
    // The file holds a digest of the instance environment, never its values.
    expect(fs.readFileSync(serverFlagsCacheFile(home), 'utf8')).not.toContain('/opt/llama/lib');
  });
});
