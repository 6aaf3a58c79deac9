import path from 'node:path';
import { discoverInstanceNames } from '../config/load.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { orchCommand, type Home } from '../domain/home.js';
import type { Store } from '../store/store.js';

// Which instances a command acts on: the names it was given (or --all), checked before anything
// is touched.

/** Instances the store says may be running (a keeper or server pid recorded), configured or not. */
export function recordedLiveNames(store: Store): string[] {
  return store
    .listRuntime()
    .filter((r) => r.pid !== null || r.keeper_pid !== null)
    .map((r) => r.name);
}

/**
 * NAME... or --all, validated: unknown names exit 2 before anything is touched. `alsoKnown` adds
 * names without a config dir (`down` passes the instances that may still be running).
 */
export function selectNames(home: Home, names: string[], all: boolean, alsoKnown: string[] = []): string[] {
  const known = new Set([...discoverInstanceNames(home), ...alsoKnown]);
  if (all) return [...known].sort();
  if (names.length === 0) {
    throw new UserError('name at least one instance, or pass --all', ExitCode.general);
  }
  for (const n of names) {
    if (!known.has(n)) {
      throw new UserError(
        `unknown instance "${n}": no ${path.join(home.instancesDir, n, 'config.json')}`,
        ExitCode.notFound,
        known.size
          ? `known instances: ${[...known].join(', ')}`
          : `no instances in this home yet: create one with: ${orchCommand(home, `init ${n} --profile cpu --model PATH --port N`)}`,
      );
    }
  }
  return names;
}
