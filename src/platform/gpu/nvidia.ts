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

/** A field that says the GPU itself could not be read (not merely a value it does not support). */
const BROKEN = /\[(?:Unknown Error|GPU is lost|Insufficient Permissions)\]/i;

/** One `--query-gpu` line, or undefined when it is not one (a warning nvidia-smi printed, say). */
export function parseGpuLine(line: string): GpuReading | undefined {
  const g = parseGpuRow(line);
  if (!g) return g;
  const lost = /\[GPU is lost\]/i.exec(line);
  const unreadable = g.utilization_pct === null && g.memory_used_bytes === null && g.memory_total_bytes === null;
  if (lost) return { ...g, state: 'lost', state_detail: 'nvidia-smi: [GPU is lost]' };
  if (unreadable && BROKEN.test(line)) {
    return { ...g, state: 'unreadable', state_detail: `nvidia-smi: ${BROKEN.exec(line)?.[0] ?? ''}` };
  }
  return g;
}

function parseGpuRow(line: string): GpuReading | undefined {
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

// "Unable to determine the device handle for GPU1: 0000:34:00.0: Unknown Error" (newer drivers),
// "... for GPU 0000:0B:00.0: Unknown Error" and "... for gpu 0000:01:00.0: GPU is lost.  Reboot the
// system to recover this GPU" (older): printed in place of the GPU's row; the others still print.
const LOST =
  /Unable to determine the device handle for GPU\s*(?:(\d+):\s*)?([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])?\s*:\s*(.+?)\s*$/i;

/** A GPU nvidia-smi could not reach, from the line it printed instead of its row. */
export function parseLostLine(line: string): { index: number | null; bus: string | null; why: string } | undefined {
  const m = LOST.exec(line);
  if (!m) return undefined;
  return {
    index: m[1] !== undefined ? Number(m[1]) : null,
    bus: m[2] ?? null,
    why: (m[3] ?? '').split(/\.\s/)[0] ?? '',
  };
}

/**
 * The rows of `--query-gpu`, and a reading in state "lost" for each GPU nvidia-smi could not reach.
 * Its index is the one printed, else the first gap in the printed indices (nvidia-smi numbers GPUs in
 * bus order and a lost GPU keeps its place), else the next after them.
 */
export function parseGpuLines(out: string): GpuReading[] {
  const gpus: GpuReading[] = [];
  const lost: Array<NonNullable<ReturnType<typeof parseLostLine>>> = [];
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    const g = parseGpuLine(line);
    if (g) gpus.push(g);
    else {
      const l = parseLostLine(line);
      if (l) lost.push(l);
    }
  }
  const taken = new Set(gpus.map((g) => g.index));
  for (const l of lost) {
    let index = l.index;
    if (index === null || taken.has(index)) {
      index = 0;
      while (taken.has(index)) index++;
    }
    taken.add(index);
    gpus.push({
      ...LOST_READING,
      index,
      state: 'lost',
      state_detail: `nvidia-smi: unable to determine the device handle${l.bus ? ` for ${l.bus}` : ''}: ${l.why}`,
    });
  }
  return gpus.sort((a, b) => a.index - b.index);
}

const LOST_READING: Omit<GpuReading, 'index'> = {
  uuid: null,
  name: null,
  utilization_pct: null,
  memory_used_bytes: null,
  memory_total_bytes: null,
  temperature_c: null,
  power_w: null,
  power_limit_w: null,
};

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

/**
 * A MIG device carved out of a GPU (`nvidia-smi -L`): a device of its own, which gpu.devices selects
 * by its UUID. Its memory is the profile's ("3g.71gb": 71 GB); nvidia-smi's per-process listing names
 * the parent GPU, so the memory used on each MIG device is not known here.
 */
export interface MigDevice {
  gpu: number;
  device: number;
  uuid: string;
  profile: string;
  memory_gb: number | null;
}

/** `nvidia-smi -L`: the GPUs and the MIG devices carved out of them (their UUIDs select them too). */
export interface NvidiaList {
  gpus: Array<{ index: number; name: string; uuid: string | null }>;
  mig: MigDevice[];
}

export function parseList(out: string): NvidiaList {
  const list: NvidiaList = { gpus: [], mig: [] };
  for (const line of out.split('\n')) {
    const gpu = /^GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?\s*$/.exec(line);
    if (gpu) {
      list.gpus.push({ index: Number(gpu[1]), name: gpu[2] ?? '', uuid: gpu[3] ?? null });
      continue;
    }
    // "  MIG 3g.40gb     Device  0: (UUID: MIG-...)"; H200: "  MIG 1c.3g.71gb  Device  0: ..."
    const mig = /^\s+MIG\s+(\S+)\s+Device\s+(\d+):.*\(UUID: (MIG-[^)]+)\)/.exec(line);
    const parent = list.gpus.at(-1);
    if (mig?.[3] && parent) {
      const gb = /(\d+)gb$/i.exec(mig[1] ?? '');
      list.mig.push({
        gpu: parent.index,
        device: Number(mig[2]),
        uuid: mig[3],
        profile: mig[1] ?? '',
        memory_gb: gb ? Number(gb[1]) : null,
      });
    }
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
    /NVIDIA-SMI has failed|couldn't communicate|No devices were found|GPU is lost|Unable to determine the device handle/i.test(
      l,
    ),
  );
  // Not a healthy GPU's CSV row printed before the failure: the first line that is not one.
  const other = said.find((l) => parseGpuLine(l) === undefined);
  return (first ?? other ?? said[0] ?? 'no output').slice(0, 300);
}
