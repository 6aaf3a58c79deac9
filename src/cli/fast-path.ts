// The snapshot fast path. `ps [--json]` and `--once [--json]` are what scripts and status bars poll,
// so bin/llama-orch.cjs answers them from one small CommonJS bundle (dist/bundle/fast.cjs): no ESM
// loader, no argument-parser library, no config validator; bench/BENCHMARKS.md has the figures.
// It takes only the exact argument forms below and only when every config has a cached validation
// result; anything else goes to the full CLI, which prints the same thing (tests/integration/
// fast-path.test.ts compares the two) and reports every error its own way.
import { allConfigsCached, cachedLoader } from '../config/cached.js';
import { onceCommand, psCommand } from './commands/snapshot.js';
import { openContext } from '../app/context.js';
import type { Out } from './output.js';

export interface SnapshotArgs {
  command: 'ps' | 'once';
  json: boolean;
  home: string | undefined;
}

/**
 * Recognises `[--home DIR] ps [--json] [--home DIR]` and `--once`/`--json` with an optional
 * `--home DIR` (either order, `--home=DIR` too). Anything else, a repeated option included, is
 * left to the full CLI (undefined).
 */
export function matchSnapshotArgs(args: readonly string[]): SnapshotArgs | undefined {
  let ps = false;
  let once = false;
  let json = false;
  let home: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--home' || a.startsWith('--home=')) {
      const value = a === '--home' ? args[++i] : a.slice('--home='.length);
      if (home !== undefined || value === undefined || value === '' || value.startsWith('-')) return undefined;
      home = value;
    } else if (a === 'ps' && !ps && !once && !json) {
      ps = true;
    } else if (a === '--json' && !json) {
      json = true;
    } else if (a === '--once' && !once && !ps) {
      once = true;
    } else {
      return undefined;
    }
  }
  if (ps) return { command: 'ps', json, home };
  // Without ps, --json alone means --once --json (as in the full CLI).
  return once || json ? { command: 'once', json, home } : undefined;
}

/** Runs the snapshot; undefined when it needs the full CLI (a config not validated since it changed). */
export async function runSnapshot(args: SnapshotArgs, out: Out): Promise<number | undefined> {
  const ctx = openContext(args.home);
  try {
    if (!allConfigsCached(ctx.home, ctx.store)) return undefined;
    const loader = cachedLoader(ctx.store);
    return args.command === 'ps'
      ? await psCommand(ctx, loader, args.json, out)
      : await onceCommand(ctx, loader, args.json, out);
  } finally {
    ctx.close();
  }
}
