// What the memory_measurements table keeps (store/schema.ts v9; engine/memory-calibration.ts makes
// and uses them): per model file and memory flags, what a run took on its GPUs.

/** A model file as the measurements know it: its path, size (all shards) and modification time. */
export interface ModelIdentity {
  path: string;
  size: number;
  mtime_ms: number;
}

/** One GPU of a measurement as the preflight uses it. */
export interface MeasuredDevice {
  device: string;
  model_bytes: number;
  kv_bytes: number;
  compute_bytes: number;
  loaded_bytes: number;
  measured_bytes: number | null;
}

/** The memory_measurements row: the last measured run of a model file with some memory flags. */
export interface MemoryMeasurement {
  model: ModelIdentity;
  /** memoryFlagsKey of the run's config. */
  flags: string;
  devices: MeasuredDevice[];
  estimated_bytes: number;
  loaded_bytes: number;
  /** The tool's figure on all the GPUs (the largest seen); null: the tool gave none (Vulkan, no permission). */
  measured_bytes: number | null;
  /** The instance and llama-server binary of the run it was measured on. */
  instance: string;
  server: string | null;
  measured_at: number;
}

/**
 * Two measurements of the same key: with the same llama-server, the larger figures stay (a run
 * measured right after its load has not yet grown its workspace); a new build replaces them.
 */
export function mergeMeasurement(prev: MemoryMeasurement | undefined, next: MemoryMeasurement): MemoryMeasurement {
  if (!prev || prev.server !== next.server || prev.devices.length !== next.devices.length) return next;
  const max = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
  return {
    ...next,
    devices: next.devices.map((d, i) => ({
      ...d,
      measured_bytes: max(d.measured_bytes, prev.devices[i]?.measured_bytes ?? null),
    })),
    measured_bytes: max(next.measured_bytes, prev.measured_bytes),
  };
}

/** The memory_measurements row as SQLite returns it (store/history.ts reads and writes it). */
export interface MeasurementRow {
  model_path: string;
  model_size: number;
  model_mtime: number;
  flags: string;
  devices_json: string;
  estimated_bytes: number;
  loaded_bytes: number;
  measured_bytes: number | null;
  instance_name: string;
  server: string | null;
  measured_at: number;
}

/** The measurement a row holds, or undefined when its devices are not readable JSON. */
export function measurementOfRow(r: MeasurementRow): MemoryMeasurement | undefined {
  let devices: MeasuredDevice[];
  try {
    devices = JSON.parse(r.devices_json) as MeasuredDevice[];
  } catch {
    return undefined;
  }
  return {
    model: { path: r.model_path, size: r.model_size, mtime_ms: r.model_mtime },
    flags: r.flags,
    devices,
    estimated_bytes: r.estimated_bytes,
    loaded_bytes: r.loaded_bytes,
    measured_bytes: r.measured_bytes,
    instance: r.instance_name,
    server: r.server,
    measured_at: r.measured_at,
  };
}
