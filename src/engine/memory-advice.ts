import type { DeviceFit, FitShare } from './memory-fit.js';

/** The part of an instance's memory that did not fit: the weights, the KV cache or the compute buffers. */
export type MemoryPart = 'model' | 'KV cache' | 'compute buffers';

/**
 * What to change in an instance's config so that it needs less memory, for the part that is too
 * big (an out-of-memory at load names it; the preflight's estimate tells which part is largest).
 */
export function memoryAdvice(part: MemoryPart | null, gpu: boolean): string {
  switch (part) {
    case 'model':
      return gpu
        ? 'offload fewer layers (lower model.n_gpu_layers) or use a smaller quantization'
        : 'use a smaller quantization of the model';
    case 'KV cache':
      return 'lower model.context_size or server.parallel, or quantize the KV cache (server.extra_args: "-ctk", "q8_0", "-ctv", "q8_0")';
    case 'compute buffers':
      return 'lower model.batch_size (and -ub in server.extra_args)';
    case null:
      return `lower ${gpu ? 'model.n_gpu_layers, ' : ''}model.context_size or server.parallel`;
  }
}

/** The largest part of what the instances to start need on a device that does not fit them. */
export function largestPart(shares: readonly FitShare[]): MemoryPart | null {
  const starting = shares.filter((s) => !s.running);
  const sum = (k: 'weights' | 'kv' | 'compute') => starting.reduce((a, s) => a + s[k], 0);
  const parts: Array<[MemoryPart, number]> = [
    ['model', sum('weights')],
    ['KV cache', sum('kv')],
    ['compute buffers', sum('compute')],
  ];
  const [part, bytes] = parts.sort((a, b) => b[1] - a[1])[0] ?? ['model', 0];
  return bytes > 0 ? part : null;
}

/** The advice for a device the preflight found too small. */
export function fitAdvice(d: DeviceFit): string {
  return memoryAdvice(largestPart(d.shares), d.device !== 'host');
}
