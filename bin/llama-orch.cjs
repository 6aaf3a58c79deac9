#!/usr/bin/env node
'use strict';
// CommonJS on purpose: `ps` and `--once` (what scripts poll) are answered by the small fast-path
// bundle without ever starting Node's ESM loader (src/cli/fast-path.ts). Everything else, and
// anything the fast path declines, loads the full CLI: the bundle, else the plain tsc output.
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const dist = path.join(__dirname, '..', 'dist');
const fast = path.join(dist, 'bundle', 'fast.cjs');
// A cheap pre-check (the exact forms are matched in fast-path.ts) spares every other command the
// fast path's loading time.
const candidate = process.argv.slice(2).some((a) => a === 'ps' || a === '--once' || a === '--json');
function full() {
  const bundle = path.join(dist, 'bundle', 'main.mjs');
  const entry = fs.existsSync(bundle) ? bundle : path.join(dist, 'src', 'cli', 'entry.js');
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
