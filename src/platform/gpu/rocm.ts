import type { GpuProcessReading, GpuReading } from '../../domain/gpu.js';

// rocm-smi's --json output: one object per card ("card0", ...) whose keys are the labels of the
// text output and whose values are all strings; key names moved between ROCm releases (the
// temperature's unit "(C)" was "(c)"; power is "Average Graphics Package Power (W)" on older
// releases and "Current Socket Graphics Package Power (W)" on newer ones), so each value is looked
// up under the names it has had. --showpids puts processes under "system" as
// "PID1234": "name, gpu count, vram bytes, sdma, cu occupancy".
// The GPU's identity is "Unique ID" (the board's id, "0x5c88007d760374f3"); "GUID" is the KFD
// topology node's gpu_id ("26967"), a small number the kernel driver derives for the node on this
// machine, not an id of the board, so it is not taken for a uuid: without "Unique ID" the uuid is
// unknown (the real RX 7900 XT and Radeon 8060S outputs print only "GUID"). Hygon's DCU fork of
// rocm-smi (gpustack's captures) renames fields: "DCU use (%)", and VRAM in MiB as
// "vram Total Memory (MiB)" / "vram Total Used Memory (MiB)".

export const rocmGpuArgs = (): string[] => [
  '--showuse',
  '--showmeminfo',
  'vram',
  '--showtemp',
  '--showpower',
  '--showproductname',
  '--showuniqueid',
  '--json',
];

export const rocmPidArgs = (): string[] => ['--showpids', '--json'];

/**
 * Which GPUs each process uses. Text, not --json: rocm_smi.py's showPidGpus prints the mapping with
 * printListLog, which prints nothing in JSON mode (every ROCm release read, 5.x to 6.x), so the
 * JSON document has no trace of it. The text is, per process:
 *   PID 4242 is using 2 DRM device(s):
 *   0 1
 * ("is using 0 DRM device(s)" on one line when none), between "=== GPUs Indexed by PID ===" spacers.
 */
export const rocmPidGpuArgs = (): string[] => ['--showpidgpus'];

/** pid -> the GPU indices it uses, from `rocm-smi --showpidgpus` (text). */
export function parseRocmPidGpus(out: string): Map<number, number[]> {
  const map = new Map<number, number[]>();
  const re = /PID (\d+) is using (\d+) DRM device\(s\)(?::[ \t]*\r?\n([\d \t]*))?/g;
  for (const m of out.matchAll(re)) {
    const count = Number(m[2]);
    const indices = count > 0 ? (m[3] ?? '').trim().split(/\s+/).filter(Boolean).map(Number) : [];
    map.set(
      Number(m[1]),
      indices.filter((i) => Number.isInteger(i)),
    );
  }
  return map;
}

function num(v: unknown): number | null {
  if (typeof v !== 'string' && typeof v !== 'number') return null;
  const n = Number.parseFloat(String(v));
  return Number.isFinite(n) ? n : null;
}

const MIB = 1024 * 1024;

/** VRAM bytes: the "(B)" key as printed, or the DCU fork's "(MiB)" key in MiB. */
function vram(card: Record<string, unknown>, bytesKey: RegExp, mibKey: RegExp): number | null {
  const bytes = num(pick(card, [bytesKey]));
  if (bytes !== null) return bytes;
  const mib = num(pick(card, [mibKey]));
  return mib === null ? null : Math.round(mib * MIB);
}

function pick(card: Record<string, unknown>, patterns: RegExp[]): unknown {
  for (const re of patterns) {
    for (const [k, v] of Object.entries(card)) if (re.test(k)) return v;
  }
  return undefined;
}

function parseJson(out: string): Record<string, unknown> {
  // rocm-smi may print warnings before the JSON document.
  const start = out.indexOf('{');
  if (start < 0) throw new Error('rocm-smi printed no JSON');
  const doc: unknown = JSON.parse(out.slice(start));
  if (!doc || typeof doc !== 'object') throw new Error('rocm-smi printed no JSON object');
  return doc as Record<string, unknown>;
}

export function parseRocmGpus(out: string): GpuReading[] {
  const doc = parseJson(out);
  const gpus: GpuReading[] = [];
  for (const [key, value] of Object.entries(doc)) {
    const m = /^card(\d+)$/.exec(key);
    if (!m || !value || typeof value !== 'object') continue;
    const card = value as Record<string, unknown>;
    const name = pick(card, [/^Card Series$/i, /^Device Name$/i, /^Card series$/i]);
    const uuid = pick(card, [/^Unique ID$/i]);
    gpus.push({
      index: Number(m[1]),
      uuid: typeof uuid === 'string' && uuid !== 'N/A' ? uuid : null,
      name: typeof name === 'string' && name !== 'N/A' ? name : null,
      utilization_pct: num(pick(card, [/^GPU use \(%\)$/i, /^DCU use \(%\)$/i])),
      memory_used_bytes: vram(card, /^VRAM Total Used Memory \(B\)$/i, /^VRAM Total Used Memory \(MiB\)$/i),
      memory_total_bytes: vram(card, /^VRAM Total Memory \(B\)$/i, /^VRAM Total Memory \(MiB\)$/i),
      temperature_c: num(
        pick(card, [/^Temperature \(Sensor edge\) \(C\)$/i, /^Temperature \(Sensor junction\) \(C\)$/i]),
      ),
      power_w: num(
        pick(card, [/^Average Graphics Package Power \(W\)$/i, /^Current Socket Graphics Package Power \(W\)$/i]),
      ),
      power_limit_w: num(pick(card, [/^Max Graphics Package Power \(W\)$/i])),
    });
  }
  return gpus.sort((a, b) => a.index - b.index);
}

/**
 * --showpids: which GPU a process is on is not in this listing (its second field counts GPUs), so
 * with one GPU it is that one and otherwise unknown (the sampler asks --showpidgpus then).
 */
export function parseRocmPids(out: string, gpuCount: number): GpuProcessReading[] {
  const doc = parseJson(out);
  const system = doc.system;
  if (!system || typeof system !== 'object') return [];
  const procs: GpuProcessReading[] = [];
  for (const [key, value] of Object.entries(system as Record<string, unknown>)) {
    const m = /^PID(\d+)$/.exec(key);
    if (!m || typeof value !== 'string') continue;
    const f = value.split(',').map((s) => s.trim());
    procs.push({
      pid: Number(m[1]),
      name: f[0] && f[0] !== 'unknown' ? f[0] : null,
      gpu_uuid: null,
      gpu_index: gpuCount === 1 ? 0 : null,
      memory_bytes: num(f[2]),
    });
  }
  return procs;
}
