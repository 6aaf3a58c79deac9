import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Home } from '../domain/home.js';
import type { InstanceConfig } from './schema.js';

/** The node-llama-cpp version whose bundled llama.cpp source scripts/setup-llama-server.sh builds. */
export const DEFAULT_NLC_VERSION = '3.22.1';

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.LLAMA_ORCH_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'llama-orch');
}

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The llama-server built by scripts/setup-llama-server.sh, if the cache holds one. */
export function cachedServerBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const root = cacheRoot(env);
  const version = env.LLAMA_ORCH_NLC_VERSION ?? DEFAULT_NLC_VERSION;
  try {
    const commit = fs.readFileSync(path.join(root, 'by-package', `node-llama-cpp@${version}`), 'utf8').trim();
    const bin = path.join(root, 'llama.cpp', commit, 'bin', 'llama-server');
    return isExecutableFile(bin) ? bin : undefined;
  } catch {
    return undefined;
  }
}

function searchPath(cmd: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, cmd);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export interface BinaryResolution {
  path?: string;
  /** Where we looked, in order, for the error message. */
  tried: string[];
}

/** config -> LLAMA_SERVER env -> PATH -> the setup script's cache (README, "Configuration reference"). */
export function resolveServerBinary(
  home: Home,
  config: InstanceConfig,
  env: NodeJS.ProcessEnv = process.env,
): BinaryResolution {
  const tried: string[] = [];
  if (config.server.binary) {
    const b = config.server.binary;
    const p = b.includes('/') ? path.resolve(home.root, b) : searchPath(b, env);
    tried.push(`server.binary = ${b}`);
    return { path: p && isExecutableFile(p) ? p : undefined, tried };
  }
  if (env.LLAMA_SERVER) {
    const p = path.resolve(env.LLAMA_SERVER);
    tried.push(`LLAMA_SERVER = ${env.LLAMA_SERVER}`);
    return { path: isExecutableFile(p) ? p : undefined, tried };
  }
  const onPath = searchPath('llama-server', env);
  tried.push('llama-server on PATH');
  if (onPath) return { path: onPath, tried };
  const cached = cachedServerBinary(env);
  tried.push(`setup cache under ${cacheRoot(env)}`);
  return { path: cached, tried };
}
