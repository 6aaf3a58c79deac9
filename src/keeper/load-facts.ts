import { NO_USABLE_GPU, type LoadBuffer, type LoadFacts } from '../domain/gpu.js';

export { NO_USABLE_GPU };

// What llama-server says on stderr while it loads (docs/ARCHITECTURE.md, "GPU observability";
// the lines are those of llama.cpp's src/llama-model.cpp, src/llama-context.cpp, src/llama-kv-cache.cpp,
// common/arg.cpp and common/fit.cpp, and of the backends' init: ggml-cuda.cu, ggml-vulkan.cpp). The
// keeper starts the server with LLAMA_ARG_LOG_VERBOSITY=4, at which the buffer and device lines are
// printed. Older builds name the functions differently (llm_load_tensors, llama_kv_cache_unified,
// llama_new_context_with_model, ggml_init_cublas), so the patterns key on the messages; the real
// outputs they were checked against are in tests/fixtures/real/ (tests/unit/real-fixtures.test.ts).
//
// Before matching, a line loses what is not the message: ANSI colours (--log-colors, on by default
// on a terminal), the router's "[pid] " prefix on a child's lines, and common/log.cpp's timestamp and
// level ("0.00.033.206 I "; either may be printed alone). A fact that is not printed stays null.

const MIB = 1024 * 1024;
// eslint-disable-next-line no-control-regex -- ANSI escape sequences are control characters
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
const PREFIX = /^(?:\[\d+\] )?(?:\d+\.\d+\.\d+\.\d+ )?(?:[DIWEN] )?/;

export function emptyLoadFacts(): LoadFacts {
  return {
    devices: [],
    offload: null,
    buffers: [],
    n_ctx: null,
    n_ctx_slot: null,
    n_slots: null,
    fit_projected_bytes: null,
    warnings: [],
    loaded: false,
  };
}

const RE = {
  offload: /offloaded (\d+)\/(\d+) layers to GPU/,
  buffer: /:\s+(\S+)\s+(model|KV|compute|output|RS) buffer size =\s+([\d.]+) MiB/,
  // Builds before the kind word (early 2024): "llm_load_tensors:      CUDA0 buffer size =  3946.35 MiB",
  // printed by the tensor loader for the model's weights only.
  modelBuffer: /\b(?:llm_)?load_tensors:\s+(\S+) buffer size =\s+([\d.]+) MiB/,
  // common/common.cpp device_info: "  - CUDA0   : NVIDIA GeForce RTX 4090 (24080 MiB, 23500 MiB free)"
  deviceInfo: /(?:^|:)\s+- (\S+)\s*: (.+?) \((\d+) MiB, (\d+) MiB free\)\s*$/,
  // src/llama.cpp: "using device CUDA0 (NVIDIA GeForce RTX 4090) (0000:01:00.0) - 23500 MiB free"
  usingDevice: /using device (\S+) \((.+?)\)(?: \([^)]*\))? - (\d+) MiB free/,
  // ggml-cuda.cu (CUDA, and HIP/MUSA builds under their names): "ggml_cuda_init: found 2 CUDA devices:",
  // "... found 1 ROCm devices (Total VRAM: 126976 MiB):", oldest "ggml_init_cublas: found 1 ROCm devices:",
  // then one line per device, numbered in the backend's order (CUDA0, ROCm0, ...).
  deviceCount: /\b(?:ggml_cuda_init|ggml_init_cublas): found \d+ (CUDA|ROCm|MUSA) devices\b/,
  // "  Device 0: NVIDIA H200, compute capability 9.0, VMM: yes[, VRAM: 143155 MiB]",
  // "  Device 0: Radeon 8060S Graphics, gfx1151 (0x1151), VMM: no, Wave Size: 32, VRAM: 126976 MiB"
  deviceLine: /^\s*Device (\d+): (.+?), (?:compute capability \d+\.\d+|gfx\w+)(?:.*?, VRAM: (\d+) MiB)?/,
  // ggml-vulkan.cpp: "ggml_vulkan: 0 = NVIDIA GeForce RTX 2060 (NVIDIA) | uma: 0 | fp16: 1 | ..."
  vulkan: /\bggml_vulkan: (\d+) = (.+?) \| uma: /,
  // "llama_context: n_ctx = 4096"; before mid-2025 "llama_init_from_model:", before 2025
  // "llama_new_context_with_model:"; n_ctx_seq / n_ctx_per_seq / n_ctx_train are other numbers.
  nCtx: /\b(?:llama_context|llama_init_from_model|llama_new_context_with_model): n_ctx\s+= (\d+)/,
  // "initializing, n_slots = 2, n_ctx_slot = 4096, ..." (new); "initializing slots, n_slots = 1" (before).
  slots: /\binitializing(?: slots)?, n_slots = (\d+)(?:, n_ctx_slot = (\d+))?/,
  // Each slot's context: "new slot, n_ctx = 4096" (new), "new slot n_ctx_slot = 4096" (before).
  newSlot: /\bnew slot,? n_ctx(?:_slot)? = (\d+)/,
  fitProjected: /projected to use (\d+) MiB of (?:device|host) memory/,
  ctxReduced: /context size reduced from (\d+) to (\d+)/,
  ctxCapped: /the slot context \((\d+)\) exceeds the training context of the model \((\d+)\) - capping/,
  noGpu: /no usable GPU found, --gpu-layers option will be ignored/,
  loaded: /(?:llama_server|main): model loaded|listening on http|server is listening on/,
};

const KIND: Record<string, LoadBuffer['kind']> = {
  model: 'model',
  KV: 'kv',
  compute: 'compute',
  output: 'output',
  RS: 'other',
};

/** The backend whose "Device N:" lines follow (after a "found N CUDA devices" line), per facts. */
const listing = new WeakMap<LoadFacts, string>();

/** The message of one stderr line: without colours, the router's [pid], the timestamp and level. */
export function loadLineText(raw: string): string {
  const line = raw.includes('\x1b') ? raw.replace(ANSI, '') : raw;
  return line.replace(PREFIX, '');
}

/** One stderr line into the facts; true when it changed them. */
export function scanLoadLine(facts: LoadFacts, raw: string): boolean {
  const line = loadLineText(raw);
  let m: RegExpExecArray | null;
  const backend = listing.get(facts);
  if (backend !== undefined) {
    if ((m = RE.deviceLine.exec(line))) {
      const total = m[3] === undefined ? null : Number(m[3]) * MIB;
      return device(facts, `${backend}${m[1]}`, (m[2] as string).trim(), total, null);
    }
    listing.delete(facts);
  }
  if ((m = RE.buffer.exec(line))) {
    return buffer(facts, m[1] as string, KIND[m[2] as string] ?? 'other', m[3] as string);
  }
  if ((m = RE.modelBuffer.exec(line))) return buffer(facts, m[1] as string, 'model', m[2] as string);
  if ((m = RE.offload.exec(line))) {
    facts.offload = { layers: Number(m[1]), total: Number(m[2]) };
    return true;
  }
  if ((m = RE.deviceInfo.exec(line))) {
    return device(facts, m[1] as string, (m[2] as string).trim(), Number(m[3]) * MIB, Number(m[4]) * MIB);
  }
  if ((m = RE.usingDevice.exec(line))) {
    return device(facts, m[1] as string, (m[2] as string).trim(), null, Number(m[3]) * MIB);
  }
  if ((m = RE.deviceCount.exec(line))) {
    listing.set(facts, m[1] as string);
    return false;
  }
  if ((m = RE.vulkan.exec(line))) return device(facts, `Vulkan${m[1]}`, (m[2] as string).trim(), null, null);
  if ((m = RE.nCtx.exec(line))) {
    facts.n_ctx = Number(m[1]);
    return true;
  }
  if ((m = RE.slots.exec(line))) {
    facts.n_slots = Number(m[1]);
    if (m[2] !== undefined) facts.n_ctx_slot = Number(m[2]);
    return true;
  }
  if ((m = RE.newSlot.exec(line))) {
    if (facts.n_ctx_slot === Number(m[1])) return false;
    facts.n_ctx_slot = Number(m[1]);
    return true;
  }
  if ((m = RE.fitProjected.exec(line))) {
    facts.fit_projected_bytes = Number(m[1]) * MIB;
    return true;
  }
  if ((m = RE.ctxReduced.exec(line))) return warn(facts, `--fit reduced the context from ${m[1]} to ${m[2]}`);
  if ((m = RE.ctxCapped.exec(line))) {
    return warn(facts, `context ${m[1]} per slot capped to the model's training context ${m[2]}`);
  }
  if (RE.noGpu.test(line)) return warn(facts, NO_USABLE_GPU);
  if (!facts.loaded && RE.loaded.test(line)) {
    facts.loaded = true;
    return true;
  }
  return false;
}

function buffer(facts: LoadFacts, device: string, kind: LoadBuffer['kind'], mib: string): boolean {
  const bytes = Math.round(Number(mib) * MIB);
  // With -v a dry pass prints the same buffers at 0.00 MiB first: the last one of a kind counts.
  const i = facts.buffers.findIndex((b) => b.device === device && b.kind === kind);
  if (i >= 0) facts.buffers[i] = { device, kind, bytes };
  else facts.buffers.push({ device, kind, bytes });
  return true;
}

/** A device the server saw; a line that does not print a figure keeps the one an earlier line did. */
function device(
  facts: LoadFacts,
  name: string,
  description: string,
  total: number | null,
  free: number | null,
): boolean {
  const i = facts.devices.findIndex((x) => x.name === name);
  const old = i >= 0 ? facts.devices[i] : undefined;
  const d = {
    name,
    description,
    total_bytes: total ?? old?.total_bytes ?? null,
    free_bytes: free ?? old?.free_bytes ?? null,
  };
  if (old) facts.devices[i] = d;
  else facts.devices.push(d);
  return true;
}

function warn(facts: LoadFacts, text: string): boolean {
  if (facts.warnings.includes(text)) return false;
  facts.warnings.push(text);
  return true;
}

/**
 * Scans the stderr byte stream of one run for load facts. It looks only until the model is loaded
 * and a little after (the log pipeline runs at 100 MB/s; a busy server's request lines are not
 * worth a regex each), or until MAX_LINES lines.
 */
export class LoadFactsScanner {
  facts: LoadFacts = emptyLoadFacts();
  private partial = '';
  private lines = 0;
  private afterLoaded = 0;
  private static readonly MAX_LINES = 20_000;
  private static readonly AFTER_LOADED = 50;

  constructor(private readonly onChange: (facts: LoadFacts) => void) {}

  get scanning(): boolean {
    return this.lines < LoadFactsScanner.MAX_LINES && this.afterLoaded < LoadFactsScanner.AFTER_LOADED;
  }

  reset(): void {
    this.facts = emptyLoadFacts();
    this.partial = '';
    this.lines = 0;
    this.afterLoaded = 0;
  }

  push(chunk: Buffer): void {
    if (!this.scanning) return;
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = (parts.pop() ?? '').slice(-4096);
    let changed = false;
    for (const line of parts) {
      this.lines++;
      if (this.facts.loaded) this.afterLoaded++;
      if (scanLoadLine(this.facts, line)) changed = true;
      if (!this.scanning) break;
    }
    if (changed) this.onChange(this.facts);
  }
}
