import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const UI = ['ink', 'ink-*', 'react', 'react/*'];
const SIDE_EFFECTS = ['better-sqlite3', 'undici', 'chokidar', 'node:child_process'];

// The import direction (docs/ARCHITECTURE.md, "Layers"): each folder of src/ may import only the
// folders below it; nothing in src/ imports UI code (the one exception: the CLI's lazy import of
// components/dashboard.tsx, which starts the dashboard).
const BELOW_ENGINE = ['domain', 'platform', 'config', 'store', 'health', 'logs', 'metrics', 'models'];
const LAYERS = {
  domain: [],
  platform: ['domain'],
  models: ['domain', 'platform'],
  config: ['domain', 'platform', 'models'],
  store: ['domain', 'platform'],
  health: ['domain', 'platform', 'config', 'store'],
  metrics: ['domain', 'platform'],
  logs: ['domain', 'platform', 'config', 'store'],
  systemd: ['domain', 'platform'],
  engine: BELOW_ENGINE,
  keeper: [...BELOW_ENGINE, 'engine'],
  proxy: [...BELOW_ENGINE, 'engine'],
  // The application: composition, queries and the facade every adapter (CLI, dashboard, REST API) uses.
  app: [...BELOW_ENGINE, 'engine', 'keeper', 'proxy'],
  // Text for people: the app's read models as tables and lines.
  format: ['domain', 'app'],
  daemon: [...BELOW_ENGINE, 'engine', 'keeper', 'proxy', 'app'],
  cli: [...BELOW_ENGINE, 'engine', 'keeper', 'proxy', 'app', 'format', 'daemon', 'systemd'],
};

function layerRules() {
  const folders = Object.keys(LAYERS);
  return Object.entries(LAYERS)
    .map(([folder, allowed]) => {
      const forbidden = folders.filter((f) => f !== folder && !allowed.includes(f));
      const patterns = [{ group: UI, message: 'src/ must not import UI code (components/ is the UI)' }];
      // Relative imports of a forbidden folder of src/, or of components/.
      const targets = [...forbidden.map((f) => `src/${f}|\\.\\./${f}`), 'components'];
      patterns.push({
        regex: `(^|/)(${targets.join('|')})(/|$)`,
        message: `src/${folder} may import only ${allowed.length ? allowed.map((a) => `src/${a}`).join(', ') : 'nothing else in src/'} (docs/ARCHITECTURE.md, "Layers")`,
      });
      const rule = { 'no-restricted-imports': ['error', { patterns }] };
      return { files: [`src/${folder}/**/*.{ts,tsx}`], rules: rule };
    })
    .concat(
      {
        // The program's root joins the two adapters: the CLI, and the dashboard (imported lazily).
        files: ['src/entry.ts'],
        rules: {
          'no-restricted-imports': [
            'error',
            { patterns: [{ group: UI, message: 'the dashboard is imported lazily from components/dashboard.tsx' }] },
          ],
        },
      },
      {
        // The dashboard is an adapter of the application: it reads src/app, src/format and
        // src/domain, and never the CLI (nor the CLI it).
        files: ['components/**/*.{ts,tsx}'],
        rules: {
          'no-restricted-imports': [
            'error',
            {
              paths: SIDE_EFFECTS.map((name) => ({ name, message: 'components get side effects through src/app' })),
              patterns: [
                {
                  regex: `(^|/)src/(?!(app|format|domain)/)`,
                  message:
                    'components/ may import only src/app, src/format and src/domain (docs/ARCHITECTURE.md, "Layers")',
                },
              ],
            },
          ],
        },
      },
      {
        // A test of a lower layer does not go through the CLI: only the CLI's own tests import it.
        files: ['tests/**/*.{ts,tsx}'],
        ignores: ['tests/unit/cli-*.test.ts'],
        rules: {
          'no-restricted-imports': [
            'error',
            {
              patterns: [
                {
                  regex: '(^|/)src/cli(/|$)',
                  message: "only the CLI's tests (tests/unit/cli-*.test.ts) import src/cli",
                },
              ],
            },
          ],
        },
      },
    );
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results/**', 'models/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  ...layerRules(),
  {
    // Two of Node's modules cost more than they give when imported (src/platform/builtins.ts): node:http
    // (an ESM import reads its lazy getters, which load Node's undici: +10 MiB RSS, ~60 ms) and
    // node:child_process (~5 ms that `ps` never needs). Value imports go through builtins.ts.
    files: ['src/**/*.{ts,tsx}', 'components/**/*.{ts,tsx}'],
    ignores: ['src/platform/builtins.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "ImportDeclaration[source.value=/^(node:)?(http|child_process)$/][importKind!='type']",
          message: 'import { http, childProcess } from src/platform/builtins.ts (it says why)',
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs', 'tests/**', 'bench/**', '*.config.ts'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', __dirname: 'readonly', __filename: 'readonly', module: 'writable' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        Buffer: 'readonly',
        performance: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        AbortSignal: 'readonly',
      },
    },
  },
);
