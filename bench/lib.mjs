// Shared helpers for the benchmarks: temp homes, the CLI, timing statistics.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { llamaModel, writeGguf } from '../tests/fixtures/gguf-writer.mjs';

export const REPO = path.resolve(import.meta.dirname, '..');
export const CLI = path.join(REPO, 'bin/llama-orch.cjs');
/** The full CLI bundle, which never takes the snapshot fast path. */
export const FULL_CLI = path.join(REPO, 'dist/bundle/main.mjs');
export const FAKE = path.join(REPO, 'tests/fixtures/fake-llama-server.mjs');

export function makeHome(prefix) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.mkdirSync(path.join(root, 'instances'));
  fs.mkdirSync(path.join(root, 'models'));
  const m = llamaModel({ vocab: 64, embd: 64, ff: 128, layers: 2, heads: 2, ctx: 4096, name: 'fake' });
  writeGguf(path.join(root, 'models', 'fake.gguf'), m.metadata, m.tensors);
  return root;
}

/**
 * A home for benchmarks against the real llama-server: the tiny model linked in as models/tiny.gguf.
 * Returns the home and the cached server binary (built by scripts/setup-llama-server.sh).
 */
export async function makeRealHome(prefix) {
  const { cachedServerBinary } = await import('../dist/src/config/binary.js');
  const bin = cachedServerBinary();
  if (!bin) throw new Error('run scripts/setup-llama-server.sh first');
  const root = makeHome(prefix);
  fs.symlinkSync(path.join(REPO, 'models', 'llama-dense.gguf'), path.join(root, 'models', 'tiny.gguf'));
  return { root, bin };
}

export function addInstance(root, name, config) {
  fs.mkdirSync(path.join(root, 'instances', name), { recursive: true });
  fs.writeFileSync(path.join(root, 'instances', name, 'config.json'), JSON.stringify(config, null, 2));
}

export function cli(root, args, opts = {}) {
  return execFileSync('node', [CLI, ...args, '--home', root], { encoding: 'utf8', ...opts });
}

/** Wall time of a command, ms. */
export function timeCmd(file, args, env = process.env) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} failed: ${r.stderr}`);
  return ms;
}

export function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return { n: s.length, min: s[0], p50: q(0.5), p95: q(0.95), max: s[s.length - 1] };
}

export const fmt = (x, d = 1) => (x === undefined ? '-' : x.toFixed(d));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function machine() {
  const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown cpu';
  return `${os.cpus().length} x ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`;
}

export function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

export function rssMiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Memory a process itself owns (its RSS also counts the node binary's shared code pages); NaN once gone. */
export function privateMiB(pid) {
  try {
    const m = /^Private_Dirty:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Open file descriptors of a process; NaN once gone. */
export function openFiles(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/**
 * What each keeper logged of its own memory (keeper.log lines `memory: ...`, or `memory (after gc): ...`
 * under --expose-gc), one line per instance: `NAME: HH:MM rss ... | HH:MM rss ...`.
 */
export function keeperMemoryLines(root, names) {
  return names.map((name) => {
    try {
      const lines = fs
        .readFileSync(path.join(root, 'logs', name, 'keeper.log'), 'utf8')
        .split('\n')
        .filter((l) => / memory( \(after gc\))?: /.test(l));
      return `${name}: ${lines.map((l) => l.replace(/^\S+T(\d\d:\d\d):\S+ .* memory[^:]*: rss /, '$1 rss ')).join(' | ')}`;
    } catch {
      return `${name}: no keeper.log`;
    }
  });
}

export function fakeInstance(port, env = {}) {
  return {
    model: { path: 'models/fake.gguf' },
    server: { binary: FAKE, port, env },
    healthcheck: { interval: 2, timeout: 1, start_period: 5 },
    restart: { initial_delay: 0.1, jitter: 0, max_retries: 1000 },
    stop_timeout: 2,
  };
}
