import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { readRegularFile } from '../platform/regular-file.js';

/**
 * What llama-orch learned about a llama-server binary by running something on it (its `--help` in
 * server-flags.ts, its linked libraries in backend-check.ts), kept in a JSON file under the home's
 * state/ so a command runs it once per binary version. Entries carry the binary's identity; a file
 * of another version (parser or key changed) is read as empty; a read-only or full state/ costs only
 * the cache.
 */
export interface BinaryCache<E> {
  get(key: string): E | undefined;
  set(key: string, entry: E): void;
}

interface CacheFile<E> {
  version: number;
  binaries: Record<string, E>;
}

function readCache<E>(file: string, version: number): CacheFile<E> {
  try {
    const parsed = JSON.parse(readRegularFile(file).toString('utf8')) as Partial<CacheFile<E>>;
    if (parsed.version === version && parsed.binaries && typeof parsed.binaries === 'object') {
      return { version, binaries: parsed.binaries };
    }
  } catch {
    // no cache yet, or an unreadable one: run the binary again
  }
  return { version, binaries: {} };
}

export function binaryCache<E>(file: string, version: number): BinaryCache<E> {
  return {
    get: (key) => readCache<E>(file, version).binaries[key],
    set: (key, entry) => {
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        // Read again just before writing: another command may have added its binary meanwhile.
        const cache = readCache<E>(file, version);
        cache.binaries[key] = entry;
        const tmp = `${file}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, JSON.stringify(cache) + '\n', { mode: 0o600 });
        fs.renameSync(tmp, file);
      } catch {
        // a read-only or full state/ costs only the cache: the binary is run again next time
      }
    },
  };
}

/**
 * The cache key: the binary's real path, and a digest of the instance's `server.env` when it has one.
 * What runs on the binary runs in the environment the server gets, and server.env can change what it
 * prints or finds (LD_LIBRARY_PATH, LD_PRELOAD): an answer is reused only for the same binary in the
 * same instance environment. A digest, not the values: server.env may hold secrets.
 */
export function binaryCacheKey(realBinary: string, instanceEnv: Record<string, string>): string {
  const entries = Object.entries(instanceEnv).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return realBinary;
  // Required here, not at the top: this module is loaded by `ps` too, which never hashes.
  const crypto = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  const digest = crypto.createHash('sha256').update(JSON.stringify(entries)).digest('hex').slice(0, 16);
  return `${realBinary} env:${digest}`;
}
