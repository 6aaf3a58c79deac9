import { NO_USABLE_GPU, type LoadBuffer, type LoadFacts } from '../domain/gpu.js';

export { NO_USABLE_GPU };

// What llama-server says on stderr while it loads (docs/ARCHITECTURE.md, "GPU observability";
// the lines are those of llama.cpp's src/llama-model.cpp, src/llama-context.cpp, src/llama-kv-cache.cpp,
// common/arg.cpp and common/fit.cpp). The keeper starts the server with LLAMA_ARG_LOG_VERBOSITY=4,
// at which the buffer and device lines are printed. Lines may carry a timestamp and level prefix
// ("0.00.033.206 I "); older builds name the functions differently (llm_load_tensors,
// llama_kv_cache_unified, llama_new_context_with_model), so the patterns key on the messages.

const MIB = 1024 * 1024;
const PREFIX = /^(?:\d+\.\d+\.\d+\.\d+ [A-Z] )?/;

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
  // common/common.cpp device_info: "  - CUDA0   : NVIDIA GeForce RTX 4090 (24080 MiB, 23500 MiB free)"
  deviceInfo: /(?:^|:)\s+- (\S+)\s*: (.+?) \((\d+) MiB, (\d+) MiB free\)\s*$/,
  // src/llama.cpp: "using device CUDA0 (NVIDIA GeForce RTX 4090) (0000:01:00.0) - 23500 MiB free"
  usingDevice: /using device (\S+) \((.+?)\)(?: \([^)]*\))? - (\d+) MiB free/,
  nCtx: /llama_context: n_ctx\s+= (\d+)/,
  slots: /initializing, n_slots = (\d+), n_ctx_slot = (\d+)/,
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

/** One stderr line into the facts; true when it changed them. */
export function scanLoadLine(facts: LoadFacts, raw: string): boolean {
  const line = raw.replace(PREFIX, '');
  let m: RegExpExecArray | null;
  if ((m = RE.buffer.exec(line))) {
    const device = m[1] as string;
    const kind = KIND[m[2] as string] ?? 'other';
    const bytes = Math.round(Number(m[3]) * MIB);
    // With -v a dry pass prints the same buffers at 0.00 MiB first: the last one of a kind counts.
    const i = facts.buffers.findIndex((b) => b.device === device && b.kind === kind);
    if (i >= 0) facts.buffers[i] = { device, kind, bytes };
    else facts.buffers.push({ device, kind, bytes });
    return true;
  }
  if ((m = RE.offload.exec(line))) {
    facts.offload = { layers: Number(m[1]), total: Number(m[2]) };
    return true;
  }
  if ((m = RE.deviceInfo.exec(line)) || (m = RE.usingDevice.exec(line))) {
    const name = m[1] as string;
    const total = m.length > 4 ? Number(m[3]) * MIB : null;
    const free = Number(m[m.length > 4 ? 4 : 3]) * MIB;
    const d = { name, description: (m[2] as string).trim(), total_bytes: total, free_bytes: free };
    const i = facts.devices.findIndex((x) => x.name === name);
    if (i >= 0) facts.devices[i] = { ...d, total_bytes: total ?? facts.devices[i]?.total_bytes ?? null };
    else facts.devices.push(d);
    return true;
  }
  if ((m = RE.nCtx.exec(line))) {
    facts.n_ctx = Number(m[1]);
    return true;
  }
  if ((m = RE.slots.exec(line))) {
    facts.n_slots = Number(m[1]);
    facts.n_ctx_slot = Number(m[2]);
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
