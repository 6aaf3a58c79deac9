const MIB = 1024 * 1024;

/** A server that ran out of device (or host) memory, from its stderr (the lines llama.cpp's ggml prints). */
export interface OutOfMemory {
  /** The buffer type's device: CUDA0, ROCm1, Vulkan0, Metal, CPU... */
  device: string;
  /** A GPU's memory (false: host memory, a CPU build or a CPU buffer). */
  gpu: boolean;
  /** What it tried to allocate, when the server said. */
  bytes: number | null;
  /** What the allocation was for, when the server said. */
  what: 'model' | 'KV cache' | 'compute buffers' | null;
}

// Each form seen in real logs (tests/fixtures/real/): ggml-cuda's cudaMalloc failure names the device
// by index ("on device 0": CUDA<n>), alloc_tensor_range names the buffer type and the size in bytes,
// ggml-cpu names the size in MB; at run time CUDA_CHECK prints "CUDA error: out of memory" and then
// "current device: N".
const OOM_LINES: ReadonlyArray<{ re: RegExp; read: (m: RegExpMatchArray) => Partial<OutOfMemory> }> = [
  {
    re: /allocating ([\d.]+) MiB on device (\d+): (cuda|hip)Malloc failed: out of memory/i,
    read: (m) => ({ device: `${m[3]?.toLowerCase() === 'hip' ? 'ROCm' : 'CUDA'}${m[2]}`, gpu: true, bytes: mib(m[1]) }),
  },
  {
    re: /failed to allocate (\S+) buffer of size (\d+)/,
    read: (m) => ({ device: m[1], gpu: isGpuDevice(m[1] as string), bytes: Number(m[2]) }),
  },
  {
    re: /ggml_aligned_malloc: insufficient memory \(attempted to allocate ([\d.]+) MB\)/,
    read: (m) => ({ device: 'CPU', gpu: false, bytes: mib(m[1]) }),
  },
  {
    re: /Device memory allocation of size (\d+) failed|ErrorOutOfDeviceMemory/,
    read: (m) => ({ device: 'Vulkan0', gpu: true, bytes: m[1] ? Number(m[1]) : null }),
  },
  {
    re: /ggml_metal\w*: error: failed to allocate buffer, size = +([\d.]+) MiB/,
    read: (m) => ({ device: 'Metal', gpu: true, bytes: mib(m[1]) }),
  },
  {
    re: /(CUDA|ROCm|HIP|MUSA) error: out of memory/,
    read: (m) => ({ device: `${m[1] === 'HIP' ? 'ROCm' : (m[1] as string)}0`, gpu: true }),
  },
];

function mib(v: string | undefined): number | null {
  const n = Number(v);
  return Number.isFinite(n) ? Math.round(n * MIB) : null;
}

/** Lines after which an earlier failed allocation no longer matters. */
const RECOVERED = /retrying without pipeline parallelism|server is listening on|main: model loaded/;

function deviceIndex(name: string): string | undefined {
  return /(\d+)$/.exec(name)?.[1];
}

function isGpuDevice(name: string): boolean {
  return !/^CPU/i.test(name) && !/_Host$/i.test(name);
}

/**
 * The out-of-memory a stderr tail shows, or undefined: the first allocation that failed gives the
 * device and the size; the lines after it say what it was for (the model, the KV cache).
 */
export function outOfMemory(stderrTail: readonly string[]): OutOfMemory | undefined {
  let found: OutOfMemory | undefined;
  for (const line of stderrTail) {
    // An allocation llama.cpp recovered from (it retries the compute buffers without pipeline
    // parallelism), or any before the model finished loading and the server listened, is not why
    // the server died.
    if (RECOVERED.test(line)) {
      found = undefined;
      continue;
    }
    if (!found) {
      for (const { re, read } of OOM_LINES) {
        const m = line.match(re);
        if (!m) continue;
        const r = read(m);
        found = { device: r.device ?? 'GPU', gpu: r.gpu ?? true, bytes: r.bytes ?? null, what: null };
        break;
      }
      continue;
    }
    // Later lines refine it: the buffer type named by alloc_tensor_range (a ROCm build's ggml prints
    // "cudaMalloc" too: the buffer's name, ROCm1, says which backend), the runtime device.
    const range = /failed to allocate (\S+) buffer of size (\d+)/.exec(line);
    const named = range?.[1];
    if (named && deviceIndex(found.device) === deviceIndex(named) && isGpuDevice(named) === found.gpu) {
      found.device = named;
    }
    const current = /current device: (\d+)/.exec(line);
    const backend = /^(CUDA|ROCm|MUSA)\d+$/.exec(found.device);
    if (current && backend) found.device = `${backend[1]}${current[1]}`;
    if (found.what === null) {
      if (/error loading model|unable to allocate .* buffer|failed to load model/.test(line)) found.what = 'model';
      else if (/buffer for kv cache|kv cache/i.test(line)) found.what = 'KV cache';
      else if (/compute buffer|graph_reserve|failed to allocate compute/i.test(line)) found.what = 'compute buffers';
    }
  }
  return found;
}

/** "out of GPU memory on CUDA0 (tried to allocate 157178 MiB for the model)". */
export function describeOutOfMemory(oom: OutOfMemory): string {
  const where = oom.gpu ? `out of GPU memory on ${oom.device}` : 'out of host memory';
  const size = oom.bytes !== null ? `tried to allocate ${Math.round(oom.bytes / MIB)} MiB` : null;
  const what = oom.what ? `for the ${oom.what}` : null;
  const detail = [size, what].filter(Boolean).join(' ');
  return detail ? `${where} (${detail})` : where;
}

/** Start failures that restarting cannot fix, recognised from the server's stderr (docs/ARCHITECTURE.md, "Lifecycle"). */
const NON_RETRYABLE: ReadonlyArray<{ re: RegExp; reason: (m: RegExpMatchArray) => string }> = [
  { re: /couldn't bind HTTP server socket/i, reason: () => "couldn't bind HTTP server socket (port taken?)" },
  {
    re: /(failed to load model|error loading model|unable to load model|failed to open GGUF file|gguf_init_from_file[^\n]*failed)/i,
    reason: (m) => `model failed to load (${m[1] ?? 'load error'})`,
  },
  {
    re: /(error: invalid argument[^\n]*|error: unknown argument[^\n]*|error while handling argument[^\n]*|invalid value for[^\n]*)/i,
    reason: (m) => `bad arguments: ${(m[1] ?? '').trim()}`,
  },
];

export function nonRetryableReason(stderrTail: readonly string[], becameHealthy: boolean): string | undefined {
  if (becameHealthy) return undefined;
  // Out of memory at load: the same flags fail the same way (lower -ngl, the context or the cache type).
  const oom = outOfMemory(stderrTail);
  if (oom) return describeOutOfMemory(oom);
  const text = stderrTail.join('\n');
  for (const { re, reason } of NON_RETRYABLE) {
    const m = text.match(re);
    if (m) return reason(m);
  }
  return undefined;
}

/** `statusUnknown`: the process was not our child (a re-attached server), so no code was seen. */
export function describeExit(
  code: number | null,
  signal: NodeJS.Signals | null,
  runMs: number,
  statusUnknown = false,
): string {
  const after = runMs < 10_000 ? `${(runMs / 1000).toFixed(1)} s` : `${Math.round(runMs / 1000)} s`;
  if (signal) return `killed by ${signal} after ${after}`;
  if (code === null && statusUnknown) return `exited after ${after} (exit status unknown: a re-attached server)`;
  return `exited with code ${code ?? '?'} after ${after}`;
}
