import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Home } from '../home.js';
import { instanceConfigPath } from '../home.js';
import type { Store } from '../store/store.js';
import type { LoadResult } from './load.js';
import { discoverInstanceNames } from './paths.js';

/** Parses and validates one config file (the zod-backed loader in load.ts). */
export type FullLoader = (file: string, name: string) => LoadResult;
export type ConfigLoader = (file: string, name: string) => LoadResult;

/** Identifies the code that produced a cached result: a rebuild invalidates every entry. */
let codeStamp: string | undefined;
function stamp(): string {
  if (codeStamp === undefined) {
    try {
      codeStamp = String(fs.statSync(fileURLToPath(import.meta.url)).mtimeMs);
    } catch {
      codeStamp = 'unknown';
    }
  }
  return codeStamp;
}

function fileKey(file: string): string | undefined {
  try {
    const st = fs.statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}:${stamp()}`;
  } catch {
    return undefined;
  }
}

/**
 * A config loader that reuses validation results while the file is unchanged (same inode, size,
 * mtime) and the code is the same build. Misses go to the full loader when one is given.
 */
export function cachedLoader(store: Store, full?: FullLoader): ConfigLoader {
  // Long-lived callers (the dashboard) ask every second: keep the parsed result in memory too.
  const memo = new Map<string, { key: string; result: LoadResult }>();
  return (file, name) => {
    const key = fileKey(file);
    if (key) {
      const mem = memo.get(file);
      if (mem?.key === key) return mem.result;
      const hit = store.cachedConfig(file, key);
      if (hit) {
        const result = JSON.parse(hit) as LoadResult;
        memo.set(file, { key, result });
        return result;
      }
    }
    if (!key && !full) {
      return { ok: false, name, file, problems: [{ file, jsonPath: '$', message: 'file not found' }] };
    }
    if (!full) throw new Error(`internal: config ${file} is not cached and no validator was loaded`);
    const result = full(file, name);
    if (key) memo.set(file, { key, result });
    if (key) {
      try {
        store.cacheConfig(file, key, JSON.stringify(result));
      } catch {
        // a busy or read-only database only costs the cache
      }
    }
    return result;
  };
}

/** For one-shot commands: loads the validator (zod) only when some config is not cached. */
export async function prepareLoader(home: Home, store: Store, extra: string[] = []): Promise<ConfigLoader> {
  const names = [...new Set([...discoverInstanceNames(home), ...extra])];
  const miss = names.some((n) => {
    const file = instanceConfigPath(home, n);
    const key = fileKey(file);
    return !key || !store.cachedConfig(file, key);
  });
  const full = miss ? (await import('./load.js')).loadConfigFile : undefined;
  return cachedLoader(store, full);
}
