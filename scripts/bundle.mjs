// Bundles the CLI (dist/bundle/). Loading hundreds of small modules dominated start-up time (ps
// --json measured ~430 ms unbundled, see bench/BENCHMARKS.md). Three bundles, one build id:
// - main.mjs: the full CLI (ESM). Parts only some commands need (the dashboard, the config
//   validator, chokidar) are split into chunks loaded on demand.
// - keeper.mjs: the keeper, one self-contained file (sharing chunks with the CLI would make both
//   resolve and link more modules at start-up).
// - fast.cjs: the snapshot fast path (src/cli/fast-path.ts), CommonJS so that `ps` and `--once`
//   never start the ESM loader. It must stay small: the build fails if a heavy dependency gets in.
import { build } from 'esbuild';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { inkPatchPlugin } from './ink-patches.mjs';

const root = path.resolve(import.meta.dirname, '..');
const outdir = path.join(root, 'dist', 'bundle');
fs.rmSync(outdir, { recursive: true, force: true });

// The bundles share cached config validations (src/config/cached.ts): one id per build.
const buildId = `${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`;

const common = {
  absWorkingDir: root,
  outdir,
  bundle: true,
  platform: 'node',
  target: 'node22',
  chunkNames: 'chunks/[name]-[hash]',
  // better-sqlite3's JavaScript is bundled (its addon is loaded by path, see src/store/db.ts);
  // optional dev-only imports stay outside.
  external: ['react-devtools-core'],
  jsx: 'automatic',
  // React's development build costs several times the CPU and memory of the production one.
  define: { 'process.env.NODE_ENV': '"production"', __LLAMA_ORCH_BUILD_ID__: JSON.stringify(buildId) },
  sourcemap: 'linked',
  logLevel: 'warning',
};
const esm = {
  ...common,
  format: 'esm',
  outExtension: { '.js': '.mjs' },
  // CommonJS dependencies inside an ESM bundle need require().
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};

// The dashboard's Ink with bounded caches that live across frames (scripts/ink-patches.mjs);
// LLAMA_ORCH_STOCK_INK=1 builds with the stock Ink, for A/B benchmarks only.
const plugins = process.env.LLAMA_ORCH_STOCK_INK === '1' ? [] : [inkPatchPlugin()];
await build({ ...esm, entryPoints: { main: 'src/entry.ts' }, splitting: true, plugins });
await build({ ...esm, entryPoints: { keeper: 'src/keeper/entry.ts' } });

const fast = await build({
  ...common,
  entryPoints: { fast: 'src/cli/fast-entry.ts' },
  format: 'cjs',
  outExtension: { '.js': '.cjs' },
  define: { ...common.define, 'import.meta.url': '__import_meta_url' },
  banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
  metafile: true,
});
const allowed = /^node_modules\/(better-sqlite3|bindings|file-uri-to-path)\//;
const heavy = Object.keys(fast.metafile.inputs).filter((f) => f.startsWith('node_modules/') && !allowed.test(f));
if (heavy.length > 0) {
  throw new Error(`fast.cjs must not include ${[...new Set(heavy.map((f) => f.split('/')[1]))].join(', ')}`);
}
console.log(`bundled into ${path.relative(root, outdir)} (build ${buildId})`);
