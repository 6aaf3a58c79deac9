import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Home } from '../domain/home.js';
import { binaryCache, binaryCacheKey } from './binary-cache.js';
import type { ConfigProblem, LoadedInstance } from './load.js';
import type { Backend } from './schema.js';

/**
 * Which GPU backends a llama-server binary was built with, told from the libraries it links
 * (`ldd`, `otool -L` on macOS) and, for GGML_BACKEND_DL builds, the backend libraries beside it
 * (libggml-cuda.so and so on, loaded at run time). `config lint` and `up` compare it with the
 * instance's gpu.backend: a `cuda` instance on a CPU-only build would quietly ignore -ngl.
 */
export type GpuBackend = Exclude<Backend, 'cpu'>;

const GPU_BACKENDS: readonly GpuBackend[] = ['cuda', 'rocm', 'vulkan', 'metal'];

/** What names each backend in a link listing: its runtime libraries, or ggml's own library for it. */
const LINK_PATTERNS: Record<GpuBackend, RegExp> = {
  cuda: /\blib(?:cudart|cublas|cublasLt|cuda)\.so|\blibggml-cuda\./,
  rocm: /\blib(?:amdhip64|hipblas|rocblas)\.so|\blibggml-hip\./,
  vulkan: /\blibvulkan\.(?:so|\d|dylib)|\blibggml-vulkan\./,
  metal: /\/Metal\.framework\/|\blibggml-metal\./,
};

/** The names people know the backends by, for messages. */
export const BACKEND_LABEL: Record<GpuBackend, string> = {
  cuda: 'CUDA',
  rocm: 'ROCm',
  vulkan: 'Vulkan',
  metal: 'Metal',
};

/** The GPU backends a link listing (ldd's or otool's output) names. */
export function backendsInLinks(text: string): GpuBackend[] {
  return GPU_BACKENDS.filter((b) => text.split('\n').some((line) => LINK_PATTERNS[b].test(line)));
}

/**
 * The libraries a listing could not find that decide what the binary is (ggml's and llama's own, in
 * a shared build): without them the listing says nothing about the backends they link.
 */
function missingCoreLibraries(text: string): string[] {
  return text
    .split('\n')
    .map((l) => /^\s*(lib(?:ggml|llama)[^\s]*)\s*=>\s*not found/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined);
}

/** GGML_BACKEND_DL builds load their backends from files beside the binary: which are there. */
export function backendsBeside(realBinary: string): GpuBackend[] {
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(realBinary));
  } catch {
    return [];
  }
  const beside = names.join('\n');
  return GPU_BACKENDS.filter((b) =>
    new RegExp(`^libggml-${b === 'rocm' ? 'hip' : b}\\.(?:so|dylib|dll)`, 'm').test(beside),
  );
}

export interface LinkOutput {
  text: string;
  /** Why there is no listing: no ldd, not a dynamic executable (a script, a static binary), a timeout. */
  failure?: string;
  /** The failure says nothing lasting about the binary (a timeout, a spawn error): not cached. */
  transient?: boolean;
}

export type LinkRunner = (binary: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform) => LinkOutput;

function findTool(name: string, env: NodeJS.ProcessEnv, fallbacks: string[]): string {
  for (const dir of [...(env.PATH ?? '').split(path.delimiter).filter(Boolean), ...fallbacks]) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return name;
}

/** `ldd BINARY` (`otool -L` on macOS), with the environment the server would get (its library path). */
export function runLinkListing(binary: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): LinkOutput {
  // Required here, not at the top: this module is loaded by commands that never run it.
  const cp = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
  const [tool, args] =
    platform === 'darwin'
      ? [findTool('otool', env, ['/usr/bin']), ['-L', binary]]
      : [findTool('ldd', env, ['/usr/bin', '/bin']), [binary]];
  const r = cp.spawnSync(tool, args, {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 5000,
    killSignal: 'SIGKILL',
    maxBuffer: 1024 * 1024,
  });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const name = path.basename(tool);
  if (r.error) return { text, failure: `${name} could not be run: ${r.error.message}`, transient: true };
  if (r.signal) return { text, failure: `${name} was killed by ${r.signal}`, transient: true };
  if (r.status !== 0)
    return { text, failure: `${name} exited with code ${r.status}: ${text.trim().split('\n')[0] ?? ''}` };
  return { text };
}

export interface BinaryBackends {
  /** The GPU backends it was built with; empty: the CPU only. Undefined when it could not be told. */
  backends?: GpuBackend[];
  /** Why the backends could not be told. */
  failure?: string;
}

interface CacheEntry {
  /** The binary's identity when it was listed: device, inode, size, mtime. */
  id: string;
  /** From its links only: the libraries beside it are looked at every time (a readdir). */
  linked?: GpuBackend[];
  failure?: string;
}

const CACHE_VERSION = 1;

/** The linked backends of each binary, kept in the home's state/ so `up` and `lint` list a binary once per version. */
export function serverBackendsCacheFile(home: Home): string {
  return path.join(home.stateDir, 'server-backends.json');
}

/** This process's answers: one command lists a binary at most once. */
const memo = new Map<string, CacheEntry>();

export interface BackendDeps {
  run?: LinkRunner;
  platform?: NodeJS.Platform;
}

/**
 * The GPU backends `binary` was built with: from the cache while it is the same file (size, mtime),
 * else from its link listing; plus the GGML_BACKEND_DL libraries beside it.
 */
export function binaryBackends(
  home: Home,
  binary: string,
  env: NodeJS.ProcessEnv,
  deps: BackendDeps = {},
  instanceEnv: Record<string, string> = {},
): BinaryBackends {
  const platform = deps.platform ?? process.platform;
  let real: string;
  let id: string;
  try {
    real = fs.realpathSync(binary);
    const st = fs.statSync(real);
    id = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (e) {
    return { failure: `cannot read ${binary}: ${(e as Error).message}` };
  }
  const key = binaryCacheKey(real, instanceEnv);
  let entry = memo.get(key);
  if (entry?.id !== id) {
    const file = serverBackendsCacheFile(home);
    const hit = binaryCache<CacheEntry>(file, CACHE_VERSION).get(key);
    if (hit?.id === id) {
      entry = hit;
    } else {
      const out = (deps.run ?? runLinkListing)(binary, { ...env, ...instanceEnv }, platform);
      const missing = out.failure ? [] : missingCoreLibraries(out.text);
      entry = out.failure
        ? { id, failure: out.failure }
        : missing.length > 0
          ? { id, failure: `its libraries ${missing.join(', ')} were not found` }
          : { id, linked: backendsInLinks(out.text) };
      if (!out.transient) binaryCache<CacheEntry>(file, CACHE_VERSION).set(key, entry);
    }
    memo.set(key, entry);
  }
  const beside = backendsBeside(real);
  if (!entry.linked) {
    // A GGML_BACKEND_DL build whose listing failed still shows its backends by their files.
    return beside.length > 0 ? { backends: beside } : { failure: entry.failure };
  }
  return { backends: GPU_BACKENDS.filter((b) => entry.linked?.includes(b) || beside.includes(b)) };
}

/** The setup script's `--backend` for an instance backend (Metal is in macOS's default build). */
function setupHint(backend: GpuBackend): string {
  return backend === 'metal' ? '"npm run setup:llama" on macOS' : `"npm run setup:llama -- --backend ${backend}"`;
}

/**
 * A warning when the instance's gpu.backend is a GPU backend its binary was not built with: a
 * CPU-only build ignores -ngl; a build for another GPU API offloads through that one instead. Nothing
 * when the backends cannot be told (no ldd, a script, a static binary) or for metal off macOS (lint's
 * backendWarning says that).
 */
export function backendMismatch(
  inst: LoadedInstance,
  binary: string,
  found: BinaryBackends,
  platform: NodeJS.Platform = process.platform,
): ConfigProblem | undefined {
  const want = inst.config.gpu.backend;
  if (want === 'cpu' || !found.backends || found.backends.includes(want)) return undefined;
  if (want === 'metal' && platform !== 'darwin') return undefined;
  const label = BACKEND_LABEL[want];
  const built =
    found.backends.length === 0
      ? `was built for the CPU only (no ${label} libraries): it would ignore -ngl`
      : `was built for ${found.backends.map((b) => BACKEND_LABEL[b]).join(' and ')}, not ${label} (no ${label} libraries): it would offload through that instead`;
  return {
    file: inst.file,
    jsonPath: '$.gpu.backend',
    message: `gpu.backend is "${want}" but ${binary} ${built}; build one with ${setupHint(want)} or set server.binary`,
  };
}

/** binaryBackends then backendMismatch, with the environment the server would get. */
export function checkBinaryBackend(
  home: Home,
  inst: LoadedInstance,
  binary: string,
  env: NodeJS.ProcessEnv,
  deps: BackendDeps = {},
): ConfigProblem | undefined {
  if (inst.config.gpu.backend === 'cpu') return undefined;
  const found = binaryBackends(home, binary, env, deps, inst.config.server.env);
  return backendMismatch(inst, binary, found, deps.platform ?? process.platform);
}
