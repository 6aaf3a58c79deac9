import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach } from 'vitest';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(REPO, 'bin/llama-orch.cjs');
export const FAKE_SERVER = path.join(REPO, 'tests/fixtures/fake-llama-server.mjs');
export const TINY_MODEL = path.join(REPO, 'models/llama-dense.gguf');

/** A small valid GGUF (the fake server never reads it; `up` and lint read its header). */
export function writeFakeModel(file: string, sizes: Parameters<typeof llamaModel>[0] = {}): void {
  const m = llamaModel({ vocab: 64, embd: 64, ff: 128, layers: 2, heads: 2, ctx: 4096, name: 'fake', ...sizes });
  writeGguf(file, m.metadata, m.tensors);
}

export interface TestHome {
  root: string;
  addInstance: (name: string, config: Record<string, unknown>) => string;
  cleanup: () => Promise<void>;
}

let portCounter = 0;

function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      if (
        fs
          .readFileSync(f, 'utf8')
          .split('\n')
          .some((l) => l.includes(hex) && / 0A /.test(l))
      )
        return true;
    } catch {
      // no IPv6
    }
  }
  return false;
}

/**
 * A block of ports per test file (each runs in its own process), skipping ports already listened on.
 * Blocks come from the pid, not the worker id: a worker's next file must not reuse the ports of a
 * server the previous file may still be stopping.
 */
export function freePort(): number {
  for (;;) {
    const port = 20000 + (process.pid % 300) * 60 + (portCounter++ % 60);
    if (!listening(port)) return port;
  }
}

export function makeHome(prefix = 'llama-orch-test-'): TestHome {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.mkdirSync(path.join(root, 'instances'));
  fs.mkdirSync(path.join(root, 'models'));
  writeFakeModel(path.join(root, 'models', 'fake.gguf'));
  if (fs.existsSync(TINY_MODEL)) fs.symlinkSync(TINY_MODEL, path.join(root, 'models', 'tiny.gguf'));
  // Each home's daemon serves its proxy on a port of its own: test files run in parallel, and the
  // default (127.0.0.1:8080) would be taken by whichever daemon started first.
  fs.writeFileSync(
    path.join(root, 'llama-orch.json'),
    JSON.stringify({ proxy: { listen: `127.0.0.1:${freePort()}` } }),
  );
  return {
    root,
    addInstance(name, config) {
      const dir = path.join(root, 'instances', name);
      fs.mkdirSync(dir, { recursive: true });
      const file = path.join(dir, 'config.json');
      fs.writeFileSync(file, JSON.stringify(config, null, 2));
      return file;
    },
    async cleanup() {
      // Stop whatever the test left running, then remove the home.
      await execa('node', [CLI, 'down', '--all', '--home', root], { reject: false });
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Homes made through it are stopped (down --all) and removed after each test of the file. */
export function homePerTest(): { make: (prefix?: string) => TestHome } {
  const made: TestHome[] = [];
  afterEach(async () => {
    for (const h of made.splice(0)) await h.cleanup();
  });
  return {
    make(prefix) {
      const h = makeHome(prefix);
      made.push(h);
      return h;
    },
  };
}

/** A config for the fake server with fast timings for tests. */
export function fakeConfig(port: number, fakeEnv: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  const {
    server: serverExtra,
    healthcheck,
    restart,
    ...rest
  } = extra as {
    server?: Record<string, unknown>;
    healthcheck?: Record<string, unknown>;
    restart?: Record<string, unknown>;
  };
  return {
    model: { path: 'models/fake.gguf' },
    server: { binary: FAKE_SERVER, port, env: fakeEnv, ...serverExtra },
    healthcheck: { interval: 0.2, timeout: 0.5, retries: 3, start_period: 2, ...healthcheck },
    restart: { initial_delay: 0.2, max_delay: 1, jitter: 0, max_retries: 3, ...restart },
    stop_timeout: 2,
    ...rest,
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export async function cli(home: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const t0 = performance.now();
  const r = await execa('node', [CLI, ...args, '--home', home], { reject: false, env: { ...process.env, ...env } });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), ms: performance.now() - t0 };
}

export async function psJson(home: string): Promise<Array<Record<string, unknown>>> {
  const r = await cli(home, ['ps', '--json']);
  if (r.code !== 0) throw new Error(`ps failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Array<Record<string, unknown>>;
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z';
  } catch {
    return false;
  }
}

/** Waits until `ps --json` shows the instance in a state the predicate accepts; returns that row. */
export async function waitForRow(
  home: string,
  name: string,
  accept: (row: Record<string, unknown>) => boolean,
  timeoutMs: number,
  what: string,
): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> | undefined;
  return waitFor(
    async () => {
      const row = (await psJson(home)).find((r) => r.name === name);
      last = row;
      return row && accept(row) ? row : undefined;
    },
    timeoutMs,
    what,
  ).catch((e: unknown) => {
    // Say what was seen instead: the state usually tells why.
    throw new Error(`${String(e)}\nlast ${name} row: ${JSON.stringify(last)}`);
  });
}
