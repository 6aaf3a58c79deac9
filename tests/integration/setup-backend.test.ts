import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { binaryBackends, checkBinaryBackend } from '../../src/config/backend-check.js';
import { cachedServerBinary } from '../../src/config/binary.js';
import { formatProblem, parseConfigText, type LoadedInstance } from '../../src/config/load.js';
import { lintHome } from '../../src/config/lint.js';
import { homeAt } from '../../src/domain/home.js';
import { REPO, writeFakeModel } from '../helpers/home.js';

/**
 * scripts/setup-llama-server.sh's backend choice, with fake drivers and toolkits: the script runs
 * with a PATH of only the fakes and the few system tools it needs (never this machine's own nvcc,
 * nvidia-smi or ldconfig), CUDA_HOME and ROCM_PATH pointing at empty folders unless a case fills
 * them, and LLAMA_ORCH_KFD / LLAMA_ORCH_VULKAN_HEADER at files of the test's.
 */
const SCRIPT = path.join(REPO, 'scripts/setup-llama-server.sh');
const BASH = execFileSync('sh', ['-c', 'command -v bash'], { encoding: 'utf8' }).trim();
// What the script runs before it builds anything.
const SYSTEM_TOOLS = [
  'bash',
  'sh',
  'cat',
  'rm',
  'dirname',
  'nproc',
  'timeout',
  'grep',
  'sed',
  'mktemp',
  'head',
  'tr',
  'sort',
  'paste',
  'ls',
  'awk',
  'env',
  'mv',
  'mkdir',
  'find',
  'df',
];

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Rig {
  root: string;
  fakes: string;
  env: NodeJS.ProcessEnv;
  /** Writes an executable shell script into the fakes (or `dir`). */
  tool: (name: string, body: string, dir?: string) => string;
  run: (args: string[]) => { code: number | null; stdout: string; stderr: string };
}

function rig(): Rig {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'setup-backend-'));
  dirs.push(root);
  const fakes = path.join(root, 'fakes');
  const sys = path.join(root, 'sys');
  fs.mkdirSync(fakes);
  fs.mkdirSync(sys);
  for (const t of SYSTEM_TOOLS) {
    const real = spawnSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).stdout.trim();
    if (real.startsWith('/')) fs.symlinkSync(real, path.join(sys, t));
  }
  const tool = (name: string, body: string, dir = fakes) => {
    fs.mkdirSync(dir, { recursive: true });
    const p = path.join(dir, name);
    fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return p;
  };
  // No driver, no Vulkan loader: each case adds what it needs over these.
  tool(
    'nvidia-smi',
    'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2; exit 9',
  );
  tool('ldconfig', 'echo "0 libs found in cache"');
  const env: NodeJS.ProcessEnv = {
    PATH: `${fakes}:${sys}`,
    HOME: root,
    TMPDIR: root,
    LLAMA_ORCH_CACHE: path.join(root, 'cache'),
    CUDA_HOME: path.join(root, 'no-cuda'),
    ROCM_PATH: path.join(root, 'no-rocm'),
    LLAMA_ORCH_KFD: path.join(root, 'no-kfd'),
    LLAMA_ORCH_VULKAN_HEADER: path.join(root, 'no-vulkan.h'),
  };
  const run = (args: string[]) => {
    const r = spawnSync(BASH, [SCRIPT, ...args], { env, encoding: 'utf8', timeout: 30_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  return { root, fakes, env, tool, run };
}

const H200_L = 'echo "GPU 0: NVIDIA H200 (UUID: GPU-6a8e2b3c-1d4f-4e5a-9b7c-0f1e2d3c4b5a)"';
/** nvidia-smi that lists GPUs (-L) and answers --query-gpu=compute_cap with `caps`. */
const nvidiaSmi = (caps: string[]) => `case "$*" in
  *compute_cap*) printf '${caps.map((c) => `${c}\\n`).join('')}' ;;
  *-L*) ${H200_L} ;;
  *) exit 0 ;;
esac`;

describe('setup-llama-server.sh --detect', () => {
  it('cuda: nvidia-smi lists a GPU and nvcc is on the PATH', () => {
    const r = rig();
    r.tool('nvidia-smi', nvidiaSmi(['9.0']));
    const nvcc = r.tool('nvcc', 'exit 0');
    const out = r.run(['--detect']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe('cuda\n');
    expect(out.stderr).toContain(`backend: cuda (nvidia-smi lists a GPU and nvcc is at ${nvcc})`);
  });

  it('cuda: nvcc only in $CUDA_HOME/bin', () => {
    const r = rig();
    r.tool('nvidia-smi', nvidiaSmi(['9.0']));
    const home = path.join(r.root, 'cuda-13.0');
    const nvcc = r.tool('nvcc', 'exit 0', path.join(home, 'bin'));
    r.env.CUDA_HOME = home;
    const out = r.run(['--detect']);
    expect(out.stdout).toBe('cuda\n');
    expect(out.stderr).toContain(`nvcc is at ${nvcc}`);
  });

  it('cpu, naming nvcc, when the driver answers but the toolkit is missing (CUDA_HOME set: /usr/local/cuda is not looked in)', () => {
    const r = rig();
    r.tool('nvidia-smi', nvidiaSmi(['9.0']));
    const out = r.run(['--detect']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe('cpu\n');
    expect(out.stderr).toMatch(
      /backend: cpu \(building the CPU server: an NVIDIA driver answers but the CUDA toolkit \(nvcc\) is missing/,
    );
  });

  it('cpu when nvidia-smi runs but lists no GPU', () => {
    const r = rig();
    r.tool('nvidia-smi', 'echo "No devices were found"; exit 6');
    r.tool('nvcc', 'exit 0');
    expect(r.run(['--detect']).stdout).toBe('cpu\n');
  });

  it('rocm: the KFD device node and hipcc', () => {
    const r = rig();
    fs.writeFileSync(r.env.LLAMA_ORCH_KFD as string, '');
    const hipcc = r.tool('hipcc', 'exit 0');
    const out = r.run(['--detect']);
    expect(out.stdout).toBe('rocm\n');
    expect(out.stderr).toContain(`backend: rocm (${r.env.LLAMA_ORCH_KFD} exists and hipcc is at ${hipcc})`);
  });

  it('rocm: hipcc in $ROCM_PATH/bin; and cpu naming hipcc without it', () => {
    const r = rig();
    fs.writeFileSync(r.env.LLAMA_ORCH_KFD as string, '');
    const missing = r.run(['--detect']);
    expect(missing.stdout).toBe('cpu\n');
    expect(missing.stderr).toContain("but ROCm's hipcc is missing");
    const rocm = path.join(r.root, 'rocm-6.2');
    r.tool('hipcc', 'exit 0', path.join(rocm, 'bin'));
    r.env.ROCM_PATH = rocm;
    expect(r.run(['--detect']).stdout).toBe('rocm\n');
  });

  it('vulkan: the loader (ldconfig -p), glslc and the headers; cpu naming glslc without it', () => {
    const r = rig();
    r.tool(
      'ldconfig',
      `echo "2 libs found in cache"
echo "	libvulkan.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libvulkan.so.1"`,
    );
    fs.writeFileSync(r.env.LLAMA_ORCH_VULKAN_HEADER as string, '');
    const missing = r.run(['--detect']);
    expect(missing.stdout).toBe('cpu\n');
    expect(missing.stderr).toContain('a Vulkan loader is installed but glslc or the Vulkan headers are missing');
    r.tool('glslc', 'exit 0');
    const out = r.run(['--detect']);
    expect(out.stdout).toBe('vulkan\n');
    expect(out.stderr).toContain('backend: vulkan (a Vulkan loader, glslc and the Vulkan headers are installed)');
  });

  it('cpu when nothing answers; cuda first when everything does', () => {
    const r = rig();
    const none = r.run(['--detect']);
    expect(none.stdout).toBe('cpu\n');
    expect(none.stderr).toContain('backend: cpu (no GPU driver answered (nvidia-smi,');
    r.tool('nvidia-smi', nvidiaSmi(['9.0']));
    r.tool('nvcc', 'exit 0');
    fs.writeFileSync(r.env.LLAMA_ORCH_KFD as string, '');
    r.tool('hipcc', 'exit 0');
    expect(r.run(['--detect']).stdout).toBe('cuda\n');
  });

  it('an explicit backend is printed as given; an unknown one exits 1 naming the choices', () => {
    const r = rig();
    expect(r.run(['--backend', 'cpu', '--detect']).stdout).toBe('cpu\n');
    expect(r.run(['--backend=vulkan', '--detect']).stdout).toBe('vulkan\n');
    const bad = r.run(['--backend', 'opencl', '--detect']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain("error: unknown backend 'opencl'");
    expect(bad.stderr).toContain('use one of auto, cpu, cuda, vulkan, rocm');
  });
});

describe('setup-llama-server.sh --print-config', () => {
  /** A toolkit tree the CUDA set-up accepts: nvcc, the driver stub, cuBLAS. */
  function fakeToolkit(r: Rig): string {
    const home = path.join(r.root, 'cuda');
    r.tool('nvcc', 'exit 0', path.join(home, 'bin'));
    fs.mkdirSync(path.join(home, 'lib64', 'stubs'), { recursive: true });
    fs.writeFileSync(path.join(home, 'lib64', 'stubs', 'libcuda.so'), '');
    fs.writeFileSync(path.join(home, 'lib64', 'libcublas.so'), '');
    r.env.CUDA_HOME = home;
    return home;
  }

  it("CUDA architectures from nvidia-smi's compute_cap: one per distinct card, sorted", () => {
    const r = rig();
    r.tool('nvidia-smi', nvidiaSmi(['9.0', '9.0', '8.9']));
    const home = fakeToolkit(r);
    const out = r.run(['--print-config']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout.split('\n')).toEqual([
      'backend=cuda',
      'suffix=-cuda-sm89-90',
      '-DGGML_CUDA=ON',
      '-DCMAKE_CUDA_ARCHITECTURES=89;90',
      `-DCMAKE_CUDA_COMPILER=${home}/bin/nvcc`,
      `-DCUDAToolkit_ROOT=${home}`,
      '',
    ]);
    expect(out.stderr).toContain(`cuBLAS: ${home}/lib64/libcublas.so`);
  });

  it('--cuda-arch wins; no compute_cap means CMake defaults and a warning', () => {
    const r = rig();
    r.tool('nvidia-smi', nvidiaSmi(['9.0']));
    fakeToolkit(r);
    const pinned = r.run(['--backend', 'cuda', '--cuda-arch', '86;90', '--print-config']);
    expect(pinned.stdout).toContain('suffix=-cuda-sm86-90\n');
    expect(pinned.stdout).toContain('-DCMAKE_CUDA_ARCHITECTURES=86;90\n');
    r.tool('nvidia-smi', nvidiaSmi([]));
    const none = r.run(['--backend', 'cuda', '--print-config']);
    expect(none.stdout).toContain('suffix=-cuda\n');
    expect(none.stdout).not.toContain('CMAKE_CUDA_ARCHITECTURES');
    expect(none.stderr).toContain('nvidia-smi gave no compute capability');
  });

  it('--backend cuda without nvcc exits 1; the CPU build passes no backend flags', () => {
    const r = rig();
    const cuda = r.run(['--backend', 'cuda', '--print-config']);
    expect(cuda.code).toBe(1);
    expect(cuda.stderr).toContain('the CUDA toolkit (nvcc) is not installed');
    const cpu = r.run(['--backend', 'cpu', '--print-config']);
    expect(cpu.stdout).toBe('backend=cpu\nsuffix=\n');
    expect(r.run(['--backend', 'vulkan', '--print-config']).stdout).toBe(
      'backend=vulkan\nsuffix=-vulkan\n-DGGML_VULKAN=ON\n',
    );
  });
});

describe("setup-llama-server.sh's cache, as src/config/binary.ts reads it", () => {
  /** A cached build: the pointer and bin/ with the three programs the script wants. */
  function cached(r: Rig, pointer: string, key: string): string {
    const cache = r.env.LLAMA_ORCH_CACHE as string;
    fs.mkdirSync(path.join(cache, 'by-package'), { recursive: true });
    fs.writeFileSync(path.join(cache, 'by-package', pointer), `${key}\n`);
    const bin = path.join(cache, 'llama.cpp', key, 'bin');
    for (const p of ['llama-server', 'llama-fit-params', 'test-llama-archs']) r.tool(p, 'exit 0', bin);
    return path.join(bin, 'llama-server');
  }

  it('the CPU build keeps its pointer (no args on a machine without a GPU, or --backend cpu); cuda has its own', () => {
    const r = rig();
    const models = path.join(r.root, 'models');
    fs.mkdirSync(models);
    fs.writeFileSync(path.join(models, 'llama-dense.gguf'), 'GGUF');
    const cpu = cached(r, 'node-llama-cpp@3.22.1', 'de3ff815ea7d');
    const cuda = cached(r, 'node-llama-cpp@3.22.1-cuda', 'de3ff815ea7d-cuda-sm90');
    for (const args of [[], ['--backend', 'cpu']]) {
      const out = r.run([...args, '--models-dir', models]);
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toBe(`${cpu}\n`);
      expect(out.stderr).toContain('using cached llama-server (llama.cpp de3ff815ea7d)');
    }
    r.tool('nvidia-smi', nvidiaSmi(['9.0']));
    const home = path.join(r.root, 'cuda');
    r.tool('nvcc', 'exit 0', path.join(home, 'bin'));
    fs.mkdirSync(path.join(home, 'lib64', 'stubs'), { recursive: true });
    fs.writeFileSync(path.join(home, 'lib64', 'stubs', 'libcuda.so'), '');
    fs.writeFileSync(path.join(home, 'lib64', 'libcublas.so'), '');
    r.env.CUDA_HOME = home;
    const auto = r.run(['--models-dir', models]);
    expect(auto.code, auto.stderr).toBe(0);
    expect(auto.stdout).toBe(`${cuda}\n`);
    expect(r.run(['--backend', 'cpu', '--models-dir', models]).stdout).toBe(`${cpu}\n`);
    // A cached build needs no toolkit: the toolkit's paths are looked for only to configure.
    fs.rmSync(path.join(home, 'lib64', 'libcublas.so'));
    expect(r.run(['--models-dir', models]).stdout).toBe(`${cuda}\n`);
    // Another card (compute capability 8.9 beside the 9.0): the sm90 build is not taken (it goes on to
    // build, which stops at once here: the rig has no npm or cmake).
    r.tool('nvidia-smi', nvidiaSmi(['9.0', '8.9']));
    const other = r.run(['--models-dir', models]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).not.toContain('using cached llama-server');
    expect(other.stdout).not.toContain(cuda);
    // The TypeScript side finds the same files.
    expect(cachedServerBinary(r.env, 'cuda')).toBe(cuda);
    expect(cachedServerBinary(r.env, 'cpu')).toBe(cpu);
  });

  it('the global set-up and the demo ask for the CPU build explicitly', () => {
    expect(fs.readFileSync(path.join(REPO, 'tests/helpers/global-setup.ts'), 'utf8')).toMatch(
      /setup-llama-server\.sh'\), '--backend', 'cpu'\]/,
    );
    expect(fs.readFileSync(path.join(REPO, 'scripts/demo.sh'), 'utf8')).toContain(
      'bash scripts/setup-llama-server.sh --backend cpu',
    );
  });
});

describe('the real CPU build (the global set-up built it)', () => {
  const real = () => {
    const bin = process.env.LLAMA_ORCH_TEST_SERVER ?? cachedServerBinary(process.env, 'cpu');
    if (!bin) throw new Error('no real llama-server: the global set-up should have built it');
    return bin;
  };
  const inst = (backend: string, binary: string): LoadedInstance => {
    const file = '/h/instances/gpu-a/config.json';
    const { config } = parseConfigText(
      JSON.stringify({ model: { path: 'm.gguf' }, server: { port: 9000, binary }, gpu: { backend } }),
      file,
    );
    if (!config) throw new Error('bad config');
    return { name: 'gpu-a', file, config } as LoadedInstance;
  };

  it('is told CPU-only from its real ldd listing; a cuda instance on it is warned about', async () => {
    const home = homeAt(fs.mkdtempSync(path.join(os.tmpdir(), 'backend-real-')));
    dirs.push(home.root);
    const bin = real();
    const started = performance.now();
    expect(binaryBackends(home, bin, process.env)).toEqual({ backends: [] });
    const first = performance.now() - started;
    expect(first).toBeLessThan(2000);
    expect(checkBinaryBackend(home, inst('cpu', bin), bin, process.env)).toBeUndefined();
    expect(checkBinaryBackend(home, inst('cuda', bin), bin, process.env)?.message).toBe(
      `gpu.backend is "cuda" but ${bin} was built for the CPU only (no CUDA libraries): it would ignore -ngl; build one with "npm run setup:llama -- --backend cuda" or set server.binary`,
    );
    // config lint, the whole path: a warning, exit 0.
    writeFakeModel(path.join(home.root, 'm.gguf'));
    fs.mkdirSync(path.join(home.root, 'instances', 'gpu-a'), { recursive: true });
    fs.writeFileSync(
      path.join(home.root, 'instances', 'gpu-a', 'config.json'),
      JSON.stringify({ model: { path: 'm.gguf' }, server: { port: 9000, binary: bin }, gpu: { backend: 'vulkan' } }),
    );
    const report = await lintHome(home, { env: process.env, gpuInventory: () => undefined });
    expect(report.problems).toEqual([]);
    expect(report.warnings.map((w) => formatProblem(w, home.root))).toEqual([
      `instances/gpu-a/config.json: $.gpu.backend: gpu.backend is "vulkan" but ${bin} was built for the CPU only (no Vulkan libraries): it would ignore -ngl; build one with "npm run setup:llama -- --backend vulkan" or set server.binary`,
    ]);
  });
});
