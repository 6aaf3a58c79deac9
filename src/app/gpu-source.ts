import type { GpuSample } from '../domain/gpu.js';
import { DEFAULT_GPU_CADENCE, GpuSampler, sampleOnce } from '../platform/gpu/sampler.js';
import { abortableSleep } from '../platform/sleep.js';
import type { StoreBase } from '../store/base.js';

/**
 * Where the GPU readings come from, the one policy for every reader: the daemon's latest sample
 * while it is fresh (the daemon samples every 2 s); otherwise a reading of our own. A one-shot
 * reader (`gpus`, `ps`, `--once`, the REST API) runs the vendor tool once with a short deadline; a
 * long-lived one (the dashboard) runs the sampler itself until it stops. On a rig without vendor
 * tools nothing is spawned.
 */

/** A sample is fresh for three sampler intervals (and at least 5 s). */
export function isFresh(s: GpuSample, now: number): boolean {
  return s.interval_ms > 0 && now - s.at <= Math.max(5000, 3 * s.interval_ms);
}

/** The rig's GPUs now, for one-shot readers. */
export async function currentGpuSample(
  store: StoreBase,
  env: NodeJS.ProcessEnv,
  now: number,
  timeoutMs = 2000,
): Promise<GpuSample> {
  return freshRecorded(store, now) ?? sampleOnce({ env, timeoutMs });
}

/** The daemon's latest sample when it is fresh (a store that cannot be read counts as none). */
function freshRecorded(store: StoreBase, now: number): GpuSample | undefined {
  let recorded: GpuSample | undefined;
  try {
    recorded = store.latestGpuSample();
  } catch {
    recorded = undefined;
  }
  return recorded && isFresh(recorded, now) ? recorded : undefined;
}

/** The dashboard's own sampler lists GPU processes this often (README, "Who samples when"). */
export const DASHBOARD_PROCESSES_MS = 30_000;

/**
 * The readings of a long-lived reader (the dashboard's GPU panel): the daemon's sample while it is
 * fresh, otherwise the same sampler the daemon runs (one looping nvidia-smi) until stop().
 */
export class LiveGpuSource {
  private local: GpuSample | undefined;
  private running: { abort: AbortController; done: Promise<void> } | undefined;

  constructor(
    private readonly store: StoreBase,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  latest(onSample: () => void): GpuSample | undefined {
    const recorded = freshRecorded(this.store, Date.now());
    if (recorded) return recorded;
    if (!this.running) {
      const abort = new AbortController();
      const sampler = new GpuSampler({
        env: this.env,
        ...DEFAULT_GPU_CADENCE,
        // Each listing is a process forked from this ~130 MB one (~16 ms of CPU in a profile, plus
        // the garbage it leaves): every 30 s here; the daemon lists every 10 s.
        processesMs: DASHBOARD_PROCESSES_MS,
        wait: (ms, signal) => abortableSleep(ms, signal),
        onSample: (s) => {
          // The model's own tick (2 s when idle) picks new readings up; only a change of kind (the
          // first reading, a failure, a recovery) asks for a refresh now (which also reconciles).
          const before = this.local;
          this.local = s;
          if (!before || before.error !== s.error || before.vendor !== s.vendor) onSample();
        },
      });
      this.running = { abort, done: sampler.run(abort.signal) };
    }
    return this.local;
  }

  async stop(): Promise<void> {
    this.running?.abort.abort();
    await this.running?.done;
  }
}
