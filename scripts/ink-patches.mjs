// Changes made to Ink's files wherever Ink is loaded: by the bundle (esbuild) and by the unit tests
// (Vite, through vitest.config.ts), so that tests and users run the same Ink. components/ink-caches.ts
// says why; docs/ARCHITECTURE.md, "The dashboard's Ink". Ink 8 fixed what earlier patches did for its
// text caches (ink#986, ink#998); what is left is work Ink repeats every frame. Each patch replaces one
// exact piece of an Ink file as installed: if Ink changes that piece (an upgrade), the build and the
// tests fail here rather than run an unpatched or misapplied Ink.
import fs from 'node:fs';
import path from 'node:path';

const CACHES = path.resolve(import.meta.dirname, '../components/ink-caches.ts');
const IMPORT = 'llama-orch:ink-caches';

/** The Ink version the patches were written against (package-lock.json pins it). */
export const INK_VERSION = '8.0.0';
/** The versions of the packages patched here, Ink and its layout engine (package-lock.json pins them). */
const VERSIONS = { ink: INK_VERSION, 'yoga-layout': '3.2.1' };

export const inkPatches = [
  {
    pkg: 'yoga-layout',
    file: 'dist/binaries/yoga-wasm-base64-esm.js',
    why:
      "Ink's layout engine decodes its inlined wasm itself instead of fetch()ing the data: URL: the global " +
      "fetch loads Node's undici (with tls, http2, zlib behind it), about 10 MiB in the dashboard's RSS",
    edits: [['function ya(){return w||"function"!=typeof fetch?', 'function ya(){return true?']],
  },
  {
    file: 'build/render-node-to-output.js',
    why: "a text's width from measureText's cache rather than measured again every frame",
    edits: [
      [
        "import wrapText from './wrap-text.js';",
        "import wrapText from './wrap-text.js';\nimport measureText from './measure-text.js';",
      ],
      ['const currentWidth = widestLine(text);', 'const currentWidth = measureText(text).width;'],
    ],
  },
  {
    file: 'build/squash-text-nodes.js',
    why: "a text's sanitized form kept from one frame to the next rather than tokenized again",
    edits: [
      [
        "import sanitizeAnsi from './sanitize-ansi.js';",
        `import sanitizeAnsi from './sanitize-ansi.js';\nimport { sanitizedText } from '${IMPORT}';`,
      ],
      [
        "    text = sanitizeAnsi(text.replaceAll('\\r\\n', '\\n'));",
        "    text = sanitizedText(text.replaceAll('\\r\\n', '\\n'), sanitizeAnsi);",
      ],
    ],
  },
  {
    file: 'build/output.js',
    why: 'line caches, lines of each text and clipped lines kept from one frame to the next, unchanged rows not drawn again, one invisible-character test made once',
    edits: [
      [
        "import stringWidth from 'string-width';",
        `import stringWidth from 'string-width';\nimport { BLANK_CELL, frameCache, isIgnorable, newFrame, rowText } from '${IMPORT}';`,
      ],
      ['    caches = new OutputCaches();', '    caches = (newFrame(), new OutputCaches());'],
      [
        '.filter(character => !/^\\p{Default_Ignorable_Code_Point}+$/u.test(character.value));',
        '.filter(character => !isIgnorable(character.value));',
      ],
      [
        '    widths = new Map();\n    blockWidths = new Map();\n    styledChars = new Map();',
        "    widths = frameCache('widths');\n    blockWidths = frameCache('blockWidths');\n    styledChars = frameCache('styledChars');\n    lines = frameCache('lines');\n    slices = frameCache('slices');\n    getLines(text) {\n        let cached = this.lines.get(text);\n        if (cached === undefined) {\n            const characterLines = [[]];\n            for (const character of this.getStyledChars(text)) {\n                if (character.value === '\\n') {\n                    characterLines.push([]);\n                }\n                else {\n                    characterLines.at(-1).push(character);\n                }\n            }\n            cached = characterLines.map(line => styledCharsToString(line));\n            this.lines.set(text, cached);\n        }\n        return cached;\n    }",
      ],
      [
        "        const characterLines = [[]];\n        for (const character of this.caches.getStyledChars(text)) {\n            if (character.value === '\\n') {\n                characterLines.push([]);\n            }\n            else {\n                characterLines.at(-1).push(character);\n            }\n        }\n        let lines = characterLines.map(line => styledCharsToString(line));",
        '        let lines = this.caches.getLines(text);',
      ],
      [
        "    sliceLineToColumns(line, from, to) {\n        if (from >= to) {\n            return '';\n        }\n        const result = [];",
        "    sliceLineToColumns(line, from, to) {\n        if (from >= to) {\n            return '';\n        }\n        const key = `${from}:${to}:${line}`;\n        let sliced = this.caches.slices.get(key);\n        if (sliced === undefined) {\n            sliced = this.sliceLineToColumnsUncached(line, from, to);\n            this.caches.slices.set(key, sliced);\n        }\n        return sliced;\n    }\n    sliceLineToColumnsUncached(line, from, to) {\n        const result = [];",
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
        `${patch.pkg ?? 'ink'} ${patch.file}: ${at === -1 ? 'not found' : 'found more than once'}: ${JSON.stringify(from)} ` +
          `(the patches in scripts/ink-patches.mjs were written for ${patch.pkg ?? 'ink'} ${VERSIONS[patch.pkg ?? 'ink']})`,
      );
    out = out.slice(0, at) + to + out.slice(at + from.length);
  }
  return out;
}

/** The patch for a file of Ink (or of its layout engine) given its absolute path, or undefined. */
function patchFor(file) {
  const m = /[\\/]node_modules[\\/](ink|yoga-layout)[\\/]((?:build|dist[\\/]binaries)[\\/][a-z0-9-]+\.js)$/.exec(file);
  if (!m) return undefined;
  const pkg = m[1];
  const patch = inkPatches.find((p) => (p.pkg ?? 'ink') === pkg && p.file === m[2].replaceAll('\\', '/'));
  if (!patch) return undefined;
  const pkgDir = file.slice(0, file.length - m[2].length - 1);
  const version = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
  if (version !== VERSIONS[pkg])
    throw new Error(`${pkg} ${version} is installed; scripts/ink-patches.mjs was written for ${VERSIONS[pkg]}`);
  return patch;
}

/** The esbuild plugin: Ink's files patched as they are loaded, our caches module resolved. */
export function inkPatchPlugin() {
  return {
    name: 'ink-patches',
    setup(build) {
      const applied = new Set();
      build.onStart(() => applied.clear());
      build.onResolve({ filter: /^llama-orch:ink-caches$/ }, () => ({ path: CACHES }));
      build.onLoad({ filter: /[\\/]node_modules[\\/](ink|yoga-layout)[\\/].+\.js$/ }, (args) => {
        const patch = patchFor(args.path);
        if (!patch) return undefined;
        applied.add(patch.file);
        return { contents: applyPatch(patch, fs.readFileSync(args.path, 'utf8')), loader: 'js' };
      });
      // Ink resolved somewhere the filter does not see (npm link, a vendored copy): not a silent stock Ink.
      build.onEnd((result) => {
        if (result.errors.length > 0) return;
        const missing = inkPatches.filter((p) => !applied.has(p.file)).map((p) => `${p.pkg ?? 'ink'}/${p.file}`);
        if (missing.length > 0)
          return {
            errors: [
              { text: `ink patches not applied (no such file loaded from node_modules): ${missing.join(', ')}` },
            ],
          };
      });
    },
  };
}

/**
 * The same patches as a Vite plugin, for vitest: Ink must be processed by Vite (vitest.config.ts lists
 * it, and ink-testing-library which imports it, in `server.deps.inline`), not loaded by Node directly.
 */
export function inkPatchVitePlugin() {
  return {
    name: 'llama-orch-ink-patches',
    enforce: 'pre',
    resolveId(id) {
      return id === IMPORT ? CACHES : undefined;
    },
    // Loaded here rather than by Vite: Ink's (and its testing library's) source maps name sources they
    // do not ship, which Vite would warn about for every file.
    load(id) {
      const file = id.split('?')[0];
      if (!/[\\/]node_modules[\\/]ink(-testing-library)?[\\/]build[\\/].+\.js$/.test(file)) return undefined;
      const code = fs.readFileSync(file, 'utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
      const patch = patchFor(file);
      return { code: patch ? applyPatch(patch, code) : code, map: null };
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
    target: 'node22',
    jsx: 'automatic',
    external: ['react-devtools-core'],
    define: { 'process.env.NODE_ENV': '"production"' },
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'error',
    plugins: patched ? [inkPatchPlugin()] : [],
  };
}
