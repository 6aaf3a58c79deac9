import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO, cli, fakeConfig, freePort, homePerTest, type CliResult } from '../helpers/home.js';

// Files that are not files (issue #26, item 4): a FIFO, a directory... where a config, llama-orch.json,
// a model or a log is expected is an error naming it, at once, never a wait; a UTF-8 BOM is accepted;
// invalid UTF-8 is an error with its byte offset. Every command here must answer promptly: before the
// fix a FIFO config hung ps, --once, config lint, up and the daemon.

const homes = homePerTest();
const stops: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

const FAST = path.join(REPO, 'dist/bundle/fast.cjs');
/** The snapshot fast path alone (exit 99: it declined, the full CLI would answer). */
async function fast(root: string, args: string[]) {
  const argv = [...args, '--home', root];
  const script = `Promise.resolve(require(${JSON.stringify(FAST)}).run(['node', 'llama-orch', ...${JSON.stringify(argv)}])).then((c) => (process.exitCode = c ?? 99))`;
  return execa('node', ['-e', script], { reject: false, timeout: 15_000 });
}

/** A command that must answer at once: well under the 5 s a hang would show as. */
async function prompt(root: string, args: string[]): Promise<CliResult> {
  const r = await cli(root, args);
  expect(r.ms, `${args.join(' ')} took ${Math.round(r.ms)} ms`).toBeLessThan(5000);
  return r;
}

function mkfifo(file: string): void {
  execFileSync('mkfifo', [file]);
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

describe('a config that is not a regular file', () => {
  it('a FIFO config.json: ps (full and fast path), --once, config lint, up and config validate answer at once', async () => {
    const home = homes.make();
    home.addInstance('ok', fakeConfig(freePort()));
    const file = path.join(home.root, 'instances', 'zz', 'config.json');
    fs.mkdirSync(path.dirname(file));
    mkfifo(file);
    const what = 'config.json is a FIFO (named pipe), not a regular file';

    // The fast path declines a config it has not seen validated (it never reads one itself)...
    expect((await fast(home.root, ['ps'])).exitCode).toBe(99);
    const ps = await prompt(home.root, ['ps']);
    expect(ps.code, ps.stderr).toBe(0);
    expect(ps.stdout).toMatch(/^zz\s+invalid/m);
    expect(ps.stdout).toContain(`zz: config problem: $: ${what}`);
    // ...and answers from the cached result once the full CLI has validated it.
    const viaFast = await fast(home.root, ['ps', '--json']);
    expect(viaFast.exitCode, viaFast.stderr).toBe(0);
    expect(JSON.parse(viaFast.stdout)).toContainEqual(
      expect.objectContaining({ name: 'zz', state: 'invalid', config_error: `$: ${what}` }),
    );
    const psJson = await prompt(home.root, ['ps', '--json']);
    expect(JSON.parse(psJson.stdout)).toContainEqual(
      expect.objectContaining({ name: 'zz', config_error: `$: ${what}` }),
    );

    const once = await prompt(home.root, ['--once']);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).toContain(`zz: config problem: $: ${what}`);

    const lint = await prompt(home.root, ['config', 'lint']);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain(`instances/zz/config.json: $: ${what}`);

    const up = await prompt(home.root, ['up', 'zz']);
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(`invalid config for "zz"`);
    expect(up.stderr).toContain(what);

    const validate = await prompt(home.root, ['config', 'validate', file]);
    expect(validate.code).toBe(1);
    expect(validate.stderr).toContain(what);
  });

  it('a directory named config.json is named as one', async () => {
    const home = homes.make();
    fs.mkdirSync(path.join(home.root, 'instances', 'dd', 'config.json'), { recursive: true });
    const lint = await prompt(home.root, ['config', 'lint']);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain('instances/dd/config.json: $: config.json is a directory, not a regular file');
    const up = await prompt(home.root, ['up', 'dd']);
    expect(up.code).toBe(1);
  });

  it('the daemon keeps serving and supervising with a FIFO config beside a good one', async () => {
    const home = homes.make();
    home.addInstance('ok', fakeConfig(freePort()));
    const fifoDir = path.join(home.root, 'instances', 'zz');
    fs.mkdirSync(fifoDir);
    mkfifo(path.join(fifoDir, 'config.json'));
    const port = freePort();
    const start = await prompt(home.root, ['daemon', 'start', '--listen', `127.0.0.1:${port}`, '--no-autostart']);
    stops.push(() => cli(home.root, ['daemon', 'stop']));
    expect(start.code, start.stderr).toBe(0);
    const t0 = Date.now();
    const health = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) });
    expect(health.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(5000);
    const up = await prompt(home.root, ['up', 'ok', '--wait', '10']);
    expect(up.code, up.stderr).toBe(0);
    const status = await prompt(home.root, ['daemon', 'status']);
    expect(status.code, status.stderr).toBe(0);
  });
});

describe('llama-orch.json that is not a regular file', () => {
  it('a FIFO llama-orch.json: daemon start and config lint fail at once naming it (exit 1)', async () => {
    const home = homes.make();
    home.addInstance('ok', fakeConfig(freePort()));
    const settings = path.join(home.root, 'llama-orch.json');
    fs.rmSync(settings);
    mkfifo(settings);
    const start = await prompt(home.root, ['daemon', 'start']);
    stops.push(() => cli(home.root, ['daemon', 'stop']));
    expect(start.code).toBe(1);
    expect(start.stderr).toContain(`cannot read ${settings}: it is a FIFO (named pipe), not a regular file`);
    const lint = await prompt(home.root, ['config', 'lint']);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain('llama-orch.json: $: it is a FIFO (named pipe), not a regular file');
    const validate = await prompt(home.root, ['config', 'validate', settings]);
    expect(validate.code).toBe(1);
  });
});

describe('encodings', () => {
  it('a UTF-8 BOM in llama-orch.json and config.json is accepted', async () => {
    const home = homes.make();
    const file = home.addInstance('bom', fakeConfig(freePort()));
    fs.writeFileSync(file, Buffer.concat([BOM, fs.readFileSync(file)]));
    const settings = path.join(home.root, 'llama-orch.json');
    fs.writeFileSync(settings, Buffer.concat([BOM, fs.readFileSync(settings)]));
    const lint = await prompt(home.root, ['config', 'lint']);
    expect(lint.stderr).not.toMatch(/Unexpected token|\uFEFF/);
    expect(lint.code, lint.stderr).toBe(0);
    expect((await prompt(home.root, ['config', 'validate', file])).code).toBe(0);
    expect((await prompt(home.root, ['config', 'validate', settings])).code).toBe(0);
    const up = await prompt(home.root, ['up', 'bom', '--wait', '10']);
    expect(up.code, up.stderr).toBe(0);
  });

  it('invalid UTF-8 in a config string is an error with its byte offset, not a U+FFFD', async () => {
    const home = homes.make();
    const file = home.addInstance(
      'bad',
      fakeConfig(freePort(), {}, { model: { path: 'models/fake.gguf', alias: 'AB' } }),
    );
    const text = fs.readFileSync(file, 'latin1');
    const at = text.indexOf('"AB"') + 2; // between A and B
    fs.writeFileSync(
      file,
      Buffer.concat([
        Buffer.from(text.slice(0, at), 'latin1'),
        Buffer.from([0xff]),
        Buffer.from(text.slice(at), 'latin1'),
      ]),
    );
    const line = text.slice(0, at).split('\n').length;
    const reason = `invalid UTF-8: byte 0xff at byte offset ${at} (line ${line},`;

    const lint = await prompt(home.root, ['config', 'lint']);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain(`instances/bad/config.json: $: ${reason}`);
    const up = await prompt(home.root, ['up', 'bad']);
    expect(up.code).toBe(1);
    expect(up.stderr).toContain(reason);
    const ps = await prompt(home.root, ['ps', '--json']);
    const row = (JSON.parse(ps.stdout) as Array<Record<string, unknown>>).find((r) => r.name === 'bad');
    expect(row).toMatchObject({ state: 'invalid' });
    expect(String(row?.config_error)).toContain(reason);
    expect(ps.stdout).not.toContain('\uFFFD');

    const settings = path.join(home.root, 'llama-orch.json');
    fs.writeFileSync(settings, Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d])); // {"\xc3(":1}
    const start = await prompt(home.root, ['daemon', 'start']);
    stops.push(() => cli(home.root, ['daemon', 'stop']));
    expect(start.code).toBe(1);
    expect(start.stderr).toContain(
      `cannot read ${settings}: invalid UTF-8: byte 0xc3 at byte offset 2 (line 1, column 3)`,
    );
  });
});

describe('models and logs that are not regular files', () => {
  it('up with a FIFO model and logs of a FIFO log fail at once naming them', async () => {
    const home = homes.make();
    const model = path.join(home.root, 'models', 'pipe.gguf');
    mkfifo(model);
    home.addInstance('m', fakeConfig(freePort(), {}, { model: { path: 'models/pipe.gguf' } }));
    const up = await prompt(home.root, ['up', 'm']);
    expect(up.code).not.toBe(0);
    expect(up.stderr).toContain(`${model} is a FIFO (named pipe), not a regular file`);
    const lint = await prompt(home.root, ['config', 'lint']);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain('is a FIFO (named pipe), not a regular file');

    home.addInstance('l', fakeConfig(freePort()));
    const logDir = path.join(home.root, 'logs', 'l');
    fs.mkdirSync(logDir, { recursive: true });
    mkfifo(path.join(logDir, 'stderr.log'));
    const logs = await prompt(home.root, ['logs', 'l']);
    expect(logs.code).toBe(1);
    expect(logs.stderr).toContain(`${path.join(logDir, 'stderr.log')} is a FIFO (named pipe), not a regular file`);
  });
});
