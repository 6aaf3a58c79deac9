import path from 'node:path';
import {
  GPU_MEMORY_WARN_RATIO,
  GPU_TEMPERATURE_WARN_C,
  gpuBufferBytes,
  NO_USABLE_GPU,
  type GpuInfo,
  type GpuProcess,
  type GpuSample,
  type LoadFacts,
} from '../domain/gpu.js';
import { safeName } from '../domain/sanitize.js';
import type { Processes } from '../platform/processes.js';

/** A running server, as the attribution needs it. */
export interface ServerRef {
  name: string;
  pid: number;
}

export interface InstanceGpuUse {
  /** GPU memory its processes hold by the vendor tool (null: the tool could not say). */
  vendorBytes: number | null;
  /** Indices of the GPUs its processes are on. */
  gpus: number[];
}

export interface GpuView {
  gpus: GpuInfo[];
  byInstance: Map<string, InstanceGpuUse>;
  /** The per-process listing was read: an instance absent from it holds no GPU memory. */
  listed: boolean;
  error: string | null;
  vendor: GpuSample['vendor'];
}

export interface AttributionDeps {
  procs: Pick<Processes, 'stat' | 'cmdline'>;
  /** NSpid of a pid (platform/proc.ts readNsPids): host pids reported for a containerised server. */
  nsPids: (pid: number) => number[];
}

const MAX_DEPTH = 64;

/**
 * Maps the vendor tool's processes to instances: a process belongs to an instance when its pid is
 * the instance's server pid or a descendant of it (walked up through /proc ppids), or when it is
 * the server's pid in an outer pid namespace. The others are foreign (a training job eating VRAM
 * is exactly what an operator needs to see).
 */
export function attributeGpus(sample: GpuSample, servers: ServerRef[], deps: AttributionDeps): GpuView {
  const byPid = new Map(servers.map((s) => [s.pid, s.name]));
  let aliases: Map<number, string> | undefined;
  const owner = (pid: number): string | null => {
    let p = pid;
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      const name = byPid.get(p);
      if (name) return name;
      const st = deps.procs.stat(p);
      if (!st || st.ppid <= 1) break;
      p = st.ppid;
    }
    if (deps.procs.stat(pid)) return null;
    // Not a pid of this namespace: a host pid of a containerised server?
    aliases ??= new Map(servers.flatMap((s) => deps.nsPids(s.pid).map((alias) => [alias, s.name] as const)));
    return aliases.get(pid) ?? null;
  };
  const indexByUuid = new Map(sample.gpus.flatMap((g) => (g.uuid ? [[g.uuid, g.index] as const] : [])));
  const perGpu = new Map<number, GpuProcess[]>(sample.gpus.map((g) => [g.index, []]));
  const byInstance = new Map<string, InstanceGpuUse>();
  for (const p of sample.processes ?? []) {
    const instance = owner(p.pid);
    const index = p.gpu_index ?? (p.gpu_uuid !== null ? indexByUuid.get(p.gpu_uuid) : undefined) ?? null;
    const fromProc = deps.procs.cmdline(p.pid)?.[0]?.split('/').pop();
    const command = p.name ? path.basename(p.name) : fromProc ? safeName(fromProc) : null;
    if (index !== null) perGpu.get(index)?.push({ pid: p.pid, instance, memory_bytes: p.memory_bytes, command });
    if (!instance) continue;
    const use = byInstance.get(instance) ?? { vendorBytes: null, gpus: [] };
    if (p.memory_bytes !== null) use.vendorBytes = (use.vendorBytes ?? 0) + p.memory_bytes;
    if (index !== null && !use.gpus.includes(index)) use.gpus.push(index);
    byInstance.set(instance, use);
  }
  const gpus: GpuInfo[] = sample.gpus.map((g) => ({
    index: g.index,
    uuid: g.uuid,
    name: g.name,
    vendor: sample.vendor ?? 'nvidia',
    utilization_pct: g.utilization_pct,
    memory_used_bytes: g.memory_used_bytes,
    memory_total_bytes: g.memory_total_bytes,
    temperature_c: g.temperature_c,
    power_w: g.power_w,
    power_limit_w: g.power_limit_w,
    state: g.state ?? 'ok',
    state_detail: g.state_detail ?? null,
    mig_devices: (sample.mig ?? []).filter((m) => m.gpu === g.index).map(({ gpu: _gpu, ...m }) => m),
    processes: (perGpu.get(g.index) ?? []).sort((a, b) => (b.memory_bytes ?? 0) - (a.memory_bytes ?? 0)),
    warnings: gpuWarnings(g),
  }));
  return { gpus, byInstance, listed: sample.processes !== null, error: sample.error, vendor: sample.vendor };
}

function gpuWarnings(g: GpuSample['gpus'][number]): string[] {
  const out: string[] = [];
  if (g.state === 'lost') out.push(`GPU ${g.index} is lost (${g.state_detail ?? 'the tool cannot reach it'})`);
  if (g.state === 'unreadable') out.push(`GPU ${g.index} cannot be read (${g.state_detail ?? 'no value'})`);
  if (g.memory_used_bytes !== null && g.memory_total_bytes) {
    const ratio = g.memory_used_bytes / g.memory_total_bytes;
    if (ratio > GPU_MEMORY_WARN_RATIO) out.push(`GPU ${g.index} memory ${Math.round(ratio * 100)}% used`);
  }
  if (g.temperature_c !== null && g.temperature_c >= GPU_TEMPERATURE_WARN_C) {
    out.push(`GPU ${g.index} at ${Math.round(g.temperature_c)} C`);
  }
  return out;
}

/** What an instance's row shows of the GPUs. */
export interface InstanceGpuFacts {
  vram_bytes: number | null;
  /** Indices of the GPUs the instance's processes are on (the table's GPU column). */
  on_gpus: number[];
  warnings: string[];
}

const GPU_BACKENDS = new Set(['cuda', 'rocm', 'vulkan', 'metal']);

/**
 * An instance's GPU memory and warnings. VRAM: the vendor tool's per-process figure when it has
 * one, else the GPU buffers the server said it allocated (the only figure where no tool reports per
 * process memory: Vulkan, or [Insufficient Permissions] in containers), else 0 when the listing was
 * read and has none of its processes.
 */
export function instanceGpuFacts(
  view: GpuView | undefined,
  inst: { name: string; running: boolean; backend: string | null; devices: Array<number | string> },
  facts: LoadFacts | null,
): InstanceGpuFacts {
  const use = view?.byInstance.get(inst.name);
  const warnings: string[] = [];
  if (!inst.running) return { vram_bytes: null, on_gpus: [], warnings };
  const fromBuffers = gpuBufferBytes(facts);
  const vram = use?.vendorBytes ?? fromBuffers ?? (view?.listed && !view.error && view.vendor ? 0 : null);
  const gpuBackend = inst.backend !== null && GPU_BACKENDS.has(inst.backend);
  for (const w of facts?.warnings ?? []) {
    if (w !== NO_USABLE_GPU) warnings.push(w);
  }
  if (gpuBackend && facts?.warnings.includes(NO_USABLE_GPU) && !vram) {
    warnings.push(`backend ${inst.backend}, but the server found no usable GPU: it runs on the CPU`);
  }
  const gpus = view?.gpus ?? [];
  // A MIG device's processes are listed under its parent GPU: which one is not in the sample.
  const mig = inst.devices.some((d) => typeof d === 'string' && d.startsWith('MIG-'));
  if (use && inst.devices.length > 0 && !mig) {
    const pinned = (g: GpuInfo) =>
      inst.devices.some((d) => d === g.index || (typeof d === 'string' && g.uuid?.startsWith(d)));
    for (const index of use.gpus) {
      const g = gpus.find((x) => x.index === index);
      if (g && !pinned(g)) {
        warnings.push(
          `uses memory on GPU ${index}, which it is not pinned to (gpu.devices: ${inst.devices.join(',')})`,
        );
      }
    }
  }
  for (const index of use?.gpus ?? []) warnings.push(...(gpus.find((g) => g.index === index)?.warnings ?? []));
  // A lost GPU lists no processes: the instances that would use it are those pinned to it, and the
  // unpinned ones of a GPU backend (llama.cpp splits over every visible GPU).
  for (const g of gpus) {
    if (g.state !== 'lost' || !gpuBackend || mig) continue;
    const pinnedTo = inst.devices.some((d) => d === g.index || (typeof d === 'string' && g.uuid?.startsWith(d)));
    if (inst.devices.length === 0 || pinnedTo) {
      warnings.push(
        `GPU ${g.index} is lost${pinnedTo ? ' (the instance is pinned to it)' : ''}: ${g.state_detail ?? ''}`.trim(),
      );
    }
  }
  return { vram_bytes: vram, on_gpus: use?.gpus ?? [], warnings };
}

/**
 * One instance's GPU memory over time, from the recorded samples (the daemon's sampler): the
 * memory of the processes attributed to it now (`pids`), summed per sample that listed processes.
 */
export function vramHistory(samples: GpuSample[], pids: ReadonlySet<number>): Array<{ ts: number; v: number | null }> {
  if (pids.size === 0) return [];
  return samples
    .filter((s) => s.processes !== null)
    .map((s) => {
      let sum: number | null = 0;
      for (const p of s.processes ?? []) {
        if (!pids.has(p.pid)) continue;
        if (p.memory_bytes === null) sum = null;
        else if (sum !== null) sum += p.memory_bytes;
      }
      return { ts: s.processes_at ?? s.at, v: sum };
    });
}

/** The pids of the GPU processes attributed to an instance in a view. */
export function instanceGpuPids(view: GpuView, name: string): Set<number> {
  return new Set(view.gpus.flatMap((g) => g.processes.filter((p) => p.instance === name).map((p) => p.pid)));
}
