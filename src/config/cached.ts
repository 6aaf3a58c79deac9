import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Home } from '../domain/home.js';
import { instanceConfigPath } from '../domain/home.js';
import type { LoadResult } from './load.js';
import { discoverInstanceNames } from './paths.js';

/** Where validation results are kept between runs (the store implements it: config_cache). */
export interface ConfigCache {
  cachedConfig(file: string, key: string): string | undefined;
  cacheConfig(file: string, key: string, resultJson: string): void;
}

/** Parses and validates one config file (the zod-backed loader in load.ts). */
export type FullLoader = (file: string, name: string) => LoadResult;
export type ConfigLoader = (file: string, name: string) => LoadResult;

/** Set by scripts/bundle.mjs: one id shared by every bundle of one build (see stamp()). */
declare const __LLAMA_ORCH_BUILD_ID__: string | undefined;

/**
 * Identifies the code that produced a cached result: a rebuild invalidates every entry. The
 * bundles (the CLI and its snapshot fast path) share the build id, so they share entries; the
 * plain tsc output uses this file's mtime.
 */
let codeStamp: string | undefined;
function stamp(): string {
  if (codeStamp === undefined) {
    if (typeof __LLAMA_ORCH_BUILD_ID__ === 'string') return (codeStamp = __LLAMA_ORCH_BUILD_ID__);
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
export function cachedLoader(store: ConfigCache, full?: FullLoader): ConfigLoader {
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

/** True when every instance's config (plus `extra` names) has a cached validation result. */
export function allConfigsCached(home: Home, store: ConfigCache, extra: string[] = []): boolean {
  const names = [...new Set([...discoverInstanceNames(home), ...extra])];
  return names.every((n) => {
    const file = instanceConfigPath(home, n);
    const key = fileKey(file);
    return key !== undefined && store.cachedConfig(file, key) !== undefined;
  });
}
