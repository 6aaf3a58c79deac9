import os from 'node:os';
import type { InstanceConfig } from '../config/schema.js';
import type { GpuReading, GpuSample } from '../domain/gpu.js';
import type { OutOfMemory } from './classify.js';

const MIB = 1024 * 1024;

/**
 * The tool's GPU behind a server's device name (CUDA0, ROCm1, Vulkan0), where that is known: the
 * instance's pinned devices in order (CUDA_VISIBLE_DEVICES with PCI bus order, engine/command.ts),
 * or the only GPU of the rig. Unknown otherwise: CUDA numbers unpinned devices fastest first.
 */
export function physicalGpu(device: string, config: InstanceConfig, sample: GpuSample): GpuReading | undefined {
  const m = /^(?:CUDA|ROCm|Vulkan)(\d+)$/.exec(device);
  if (!m) return undefined;
  const n = Number(m[1]);
  const pinned = config.gpu.devices;
  if (pinned.length > 0) {
    const d = pinned[n];
    if (d === undefined) return undefined;
    // As engine/gpus.ts matches a pinned UUID: a prefix of the tool's (people shorten them).
    return sample.gpus.find((g) => (typeof d === 'number' ? g.index === d : (g.uuid?.startsWith(d) ?? false)));
  }
  return sample.gpus.length === 1 && n === 0 ? sample.gpus[0] : undefined;
}

/**
 * What there is to have, for an out-of-memory reason: the GPU's free memory per the vendor tool
 * (read after the server exited, so its own allocations are back), or the host's available memory.
 */
export function memoryNote(
  oom: OutOfMemory,
  config: InstanceConfig,
  sample: GpuSample | undefined,
  hostAvailable: () => number = os.freemem,
): string | undefined {
  if (!oom.gpu) return `the host has ${Math.round(hostAvailable() / MIB)} MiB available`;
  if (!sample || sample.vendor === null) return undefined;
  const g = physicalGpu(oom.device, config, sample);
  if (!g || g.memory_total_bytes === null || g.memory_used_bytes === null) return undefined;
  const free = Math.max(0, g.memory_total_bytes - g.memory_used_bytes);
  const tool = sample.vendor === 'amd' ? 'rocm-smi' : 'nvidia-smi';
  return `GPU ${g.index} has ${Math.round(free / MIB)} MiB free of ${Math.round(g.memory_total_bytes / MIB)} MiB (${tool})`;
}
