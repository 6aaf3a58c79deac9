import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backendMismatch,
  backendsInLinks,
  binaryBackends,
  serverBackendsCacheFile,
  type LinkRunner,
} from '../../src/config/backend-check.js';
import { cachedBuildOrder, cachedServerBinary, resolveServerBinary } from '../../src/config/binary.js';
import { formatProblem, loadInstance, type LoadedInstance } from '../../src/config/load.js';
import { lintHome } from '../../src/config/lint.js';
import { parseConfigText } from '../../src/config/load.js';
import { homeAt } from '../../src/domain/home.js';
import { preflight } from '../../src/engine/preflight.js';
import type { SupervisorDeps } from '../../src/engine/supervisor.js';
import { writeFakeModel } from '../helpers/home.js';

const dirs: string[] = [];
const tmp = (prefix = 'backend-check-') => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

// What ldd prints for the CPU build this repository makes, and (from the H200's CUDA 13 toolkit)
// for a CUDA one: the runtime, cuBLAS and the driver's library.
const CPU_LDD = `\tlinux-vdso.so.1 (0x00007f44e5728000)
\tlibgomp.so.1 => /lib/x86_64-linux-gnu/libgomp.so.1 (0x00007f44e56cf000)
\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f44e4600000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f44e4920000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f44e441e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f44e572a000)
`;
const CUDA_LDD = `\tlinux-vdso.so.1 (0x00007ffd)
\tlibcuda.so.1 => /usr/lib/x86_64-linux-gnu/libcuda.so.1 (0x00007f1)
\tlibcudart.so.13 => /usr/local/cuda/lib64/libcudart.so.13 (0x00007f2)
\tlibcublas.so.13 => /usr/local/cuda/lib64/libcublas.so.13 (0x00007f3)
\tlibcublasLt.so.13 => /usr/local/cuda/lib64/libcublasLt.so.13 (0x00007f4)
\tlibgomp.so.1 => /lib/x86_64-linux-gnu/libgomp.so.1 (0x00007f5)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f6)
`;
const ROCM_LDD = `\tlibamdhip64.so.6 => /opt/rocm/lib/libamdhip64.so.6 (0x1)
\tlibhipblas.so.2 => /opt/rocm/lib/libhipblas.so.2 (0x2)
\trocblas.so => not found
\tlibrocblas.so.4 => /opt/rocm/lib/librocblas.so.4 (0x3)
`;
const VULKAN_LDD = `\tlibvulkan.so.1 => /lib/x86_64-linux-gnu/libvulkan.so.1 (0x1)\n\tlibc.so.6 => /lib/libc.so.6 (0x2)\n`;
const METAL_OTOOL = `build/bin/llama-server:
\t/System/Library/Frameworks/Foundation.framework/Versions/C/Foundation (compatibility version 300.0.0)
\t/System/Library/Frameworks/Metal.framework/Versions/A/Metal (compatibility version 1.0.0, current version 343.14.0)
\t/usr/lib/libc++.1.dylib (compatibility version 1.0.0, current version 1700.255.0)
`;

function instance(
  backend: string,
  binary = '/opt/llama/llama-server',
  env: Record<string, string> = {},
): LoadedInstance {
  const file = '/h/instances/gpu-a/config.json';
  const { config } = parseConfigText(
    JSON.stringify({
      model: { path: 'm.gguf' },
      server: { port: 9000, ...(binary ? { binary } : {}), env },
      gpu: { backend, ...(backend === 'cpu' || backend === 'metal' ? {} : { devices: [0] }) },
    }),
    file,
  );
  if (!config) throw new Error('bad test config');
  return { name: 'gpu-a', file, config } as LoadedInstance;
}

const fixed =
  (text: string, calls: string[] = []): LinkRunner =>
  (binary) => {
    calls.push(binary);
    return { text };
  };

function fakeBinary(dir: string, name = 'llama-server'): string {
  const bin = path.join(dir, name);
  fs.writeFileSync(bin, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  return bin;
}

describe('the backends a llama-server was built with', () => {
  it('reads them from its linked libraries: none for the CPU build, one for each GPU API', () => {
    expect(backendsInLinks(CPU_LDD)).toEqual([]);
    expect(backendsInLinks(CUDA_LDD)).toEqual(['cuda']);
    expect(backendsInLinks(ROCM_LDD)).toEqual(['rocm']);
    expect(backendsInLinks(VULKAN_LDD)).toEqual(['vulkan']);
    expect(backendsInLinks(METAL_OTOOL)).toEqual(['metal']);
    expect(backendsInLinks(CUDA_LDD + VULKAN_LDD)).toEqual(['cuda', 'vulkan']);
    // A shared build names ggml's backend library, which names the runtime in turn.
    expect(backendsInLinks('\tlibggml-cuda.so => /opt/llama/lib/libggml-cuda.so (0x1)\n')).toEqual(['cuda']);
  });

  it('adds the GGML_BACKEND_DL libraries beside the binary (loaded at run time, not linked)', () => {
    const home = homeAt(tmp());
    const dir = tmp();
    const bin = fakeBinary(dir);
    fs.writeFileSync(path.join(dir, 'libggml-cpu-haswell.so'), '');
    expect(binaryBackends(home, bin, {}, { run: fixed(CPU_LDD) })).toEqual({ backends: [] });
    fs.writeFileSync(path.join(dir, 'libggml-cuda.so'), '');
    fs.writeFileSync(path.join(dir, 'libggml-hip.so'), '');
    expect(binaryBackends(home, bin, {}, { run: fixed(CPU_LDD) })).toEqual({ backends: ['cuda', 'rocm'] });
  });

  it('lists a binary once per version: cached in state/ by path, size and mtime', () => {
    const home = homeAt(tmp());
    const bin = fakeBinary(tmp());
    const calls: string[] = [];
    expect(binaryBackends(home, bin, {}, { run: fixed(CUDA_LDD, calls) })).toEqual({ backends: ['cuda'] });
    expect(binaryBackends(home, bin, {}, { run: fixed(CUDA_LDD, calls) })).toEqual({ backends: ['cuda'] });
    expect(calls).toHaveLength(1);
    const cache = JSON.parse(fs.readFileSync(serverBackendsCacheFile(home), 'utf8')) as {
      binaries: Record<string, { linked: string[] }>;
    };
    expect(cache.binaries[fs.realpathSync(bin)]?.linked).toEqual(['cuda']);
    // A rebuilt binary (another mtime) is listed again.
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(bin, later, later);
    expect(binaryBackends(home, bin, {}, { run: fixed(CPU_LDD, calls) })).toEqual({ backends: [] });
    expect(calls).toHaveLength(2);
  });

  it("reads another command's answer from the cache file without listing the binary", () => {
    const home = homeAt(tmp());
    const bin = fakeBinary(tmp());
    const st = fs.statSync(bin);
    fs.mkdirSync(home.stateDir, { recursive: true });
    fs.writeFileSync(
      serverBackendsCacheFile(home),
      JSON.stringify({
        version: 1,
        binaries: {
          [fs.realpathSync(bin)]: { id: `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`, linked: ['vulkan'] },
        },
      }),
    );
    const never: LinkRunner = () => {
      throw new Error('listed although cached');
    };
    expect(binaryBackends(home, bin, {}, { run: never })).toEqual({ backends: ['vulkan'] });
  });

  it('cannot tell when the listing fails or misses ggml itself; a transient failure is not cached', () => {
    const home = homeAt(tmp());
    const dir = tmp();
    const script = fakeBinary(dir, 'a');
    const notDynamic: LinkRunner = () => ({ text: '\tnot a dynamic executable\n', failure: 'ldd exited with code 1' });
    expect(binaryBackends(home, script, {}, { run: notDynamic })).toEqual({ failure: 'ldd exited with code 1' });
    const shared = fakeBinary(dir, 'b');
    const missing = fixed('\tlibllama.so => not found\n\tlibggml.so => not found\n\tlibc.so.6 => /lib/libc.so.6\n');
    expect(binaryBackends(home, shared, {}, { run: missing })).toEqual({
      failure: 'its libraries libllama.so, libggml.so were not found',
    });
    const slow = fakeBinary(dir, 'c');
    const timeout: LinkRunner = () => ({ text: '', failure: 'ldd was killed by SIGKILL', transient: true });
    expect(binaryBackends(home, slow, {}, { run: timeout }).failure).toBe('ldd was killed by SIGKILL');
    const cache = JSON.parse(fs.readFileSync(serverBackendsCacheFile(home), 'utf8')) as { binaries: object };
    expect(Object.keys(cache.binaries).sort()).toEqual([fs.realpathSync(script), fs.realpathSync(shared)].sort());
  });

  it('lists with the environment the server gets (server.env), keyed by it', () => {
    const home = homeAt(tmp());
    const bin = fakeBinary(tmp());
    const seen: Array<string | undefined> = [];
    const run: LinkRunner = (_b, env) => {
      seen.push(env.LD_LIBRARY_PATH);
      return { text: env.LD_LIBRARY_PATH ? CUDA_LDD : CPU_LDD };
    };
    expect(binaryBackends(home, bin, { PATH: '/usr/bin' }, { run })).toEqual({ backends: [] });
    expect(binaryBackends(home, bin, { PATH: '/usr/bin' }, { run }, { LD_LIBRARY_PATH: '/opt/cuda' })).toEqual({
      backends: ['cuda'],
    });
    expect(seen).toEqual([undefined, '/opt/cuda']);
  });
});

describe('backend mismatch', () => {
  const bin = '/opt/llama/llama-server';
  it('a GPU backend on a CPU-only build: it would ignore -ngl', () => {
    expect(backendMismatch(instance('cuda'), bin, { backends: [] }, 'linux')?.message).toBe(
      'gpu.backend is "cuda" but /opt/llama/llama-server was built for the CPU only (no CUDA libraries): it would ignore -ngl; build one with "npm run setup:llama -- --backend cuda" or set server.binary',
    );
    expect(backendMismatch(instance('rocm'), bin, { backends: [] }, 'linux')?.jsonPath).toBe('$.gpu.backend');
  });

  it('a GPU backend on a build for another GPU API', () => {
    expect(backendMismatch(instance('cuda'), bin, { backends: ['vulkan'] }, 'linux')?.message).toBe(
      'gpu.backend is "cuda" but /opt/llama/llama-server was built for Vulkan, not CUDA (no CUDA libraries): it would offload through that instead; build one with "npm run setup:llama -- --backend cuda" or set server.binary',
    );
  });

  it('nothing when it matches, for cpu, when unknown, or for metal off macOS (said elsewhere)', () => {
    expect(backendMismatch(instance('cuda'), bin, { backends: ['cuda'] }, 'linux')).toBeUndefined();
    expect(backendMismatch(instance('vulkan'), bin, { backends: ['cuda', 'vulkan'] }, 'linux')).toBeUndefined();
    expect(backendMismatch(instance('cpu'), bin, { backends: ['cuda'] }, 'linux')).toBeUndefined();
    expect(backendMismatch(instance('cuda'), bin, { failure: 'ldd exited with code 1' }, 'linux')).toBeUndefined();
    expect(backendMismatch(instance('metal'), bin, { backends: [] }, 'linux')).toBeUndefined();
    expect(backendMismatch(instance('metal'), bin, { backends: [] }, 'darwin')?.message).toMatch(
      /built for the CPU only \(no Metal libraries\).*"npm run setup:llama" on macOS/,
    );
  });
});

describe('config lint and up say it', () => {
  function gpuHome(backend: string) {
    const root = tmp('backend-lint-');
    writeFakeModel(path.join(root, 'm.gguf'));
    const bin = fakeBinary(root);
    fs.mkdirSync(path.join(root, 'instances', 'gpu-a'), { recursive: true });
    fs.writeFileSync(
      path.join(root, 'instances', 'gpu-a', 'config.json'),
      JSON.stringify({ model: { path: 'm.gguf' }, server: { port: 9000, binary: bin }, gpu: { backend } }),
    );
    return { root, bin, home: homeAt(root) };
  }

  it('lint: a warning (it still starts), not a problem', async () => {
    const { root, bin, home } = gpuHome('cuda');
    const report = await lintHome(home, { env: {}, gpuInventory: () => undefined, runLinks: fixed(CPU_LDD) });
    expect(report.problems).toEqual([]);
    expect(report.warnings.map((w) => formatProblem(w, root))).toEqual([
      `instances/gpu-a/config.json: $.gpu.backend: gpu.backend is "cuda" but ${bin} was built for the CPU only (no CUDA libraries): it would ignore -ngl; build one with "npm run setup:llama -- --backend cuda" or set server.binary`,
    ]);
    const ok = await lintHome(homeAt(gpuHome('cuda').root), {
      env: {},
      gpuInventory: () => undefined,
      runLinks: fixed(CUDA_LDD),
    });
    expect(ok.warnings).toEqual([]);
  });

  it('up: preflight warns and goes on (a fake ldd on the PATH it is given)', async () => {
    const { bin, home } = gpuHome('cuda');
    const fakes = tmp('fake-ldd-');
    const ldd = path.join(fakes, 'ldd');
    fs.writeFileSync(ldd, `#!/bin/sh\ncat "$FAKE_LDD"\n`, { mode: 0o755 });
    const out = path.join(fakes, 'out.txt');
    fs.writeFileSync(out, CPU_LDD);
    const warnings: string[] = [];
    const inst = loadInstance(home, 'gpu-a');
    const deps = {
      home,
      env: { PATH: `${fakes}:/usr/bin:/bin`, FAKE_LDD: out },
      warn: (m: string) => warnings.push(m),
      gpuInventory: () => undefined,
    } as unknown as SupervisorDeps;
    await preflight(deps, inst);
    expect(warnings).toEqual([
      expect.stringMatching(
        new RegExp(
          `^gpu-a: .*\\$\\.gpu\\.backend: gpu\\.backend is "cuda" but ${bin.replace(/[.]/g, '\\.')} was built for the CPU only`,
        ),
      ),
    ]);
  });
});

describe('the setup cache per backend', () => {
  function cache(pointers: Record<string, string>) {
    const root = tmp('backend-cache-');
    for (const [name, key] of Object.entries(pointers)) {
      fs.mkdirSync(path.join(root, 'by-package'), { recursive: true });
      fs.writeFileSync(path.join(root, 'by-package', name), `${key}\n`);
      const dir = path.join(root, 'llama.cpp', key, 'bin');
      fs.mkdirSync(dir, { recursive: true });
      fakeBinary(dir);
    }
    const env = { LLAMA_ORCH_CACHE: root };
    const bin = (key: string) => path.join(root, 'llama.cpp', key, 'bin', 'llama-server');
    return { env, bin };
  }

  it("an instance's backend finds its own build, else the CPU build", () => {
    const { env, bin } = cache({ 'node-llama-cpp@3.22.1': 'abc', 'node-llama-cpp@3.22.1-cuda': 'abc-cuda-sm90' });
    expect(cachedServerBinary(env, 'cuda')).toBe(bin('abc-cuda-sm90'));
    expect(cachedServerBinary(env, 'cpu')).toBe(bin('abc'));
    expect(cachedServerBinary(env, 'vulkan')).toBe(bin('abc'));
    expect(cachedServerBinary(env, 'metal')).toBe(bin('abc'));
    expect(cachedServerBinary(env)).toBe(bin('abc'));
  });

  it('no backend (models info) finds any build: a machine with only the CUDA one finds it', () => {
    const { env, bin } = cache({ 'node-llama-cpp@3.22.1-cuda': 'abc-cuda-sm90' });
    expect(cachedServerBinary(env)).toBe(bin('abc-cuda-sm90'));
    // A CPU instance is not given a GPU build (it would offload its layers).
    expect(cachedServerBinary(env, 'cpu')).toBeUndefined();
    expect(cachedBuildOrder()).toEqual(['cpu', 'cuda', 'rocm', 'vulkan']);
  });

  it('resolveServerBinary passes the instance backend and names what it tried', () => {
    const { env, bin } = cache({ 'node-llama-cpp@3.22.1': 'abc', 'node-llama-cpp@3.22.1-rocm': 'abc-rocm-gfx1100' });
    const home = homeAt(tmp());
    const rocm = resolveServerBinary(home, instance('rocm', '').config, { ...env, PATH: '' });
    expect(rocm.path).toBe(bin('abc-rocm-gfx1100'));
    const cuda = resolveServerBinary(home, instance('cuda', '').config, { ...env, PATH: '' });
    expect(cuda).toEqual({
      path: bin('abc'),
      tried: ['llama-server on PATH', `setup cache under ${env.LLAMA_ORCH_CACHE} (cuda, then CPU build)`],
    });
  });
});
