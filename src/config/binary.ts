import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Home } from '../domain/home.js';
import type { Backend, InstanceConfig } from './schema.js';

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

/** The backends scripts/setup-llama-server.sh builds (--backend): each has its own cache pointer. */
export const SETUP_BACKENDS = ['cpu', 'cuda', 'rocm', 'vulkan'] as const;
export type SetupBackend = (typeof SETUP_BACKENDS)[number];

/**
 * The setup script's cache pointer of a backend: `by-package/node-llama-cpp@VERSION` for the CPU
 * build (the layout it always had), `...@VERSION-cuda` and so on for the others. Each holds the key
 * (`de3ff815ea7d`, `de3ff815ea7d-cuda-sm90`) of `llama.cpp/KEY/bin/`.
 */
export function cachePointer(env: NodeJS.ProcessEnv, backend: SetupBackend): string {
  const version = env.LLAMA_ORCH_NLC_VERSION ?? DEFAULT_NLC_VERSION;
  const name = `node-llama-cpp@${version}${backend === 'cpu' ? '' : `-${backend}`}`;
  return path.join(cacheRoot(env), 'by-package', name);
}

/** The llama-server of one backend's cached build, if the cache holds it. */
function cachedBuild(env: NodeJS.ProcessEnv, backend: SetupBackend): string | undefined {
  try {
    const key = fs.readFileSync(cachePointer(env, backend), 'utf8').trim();
    if (!key || key.includes('/') || key.startsWith('.')) return undefined;
    const bin = path.join(cacheRoot(env), 'llama.cpp', key, 'bin', 'llama-server');
    return isExecutableFile(bin) ? bin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The builds looked for, in order. An instance's backend: its own build, then the CPU build (which
 * runs anything, on the CPU; `config lint` and `up` say so). A CPU or Metal instance: the CPU build
 * only (on macOS that build has Metal in it; a GPU build would offload a CPU instance's layers).
 * No backend (`models info` without an instance): any build, the CPU one first, then cuda, rocm,
 * vulkan: a machine where only `--backend cuda` was built still finds its llama-fit-params.
 */
export function cachedBuildOrder(backend?: Backend): SetupBackend[] {
  if (backend === undefined) return [...SETUP_BACKENDS];
  if (backend === 'cpu' || backend === 'metal') return ['cpu'];
  return [backend, 'cpu'];
}

/** The llama-server built by scripts/setup-llama-server.sh for `backend` (see cachedBuildOrder), if the cache holds one. */
export function cachedServerBinary(env: NodeJS.ProcessEnv = process.env, backend?: Backend): string | undefined {
  for (const b of cachedBuildOrder(backend)) {
    const bin = cachedBuild(env, b);
    if (bin) return bin;
  }
  return undefined;
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
  const backend = config.gpu.backend;
  const cached = cachedServerBinary(env, backend);
  const builds = cachedBuildOrder(backend).map((b) => (b === 'cpu' ? 'CPU' : b));
  tried.push(`setup cache under ${cacheRoot(env)} (${builds.join(', then ')} build)`);
  return { path: cached, tried };
}
