import type { GpuProcessReading, GpuReading } from '../../domain/gpu.js';

// nvidia-smi's CSV query interface (`nvidia-smi --help-query-gpu`). Values are as printed with
// `--format=csv,noheader,nounits`: comma-and-space separated, memory in MiB, power in W, and
// bracketed words where a value is unavailable: [N/A], [Not Supported], [Insufficient Permissions]
// (per-process memory inside containers), [Unknown Error], [GPU is lost].

export const NVIDIA_GPU_FIELDS = [
  'index',
  'uuid',
  'name',
  'utilization.gpu',
  'memory.used',
  'memory.total',
  'temperature.gpu',
  'power.draw',
  'power.limit',
] as const;

export const NVIDIA_APP_FIELDS = ['pid', 'process_name', 'used_memory', 'gpu_uuid'] as const;

const FORMAT = '--format=csv,noheader,nounits';

export const nvidiaGpuArgs = (loopMs?: number): string[] => [
  `--query-gpu=${NVIDIA_GPU_FIELDS.join(',')}`,
  FORMAT,
  ...(loopMs !== undefined ? ['-lms', String(loopMs)] : []),
];

export const nvidiaAppArgs = (): string[] => [`--query-compute-apps=${NVIDIA_APP_FIELDS.join(',')}`, FORMAT];

const MIB = 1024 * 1024;

/** A value nvidia-smi could not give: `[N/A]`, `N/A`, `[Not Supported]`, an empty field... */
function unavailable(v: string): boolean {
  return v === '' || v.startsWith('[') || /^n\/?a$/i.test(v);
}

function num(v: string | undefined): number | null {
  if (v === undefined) return null;
  const t = v.trim();
  if (unavailable(t)) return null;
  // Some drivers print units even with nounits (e.g. "350.00 W"): take the number.
  const n = Number.parseFloat(t);
  return Number.isFinite(n) ? n : null;
}

function text(v: string | undefined): string | null {
  const t = v?.trim() ?? '';
  return unavailable(t) ? null : t;
}

/** One `--query-gpu` line, or undefined when it is not one (a warning nvidia-smi printed, say). */
export function parseGpuLine(line: string): GpuReading | undefined {
  const f = line.split(',');
  if (f.length < NVIDIA_GPU_FIELDS.length) return undefined;
  // The name may hold a comma: the fields before it and after it are fixed.
  const tail = f.slice(f.length - 6);
  const name = f.slice(2, f.length - 6).join(',');
  const index = Number.parseInt((f[0] ?? '').trim(), 10);
  if (!Number.isInteger(index) || !/^\s*\d+\s*$/.test(f[0] ?? '')) return undefined;
  const used = num(tail[1]);
  const total = num(tail[2]);
  return {
    index,
    uuid: text(f[1]),
    name: text(name),
    utilization_pct: num(tail[0]),
    memory_used_bytes: used === null ? null : Math.round(used * MIB),
    memory_total_bytes: total === null ? null : Math.round(total * MIB),
    temperature_c: num(tail[3]),
    power_w: num(tail[4]),
    power_limit_w: num(tail[5]),
  };
}

export function parseGpuLines(out: string): GpuReading[] {
  return out
    .split('\n')
    .map((l) => parseGpuLine(l.trim()))
    .filter((g): g is GpuReading => g !== undefined);
}

/**
 * `--query-compute-apps`: one line per process and GPU; nothing at all when no process uses a GPU
 * (some versions print "No running processes found" instead).
 */
export function parseAppLines(out: string): GpuProcessReading[] {
  const apps: GpuProcessReading[] = [];
  for (const raw of out.split('\n')) {
    const f = raw.trim().split(',');
    if (f.length < NVIDIA_APP_FIELDS.length) continue;
    const pid = Number.parseInt((f[0] ?? '').trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const mem = num(f[f.length - 2]);
    apps.push({
      pid,
      name: text(f.slice(1, f.length - 2).join(',')),
      memory_bytes: mem === null ? null : Math.round(mem * MIB),
      gpu_uuid: text(f[f.length - 1]),
      gpu_index: null,
    });
  }
  return apps;
}

/** `nvidia-smi -L`: the GPUs and the MIG devices carved out of them (their UUIDs select them too). */
export interface NvidiaList {
  gpus: Array<{ index: number; name: string; uuid: string | null }>;
  mig: Array<{ gpu: number; uuid: string }>;
}

export function parseList(out: string): NvidiaList {
  const list: NvidiaList = { gpus: [], mig: [] };
  for (const line of out.split('\n')) {
    const gpu = /^GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?\s*$/.exec(line);
    if (gpu) {
      list.gpus.push({ index: Number(gpu[1]), name: gpu[2] ?? '', uuid: gpu[3] ?? null });
      continue;
    }
    const mig = /^\s+MIG .*\(UUID: (MIG-[^)]+)\)/.exec(line);
    const parent = list.gpus.at(-1);
    if (mig?.[1] && parent) list.mig.push({ gpu: parent.index, uuid: mig[1] });
  }
  return list;
}

/** nvidia-smi's own explanation when it fails (it prints it on stdout), in one line. */
export function nvidiaFailure(stdout: string, stderr: string): string {
  const said = `${stdout}\n${stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const first = said.find((l) =>
    /NVIDIA-SMI has failed|couldn't communicate|No devices were found|GPU is lost/i.test(l),
  );
  return (first ?? said[0] ?? 'no output').slice(0, 300);
}
