import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, REPO, fakeConfig, makeHome, waitFor, writeFakeModel, type TestHome } from '../helpers/home.js';

// Output to a pipe its reader closed (`| head -1`) ends the CLI quietly with exit 141 (128 + SIGPIPE;
// README, "Exit codes"), never "Error: write EPIPE" and a stack. Real pipes, closed by head: head
// reads 8 KiB, prints its line and exits, and the pipe holds 64 KiB, so a command that prints well
// over 72 KiB is still writing when head is gone, and a write fails every time.

const FAST = path.join(REPO, 'dist/bundle/fast.cjs');
const FULL = path.join(REPO, 'dist/bundle/main.mjs');
const CLOSED_PIPE = 141;

const made: TestHome[] = [];
afterEach(() => {
  // Nothing in these homes is ever started: no `down --all` needed.
  for (const h of made.splice(0)) fs.rmSync(h.root, { recursive: true, force: true });
});
function home(): TestHome {
  const h = makeHome('llama-orch-epipe-');
  made.push(h);
  return h;
}

/** Names as long as allowed (63 characters): fewer instances fill the pipe. */
const long = (prefix: string, i: number, width = 63) => `${prefix}-${String(i).padStart(4, '0')}-`.padEnd(width, 'x');

/** A home whose ps and --once print ~150 KiB as text (over 500 KiB as JSON). */
function manyInstances(n = 1000): TestHome {
  const h = home();
  for (let i = 0; i < n; i++) h.addInstance(long('instance', i), fakeConfig(40000 + i));
  return h;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs `COMMAND | head -1` in bash; code is COMMAND's own exit status (PIPESTATUS), stderr its
 * stderr, stdout what head let through.
 */
async function piped(command: string, timeout = 30_000) {
  const r = await execa('bash', ['-c', `${command} | head -1; exit "\${PIPESTATUS[0]}"`], {
    reject: false,
    timeout,
  });
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), timedOut: r.timedOut };
}

function node(script: string, args: string[], root: string): string {
  return ['node', q(script), ...args.map(q), '--home', q(root)].join(' ');
}

function expectQuiet(r: { code?: number; stderr: string; timedOut?: boolean }) {
  expect(r.timedOut).toBeFalsy();
  expect(r.stderr).not.toMatch(/EPIPE/);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
  expect(r.stderr).not.toMatch(/internal error|Unhandled 'error'/);
  expect(r.code).toBe(CLOSED_PIPE);
}

describe('output to a closed pipe', () => {
  it('logs NAME and logs NAME --json: exit 141, nothing on stderr', async () => {
    const h = home();
    h.addInstance('big', fakeConfig(40000));
    const dir = path.join(h.root, 'logs', 'big');
    fs.mkdirSync(dir, { recursive: true });
    const lines = Array.from({ length: 5000 }, (_, i) => `log line ${String(i).padStart(6, '0')} ${'x'.repeat(40)}`);
    fs.writeFileSync(path.join(dir, 'stderr.log'), lines.join('\n') + '\n');

    for (const args of [
      ['logs', 'big', '-n', '5000'],
      ['logs', 'big', '-n', '5000', '--json'],
    ]) {
      const r = await piped(node(CLI, args, h.root));
      expectQuiet(r);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('log line 000000');
    }
  });

  it('logs -f: a closed pipe ends the follower at its next write, with the initial lines or with new ones', async () => {
    const h = home();
    h.addInstance('big', fakeConfig(40000));
    const dir = path.join(h.root, 'logs', 'big');
    fs.mkdirSync(dir, { recursive: true });
    const line = (i: number) => `log line ${String(i).padStart(6, '0')} ${'x'.repeat(40)}`;
    const block = (from: number) => Array.from({ length: 5000 }, (_, i) => line(from + i)).join('\n') + '\n';
    fs.writeFileSync(path.join(dir, 'stderr.log'), block(0));

    // Over 64 KiB of initial lines.
    const initial = await piped(node(CLI, ['logs', 'big', '-f', '-n', '5000'], h.root));
    expectQuiet(initial);
    expect(initial.stdout).toBe(line(0));

    // Following from the end: the lines arrive later.
    const follower = execa(
      'bash',
      ['-c', `${node(CLI, ['logs', 'big', '-f', '-n', '0'], h.root)} | head -1; exit "\${PIPESTATUS[0]}"`],
      { reject: false, timeout: 30_000 },
    );
    let following = false;
    follower.stderr?.on('data', (c: Buffer) => (following ||= c.toString().includes('following ')));
    await waitFor(() => following || undefined, 15_000, 'logs -f following');
    fs.appendFileSync(path.join(dir, 'stderr.log'), block(5000));
    const r = await follower;
    expect(r.timedOut).toBe(false);
    expect(String(r.stderr)).toMatch(/^following .* \(Ctrl-C to stop\)$/);
    expectQuiet({ code: r.exitCode, stderr: String(r.stderr) });
    expect(String(r.stdout)).toBe(line(5000));
  });

  it('ps, ps --json, --once, --once --json: the full CLI and the fast path, exit 141', async () => {
    const h = manyInstances();
    // The full CLI (it never takes the fast path); this also caches every config's validation.
    for (const args of [['ps'], ['ps', '--json'], ['--once'], ['--once', '--json']]) {
      const r = await piped(node(FULL, args, h.root));
      expectQuiet(r);
      expect(r.stdout).not.toBe('');
    }
    // A reader that is slow but does not close gets all of it: the full CLI exits once stdout is
    // flushed (process.exit() right after the last write cut the output at the pipe's 64 KiB).
    const whole = await execa('node', [FULL, 'ps', '--home', h.root]);
    const slow = await execa('bash', ['-c', `${node(FULL, ['ps'], h.root)} | (sleep 1; wc -c)`]);
    expect(Number(String(slow.stdout).trim())).toBe(Buffer.byteLength(String(whole.stdout)) + 1);
    // The fast path alone: 99 would mean it declined (nothing printed, no 141).
    for (const args of [['ps'], ['ps', '--json'], ['--once'], ['--once', '--json']]) {
      const argv = JSON.stringify(['node', 'llama-orch', ...args, '--home', h.root]);
      const script = `Promise.resolve(require(${JSON.stringify(FAST)}).run(${argv})).then((c) => (process.exitCode = c ?? 99))`;
      const r = await piped(`node -e ${q(script)}`);
      expectQuiet(r);
      expect(r.stdout).not.toBe('');
    }
    // And as operators run it: bin/llama-orch.cjs.
    for (const args of [['ps'], ['--once']]) {
      const r = await piped(node(CLI, args, h.root));
      expectQuiet(r);
      expect(r.stdout).toMatch(/^(NAME|llama-orch) /);
    }
  });

  it('the fast path into a non-blocking pipe that is full: it waits for the reader, every byte arrives', async () => {
    // Another program's pipe may be non-blocking (O_NONBLOCK is shared by every process holding that
    // end): a full pipe then answers EAGAIN, and the fast path, which writes fd 1 itself, must wait
    // for the reader rather than fail or drop the rest. python3 makes such a pipe and reads slowly.
    const h = manyInstances(400);
    const whole = await execa('node', [FULL, 'ps', '--json', '--home', h.root]);
    const argv = JSON.stringify(['node', 'llama-orch', 'ps', '--json', '--home', h.root]);
    const script = `Promise.resolve(require(${JSON.stringify(FAST)}).run(${argv})).then((c) => (process.exitCode = c ?? 99))`;
    const reader = [
      'import os, subprocess, sys, time',
      'r, w = os.pipe()',
      'os.set_blocking(w, False)',
      'p = subprocess.Popen(sys.argv[1:], stdout=w)',
      'os.close(w)',
      'time.sleep(0.5)',
      'got = bytearray()',
      'while True:',
      '    b = os.read(r, 4096)',
      '    if not b: break',
      '    got += b',
      '    time.sleep(0.001)',
      'sys.stdout.write("%d %d" % (p.wait(), len(got)))',
    ].join('\n');
    const r = await execa('python3', ['-c', reader, 'node', '-e', script], { timeout: 60_000 });
    const [code, bytes] = String(r.stdout).split(' ').map(Number);
    expect(code).toBe(0);
    expect(Buffer.byteLength(String(whole.stdout))).toBeGreaterThan(200_000);
    expect(bytes).toBe(Buffer.byteLength(String(whole.stdout)) + 1);
  });

  it('models list, models list --json; and stderr closed (its warnings) with stdout elsewhere', async () => {
    const h = home();
    const models = path.join(h.root, 'models');
    // ~85 KiB as text, ~300 KiB as JSON. (The first listing reads and caches 700 headers: seconds.)
    for (let i = 0; i < 700; i++) writeFakeModel(path.join(models, `${long('a-model', i, 60)}.gguf`));
    // Broken files are warned about on stderr, one line each (~120 KiB).
    for (let i = 0; i < 700; i++) fs.writeFileSync(path.join(models, `${long('notes', i, 60)}.gguf`), 'not a model\n');

    for (const args of [
      ['models', 'list'],
      ['models', 'list', '--json'],
    ]) {
      const r = await piped(node(CLI, args, h.root), 60_000);
      expectQuiet(r);
      expect(r.stdout).toMatch(/^(MODEL |\[)/);
    }

    // stderr is the closed pipe; the table went to a file before the warnings.
    const listing = path.join(h.root, 'listing.txt');
    const e = await piped(`${node(CLI, ['models', 'list'], h.root)} 2>&1 >${q(listing)}`);
    expect(e.timedOut).toBe(false);
    expect(e.stdout).toMatch(/^warning: .*notes-\d+-x+\.gguf is not a GGUF file/);
    expect(e.stderr).toBe('');
    expect(e.code).toBe(CLOSED_PIPE);
    expect(fs.readFileSync(listing, 'utf8')).toMatch(/^MODEL /);
  });
});
