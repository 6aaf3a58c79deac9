import type { LoadedInstance } from '../config/load.js';
import { instanceConfigPath, instanceLogDir, instancePipeDir, orchCommandWithHome, type Home } from '../domain/home.js';
import { decideRestart } from './restart-policy.js';
import { startedConfig } from '../engine/started-config.js';
import { stopGroup } from '../engine/stop.js';
import { healthLoop, type HealthLoopDeps } from '../health/loop.js';
import { initialHealth, stableMs, type HealthState } from '../health/machine.js';
import type { Processes } from '../platform/processes.js';
import { isStoreFault } from '../store/faults.js';
import type { RuntimeRow, Store } from '../store/store.js';
import type { GpuSample } from '../domain/gpu.js';
import { describeExit, describeOutOfMemory, nonRetryableReason, outOfMemory } from './classify.js';
import { memoryAdvice } from '../engine/memory-advice.js';
import { memoryNote } from './oom-note.js';
import { KeeperOutput } from './output.js';
import { recordExit, type ExitRecord } from './records.js';
import { metricsTask, type MakeScraper } from './metrics.js';
import { memoryCheckTask } from './memory-check.js';
import type { StateWriter } from './state-writer.js';
import type { KeeperFile } from '../engine/keeper-file.js';
import { attachRun, spawnRun, type RunContext, type RunEnd, type ServerRun } from './server-run.js';

export interface KeeperDeps extends HealthLoopDeps {
  home: Home;
  /** The keeper's writes (kept in order while the database refuses them) and its reads. */
  state: StateWriter;
  /** Starting the server, signals, FIFOs, /proc: the one side-effects seam. */
  procs: Processes;
  /** This keeper's pid (what `up` recorded as the instance's keeper). */
  pid: number;
  random: () => number;
  /** The server started or ended (keeper.json is rewritten). */
  onServerChange?: () => void;
  /** Abortable sleep: resolves early (without throwing) when the signal aborts. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Reads a run's serving metrics (metrics/scrape.ts); none: no scraping. */
  scraper?: MakeScraper;
  /** A line in keeper.log. */
  log?: (msg: string) => void;
  /** A fresh GPU reading: the free memory an out-of-memory failure names (keeper/oom-note.ts), a run's own (keeper/memory-check.ts). */
  gpuSample?: () => Promise<GpuSample | undefined>;
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
  private current: ServerRun | undefined;
  private binary: string | null = null;
  /** The port of the config this keeper runs (read once, in run()). */
  private port: number | null = null;

  constructor(
    readonly name: string,
    private readonly deps: KeeperDeps,
    private readonly stop: AbortSignal,
  ) {
    let lastError: string | null = null;
    this.output = new KeeperOutput(instanceLogDir(deps.home, name), (error, dropped) => {
      if (error !== null && error === lastError) {
        // The same trouble, more lines dropped: the count only.
        this.write('log-dropped', (s) => s.recordLogDropped(name, dropped));
        return;
      }
      lastError = error;
      const message = error
        ? `cannot write the log: ${error}; the server runs on and its lines are dropped (and counted) until it can`
        : `log writing works again; ${dropped} line(s) were dropped meanwhile`;
      this.write('log-trouble', (s) => s.recordLogTrouble(name, { error, dropped, message }));
    });
    this.runs = { name, deps, pipeDir: instancePipeDir(deps.home, name), output: this.output };
  }

  /**
   * Confirms that this process is the recorded keeper. The CLI starts us inside its claim
   * transaction and commits right after; a read never waits for that commit, so look again for a
   * while (the CLI commits within milliseconds; 5 s covers a machine under heavy load).
   */
  async claim(timeoutMs = 5000): Promise<boolean> {
    const deadline = this.deps.now() + timeoutMs;
    for (;;) {
      try {
        if (this.deps.state.store.getRuntime(this.name)?.keeper_pid === this.deps.pid) return true;
      } catch (e) {
        // Unreadable for now (locked, unwritable files): look again until the deadline.
        if (!isStoreFault(e)) throw e;
      }
      if (this.deps.now() >= deadline) return false;
      await this.deps.sleep(20);
    }
  }

  /** Who this keeper and its current server are (keeper.json, engine/keeper-file.ts). */
  identity(keeperStarttime: number | null): KeeperFile {
    const run = this.current;
    return {
      keeper_pid: this.deps.pid,
      keeper_starttime: keeperStarttime,
      pid: run?.pid ?? null,
      pgid: run?.pgid ?? null,
      starttime: run?.starttime ?? null,
      // From memory: the heartbeat must not read the database (it may be unusable; store/db.ts).
      port: run ? this.port : null,
      binary: run ? this.binary : null,
    };
  }

  private write(what: string, fn: (s: Store) => void): void {
    this.deps.state.write(what, fn);
  }

  private fail(reason: string): void {
    this.write('failed', (s) => s.recordFailed(this.name, reason));
  }

  async run(): Promise<number> {
    const { store } = this.deps.state;
    // Read once: the config validated by `up` (stored with the claim). Edits apply on the next
    // up/restart, never half-way through a crash loop.
    const config = startedConfig(store, this.name);
    this.port = config?.server.port ?? null;
    const recorded = store.getRuntime(this.name);
    let attempts = recorded?.restart_attempts ?? 0;
    // A server pid recorded when the keeper starts means `up` chose to adopt the server of a keeper
    // that died (a fresh start has none). If that server exited in the meantime, the adopted run ends
    // at once and the restart policy takes over, as for any exit.
    let orphan = recorded?.pid != null ? recorded : undefined;
    const recentCrashes: number[] = [];
    // The first run is the start `up` asked for; every later one is a restart (store: restarts).
    let restarting = false;
    try {
      if (!config) {
        this.fail(
          `no validated config recorded for this instance: start it with "${orchCommandWithHome(this.deps.home, `up ${this.name}`)}"`,
        );
        return 1;
      }
      const inst: LoadedInstance = { name: this.name, file: instanceConfigPath(this.deps.home, this.name), config };
      this.output.open(inst.config);
      for (;;) {
        const result = await this.runOnce(inst, attempts, orphan, restarting);
        orphan = undefined;
        restarting = true;
        if (result.end.kind === 'stop' || this.stop.aborted) {
          this.write('stopped', (s) => s.recordStopped(this.name, 'stopped by request'));
          return 0;
        }
        if (result.end.kind === 'spawn-error') {
          this.fail(result.end.message);
          return 1;
        }
        const fatal = result.end.kind === 'exit' ? nonRetryableReason(result.tail, result.becameHealthy) : undefined;
        if (fatal) {
          this.fail(this.withPortHolder(await this.withMemoryNote(fatal, result, inst), inst.config.server.port));
          return 1;
        }
        const now = this.deps.now();
        const decision = decideRestart(
          { attempts, healthyMs: result.stableMs, recentCrashes, now },
          inst.config.restart,
          this.deps.random,
        );
        if (decision.kind === 'restart' && decision.attempt === 0) recentCrashes.push(now);
        if (decision.kind === 'give-up') {
          const oom = result.end.kind === 'exit' ? outOfMemory(result.tail) : undefined;
          const why =
            result.end.kind === 'health'
              ? result.end.reason
              : `${describeExit(result.code, result.signal, result.runMs)}${oom ? `: ${describeOutOfMemory(oom)}` : ''}`;
          this.fail(`${decision.reason}; last: ${why}`);
          return 1;
        }
        attempts = decision.attempt;
        const backoff = {
          attempt: decision.attempt,
          note: decision.note,
          delayMs: decision.delayMs,
          at: now + decision.delayMs,
        };
        this.write('backoff', (s) => s.recordBackoff(this.name, backoff));
        await this.deps.sleep(decision.delayMs, this.stop);
        if (this.stop.aborted) {
          this.write('stopped', (s) => s.recordStopped(this.name, 'stopped during backoff'));
          return 0;
        }
      }
    } finally {
      this.output.close();
      this.write('release', (s) => s.releaseKeeper(this.name, this.deps.pid));
    }
  }

  /** An out-of-memory failure says what there is to have (the tool's free memory on that GPU). */
  private async withMemoryNote(reason: string, result: RunResult, inst: LoadedInstance): Promise<string> {
    const oom = outOfMemory(result.tail);
    if (!oom) return reason;
    let sample: GpuSample | undefined;
    try {
      sample = oom.gpu ? await this.deps.gpuSample?.() : undefined;
    } catch {
      sample = undefined; // a hung or failing tool: the reason stands on its own
    }
    const note = memoryNote(oom, inst.config, sample);
    return `${reason}${note ? `; ${note}` : ''}; to fit: ${memoryAdvice(oom.what, oom.gpu)}`;
  }

  /** A taken port is named with its holder, as `up` does (the port may have been taken during backoff). */
  private withPortHolder(reason: string, port: number): string {
    if (!/couldn't bind/.test(reason)) return reason;
    const holder = this.deps.procs.portHolder(port);
    if (!holder) return reason;
    const who = holder.pid
      ? `pid ${holder.pid}${holder.command ? ` (${holder.command.slice(0, 120)})` : ''}`
      : 'another user';
    return `${reason}: port ${port} is held by ${who}`;
  }

  private async runOnce(
    inst: LoadedInstance,
    attempts: number,
    orphan: RuntimeRow | undefined,
    restart: boolean,
  ): Promise<RunResult> {
    const run = orphan ? attachRun(this.runs, orphan) : await spawnRun(this.runs, inst, attempts, restart);
    if ('error' in run) return this.noRun({ kind: 'spawn-error', message: run.error });
    this.current = run;
    this.binary = run.binary;
    this.deps.onServerChange?.();
    try {
      return await this.supervise(inst, run);
    } finally {
      this.current = undefined;
      this.deps.onServerChange?.();
      run.cancel();
    }
  }

  /** Health, stop requests and the end of one run, whichever comes first; records how it ended. */
  private async supervise(inst: LoadedInstance, run: ServerRun): Promise<RunResult> {
    const { now } = this.deps;
    const { config } = inst;
    const { pid, pgid, startedAt, exited, adopted } = run;
    const healthCtl = new AbortController();
    let health = initialHealth(startedAt);
    const cell = { get: () => health, set: (h: HealthState) => (health = h) };
    const metrics = this.metricsOf(config, pid);
    // The estimate against what the run took (keeper/memory-check.ts), once it is healthy.
    const memory = memoryCheckTask(this.name, pid, config, run.binary, this.deps);
    const afterOk = () => {
      metrics?.afterOk();
      memory.afterOk();
    };
    const healthEnd = healthLoop(this.name, config, this.deps, cell, healthCtl.signal, afterOk);
    // The stop signal lives as long as the keeper: the listener goes once this run ends. Left there, each
    // run's listener kept this run's context (health, stderr tail, exit) alive: about 5 KB a
    // restart, found by heap snapshots under bench/keeper-churn.mjs.
    let onStop: (() => void) | undefined;
    const stopped = new Promise<RunEnd>((resolve) => {
      if (this.stop.aborted) return resolve({ kind: 'stop' });
      onStop = () => resolve({ kind: 'stop' });
      this.stop.addEventListener('abort', onStop, { once: true });
    });

    let end: RunEnd;
    try {
      end = await Promise.race([exited, stopped, healthEnd]);
    } finally {
      if (onStop) this.stop.removeEventListener('abort', onStop);
    }
    healthCtl.abort();
    metrics?.stop();
    memory.stop();
    let code: number | null = null;
    let signal: NodeJS.Signals | null = null;
    if (end.kind === 'exit') {
      code = end.code;
      signal = end.signal;
      const runMs = now() - startedAt;
      const left = await this.stopStrays(pid, pgid, config.stop_timeout * 1000);
      this.recordExit({
        pid,
        code,
        signal,
        runMs,
        cause: 'exit',
        adopted,
        ...(left.length ? { leftovers: left } : {}),
      });
    } else {
      if (end.kind === 'stop') this.write('stopping', (s) => s.recordStopping(this.name, 'stop requested'));
      else {
        const why = `restarting: ${end.kind === 'health' ? end.reason : ''}`;
        this.write('health-restart', (s) => s.addEvent(this.name, 'warn', 'health-restart', why));
        // The table reads `stopping` through the grace period, not `running`.
        this.write('stopping', (s) => s.recordStopping(this.name, why));
      }
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
    const tail = this.output.tail();
    this.write('stderr-tail', (s) => s.recordStderrTail(this.name, tail));
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

  /** The metrics scrape of a run, when the config asks for it (`metrics`, default true). */
  private metricsOf(config: LoadedInstance['config'], pid: number) {
    const make = this.deps.scraper;
    if (!config.metrics || !make) return undefined;
    const apiKey = config.server.api_key_env ? this.deps.env[config.server.api_key_env] : undefined;
    const target = { host: config.server.host, port: config.server.port, apiKey };
    return metricsTask(this.name, pid, config, make(target, config.healthcheck.timeout * 1000), {
      state: this.deps.state,
      now: this.deps.now,
      log: this.deps.log ?? (() => undefined),
    });
  }

  /**
   * What the server left running in its process group when it exited: the real llama-server under a
   * wrapper script that does not exec (the wrapper is the pid we know). It would hold the port and the
   * memory of a run that is over, and answer the next run's health checks: stopped with the group.
   * Returns what could not be stopped.
   */
  private async stopStrays(pid: number, pgid: number, graceMs: number): Promise<number[]> {
    const strays = this.deps.procs.groupMembers(pgid);
    if (strays.length === 0) return [];
    const res = await stopGroup({ pid, pgid }, graceMs, {
      procs: this.deps.procs,
      sleep: (ms) => this.deps.sleep(ms),
      now: this.deps.now,
    });
    const what = `server pid ${pid} exited and left ${strays.map((p) => `pid ${p}`).join(', ')} of its process group running (a wrapper script's child?): stopped${res.killed ? ' (needed SIGKILL)' : ''}`;
    this.write('strays', (s) => s.addEvent(this.name, 'warn', 'strays', what));
    return res.leftovers;
  }

  private recordExit(r: Omit<ExitRecord, 'at' | 'stderrTail'>): void {
    recordExit(this.deps.state, this.name, { ...r, at: this.deps.now(), stderrTail: this.output.tail() });
  }

  private noRun(end: RunEnd & { kind: 'spawn-error' }): RunResult {
    return { end, code: null, signal: null, runMs: 0, stableMs: 0, becameHealthy: false, tail: [] };
  }
}
