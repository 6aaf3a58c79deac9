import type { InstanceConfig } from '../config/schema.js';
import { resolveModelPath } from '../config/paths.js';
import type { GpuSample, LoadFacts } from '../domain/gpu.js';
import { ggufCacheFile, type Home } from '../domain/home.js';
import { attributeGpus } from '../engine/gpus.js';
import {
  compareMemory,
  estimateInputFor,
  freeSplit,
  gpuDevices,
  measurementOf,
  memoryEventText,
  memoryFlagsKey,
  modelIdentity,
  withPeak,
  type MemoryComparison,
} from '../engine/memory-calibration.js';
import { estimateMemory, type MemoryEstimate } from '../models/estimate.js';
import { readGgufCached, type GgufInfo } from '../models/gguf.js';
import { readNsPids } from '../platform/proc.js';
import type { Processes } from '../platform/processes.js';
import { isStoreFault } from '../store/faults.js';
import { physicalGpu } from './oom-note.js';
import type { StateWriter } from './state-writer.js';

export interface MemoryCheckDeps {
  home: Home;
  state: StateWriter;
  procs: Pick<Processes, 'stat' | 'cmdline'>;
  now: () => number;
  log?: ((msg: string) => void) | undefined;
  /** One reading of the vendor tool (none: GPU memory is not measured). */
  gpuSample?: (() => Promise<GpuSample | undefined>) | undefined;
  /** NSpid of a pid (platform/proc.ts), for a containerised server's host pid. */
  nsPids?: (pid: number) => number[];
}

/**
 * When the tool is read, after the first healthy probe: at once (the buffers and the CUDA context
 * exist once the model is loaded), then as the run serves (cuBLAS's workspace and the like grow
 * with the first requests: 2890 -> 2994 MiB on the H200 run), then hourly.
 */
export const MEMORY_CHECKS_MS = [0, 30_000, 120_000, 600_000, 3_600_000];
const HOURLY_MS = 3_600_000;
/** Healthy probes to wait for the load facts to say "loaded" before giving up (a server that prints none). */
const MAX_WAITS = 20;

type Outcome = 'again' | 'next' | 'done';

/**
 * The estimate against reality for one run (engine/memory-calibration.ts): after the server is
 * healthy, compares the estimate of its config with its buffers (the load facts) and the vendor
 * tool's figure for its process; records the comparison (describe's `memory`), the measurement the
 * next preflight of this model and flags counts, and a `memory` event once a run when they differ.
 * Driven by the health loop's `afterOk`, never awaited there; nothing here can end the keeper.
 */
export function memoryCheckTask(
  name: string,
  pid: number,
  config: InstanceConfig,
  server: string | null,
  deps: MemoryCheckDeps,
): { afterOk: () => void; stop: () => void } {
  let stopped = false;
  let inFlight = false;
  let firstOk: number | null = null;
  let index = 0;
  let waits = 0;
  let prev: MemoryComparison | null | undefined;
  let reported = false;
  let model: GgufInfo | undefined;
  let estimate: { devices: string; value: MemoryEstimate } | undefined;

  const due = (): number => {
    const at =
      MEMORY_CHECKS_MS[index] ?? (MEMORY_CHECKS_MS.at(-1) ?? 0) + (index - MEMORY_CHECKS_MS.length + 1) * HOURLY_MS;
    return (firstOk ?? 0) + at;
  };

  const check = async (): Promise<Outcome> => {
    const store = deps.state.store;
    const row = store.getRuntime(name);
    if (row?.pid !== pid) return 'done';
    const facts = parse<LoadFacts>(row.load_facts);
    if (!facts?.loaded) return ++waits >= MAX_WAITS ? 'done' : 'again';
    if (facts.buffers.length === 0) return 'done';
    if (prev === undefined) {
      // A re-attached run keeps what its first keeper saw: the peak, and whether the event was sent.
      const recorded = parse<MemoryComparison>(row.memory);
      prev = recorded;
      reported =
        recorded !== null &&
        store.listEvents(name, 50).some((e) => e.event_type === 'memory' && e.ts >= (row.started_at ?? 0));
    }
    const file = resolveModelPath(deps.home, config);
    model ??= await readGgufCached(file, ggufCacheFile(deps.home));
    const devices = gpuDevices(facts);
    if (estimate?.devices !== devices.join()) {
      const input = estimateInputFor(config, devices.length, model);
      input.split ??= freeSplit(facts, devices);
      estimate = { devices: devices.join(), value: estimateMemory(model, input) };
    }
    const measured = new Map<string, { gpu: number | null; bytes: number | null }>();
    let measuredTotal: number | null = null;
    let measuredAt: number | null = null;
    let canMeasure = false;
    if (devices.length > 0 && deps.gpuSample) {
      let sample: GpuSample | undefined;
      try {
        sample = await deps.gpuSample();
      } catch {
        sample = undefined;
      }
      if (stopped) return 'done';
      if (sample?.vendor && !sample.error && sample.processes) {
        canMeasure = true;
        measuredAt = sample.processes_at ?? sample.at;
        const view = attributeGpus(sample, [{ name, pid }], { procs: deps.procs, nsPids: deps.nsPids ?? readNsPids });
        const use = view.byInstance.get(name);
        measuredTotal = use?.vendorBytes ?? null;
        for (const d of devices) {
          const g = physicalGpu(d, config, sample);
          if (!g) continue;
          const held = (view.gpus.find((x) => x.index === g.index)?.processes ?? []).filter((p) => p.instance === name);
          const bytes = held.some((p) => p.memory_bytes === null)
            ? null
            : held.reduce((a, p) => a + (p.memory_bytes ?? 0), 0);
          // Not listed on a GPU it has buffers on: the tool cannot see it there (a pid namespace), not "none".
          measured.set(d, { gpu: g.index, bytes: bytes === 0 ? null : bytes });
        }
      }
    }
    const cmp = withPeak(
      compareMemory({ estimate: estimate.value, facts, devices, measured, measuredTotal, measuredAt }),
      prev,
    );
    prev = cmp;
    const text = !reported ? memoryEventText(cmp) : null;
    if (text) reported = true;
    const identity = modelIdentity(file, model.size);
    const measurement = identity
      ? measurementOf(cmp, { model: identity, flags: memoryFlagsKey(config), instance: name, server, now: deps.now() })
      : null;
    const event = text
      ? {
          ...text,
          meta: {
            estimated_bytes: cmp.estimated_bytes,
            loaded_bytes: cmp.loaded_bytes,
            measured_bytes: cmp.measured_bytes,
            preflight_bytes: cmp.preflight_bytes,
            devices: cmp.per_device.filter((d) => d.differs).map((d) => d.device),
          },
        }
      : null;
    const comparison = JSON.stringify(cmp);
    deps.state.write('memory', (s) => s.recordMemory(name, pid, { comparison, measurement, event }));
    // Buffers do not change during a run: only the tool's figure is worth reading again.
    return canMeasure ? 'next' : 'done';
  };

  return {
    afterOk() {
      if (stopped || inFlight) return;
      const t = deps.now();
      firstOk ??= t;
      if (t < due()) return;
      inFlight = true;
      check()
        .then((o) => {
          if (o === 'next') index++;
          else if (o === 'done') stopped = true;
        })
        .catch((e: unknown) => {
          // A locked database: the next healthy probe tries again. Anything else: this run is not compared.
          if (isStoreFault(e)) return;
          stopped = true;
          deps.log?.(`memory check of server ${pid} failed: ${e instanceof Error ? e.message : String(e)}`);
        })
        .finally(() => {
          inFlight = false;
        });
    },
    stop() {
      stopped = true;
    },
  };
}

function parse<T>(json: string | null | undefined): T | null {
  try {
    return json ? (JSON.parse(json) as T) : null;
  } catch {
    return null;
  }
}
