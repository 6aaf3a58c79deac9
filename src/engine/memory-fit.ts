import { resolveModelPath, type LoadedInstance } from '../config/load.js';
import { ggufCacheFile, instanceConfigPath, type Home } from '../domain/home.js';
import type { GpuSample } from '../domain/gpu.js';
import { readGgufCached } from '../models/gguf.js';
import { readHostMemory } from '../platform/memory.js';
import type { Processes } from '../platform/processes.js';
import type { Store } from '../store/store.js';
import { sampleOnce } from '../platform/gpu/sampler.js';
import { observeRow, runningConfig } from './reconcile.js';
import type { InstanceConfig } from '../config/schema.js';
import type { GpuReading } from '../domain/gpu.js';
import { estimateMemory, type MemoryEstimate } from '../models/estimate.js';
import {
  estimateInputFor,
  flagValue,
  measuredShare,
  memoryFlagsKey,
  modelIdentity,
  type MemoryMeasurement,
} from './memory-calibration.js';
import type { GgufInfo } from '../models/gguf.js';
import { unitFor } from '../domain/units.js';
import type { HostMemory } from '../platform/memory.js';

/**
 * The memory-fit preflight (README, "Memory fit"): the estimates of the instances that run or
 * will run, per GPU they are pinned to (host memory on a CPU-only rig), against each device's
 * total and what is free now. `config lint` and `up` call it; `up --force` starts anyway.
 * An instance whose model file ran before with the same memory flags counts what the vendor tool
 * measured then (engine/memory-calibration.ts) instead of the estimate, on its GPUs.
 */

export { estimateInputFor, flagValue } from './memory-calibration.js';

/** The GPUs (by index in `gpus`) an instance's server can see: its devices, or all of them when it names none. */
export function pinnedGpus(config: InstanceConfig, gpus: GpuReading[]): number[] {
  if (config.gpu.backend === 'cpu' || config.gpu.backend === 'metal') return [];
  if (config.gpu.devices.length === 0) return gpus.map((g) => g.index);
  return config.gpu.devices
    .map((d) =>
      typeof d === 'number' ? d : gpus.find((g) => g.uuid?.toLowerCase().startsWith(d.toLowerCase()))?.index,
    )
    .filter((i): i is number => i !== undefined && gpus.some((g) => g.index === i));
}

/** extra_args that move tensors where the estimate cannot follow (-ot, the MoE flags, device selection). */
const PLACEMENT_FLAGS = [
  '-ot',
  '--override-tensor',
  '-ncmoe',
  '--n-cpu-moe',
  '-cmoe',
  '--cpu-moe',
  '-dev',
  '--device',
  '-sm',
  '--split-mode',
];

export interface FitInstance {
  inst: LoadedInstance;
  model: GgufInfo;
  /** Already running: its memory is in use (not free), but it counts against the total. */
  running: boolean;
  /** What a run of this model file with the same memory flags took (fitReportFor looks it up): counted instead of the estimate on the GPUs. */
  measured?: MemoryMeasurement | undefined;
}

/** One instance's share of one device. */
export interface FitShare {
  name: string;
  running: boolean;
  weights: number;
  kv: number;
  compute: number;
  margin: number;
  total: number;
  /** The figures are a previous run's (its buffers and the vendor tool's figure), not the estimate. */
  measured?: boolean;
}

export interface DeviceFit {
  /** 'host' or a GPU index. */
  device: 'host' | number;
  label: string;
  total: number | null;
  free: number | null;
  shares: FitShare[];
  /** What the instances to start need here. */
  needed: number;
  /** What all of them (running and to start) take together. */
  all: number;
  fits: boolean;
  /** The operator's message when it does not fit, with the numbers. */
  message: string | null;
}

export interface FitReport {
  devices: DeviceFit[];
  estimates: Map<string, MemoryEstimate>;
  /** GPU figures were not available (no vendor tool, or it failed): the GPUs were not checked. */
  unchecked: string | null;
}

function sumShares(shares: FitShare[], key: 'weights' | 'kv' | 'compute' | 'margin' | 'total'): number {
  return shares.reduce((a, s) => a + s[key], 0);
}

/**
 * Checks the instances against the devices. `gpus`: the vendor tool's reading (null when there is
 * none or it failed: GPU-pinned instances are then not checked, and `unchecked` says why).
 */
export function checkMemoryFit(
  instances: FitInstance[],
  gpus: GpuReading[] | null,
  host: HostMemory,
  gpuError: string | null = null,
): FitReport {
  const shares = new Map<'host' | number, FitShare[]>();
  const estimates = new Map<string, MemoryEstimate>();
  const notes: string[] = [];
  const note = (n: string) => {
    if (!notes.includes(n)) notes.push(n);
  };
  // Instances whose GPU placement llama-server decides itself: checked against the GPUs and the host together.
  const pooled: Array<{ name: string; running: boolean; total: number; gpus: number[] }> = [];
  const mappedOnHost = new Set<string>();
  for (const { inst, model, running, measured } of instances) {
    const { config } = inst;
    const args = config.server.extra_args;
    const gpuBackend = config.gpu.backend !== 'cpu' && config.gpu.backend !== 'metal';
    const pinned = gpuBackend && gpus ? pinnedGpus(config, gpus) : [];
    if (gpuBackend && !gpus) note(gpuError ?? 'no GPU figures (no vendor tool)');
    // Placements the estimator does not model: tensor overrides, experts kept on the CPU, explicit devices.
    const unmodelled = PLACEMENT_FLAGS.find((f) => args.some((a) => a === f || a.startsWith(`${f}=`)));
    if (gpuBackend && unmodelled) {
      note(`${inst.name}: ${unmodelled} in extra_args places tensors in a way the estimate does not model`);
      continue;
    }
    if (gpuBackend && gpus && config.gpu.devices.length > 0 && pinned.length < config.gpu.devices.length) {
      note(`${inst.name}: a device of gpu.devices is not in the vendor tool's GPU list (a MIG instance?)`);
      continue;
    }
    // Without GPU figures a GPU instance is estimated as if on its GPUs, but only its host share is checked.
    const gpuCount = gpuBackend ? (gpus ? pinned.length : Math.max(config.gpu.devices.length, 1)) : 0;
    const freeSplit = gpus ? pinned.map((i) => freeOf(gpus.find((g) => g.index === i)) ?? 1) : undefined;
    const input = estimateInputFor(config, gpuCount, model);
    if (!input.split && freeSplit && freeSplit.length > 1) input.split = freeSplit;
    const est = estimateMemory(model, input);
    estimates.set(inst.name, est);
    if (!Number.isFinite(est.total)) {
      note(
        `${inst.name}: the model's header does not give what the estimate needs (${model.architecture ?? 'unknown architecture'})`,
      );
      continue;
    }
    // An unset -ngl with --fit on: llama-server fits the layers to the free GPU memory and keeps the
    // rest on the host. Only GPUs and host together can be too small.
    const fitOff = ['off', '0', 'false'].includes(flagValue(args, '-fit', '--fit') ?? 'on');
    if (gpuBackend && gpus && pinned.length > 0 && config.model.n_gpu_layers === undefined && !fitOff) {
      pooled.push({ name: inst.name, running, total: est.total, gpus: pinned });
      continue;
    }
    // Host weights are the model file mapped into memory: instances of one model share those pages
    // (unless --no-mmap gives each its own copy), so they count once.
    const shared = mappedAlready(model.path, args, mappedOnHost);
    // A run measured on as many GPUs: its figures per GPU (the tool's, which include the runtime).
    const useMeasured = measured !== undefined && measured.devices.length === gpuCount && gpuCount > 0;
    for (const d of est.devices) {
      const device = d.device === 'host' ? 'host' : pinned[d.device];
      if (device === undefined) continue;
      const list = shares.get(device) ?? [];
      const weights = device === 'host' && shared ? 0 : d.weights;
      const m = useMeasured && d.device !== 'host' ? measuredShare(measured, d.device) : undefined;
      list.push(
        m
          ? { name: inst.name, running, ...m, measured: true }
          : {
              name: inst.name,
              running,
              weights,
              kv: d.kv,
              compute: d.compute,
              margin: d.margin,
              total: d.total - d.weights + weights,
            },
      );
      shares.set(device, list);
    }
  }
  const devices: DeviceFit[] = [];
  for (const [device, list] of shares) {
    const gpu = device === 'host' ? undefined : gpus?.find((g) => g.index === device);
    const total = device === 'host' ? host.total : (gpu?.memory_total_bytes ?? null);
    const free = device === 'host' ? host.available : gpu ? freeOf(gpu) : null;
    const starting = list.filter((s) => !s.running);
    const needed = sumShares(starting, 'total');
    const all = sumShares(list, 'total');
    const label = device === 'host' ? 'host memory' : `gpu ${device}`;
    let message: string | null = null;
    if (starting.length > 0) {
      const u = unitFor(Math.max(needed, all, free ?? 0));
      const runtime = device === 'host' ? '' : ` + ${u.fmt(sumShares(starting, 'margin'))} runtime`;
      const asMeasured = device !== 'host' && starting.some((s) => s.measured) ? ', as measured on its last run' : '';
      const parts = `${u.fmt(sumShares(starting, 'weights'))} weights + ${u.fmt(sumShares(starting, 'kv'))} KV + ${u.fmt(sumShares(starting, 'compute'))} compute${runtime}${asMeasured}`;
      const who = starting.length > 1 ? ` for ${starting.map((s) => `${s.name} ${u.fmt(s.total)}`).join(', ')}` : '';
      if (free !== null && needed > free) {
        message = `${label}: needs ${u.fmt(needed)} ${u.name} (${parts})${who}, ${u.fmt(free)} ${u.name} ${device === 'host' ? 'available' : 'free'}`;
      } else if (total !== null && all > total) {
        const others = list.filter((s) => s.running).map((s) => `${s.name} ${u.fmt(s.total)}`);
        message = `${label}: needs ${u.fmt(needed)} ${u.name} (${parts})${who}; with the running ${others.join(', ')} that is ${u.fmt(all)} of ${u.fmt(total)} ${u.name}`;
      }
    }
    devices.push({ device, label, total, free, shares: list, needed, all, fits: message === null, message });
  }
  devices.sort((a, b) => (a.device === 'host' ? -1 : b.device === 'host' ? 1 : a.device - b.device));
  for (const p of pooled.filter((x) => !x.running)) {
    const gpuFree = p.gpus.reduce((a, i) => a + (freeOf(gpus?.find((g) => g.index === i)) ?? 0), 0);
    const taken = devices
      .filter((d) => d.device === 'host' || p.gpus.includes(d.device))
      .reduce((a, d) => a + d.needed, 0);
    const free = gpuFree + host.available - taken;
    const u = unitFor(Math.max(p.total, free));
    const label = `gpu ${p.gpus.join(',')} + host memory`;
    const fits = p.total <= free;
    devices.push({
      device: p.gpus[0] as number,
      label,
      total: null,
      free,
      shares: [],
      needed: p.total,
      all: p.total,
      fits,
      message: fits
        ? null
        : `${label}: ${p.name} needs ${u.fmt(p.total)} ${u.name} (n_gpu_layers unset: llama-server places what fits on the GPUs, the rest on the host), ${u.fmt(free)} ${u.name} free together`,
    });
  }
  return { devices, estimates, unchecked: notes.length ? notes.join('; ') : null };
}

/** True when this model file is already counted on the host (and is mapped, not copied); records it otherwise. */
function mappedAlready(modelPath: string, args: readonly string[], seen: Set<string>): boolean {
  if (args.includes('--no-mmap')) return false;
  if (seen.has(modelPath)) return true;
  seen.add(modelPath);
  return false;
}

function freeOf(g: GpuReading | undefined): number | null {
  if (!g || g.memory_total_bytes === null || g.memory_used_bytes === null) return null;
  return Math.max(0, g.memory_total_bytes - g.memory_used_bytes);
}

/** What the preflight reads: the store (what runs), the GPUs and the host's memory. */
export interface FitSources {
  home: Home;
  /** Absent when the state database cannot be opened: nothing is known to run. */
  store?: Store | undefined;
  procs: Processes;
  env: NodeJS.ProcessEnv;
  now: () => number;
  gpuSample?: (() => Promise<GpuSample>) | undefined;
  hostMemory?: (() => HostMemory) | undefined;
}

/** The instances that run now (a live keeper or server), with the config they were started with. */
export async function runningFitInstances(d: FitSources, exclude: ReadonlySet<string>): Promise<FitInstance[]> {
  const running: FitInstance[] = [];
  const store = d.store;
  if (!store) return running;
  for (const row of store.listRuntime()) {
    if (exclude.has(row.name)) continue;
    const config = runningConfig(store, observeRow(row, d.procs));
    if (!config) continue;
    try {
      const inst = { name: row.name, file: instanceConfigPath(d.home, row.name), config };
      running.push({
        inst,
        model: await readGgufCached(resolveModelPath(d.home, config), ggufCacheFile(d.home)),
        running: true,
      });
    } catch {
      // a model that cannot be read now is left out: it was loaded once, its memory is in use
    }
  }
  return running;
}

/** Reads the GPUs (only when an instance uses one) and the host, and checks. */
export async function fitReportFor(d: FitSources, instances: FitInstance[]): Promise<FitReport> {
  const gpuBackend = instances.some(
    (i) => i.inst.config.gpu.backend !== 'cpu' && i.inst.config.gpu.backend !== 'metal',
  );
  // A fresh reading, not the daemon's last sample: right after a `down` that one still shows the
  // stopped server's memory as used.
  const read = d.gpuSample ?? (() => sampleOnce({ env: d.env, timeoutMs: 5000 }));
  const sample = gpuBackend ? await read() : null;
  const gpus = sample && !sample.error && sample.vendor ? sample.gpus : null;
  const withMeasured = instances.map((i) => (i.measured ? i : { ...i, measured: lookupMeasurement(d.store, i) }));
  return checkMemoryFit(withMeasured, gpus, (d.hostMemory ?? readHostMemory)(), sample?.error ?? null);
}

/** The measurement of a run of this instance's model file with its memory flags, if one was kept. */
export function lookupMeasurement(store: Store | undefined, i: FitInstance): MemoryMeasurement | undefined {
  const gpuBackend = i.inst.config.gpu.backend !== 'cpu' && i.inst.config.gpu.backend !== 'metal';
  if (!store || !gpuBackend) return undefined;
  const model = modelIdentity(i.model.path, i.model.size);
  if (!model) return undefined;
  try {
    return store.memoryMeasurement(model, memoryFlagsKey(i.inst.config));
  } catch {
    // an unreadable database: the estimate stands
    return undefined;
  }
}
