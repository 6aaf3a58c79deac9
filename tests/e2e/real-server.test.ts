import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';
import {
  cli,
  freePort,
  isAlive,
  psJson,
  TINY_MODEL,
  waitFor,
  waitForRow,
  type TestHome,
  homePerTest,
} from '../helpers/home.js';
import { realConfig, realServer } from '../helpers/real-server.js';

const row = async (h: TestHome, name: string) =>
  (await psJson(h.root)).find((r) => r.name === name) as Record<string, unknown>;

const homes = homePerTest();

describe('the real llama-server on the tiny model', () => {
  it('answers /health, /v1/models and /completion when run directly', async () => {
    const port = freePort();
    const child = spawn(
      realServer(),
      ['-m', TINY_MODEL, '--port', String(port), '--alias', 'tiny', '-c', '256', '-np', '2'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    // Kept so that a failure says why the server did not come up (a taken port, a bad model...).
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    let exited: string | undefined;
    child.on('exit', (code, signal) => (exited = `exited with ${signal ?? code}`));
    try {
      const base = `http://127.0.0.1:${port}`;
      const health = await waitFor(
        async () => {
          if (exited) throw new Error(`llama-server ${exited} before it was healthy:\n${stderr}`);
          const r = await fetch(`${base}/health`).catch(() => undefined);
          return r?.status === 200 ? ((await r.json()) as { status: string }) : undefined;
        },
        20_000,
        `/health 200 on port ${port}`,
      ).catch((e: unknown) => {
        throw new Error(`${String(e)}\nllama-server stderr (last lines):\n${stderr.split('\n').slice(-15).join('\n')}`);
      });
      expect(health.status).toBe('ok');
      const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: Array<{ id: string }> };
      expect(models.data[0]?.id).toBe('tiny');
      const comp = (await (
        await fetch(`${base}/completion`, { method: 'POST', body: JSON.stringify({ prompt: 'hello', n_predict: 4 }) })
      ).json()) as { tokens_predicted: number };
      expect(comp.tokens_predicted).toBeGreaterThan(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('up returns fast with the pid, survives the shell, kill -9 is recorded and restarted', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance('demo', realConfig(port));
    const up = await cli(home.root, ['up', 'demo']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.ms).toBeLessThan(2000);
    const pid = Number(/server pid (\d+)/.exec(up.stdout)?.[1]);
    expect(pid).toBeGreaterThan(0);
    // The CLI process has exited; the server keeps serving.
    const ok = await waitForRow(home.root, 'demo', (r) => r.health === 'ok', 20_000, 'health ok');
    expect(ok).toMatchObject({ pid, port, state: 'running', model: 'tiny' });
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const exitEvent = await waitFor(
      async () => {
        const evs = JSON.parse((await cli(home.root, ['events', 'demo', '--json', '-n', '50'])).stdout) as Array<{
          event_type: string;
          ts: string;
          message: string;
        }>;
        return evs.find((e) => e.event_type === 'exit');
      },
      5000,
      'exit event',
    );
    expect(exitEvent.message).toContain('killed by SIGKILL');
    expect(Date.parse(exitEvent.ts) - killedAt).toBeLessThan(1000);
    const d = JSON.parse((await cli(home.root, ['describe', 'demo', '--json'])).stdout) as {
      last_exit: { signal: string };
    };
    expect(d.last_exit.signal).toBe('SIGKILL');
    const again = await waitForRow(home.root, 'demo', (r) => r.health === 'ok' && r.pid !== pid, 20_000, 'restarted');
    expect(again.restarts).toBe(1);
    expect(isAlive(pid)).toBe(false);

    // The log files hold the server's own output.
    const stderrLog = fs.readFileSync(path.join(home.root, 'logs', 'demo', 'stderr.log'), 'utf8');
    expect(stderrLog).toContain('llama-orch: server pid');
    expect(stderrLog).toMatch(/llama_server: model loaded[\s\S]*listening on http:\/\/127\.0\.0\.1/);

    const down = await cli(home.root, ['down', 'demo']);
    expect(down.code).toBe(0);
    expect(isAlive(again.pid as number)).toBe(false);
    // One SIGTERM: llama-server shuts down cleanly (a second one means "terminate immediately").
    const last = JSON.parse((await cli(home.root, ['events', 'demo', '--json', '-n', '5'])).stdout) as Array<{
      event_type: string;
      message: string;
    }>;
    expect(last.filter((e) => e.event_type === 'exit').pop()?.message).toMatch(/exited with code 0/);
    expect(fs.readFileSync(path.join(home.root, 'logs', 'demo', 'stderr.log'), 'utf8')).not.toContain(
      'second interrupt',
    );
  });

  it('kill -9 of the keeper: the server keeps serving, up re-attaches without a reload and its logs resume', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance('kept', realConfig(port));
    const started = await cli(home.root, ['up', 'kept', '--wait', '20']);
    // Once seen failing in CI (exit 1 in 0.8 s, not reproduced): the output says why next time.
    expect(started.code, `${started.stdout}\n${started.stderr}`).toBe(0);
    const r = await waitForRow(home.root, 'kept', (x) => x.health === 'ok', 20_000, 'ok');
    process.kill(r.keeper_pid as number, 'SIGKILL');
    await waitFor(() => !isAlive(r.keeper_pid as number) || undefined, 3000, 'keeper dead');
    const complete = async () =>
      (await fetch(`http://127.0.0.1:${port}/completion`, {
        method: 'POST',
        body: JSON.stringify({ prompt: 'hello', n_predict: 2 }),
      }).then((x) => x.json())) as { tokens_predicted: number };
    // Nobody reads its log pipes now: llama-server's writes fail (EPIPE) and it keeps serving.
    expect((await complete()).tokens_predicted).toBeGreaterThan(0);
    expect((await row(home, 'kept')).state).toBe('orphaned');

    const up = await cli(home.root, ['up', 'kept']);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain(`re-attached to running server pid ${String(r.pid)}`);
    const stderrLog = path.join(home.root, 'logs', 'kept', 'stderr.log');
    const before = fs.readFileSync(stderrLog, 'utf8').length;
    expect((await complete()).tokens_predicted).toBeGreaterThan(0);
    // The request's log lines reach the file through the new keeper.
    await waitFor(
      () => (/print_timing|release/.test(fs.readFileSync(stderrLog, 'utf8').slice(before)) ? true : undefined),
      5000,
      'log lines after re-attaching',
    );
    const evs = JSON.parse((await cli(home.root, ['events', 'kept', '--json', '-n', '50'])).stdout) as Array<{
      event_type: string;
      message: string;
    }>;
    expect(evs.filter((e) => e.event_type === 'spawn')).toHaveLength(1); // never reloaded
    expect(evs.find((e) => e.event_type === 'adopt')?.message).toContain('logging resumed');
    expect(await row(home, 'kept')).toMatchObject({ state: 'running', health: 'ok', pid: r.pid });
  });

  it('a model llama-server cannot load is failed at once with the reason, not retried', async () => {
    const home = homes.make();
    // Not a GGUF at all: up refuses it before anything starts.
    fs.writeFileSync(path.join(home.root, 'models', 'text.gguf'), 'not a gguf file');
    home.addInstance('text', realConfig(freePort(), { model: { path: 'models/text.gguf' } }));
    const refused = await cli(home.root, ['up', 'text']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('is not a GGUF file (it does not start with the GGUF magic bytes)');
    // A valid header of an architecture llama.cpp does not know: only the server can tell.
    const m = llamaModel({ extra: { 'general.architecture': 'nonsense' } });
    writeGguf(path.join(home.root, 'models', 'broken.gguf'), m.metadata, m.tensors);
    home.addInstance('broken', realConfig(freePort(), { model: { path: 'models/broken.gguf' } }));
    await cli(home.root, ['up', 'broken']);
    const r = await waitForRow(home.root, 'broken', (r) => r.state === 'failed', 20_000, 'failed');
    expect(r.last_error).toMatch(/model failed to load/);
    expect(r.restarts).toBe(0);
  });

  it('two instances cannot share a port: the real server reports the bind error as failed', async () => {
    const home = homes.make();
    const port = freePort();
    home.addInstance('first', realConfig(port));
    await cli(home.root, ['up', 'first', '--wait', '20']);
    // Bypass our own port preflight by pointing the second at the same port on another loopback address string.
    home.addInstance('second', realConfig(port, { server: { host: 'localhost' } }));
    const r = await cli(home.root, ['up', 'second']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('running instance "first"');
  });
});

describe('init with the real llama-server', () => {
  it('the cpu profile starts and becomes healthy', async () => {
    const home = homes.make();
    const port = freePort();
    const r = await cli(
      home.root,
      [
        'init',
        'fresh',
        '--profile',
        'cpu',
        '--model',
        path.join(home.root, 'models', 'tiny.gguf'),
        '--port',
        String(port),
        '--ctx',
        '256',
      ],
      { LLAMA_SERVER: realServer() },
    );
    expect(r.code, r.stderr).toBe(0);
    const up = await cli(home.root, ['up', 'fresh', '--wait', '30'], { LLAMA_SERVER: realServer() });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain('fresh: healthy');
    const models = (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()) as {
      data: Array<{ id: string }>;
    };
    expect(models.data[0]?.id).toBe('fresh');
  });
});
