import type { GpuProcessReading, GpuReading } from '../../domain/gpu.js';
import { safeName } from '../../domain/sanitize.js';

// Figures no GPU can report are unknown, not passed on (to the panel, `gpus`, /metrics): a broken
// tool or driver prints utilisation 150 or -1, negative memory, a total of 0.

const within = (v: number | null, min: number, max: number): number | null =>
  v !== null && Number.isFinite(v) && v >= min && v <= max ? v : null;

/** 1 PiB: far above any GPU's memory, below what a garbled figure gives. */
const MAX_BYTES = 2 ** 50;

export function plausibleReading(g: GpuReading): GpuReading {
  const total = within(g.memory_total_bytes, 1, MAX_BYTES);
  const used = within(g.memory_used_bytes, 0, total ?? MAX_BYTES);
  return {
    ...g,
    // Names come from the driver (and, for processes, from whoever started them): no control codes.
    name: g.name === null ? null : safeName(g.name),
    utilization_pct: within(g.utilization_pct, 0, 100),
    memory_total_bytes: total,
    memory_used_bytes: used,
    temperature_c: within(g.temperature_c, -40, 150),
    power_w: within(g.power_w, 0, 5000),
    power_limit_w: within(g.power_limit_w, 1, 5000),
  };
}

export function plausibleProcess(p: GpuProcessReading): GpuProcessReading {
  return { ...p, name: p.name === null ? null : safeName(p.name), memory_bytes: within(p.memory_bytes, 0, MAX_BYTES) };
}
