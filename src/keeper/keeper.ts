import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { resolveServerBinary } from '../config/binary.js';
import { resolveModelPath } from '../config/paths.js';
import type { LoadedInstance } from '../config/load.js';
import { instanceConfigPath } from '../home.js';
import { buildServerCommand, maskedCommand } from '../engine/command.js';
import { initialHealth, stableMs, type HealthState } from '../engine/health-machine.js';
import { transition } from '../engine/lifecycle.js';
import { decideRestart } from '../engine/restart-policy.js';
import { stopGroup } from '../engine/stop.js';
import type { InstanceConfig } from '../config/schema.js';
import { instanceLogDir, type Home } from '../home.js';
import type { Readable } from 'node:stream';
import { serverAlive } from '../engine/identity.js';
import { readStat } from '../platform/proc.js';
import type { RuntimeRow } from '../store/store.js';
import { STREAMS, attachServerPipes, openServerPipes, pipeDir, type Stream } from './log-pipes.js';
import { describeExit, nonRetryableReason } from './classify.js';
import { healthLoop, type HealthLoopDeps } from './health-loop.js';
import { recordExit, recordFailed, type ExitRecord } from './records.js';
import { LineTail, RotatingFile } from '../engine/rotating-log.js';

export interface KeeperDeps extends HealthLoopDeps {
  home: Home;
  random: () => number;
  /** Abortable sleep: resolves early (without throwing) when the signal aborts. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Starts the server in its own process group with the given fds as its stdout and stderr. */
  spawnServer: (
    file: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    output: { stdout: number; stderr: number },
  ) => ChildProcess;
}

type RunEnd =
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'stop' }
  | { kind: 'health'; reason: string }
  | { kind: 'spawn-error'; message: string };

/** One server under supervision: spawned by this keeper or re-attached after its keeper died. */
interface ServerRun {
  /** -1 when the spawn failed before the process existed (`exited` then says why). */
  pid: number;
  pgid: number;
  startedAt: number;
  exited: Promise<RunEnd>;
  streamsDone: Promise<void>;
  adopted: boolean;
  /** Ends what watches the run (the /proc poll of an adopted server). */
  cancel: () => void;
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
 * One keeper per instance (DESIGN §4): runs the server, owns its log pipes, records every exit,
 * probes health and applies the restart policy, until stopped (SIGTERM -> `stop` aborts) or failed.
 */
export class Keeper {
  private readonly logDir: string;
  private readonly pipeDir: string;
  private stdout?: RotatingFile;
  private stderr?: RotatingFile;
  private readonly tail = new LineTail(20);

  constructor(
    readonly name: string,
    private readonly deps: KeeperDeps,
    private readonly stop: AbortSignal,
  ) {
    this.logDir = instanceLogDir(deps.home, name);
    this.pipeDir = pipeDir(deps.home.stateDir, name);
  }

  private event(level: 'info' | 'warn' | 'error', type: string, message: string, meta?: Record<string, unknown>) {
    this.deps.store.addEvent(this.name, level, type, message, meta);
  }

  /** Confirms, after the CLI's claim transaction commits, that this process is the recorded keeper. */
  claim(): boolean {
    const { store } = this.deps;
    return store.immediate(() => store.getRuntime(this.name)?.keeper_pid === process.pid);
  }

  private startedConfig(): LoadedInstance | undefined {
    const row = this.deps.store.getInstance(this.name);
    if (!row?.config_json) return undefined;
    return {
      name: this.name,
      file: instanceConfigPath(this.deps.home, this.name),
      config: JSON.parse(row.config_json) as InstanceConfig,
    };
  }

  private fail(reason: string): void {
    recordFailed(this.deps.store, this.name, reason);
  }

  private openLogs(config: InstanceConfig): void {
    fs.mkdirSync(this.logDir, { recursive: true, mode: 0o700 });
    this.stdout?.close();
    this.stderr?.close();
    this.stdout = new RotatingFile(path.join(this.logDir, 'stdout.log'), config.logs.max_bytes, config.logs.backups);
    this.stderr = new RotatingFile(path.join(this.logDir, 'stderr.log'), config.logs.max_bytes, config.logs.backups);
  }

  async run(): Promise<number> {
    const { store } = this.deps;
    let attempts = store.getRuntime(this.name)?.restart_attempts ?? 0;
    // A live server recorded for this instance means its keeper died and `up` chose to adopt it.
    const recorded = store.getRuntime(this.name);
    let orphan = recorded?.pid != null && serverAlive(recorded) ? recorded : undefined;
    try {
      for (;;) {
        // The config validated by `up` (stored with the claim): edits apply on the next up/restart,
        // never half-way through a crash loop.
        const inst = this.startedConfig();
        if (!inst) {
          this.fail('no validated config recorded for this instance: start it with "llama-orch up"');
          return 1;
        }
        this.openLogs(inst.config);
        const result = await this.runOnce(inst, attempts, orphan);
        orphan = undefined;
        if (result.end.kind === 'stop' || this.stop.aborted) {
          transition(store, this.name, 'stopped', {
            reason: 'stopped by request',
            patch: { next_restart_at: null, health: null, health_detail: null },
          });
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
        transition(store, this.name, 'backoff', {
          reason: `restart ${decision.attempt}/${inst.config.restart.max_retries} in ${(decision.delayMs / 1000).toFixed(1)} s`,
          patch: { next_restart_at: at, restart_attempts: attempts, health: null, health_detail: null },
          meta: { delay_ms: decision.delayMs, attempt: decision.attempt },
        });
        await this.deps.sleep(decision.delayMs, this.stop);
        if (this.stop.aborted) {
          transition(store, this.name, 'stopped', {
            reason: 'stopped during backoff',
            patch: { next_restart_at: null },
          });
          return 0;
        }
      }
    } finally {
      this.stdout?.close();
      this.stderr?.close();
      store.immediate(() => {
        if (store.getRuntime(this.name)?.keeper_pid === process.pid) {
          store.updateRuntime(this.name, { keeper_pid: null, keeper_starttime: null });
        }
      });
    }
  }

  private async runOnce(inst: LoadedInstance, attempts: number, orphan?: RuntimeRow): Promise<RunResult> {
    const run = orphan ? this.attach(orphan) : this.spawn(inst, attempts);
    if ('end' in run) return run;
    try {
      return await this.supervise(inst, run);
    } finally {
      run.cancel();
    }
  }

  /** Starts a new server on fresh FIFOs (see log-pipes.ts) and records it. */
  private spawn(inst: LoadedInstance, attempts: number): ServerRun | RunResult {
    const { store, now } = this.deps;
    const { config } = inst;
    const bin = resolveServerBinary(this.deps.home, config, this.deps.env);
    if (!bin.path) {
      return this.noRun({ kind: 'spawn-error', message: `llama-server not found (tried ${bin.tried.join(', ')})` });
    }
    const cmd = buildServerCommand({
      name: this.name,
      config,
      binary: bin.path,
      modelPath: resolveModelPath(this.deps.home, config),
      env: this.deps.env,
    });
    const childEnv: NodeJS.ProcessEnv = { ...this.deps.env, ...cmd.env };
    // The key reaches the server only as LLAMA_API_KEY; drop our copy and anything inherited.
    if (config.server.api_key_env) delete childEnv[config.server.api_key_env];
    if (!cmd.env.LLAMA_API_KEY) delete childEnv.LLAMA_API_KEY;

    transition(store, this.name, 'starting', {
      reason: attempts > 0 ? `restart ${attempts}` : 'starting server',
      patch: { next_restart_at: null, health: 'starting', health_detail: null, health_failures: 0 },
    });

    this.tail.clear();
    const pipes = openServerPipes(this.pipeDir);
    let child: ChildProcess;
    try {
      child = this.deps.spawnServer(cmd.file, cmd.args, childEnv, pipes.writeFds);
    } catch (e) {
      for (const r of Object.values(pipes.readers)) r.destroy();
      return this.noRun({ kind: 'spawn-error', message: `cannot start ${cmd.file}: ${String(e)}` });
    } finally {
      // The server holds its own copies; ours would keep the readers from ever seeing EOF.
      for (const fd of Object.values(pipes.writeFds)) fs.closeSync(fd);
    }
    const startedAt = now();
    const exited = new Promise<RunEnd>((resolve) => {
      child.once('exit', (code, signal) => resolve({ kind: 'exit', code, signal }));
      child.once('error', (e) => resolve({ kind: 'spawn-error', message: `cannot start ${cmd.file}: ${e.message}` }));
    });
    const pid = child.pid;
    const sep = `server pid ${pid ?? '-'} started ${new Date(startedAt).toISOString()} (restart ${attempts})`;
    const streamsDone = this.pipeLogs(pipes.readers, sep);
    if (pid === undefined) {
      return { pid: -1, pgid: -1, startedAt, exited, streamsDone, adopted: false, cancel: () => undefined };
    }
    const stat = readStat(pid);
    const shown = maskedCommand(cmd);
    store.immediate(() => {
      store.updateRuntime(this.name, {
        pid,
        pgid: pid,
        starttime: stat?.starttime ?? null,
        port: config.server.port,
        cmdline: JSON.stringify(shown.argv),
        started_at: startedAt,
        last_error: null,
      });
      store.addEvent(this.name, 'info', 'spawn', `server started, pid ${pid}`, { pid, restart: attempts });
    });
    return { pid, pgid: pid, startedAt, exited, streamsDone, adopted: false, cancel: () => undefined };
  }

  /**
   * Takes over a server whose keeper died (DESIGN §4): no reload. It is not our child, so its exit
   * is seen by watching /proc (every 50 ms) and its exit status is unknown.
   */
  private attach(row: RuntimeRow): ServerRun {
    const { store, now } = this.deps;
    const pid = row.pid as number;
    this.tail.clear();
    const readers = attachServerPipes(this.pipeDir, pid);
    const attached = STREAMS.filter((s) => readers[s]);
    const sep = `re-attached to server pid ${pid} at ${new Date(now()).toISOString()} (lines written while no keeper ran are lost)`;
    const streamsDone = this.pipeLogs(readers, sep);
    const watch = new AbortController();
    const exited = (async (): Promise<RunEnd> => {
      while (!watch.signal.aborted && serverAlive(row)) await this.deps.sleep(50, watch.signal);
      return watch.signal.aborted ? new Promise<RunEnd>(() => undefined) : { kind: 'exit', code: null, signal: null };
    })();
    const logs =
      attached.length === 2
        ? 'logging resumed'
        : attached.length
          ? `only ${attached[0]} resumed`
          : "its output cannot be re-attached (it was not started on this keeper's named pipes)";
    store.addEvent(
      this.name,
      'warn',
      'adopt',
      `re-attached to running server pid ${pid} (its keeper had died): no reload; ${logs}`,
      { pid },
    );
    return {
      pid,
      pgid: row.pgid ?? pid,
      startedAt: row.started_at ?? now(),
      exited,
      streamsDone,
      adopted: true,
      cancel: () => watch.abort(),
    };
  }

  /** Health, stop requests and the end of one run, whichever comes first; records how it ended. */
  private async supervise(inst: LoadedInstance, run: ServerRun): Promise<RunResult> {
    const { store, now } = this.deps;
    const { config } = inst;
    const { pid, pgid, startedAt, exited, adopted } = run;
    if (pid < 0) {
      const end = await exited;
      return this.noRun(end.kind === 'spawn-error' ? end : { kind: 'spawn-error', message: 'cannot start the server' });
    }
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
      if (end.kind === 'stop') transition(store, this.name, 'stopping', { reason: 'stop requested' });
      else this.event('warn', 'health-restart', `restarting: ${end.kind === 'health' ? end.reason : ''}`);
      const res = await stopGroup({ pid, pgid }, config.stop_timeout * 1000, {
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
    await Promise.race([run.streamsDone, this.deps.sleep(1000)]);
    store.updateRuntime(this.name, { stderr_tail: JSON.stringify(this.tail.get()) });
    const endedAt = now();
    return {
      end,
      code,
      signal,
      runMs: endedAt - startedAt,
      stableMs: health.okSince !== null ? stableMs(health, endedAt) : 0,
      becameHealthy: health.lastOkAt !== null,
      tail: this.tail.get(),
    };
  }

  private recordExit(r: Omit<ExitRecord, 'at' | 'stderrTail'>): void {
    recordExit(this.deps.store, this.name, { ...r, at: this.deps.now(), stderrTail: this.tail.get() });
  }

  private noRun(end: RunEnd & { kind: 'spawn-error' }): RunResult {
    return { end, code: null, signal: null, runMs: 0, stableMs: 0, becameHealthy: false, tail: [] };
  }

  /** Copies the server's output into the rotating files (stderr also into the tail) until EOF. */
  private pipeLogs(readers: Partial<Record<Stream, Readable>>, separator: string): Promise<void> {
    const out = this.stdout as RotatingFile;
    const err = this.stderr as RotatingFile;
    out.writeLine(`==== llama-orch: ${separator} ====`);
    err.writeLine(`==== llama-orch: ${separator} ====`);
    const done = (s: Readable | undefined) =>
      new Promise<void>((resolve) => {
        if (!s) return resolve();
        s.once('close', () => resolve());
        s.once('end', () => resolve());
        // A read error ends this stream's logging, never the keeper.
        s.once('error', () => resolve());
      });
    readers.stdout?.on('data', (c: Buffer) => out.write(c));
    readers.stderr?.on('data', (c: Buffer) => {
      err.write(c);
      this.tail.push(c);
    });
    return Promise.all([done(readers.stdout), done(readers.stderr)]).then(() => {
      out.flushPartial();
      err.flushPartial();
    });
  }
}
