import type { LoadedInstance } from '../config/load.js';
import { instanceConfigPath, instanceLogDir, instancePipeDir, type Home } from '../domain/home.js';
import { decideRestart } from '../engine/restart-policy.js';
import { startedConfig } from '../engine/started-config.js';
import { stopGroup } from '../engine/stop.js';
import { healthLoop, type HealthLoopDeps } from '../health/loop.js';
import { initialHealth, stableMs, type HealthState } from '../health/machine.js';
import type { Processes } from '../platform/processes.js';
import type { RuntimeRow } from '../store/store.js';
import { describeExit, nonRetryableReason } from './classify.js';
import { KeeperOutput } from './output.js';
import { recordExit, type ExitRecord } from './records.js';
import { attachRun, spawnRun, type RunContext, type RunEnd, type ServerRun } from './server-run.js';

export interface KeeperDeps extends HealthLoopDeps {
  home: Home;
  /** Starting the server, signals, FIFOs, /proc: the one side-effects seam. */
  procs: Processes;
  /** This keeper's pid (what `up` recorded as the instance's keeper). */
  pid: number;
  random: () => number;
  /** Abortable sleep: resolves early (without throwing) when the signal aborts. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

interface RunResult {
  end: RunEnd;
  code: number | null;
  signal: NodeJS.Signals | null;
  runMs: number;
  stableMs: number;
  becameHealthy: boolean;
  tail: string[];
}

/**
 * One keeper per instance (docs/ARCHITECTURE.md, "Process model"): runs the server, owns its log pipes, records every exit,
 * probes health and applies the restart policy, until stopped (SIGTERM -> `stop` aborts) or failed.
 */
export class Keeper {
  private readonly output: KeeperOutput;
  private readonly runs: RunContext;

  constructor(
    readonly name: string,
    private readonly deps: KeeperDeps,
    private readonly stop: AbortSignal,
  ) {
    this.output = new KeeperOutput(instanceLogDir(deps.home, name));
    this.runs = { name, deps, pipeDir: instancePipeDir(deps.home, name), output: this.output };
  }

  /** Confirms, after the CLI's claim transaction commits, that this process is the recorded keeper. */
  claim(): boolean {
    const { store } = this.deps;
    return store.immediate(() => store.getRuntime(this.name)?.keeper_pid === this.deps.pid);
  }

  private startedConfig(): LoadedInstance | undefined {
    const config = startedConfig(this.deps.store, this.name);
    return config && { name: this.name, file: instanceConfigPath(this.deps.home, this.name), config };
  }

  private fail(reason: string): void {
    this.deps.store.recordFailed(this.name, reason);
  }

  async run(): Promise<number> {
    const { store } = this.deps;
    let attempts = store.getRuntime(this.name)?.restart_attempts ?? 0;
    // A server pid recorded when the keeper starts means `up` chose to adopt the server of a keeper
    // that died (a fresh start has none). If that server exited in the meantime, the adopted run ends
    // at once and the restart policy takes over, as for any exit.
    const recorded = store.getRuntime(this.name);
    let orphan = recorded?.pid != null ? recorded : undefined;
    try {
      for (;;) {
        // The config validated by `up` (stored with the claim): edits apply on the next up/restart,
        // never half-way through a crash loop.
        const inst = this.startedConfig();
        if (!inst) {
          this.fail('no validated config recorded for this instance: start it with "llama-orch up"');
          return 1;
        }
        this.output.open(inst.config);
        const result = await this.runOnce(inst, attempts, orphan);
        orphan = undefined;
        if (result.end.kind === 'stop' || this.stop.aborted) {
          store.recordStopped(this.name, 'stopped by request');
          return 0;
        }
        if (result.end.kind === 'spawn-error') {
          this.fail(result.end.message);
          return 1;
        }
        const fatal = result.end.kind === 'exit' ? nonRetryableReason(result.tail, result.becameHealthy) : undefined;
        if (fatal) {
          this.fail(fatal);
          return 1;
        }
        const decision = decideRestart({ attempts, stableMs: result.stableMs }, inst.config.restart, this.deps.random);
        if (decision.kind === 'give-up') {
          const why =
            result.end.kind === 'health' ? result.end.reason : describeExit(result.code, result.signal, result.runMs);
          this.fail(`${decision.reason}; last: ${why}`);
          return 1;
        }
        attempts = decision.attempt;
        const at = this.deps.now() + decision.delayMs;
        store.recordBackoff(this.name, {
          attempt: decision.attempt,
          maxRetries: inst.config.restart.max_retries,
          delayMs: decision.delayMs,
          at,
        });
        await this.deps.sleep(decision.delayMs, this.stop);
        if (this.stop.aborted) {
          store.recordStopped(this.name, 'stopped during backoff');
          return 0;
        }
      }
    } finally {
      this.output.close();
      store.releaseKeeper(this.name, this.deps.pid);
    }
  }

  private async runOnce(inst: LoadedInstance, attempts: number, orphan?: RuntimeRow): Promise<RunResult> {
    const run = orphan ? attachRun(this.runs, orphan) : await spawnRun(this.runs, inst, attempts);
    if ('error' in run) return this.noRun({ kind: 'spawn-error', message: run.error });
    try {
      return await this.supervise(inst, run);
    } finally {
      run.cancel();
    }
  }

  /** Health, stop requests and the end of one run, whichever comes first; records how it ended. */
  private async supervise(inst: LoadedInstance, run: ServerRun): Promise<RunResult> {
    const { store, now } = this.deps;
    const { config } = inst;
    const { pid, pgid, startedAt, exited, adopted } = run;
    const healthCtl = new AbortController();
    let health = initialHealth(startedAt);
    const cell = { get: () => health, set: (h: HealthState) => (health = h) };
    const healthEnd = healthLoop(this.name, config, this.deps, cell, healthCtl.signal);
    const stopped = new Promise<RunEnd>((resolve) => {
      if (this.stop.aborted) resolve({ kind: 'stop' });
      else this.stop.addEventListener('abort', () => resolve({ kind: 'stop' }), { once: true });
    });

    let end = await Promise.race([exited, stopped, healthEnd]);
    healthCtl.abort();
    let code: number | null = null;
    let signal: NodeJS.Signals | null = null;
    if (end.kind === 'exit') {
      code = end.code;
      signal = end.signal;
      this.recordExit({ pid, code, signal, runMs: now() - startedAt, cause: 'exit', adopted });
    } else {
      if (end.kind === 'stop') store.recordStopping(this.name, 'stop requested');
      else
        store.addEvent(this.name, 'warn', 'health-restart', `restarting: ${end.kind === 'health' ? end.reason : ''}`);
      const res = await stopGroup({ pid, pgid }, config.stop_timeout * 1000, {
        procs: this.deps.procs,
        sleep: (ms) => this.deps.sleep(ms),
        now,
      });
      const ex = await Promise.race([exited, this.deps.sleep(2000).then(() => undefined)]);
      if (ex?.kind === 'exit') {
        code = ex.code;
        signal = ex.signal;
      }
      this.recordExit({
        pid,
        code,
        signal,
        runMs: now() - startedAt,
        cause: end.kind === 'stop' ? 'stop' : 'health',
        killed: res.killed,
        leftovers: res.leftovers,
        adopted,
      });
      if (ex === undefined && end.kind !== 'stop') end = { kind: 'health', reason: 'server did not exit' };
    }
    await Promise.race([run.outputDone, this.deps.sleep(1000)]);
    store.recordStderrTail(this.name, this.output.tail());
    const endedAt = now();
    return {
      end,
      code,
      signal,
      runMs: endedAt - startedAt,
      stableMs: health.okSince !== null ? stableMs(health, endedAt) : 0,
      becameHealthy: health.lastOkAt !== null,
      tail: this.output.tail(),
    };
  }

  private recordExit(r: Omit<ExitRecord, 'at' | 'stderrTail'>): void {
    recordExit(this.deps.store, this.name, { ...r, at: this.deps.now(), stderrTail: this.output.tail() });
  }

  private noRun(end: RunEnd & { kind: 'spawn-error' }): RunResult {
    return { end, code: null, signal: null, runMs: 0, stableMs: 0, becameHealthy: false, tail: [] };
  }
}
