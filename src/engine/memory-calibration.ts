import { isGpuBuffer, type LoadFacts } from '../domain/gpu.js';
import { GPU_MARGIN, type MemoryEstimate } from '../models/estimate.js';
import type { MemoryMeasurement, ModelIdentity } from '../store/measurements.js';
import { bytesText } from '../domain/units.js';

const MiB = 1024 ** 2;

export {
  mergeMeasurement,
  type MeasuredDevice,
  type MemoryMeasurement,
  type ModelIdentity,
} from '../store/measurements.js';

/**
 * The estimate against reality (docs/ARCHITECTURE.md, "Models and memory fit"): what the estimator
 * said a run needs per GPU, what the server said it allocated (its buffers, keeper/load-facts.ts)
 * and what the vendor tool measured for the server's process (which includes what no buffer shows:
 * the CUDA context, cuBLAS's workspace). Pure, and light enough for the keeper (no config validator):
 * the keeper compares after a load (keeper/memory-check.ts), `describe` shows the comparison, and
 * the preflight (memory-fit.ts) counts the measured figure of the last run of the same model file
 * with the same memory flags instead of the estimate.
 */

export { estimateInputFor, flagValue, hasFlag, memoryFlags, memoryFlagsKey, modelIdentity } from './memory-flags.js';

// ---- the comparison

/** One GPU of a run: what the estimate said, what the server allocated, what the tool measured. */
export interface DeviceMemory {
  /** The server's name for it (CUDA0, ROCm1, Vulkan0). */
  device: string;
  /** The vendor tool's index of that GPU, where known. */
  gpu: number | null;
  /** The estimate for it, its runtime allowance included. */
  estimated_bytes: number;
  /** The part of the estimate for what no buffer shows (CUDA context, libraries' workspaces). */
  estimated_runtime_bytes: number;
  /** The server's buffers on it (model, KV, compute, ...). */
  loaded_bytes: number;
  /** Of loaded_bytes: weights, KV cache, compute (and the rest: output, recurrent state). */
  loaded_model_bytes: number;
  loaded_kv_bytes: number;
  loaded_compute_bytes: number;
  /** The vendor tool's figure for the server's processes on it (the largest seen this run); null: not known. */
  measured_bytes: number | null;
  /** measured - loaded: the memory outside the server's buffers. */
  runtime_bytes: number | null;
  differs: boolean;
}

/**
 * A run's GPU memory against the estimate (`describe`'s `memory`; public API: add fields, never
 * rename). The top-level figures sum the GPUs (null: the run has none); `host` is for information.
 */
export interface MemoryComparison {
  estimated_bytes: number | null;
  loaded_bytes: number | null;
  measured_bytes: number | null;
  per_device: DeviceMemory[];
  /** A GPU's figures differ by more than 10 % or 512 MiB (estimate with allowance vs measured, estimated buffers vs loaded). */
  differs: boolean;
  /** The host's share: the estimate and the server's host buffers (mapped weights included). */
  host: { estimated_bytes: number; loaded_bytes: number } | null;
  /** What the next preflight of this model with these flags counts on the GPUs (measured, else loaded + the allowance). */
  preflight_bytes: number | null;
  /** When the tool was last read for it (ms; describe shows ISO 8601); null: never. */
  measured_at: number | null;
}

/** More than 10 % of the expected figure, or more than 512 MiB. */
export const DIFFERS_RATIO = 0.1;
export const DIFFERS_BYTES = 512 * MiB;

export function differsBy(expected: number, actual: number): boolean {
  const d = Math.abs(actual - expected);
  return d > DIFFERS_BYTES || d > DIFFERS_RATIO * expected;
}

/** The GPU devices of a run, in the server's order (CUDA0, CUDA1, ...): those it listed and those it allocated on. */
export function gpuDevices(facts: LoadFacts): string[] {
  const names = new Set<string>();
  for (const d of facts.devices) if (isGpuBuffer(d.name) && /\d$/.test(d.name)) names.add(d.name);
  for (const b of facts.buffers) if (isGpuBuffer(b.device) && /\d$/.test(b.device)) names.add(b.device);
  const num = (s: string) => Number(/(\d+)$/.exec(s)?.[1] ?? 0);
  // Plain code-point order of the backend names (localeCompare would load ICU's collator into the keeper).
  const backend = (s: string) => s.replace(/\d+$/, '');
  return [...names].sort((a, b) => (backend(a) < backend(b) ? -1 : backend(a) > backend(b) ? 1 : num(a) - num(b)));
}

/** The split of a run across its GPUs: free memory at load, as llama.cpp splits without -ts. */
export function freeSplit(facts: LoadFacts, devices: string[]): number[] | undefined {
  if (devices.length < 2) return undefined;
  const free = devices.map((n) => facts.devices.find((d) => d.name === n)?.free_bytes ?? null);
  return free.every((f) => f !== null && f > 0) ? (free as number[]) : undefined;
}

export interface CompareInput {
  estimate: MemoryEstimate;
  facts: LoadFacts;
  /** The run's GPU devices (gpuDevices(facts)); position i is the estimate's device i. */
  devices: string[];
  /** Per device name: the tool's GPU index and its figure for the server there (absent: unknown). */
  measured: Map<string, { gpu: number | null; bytes: number | null }>;
  /** Total of the tool's figures for the server when per device is unknown (several unpinned GPUs). */
  measuredTotal?: number | null;
  measuredAt: number | null;
}

/** Compares one run's estimate with its buffers and the tool's figures. */
export function compareMemory(c: CompareInput): MemoryComparison {
  const per: DeviceMemory[] = c.devices.map((name, i) => {
    const est = c.estimate.devices.find((d) => d.device === i);
    const of = c.facts.buffers.filter((b) => b.device === name || b.device === `${name}_Split`);
    const kind = (k: string) => of.filter((b) => b.kind === k).reduce((a, b) => a + b.bytes, 0);
    const loaded = of.reduce((a, b) => a + b.bytes, 0);
    const m = c.measured.get(name);
    const measured = m?.bytes ?? null;
    const estimated = est?.total ?? 0;
    const allowance = est?.margin ?? 0;
    const differs = (measured !== null && differsBy(estimated, measured)) || differsBy(estimated - allowance, loaded);
    return {
      device: name,
      gpu: m?.gpu ?? null,
      estimated_bytes: estimated,
      estimated_runtime_bytes: allowance,
      loaded_bytes: loaded,
      loaded_model_bytes: kind('model'),
      loaded_kv_bytes: kind('kv'),
      loaded_compute_bytes: kind('compute'),
      measured_bytes: measured,
      runtime_bytes: measured === null ? null : measured - loaded,
      differs,
    };
  });
  const sum = (f: (d: DeviceMemory) => number) => per.reduce((a, d) => a + f(d), 0);
  const anyGpu = per.length > 0;
  const allMeasured = anyGpu && per.every((d) => d.measured_bytes !== null);
  const measuredTotal = allMeasured
    ? sum((d) => d.measured_bytes as number)
    : anyGpu
      ? (c.measuredTotal ?? null)
      : null;
  const hostEst = c.estimate.devices.find((d) => d.device === 'host');
  const hostLoaded = c.facts.buffers.filter((b) => !isGpuBuffer(b.device)).reduce((a, b) => a + b.bytes, 0);
  const loadedTotal = sum((d) => d.loaded_bytes);
  return {
    estimated_bytes: anyGpu ? sum((d) => d.estimated_bytes) : null,
    loaded_bytes: anyGpu ? loadedTotal : null,
    measured_bytes: measuredTotal,
    per_device: per,
    differs:
      per.some((d) => d.differs) ||
      (!allMeasured &&
        measuredTotal !== null &&
        differsBy(
          sum((d) => d.estimated_bytes),
          measuredTotal,
        )),
    host: hostEst || hostLoaded > 0 ? { estimated_bytes: hostEst?.total ?? 0, loaded_bytes: hostLoaded } : null,
    preflight_bytes: anyGpu ? (measuredTotal ?? loadedTotal + per.length * GPU_MARGIN) : null,
    measured_at: c.measuredAt,
  };
}

/** Keeps the largest figure the tool reported for each device over a run (the workspace grows once it serves). */
export function withPeak(next: MemoryComparison, prev: MemoryComparison | null | undefined): MemoryComparison {
  if (!prev) return next;
  const per = next.per_device.map((d) => {
    const before = prev.per_device.find((p) => p.device === d.device)?.measured_bytes ?? null;
    const measured =
      before === null ? d.measured_bytes : d.measured_bytes === null ? before : Math.max(before, d.measured_bytes);
    if (measured === d.measured_bytes) return d;
    return {
      ...d,
      measured_bytes: measured,
      runtime_bytes: measured === null ? null : measured - d.loaded_bytes,
      differs:
        (measured !== null && differsBy(d.estimated_bytes, measured)) ||
        differsBy(d.estimated_bytes - d.estimated_runtime_bytes, d.loaded_bytes),
    };
  });
  const total =
    next.measured_bytes === null
      ? prev.measured_bytes
      : prev.measured_bytes === null
        ? next.measured_bytes
        : Math.max(next.measured_bytes, prev.measured_bytes);
  const loaded = next.loaded_bytes ?? 0;
  return {
    ...next,
    per_device: per,
    measured_bytes: total,
    differs: per.some((d) => d.differs) || next.differs,
    preflight_bytes: next.preflight_bytes === null ? null : (total ?? loaded + per.length * GPU_MARGIN),
  };
}

/**
 * The event's text for the devices that differ, e.g. "estimated 2.5 GiB, loaded 2.2 GiB, measured
 * 2.8 GiB on CUDA0 (GPU 0): 589 MiB outside the server's buffers, the estimate allows 300 MiB; the
 * next preflight of this model with these flags counts 2.8 GiB". Null when none differs.
 */
export function memoryEventText(c: MemoryComparison): { level: 'warn' | 'info'; message: string } | null {
  const differing = c.per_device.filter((d) => d.differs);
  if (differing.length === 0) return null;
  const parts = differing.map((d) => {
    const on = `${d.device}${d.gpu !== null ? ` (GPU ${d.gpu})` : ''}`;
    const figures = [`estimated ${bytesText(d.estimated_bytes)}`, `loaded ${bytesText(d.loaded_bytes)}`];
    if (d.measured_bytes !== null) figures.push(`measured ${bytesText(d.measured_bytes)}`);
    const outside =
      d.runtime_bytes !== null
        ? `: ${bytesText(d.runtime_bytes)} outside the server's buffers, the estimate allows ${bytesText(d.estimated_runtime_bytes)}`
        : '';
    return `${figures.join(', ')} on ${on}${outside}`;
  });
  const low = differing.some(
    (d) => (d.measured_bytes ?? d.loaded_bytes + d.estimated_runtime_bytes) > d.estimated_bytes,
  );
  const next =
    c.preflight_bytes !== null
      ? `; the next preflight of this model with these flags counts ${bytesText(c.preflight_bytes)}`
      : '';
  return { level: low ? 'warn' : 'info', message: `${parts.join('; ')}${next}` };
}

// ---- what is kept for the preflight

export function measurementOf(
  c: MemoryComparison,
  at: { model: ModelIdentity; flags: string; instance: string; server: string | null; now: number },
): MemoryMeasurement | null {
  if (c.per_device.length === 0 || c.estimated_bytes === null || c.loaded_bytes === null) return null;
  return {
    model: at.model,
    flags: at.flags,
    devices: c.per_device.map((d) => ({
      device: d.device,
      model_bytes: d.loaded_model_bytes,
      kv_bytes: d.loaded_kv_bytes,
      compute_bytes: d.loaded_compute_bytes,
      loaded_bytes: d.loaded_bytes,
      measured_bytes: d.measured_bytes,
    })),
    estimated_bytes: c.estimated_bytes,
    loaded_bytes: c.loaded_bytes,
    measured_bytes: c.measured_bytes,
    instance: at.instance,
    server: at.server,
    measured_at: at.now,
  };
}

/** One GPU's share as the preflight counts it from a measurement: the buffers, and the rest as runtime. */
export interface MeasuredShare {
  weights: number;
  kv: number;
  compute: number;
  margin: number;
  total: number;
}

/**
 * The preflight's figures for GPU i of a measured run: the tool's figure where it has one for that
 * device (or its share of the total, spread evenly), else the buffers plus the estimate's allowance.
 */
export function measuredShare(m: MemoryMeasurement, i: number): MeasuredShare | undefined {
  const d = m.devices[i];
  if (!d) return undefined;
  const rest = d.loaded_bytes - d.model_bytes - d.kv_bytes;
  let total: number;
  if (d.measured_bytes !== null) total = d.measured_bytes;
  else if (m.measured_bytes !== null && m.devices.every((x) => x.measured_bytes === null))
    total = d.loaded_bytes + Math.max(0, m.measured_bytes - m.loaded_bytes) / m.devices.length;
  else total = d.loaded_bytes + GPU_MARGIN;
  total = Math.max(total, d.loaded_bytes);
  return {
    weights: d.model_bytes,
    kv: d.kv_bytes,
    compute: rest,
    margin: total - d.loaded_bytes,
    total,
  };
}
