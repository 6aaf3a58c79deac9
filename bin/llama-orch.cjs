#!/usr/bin/env node
'use strict';
// CommonJS on purpose: `ps` and `--once` (what scripts poll) are answered by the small fast-path
// bundle without ever starting Node's ESM loader (src/cli/fast-path.ts). Everything else, and
// anything the fast path declines, loads the full CLI: the bundle, else the plain tsc output.
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const dist = path.join(__dirname, '..', 'dist');

// llama-orch runs on Node 22 or newer. Started by an older `node` (a machine whose own Node is past
// its end of life), it runs itself on the Node that `npm install` set up (scripts/node-runtime.sh,
// recorded in dist/runtime-node), passing signals on and exiting as that run exits.
if (Number(process.versions.node.split('.')[0]) < 22) {
  let runtime = '';
  try {
    runtime = fs.readFileSync(path.join(dist, 'runtime-node'), 'utf8').trim();
  } catch {
    runtime = '';
  }
  if (!runtime || !fs.existsSync(runtime) || runtime === process.execPath) {
    process.stderr.write(
      `llama-orch: needs Node 22 or newer, and this is ${process.version}: run \`npm install\` in ${path.dirname(__dirname)} (it fetches Node 22 from the npm registry), or put Node 22 or newer on PATH\n`,
    );
    process.exit(1);
  }
  const { spawn } = require('node:child_process');
  const child = spawn(runtime, [__filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];
  const pass = (sig) => () => child.kill(sig);
  for (const sig of signals) process.on(sig, pass(sig));
  child.on('error', (e) => {
    process.stderr.write(`llama-orch: cannot run ${runtime}: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      for (const sig of signals) process.removeAllListeners(sig);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
  return;
}
// V8's compiled code for our bundles, kept between runs (Node's own compile cache, in its default
// place under the temp directory; NODE_DISABLE_COMPILE_CACHE=1 turns it off): about 5 ms off every
// command (bench/BENCHMARKS.md). Where that directory cannot be written, Node carries on without it.
require('node:module').enableCompileCache?.();
const fast = path.join(dist, 'bundle', 'fast.cjs');
// A cheap pre-check (the exact forms are matched in fast-path.ts) spares every other command the
// fast path's loading time.
const candidate = process.argv.slice(2).some((a) => a === 'ps' || a === '--once' || a === '--json');
function full() {
  const bundle = path.join(dist, 'bundle', 'main.mjs');
  const entry = fs.existsSync(bundle) ? bundle : path.join(dist, 'src', 'entry.js');
  import(pathToFileURL(entry).href).catch((e) => {
    process.stderr.write(`llama-orch: cannot load ${entry}: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 1;
  });
}
// The fast path answers asynchronously (the GPUs may need a vendor tool's reading).
const pending = candidate && fs.existsSync(fast) ? require(fast).run(process.argv) : undefined;
if (pending === undefined) {
  full();
} else {
  pending.then(
    (code) => (code !== undefined ? (process.exitCode = code) : full()),
    (e) => {
      process.stderr.write(`llama-orch: ${e && e.message ? e.message : e}\n`);
      process.exitCode = 1;
    },
  );
}
