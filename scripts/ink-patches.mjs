// Changes the bundle makes to Ink's text caches (components/ink-caches.ts says why; docs/ARCHITECTURE.md,
// "The dashboard's Ink"). Each patch replaces one exact piece of an Ink file as installed: if Ink
// changes that piece (an upgrade), the build fails here rather than ship an unpatched or misapplied
// Ink. Only the bundle is patched; tests that render components through ink-testing-library run the
// stock Ink, which draws the same frames.
import fs from 'node:fs';
import path from 'node:path';

const CACHES = path.resolve(import.meta.dirname, '../components/ink-caches.ts');
const IMPORT = 'llama-orch:ink-caches';

/** The Ink version the patches were written against (package-lock.json pins it). */
export const INK_VERSION = '6.8.0';

export const inkPatches = [
  {
    file: 'build/measure-text.js',
    why: 'bounded cache (ink#986)',
    edits: [
      [
        "import widestLine from 'widest-line';",
        `import widestLine from 'widest-line';\nimport { textCache } from '${IMPORT}';`,
      ],
      ['const cache = new Map();', "const cache = textCache('measureText');"],
    ],
  },
  {
    file: 'build/wrap-text.js',
    why: 'bounded cache (ink#986), unambiguous key (ink#998)',
    edits: [
      [
        "import cliTruncate from 'cli-truncate';",
        `import cliTruncate from 'cli-truncate';\nimport { textCache } from '${IMPORT}';`,
      ],
      ['const cache = {};', "const cache = textCache('wrapText');"],
      [
        'const cacheKey = text + String(maxWidth) + String(wrapType);',
        "const cacheKey = String(maxWidth) + '\\u0000' + String(wrapType) + '\\u0000' + text;",
      ],
      ['const cachedText = cache[cacheKey];', 'const cachedText = cache.get(cacheKey);'],
      ['cache[cacheKey] = wrappedText;', 'cache.set(cacheKey, wrappedText);'],
    ],
  },
  {
    file: 'build/render-node-to-output.js',
    why: "a text's width from the (bounded) measureText cache rather than measured again every frame",
    edits: [
      [
        "import wrapText from './wrap-text.js';",
        "import wrapText from './wrap-text.js';\nimport measureText from './measure-text.js';",
      ],
      ['const currentWidth = widestLine(text);', 'const currentWidth = measureText(text).width;'],
    ],
  },
  {
    file: 'build/output.js',
    why: 'line caches kept from one frame to the next, unchanged rows not drawn again',
    edits: [
      [
        "import stringWidth from 'string-width';",
        `import stringWidth from 'string-width';\nimport { BLANK_CELL, frameCache, rowText } from '${IMPORT}';`,
      ],
      [
        '    widths = new Map();\n    blockWidths = new Map();\n    styledChars = new Map();',
        "    widths = frameCache('widths');\n    blockWidths = frameCache('blockWidths');\n    styledChars = frameCache('styledChars');",
      ],
      [
        "                row.push({\n                    type: 'char',\n                    value: ' ',\n                    fullWidth: false,\n                    styles: [],\n                });",
        '                row.push(BLANK_CELL);',
      ],
      ['            .map(line => {\n', '            .map((line, y) => rowText(y, line, () => {\n'],
      [
        '            return styledCharsToString(lineWithoutEmptyItems).trimEnd();\n        })\n',
        '            return styledCharsToString(lineWithoutEmptyItems).trimEnd();\n        }))\n',
      ],
    ],
  },
];

/** One patch applied to a file's text; throws, naming the file and the piece, when it does not fit. */
export function applyPatch(patch, source) {
  let out = source;
  for (const [from, to] of patch.edits) {
    const at = out.indexOf(from);
    if (at === -1 || out.indexOf(from, at + 1) !== -1)
      throw new Error(
        `ink ${patch.file}: ${at === -1 ? 'not found' : 'found more than once'}: ${JSON.stringify(from)} ` +
          `(the patches in scripts/ink-patches.mjs were written for ink ${INK_VERSION})`,
      );
    out = out.slice(0, at) + to + out.slice(at + from.length);
  }
  return out;
}

/** The esbuild plugin: Ink's files patched as they are loaded, our caches module resolved. */
export function inkPatchPlugin() {
  return {
    name: 'ink-patches',
    setup(build) {
      const applied = new Set();
      build.onStart(() => applied.clear());
      build.onResolve({ filter: /^llama-orch:ink-caches$/ }, () => ({ path: CACHES }));
      build.onLoad({ filter: /[\\/]node_modules[\\/]ink[\\/]build[\\/][a-z-]+\.js$/ }, (args) => {
        const file = path
          .relative(path.dirname(path.dirname(args.path)), args.path)
          .split(path.sep)
          .join('/');
        const patch = inkPatches.find((p) => p.file === file);
        if (!patch) return undefined;
        const version = JSON.parse(
          fs.readFileSync(path.join(path.dirname(path.dirname(args.path)), 'package.json'), 'utf8'),
        ).version;
        if (version !== INK_VERSION)
          throw new Error(`ink ${version} is installed; scripts/ink-patches.mjs was written for ${INK_VERSION}`);
        applied.add(patch.file);
        return { contents: applyPatch(patch, fs.readFileSync(args.path, 'utf8')), loader: 'js' };
      });
      // Ink resolved somewhere the filter does not see (npm link, a vendored copy): not a silent stock Ink.
      build.onEnd((result) => {
        if (result.errors.length > 0) return;
        const missing = inkPatches.filter((p) => !applied.has(p.file)).map((p) => p.file);
        if (missing.length > 0)
          return {
            errors: [
              { text: `ink patches not applied (no such file loaded from node_modules/ink): ${missing.join(', ')}` },
            ],
          };
      });
    },
  };
}

/**
 * esbuild options for a one-off bundle (a test fixture, a benchmark) built the way scripts/bundle.mjs
 * builds the CLI: production React, Ink's devtools in a chunk never loaded, with or without the patches.
 */
export function standaloneBundle({ root, entry, outdir, patched }) {
  return {
    absWorkingDir: root,
    entryPoints: { main: entry },
    outdir,
    outExtension: { '.js': '.mjs' },
    splitting: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    jsx: 'automatic',
    external: ['react-devtools-core'],
    define: { 'process.env.NODE_ENV': '"production"' },
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'error',
    plugins: patched ? [inkPatchPlugin()] : [],
  };
}
