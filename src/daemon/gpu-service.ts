import type { GpuSample } from '../domain/gpu.js';
import { attributeGpus, instanceGpuFacts } from '../engine/gpus.js';
import { startedConfig } from '../engine/started-config.js';
import { DEFAULT_GPU_CADENCE, GpuSampler } from '../platform/gpu/sampler.js';
import type { Processes } from '../platform/processes.js';
import type { Store } from '../store/store.js';
import type { Service } from './service.js';

export interface GpuServiceDeps {
  store: Store;
  procs: Processes;
  env: NodeJS.ProcessEnv;
  nsPids: (pid: number) => number[];
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  log: (msg: string) => void;
}

export interface GpuServiceOptions {
  /** GPU readings (one looping nvidia-smi); 2 s, like nvtop/nvitop (faster is pointless). */
  intervalMs: number;
  /** The per-process listing, which costs more. */
  processesMs: number;
  /** A silent loop or a one-shot call is killed after this. */
  timeoutMs: number;
}

/** How long a new server that holds no GPU memory yet gets a listing at every reading. */
const UNLISTED_MS = 60_000;

/**
 * Servers not in the process listing yet: while one was first seen less than UNLISTED_MS ago, the
 * next reading lists the processes again (a model may load for a while before it holds GPU memory;
 * a CPU instance never does), then the listing keeps its usual, slower cadence.
 */
export class UnlistedServers {
  private firstSeen = new Map<number, number>();

  /** True when the next reading should list the processes. */
  due(s: GpuSample, servers: ReadonlyArray<{ pid: number }>): boolean {
    const listed = new Set((s.processes ?? []).map((p) => p.pid));
    const running = new Set(servers.map((x) => x.pid));
    for (const pid of [...this.firstSeen.keys()]) {
      if (!running.has(pid) || listed.has(pid)) this.firstSeen.delete(pid);
    }
    let due = false;
    for (const { pid } of servers) {
      if (listed.has(pid)) continue;
      const first = this.firstSeen.get(pid) ?? s.at;
      this.firstSeen.set(pid, first);
      if (s.at - first <= UNLISTED_MS) due = true;
    }
    return due;
  }
}

export const DEFAULT_GPU_OPTIONS: GpuServiceOptions = DEFAULT_GPU_CADENCE;

/**
 * The daemon's GPU sampler (docs/ARCHITECTURE.md, "GPU observability"): records a sample every
 * interval (bounded history, pruned by retention) that `ps`, `--once`, `gpus` and the dashboard read
 * while it is fresh, and turns what needs an operator's eye into events, once each time it starts:
 * a GPU above 95 % memory or at 85 C, an instance holding memory on a GPU it is not pinned to, the
 * vendor tool failing (and recovering).
 */
export class GpuService implements Service {
  readonly name = 'gpu-sampler';
  private active = new Set<string>();
  private failing: string | null = null;
  private sampler: GpuSampler | undefined;
  private unlisted = new UnlistedServers();

  constructor(
    private readonly deps: GpuServiceDeps,
    private readonly opts: GpuServiceOptions,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    const sampler = (this.sampler = new GpuSampler({
      env: this.deps.env,
      intervalMs: this.opts.intervalMs,
      processesMs: this.opts.processesMs,
      timeoutMs: this.opts.timeoutMs,
      wait: this.deps.wait,
      log: this.deps.log,
      onSample: (s) => this.record(s),
    }));
    await sampler.run(signal);
  }

  private record(s: GpuSample): void {
    const { store, log } = this.deps;
    try {
      store.recordGpuSample(s);
      this.notice(s);
    } catch (e) {
      // A locked or full database costs this sample, not the sampler.
      log(`gpu sample not recorded: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private notice(s: GpuSample): void {
    const { store } = this.deps;
    if (s.error) {
      if (this.failing === null) store.addEvent(null, 'warn', 'gpu', `GPUs cannot be read: ${s.error}`);
      this.failing = s.error;
      return;
    }
    if (this.failing !== null) {
      store.addEvent(null, 'info', 'gpu', `GPUs can be read again (${s.gpus.length} GPU(s))`);
      this.failing = null;
    }
    if (s.vendor === null) return;
    const servers = store
      .listRuntime()
      .filter((r) => r.pid !== null)
      .map((r) => ({ name: r.name, pid: r.pid as number }));
    if (this.unlisted.due(s, servers)) this.sampler?.listSoon();
    const view = attributeGpus(s, servers, { procs: this.deps.procs, nsPids: this.deps.nsPids });
    const now = new Map<string, { instance: string | null; message: string }>();
    for (const g of view.gpus) for (const w of g.warnings) now.set(`gpu:${w}`, { instance: null, message: w });
    for (const { name } of servers) {
      const cfg = startedConfig(store, name);
      const facts = instanceGpuFacts(
        view,
        { name, running: true, backend: cfg?.gpu.backend ?? null, devices: cfg?.gpu.devices ?? [] },
        null,
      );
      for (const w of facts.warnings.filter((x) => x.startsWith('uses memory on GPU') || / is lost\b/.test(x))) {
        now.set(`${name}:${w}`, { instance: name, message: `${name} ${w}` });
      }
    }
    for (const [key, w] of now) {
      if (!this.active.has(key)) store.addEvent(w.instance, 'warn', 'gpu', w.message);
    }
    this.active = new Set(now.keys());
  }
}
