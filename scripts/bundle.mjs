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

// @huggingface/gguf imports one enum from @huggingface/tasks, whose index re-exports the Hub's model
// libraries, snippets and pipelines (~7,000 lines of tables built by top-level calls). esbuild keeps
// a module with top-level calls unless its package says it has no side effects, and this one does not
// say so: every bundle carried the tables, and the keeper built them at start-up. They are pure data.
function pureDataPlugin() {
  const pure = /[\\/]node_modules[\\/]@huggingface[\\/]tasks[\\/]/;
  return {
    name: 'pure-data',
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === 'pure-data') return undefined;
        const inTasks = args.path.startsWith('@huggingface/tasks') || pure.test(args.importer);
        if (!inTasks) return undefined;
        const r = await b.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: 'pure-data',
        });
        if (r.errors.length > 0) return { errors: r.errors };
        return pure.test(r.path) ? { ...r, sideEffects: false } : r;
      });
    },
  };
}
await build({
  ...esm,
  entryPoints: { main: 'src/entry.ts' },
  splitting: true,
  plugins: [...plugins, pureDataPlugin()],
});
await build({ ...esm, entryPoints: { keeper: 'src/keeper/entry.ts' }, plugins: [pureDataPlugin()] });

// In a CommonJS bundle esbuild turns every `import fs from 'node:fs'` into its own
// `__toESM(require('node:fs'))`, a fresh copy of the module's ~100 properties: 22 copies of node:fs
// and node:path in fast.cjs, ~2.5 ms of every `ps`. Here each builtin becomes one ES module of the
// bundle that every importer shares. Accessors (fs.promises) are left out, not read: reading one may
// load a module; a named import of one fails the build, loudly.
function sharedBuiltinsPlugin() {
  return {
    name: 'shared-builtins',
    setup(b) {
      b.onResolve({ filter: /^node:[a-z_/]+$/ }, (args) =>
        args.namespace === 'builtin' ? { path: args.path, external: true } : { path: args.path, namespace: 'builtin' },
      );
      b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => {
        const mod = process.getBuiltinModule(args.path);
        const names = Object.keys(mod).filter((n) => {
          const d = Object.getOwnPropertyDescriptor(mod, n);
          return n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n) && d !== undefined && 'value' in d;
        });
        const lines = [`const m = require(${JSON.stringify(args.path)});`, 'export default m;'];
        for (const n of names) lines.push(`export const ${n} = m.${n};`);
        return { contents: lines.join('\n'), loader: 'js', resolveDir: root };
      });
    },
  };
}

const fast = await build({
  ...common,
  entryPoints: { fast: 'src/cli/fast-entry.ts' },
  format: 'cjs',
  outExtension: { '.js': '.cjs' },
  define: { ...common.define, 'import.meta.url': '__import_meta_url' },
  banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
  metafile: true,
  plugins: [sharedBuiltinsPlugin()],
});
const allowed = /^node_modules\/(better-sqlite3|bindings|file-uri-to-path)\//;
const heavy = Object.keys(fast.metafile.inputs).filter((f) => f.startsWith('node_modules/') && !allowed.test(f));
if (heavy.length > 0) {
  throw new Error(`fast.cjs must not include ${[...new Set(heavy.map((f) => f.split('/')[1]))].join(', ')}`);
}
console.log(`bundled into ${path.relative(root, outdir)} (build ${buildId})`);
