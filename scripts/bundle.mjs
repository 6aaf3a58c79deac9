// Bundles the CLI and the keeper into a few ESM files (dist/bundle/). Loading hundreds of small
// modules dominated start-up time (ps --json measured ~430 ms unbundled, see bench/BENCHMARKS.md);
// one file per entry (plus lazily loaded chunks) keeps `ps`, `--once` and the keeper light.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const outdir = path.join(root, 'dist', 'bundle');
fs.rmSync(outdir, { recursive: true, force: true });

await build({
  absWorkingDir: root,
  entryPoints: { main: 'src/cli/main.ts', keeper: 'src/keeper/entry.ts' },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  // better-sqlite3's JavaScript is bundled (its addon is loaded by path, see src/store/db.ts);
  // optional dev-only imports stay outside.
  external: ['react-devtools-core'],
  jsx: 'automatic',
  // React's development build costs several times the CPU and memory of the production one.
  define: { 'process.env.NODE_ENV': '"production"' },
  sourcemap: 'linked',
  logLevel: 'warning',
  // CommonJS dependencies inside an ESM bundle need require().
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
console.log(`bundled into ${path.relative(root, outdir)}`);
