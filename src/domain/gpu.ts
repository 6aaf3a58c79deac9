// The GPU vocabulary (docs/ARCHITECTURE.md, "GPU observability"): what a vendor tool reported at one
// moment (a sample, as the sampler records it) and the rig view `gpus --json` publishes.

/** The vendor tool a sample came from; null: none was found (a CPU-only rig). */
export type GpuVendor = 'nvidia' | 'amd';

/** One GPU as a vendor tool reported it; null wherever the tool said `[N/A]` or the like. */
export interface GpuReading {
  index: number;
  uuid: string | null;
  name: string | null;
  utilization_pct: number | null;
  memory_used_bytes: number | null;
  memory_total_bytes: number | null;
  temperature_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  /**
   * Absent: ok. lost: the tool could not reach it (fell off the bus, "GPU is lost"); unreadable: its
   * row was printed but none of its load and memory could be read ([Unknown Error], permissions).
   */
  state?: GpuState;
  /** What the tool said of a GPU that is not ok. */
  state_detail?: string;
}

export type GpuState = 'ok' | 'lost' | 'unreadable';

/** A MIG device as nvidia-smi -L lists it: its parent GPU, number, UUID and profile. */
export interface MigDeviceReading {
  gpu: number;
  device: number;
  uuid: string;
  /** NVIDIA's profile name: compute and memory slices, e.g. "3g.71gb" or "1c.3g.71gb". */
  profile: string;
  /** The memory the profile gives it, in GB as the profile names it (null when it names none). */
  memory_gb: number | null;
}

/** A process holding GPU memory, as the vendor tool reported it (the pid may be a host pid). */
export interface GpuProcessReading {
  pid: number;
  /** The GPU it is on: its uuid (nvidia) or index; null when the tool does not say. */
  gpu_uuid: string | null;
  gpu_index: number | null;
  memory_bytes: number | null;
  /** The tool's name for the process (nvidia's process_name, rocm-smi's lower-cased name). */
  name: string | null;
}

/** One reading of the whole rig. */
export interface GpuSample {
  /** ms since the epoch. */
  at: number;
  vendor: GpuVendor | null;
  gpus: GpuReading[];
  /** null: not read (the per-process listing runs at a slower cadence, or failed). */
  processes: GpuProcessReading[] | null;
  /** When the processes were read (ms); null with them. */
  processes_at: number | null;
  /** Why the tool gave nothing (it failed, timed out, or its output could not be read); null: fine. */
  error: string | null;
  /** MIG devices (nvidia-smi -L), read with the processes; absent or null: not read. */
  mig?: MigDeviceReading[] | null;
  /** The sampler's interval: a reader takes a sample as fresh for three of them. */
  interval_ms: number;
}

/** A GPU process as `gpus --json` publishes it: which instance it belongs to, or null (foreign). */
export interface GpuProcess {
  pid: number;
  instance: string | null;
  memory_bytes: number | null;
  command: string | null;
}

/** One GPU as `gpus --json` and `--once --json` publish it. Public API: add fields, never rename. */
export interface GpuInfo extends Omit<GpuReading, 'state' | 'state_detail'> {
  vendor: GpuVendor;
  /** ok, lost or unreadable (GpuReading.state); state_detail says what the tool printed. */
  state: GpuState;
  state_detail: string | null;
  /** The MIG devices carved out of it: devices of their own (gpu.devices takes their UUIDs). */
  mig_devices: Array<Omit<MigDeviceReading, 'gpu'>>;
  processes: GpuProcess[];
  /** What needs an operator's eye: memory above 95 %, temperature at 85 C or more. */
  warnings: string[];
}

/** Above these a GPU is flagged (the thresholds; nvtop colours red at similar points). */
export const GPU_MEMORY_WARN_RATIO = 0.95;
export const GPU_TEMPERATURE_WARN_C = 85;

/** Offload as llama-server reported it: `offloaded N/M layers to GPU`. */
export interface Offload {
  layers: number;
  total: number;
}

/** One buffer llama-server allocated: `CUDA0 model buffer size = 1234.00 MiB`. */
export interface LoadBuffer {
  /** The buffer type's name as printed: CPU, CPU_Mapped, CUDA0, CUDA_Host, Vulkan0, ROCm0, Metal... */
  device: string;
  kind: 'model' | 'kv' | 'compute' | 'output' | 'other';
  bytes: number;
}

/** What the server of one run really loaded where, read from its stderr (keeper/load-facts.ts). */
export interface LoadFacts {
  /** Devices the server saw: name (CUDA0, CPU), description, free MiB when printed. */
  devices: Array<{ name: string; description: string; total_bytes: number | null; free_bytes: number | null }>;
  offload: Offload | null;
  buffers: LoadBuffer[];
  /** Context in use (llama_context n_ctx), and per slot (n_ctx_slot). */
  n_ctx: number | null;
  n_ctx_slot: number | null;
  n_slots: number | null;
  /** --fit's projection, when it printed one. */
  fit_projected_bytes: number | null;
  /** Short warnings the server printed: no usable GPU, context reduced by --fit, context capped. */
  warnings: string[];
  /** The model finished loading (the server printed "model loaded" or "listening"). */
  loaded: boolean;
}

/** The load-facts warning for llama-server's "no usable GPU found, --gpu-layers option will be ignored". */
export const NO_USABLE_GPU = 'no usable GPU found: running on the CPU';

/**
 * Device buffer names that are GPU memory (not host memory pinned or mapped for a GPU: CUDA_Host,
 * CPU_Mapped). Metal's mapped buffers (MTL0_Mapped, Metal_Mapped: the model file mapped into a
 * Metal buffer) are the GPU's: on Apple silicon its memory is the unified memory Metal counts.
 */
export function isGpuBuffer(device: string): boolean {
  return (
    /^(?:(?:CUDA|ROCm|HIP|Vulkan|Metal|MTL|SYCL|MUSA|CANN|OpenCL)\d*(?:_Split)?|(?:Metal|MTL\d+)_Mapped)$/i.test(
      device,
    ) && !/host/i.test(device)
  );
}

/** Bytes of GPU memory a run's buffers take, or null when it allocated none on a GPU. */
export function gpuBufferBytes(facts: LoadFacts | null): number | null {
  if (!facts) return null;
  const gpu = facts.buffers.filter((b) => isGpuBuffer(b.device));
  return gpu.length ? gpu.reduce((a, b) => a + b.bytes, 0) : null;
}
