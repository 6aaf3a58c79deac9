import fs from 'node:fs';
import path from 'node:path';
import { resolveServerBinary } from '../config/binary.js';
import {
  discoverInstanceNames,
  formatProblem,
  loadConfigFile,
  loadInstance,
  resolveModelPath,
  type LoadedInstance,
} from '../config/load.js';
import { backendWarning, checkDevices, modelIdConflicts } from '../config/lint.js';
import { readGpuInventory, type GpuInventoryReader } from '../platform/gpu/inventory.js';
import { checkExtraArgs } from '../config/server-flags.js';
import { checkBinaryBackend } from '../config/backend-check.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { ggufCacheFile, instanceConfigPath, instanceLogDir, orchCommand, type Home } from '../domain/home.js';
import type { Processes } from '../platform/processes.js';
import { fileKind, readRegularFile } from '../platform/regular-file.js';
import type { RuntimeRow, Store } from '../store/store.js';
import type { ChangeFeed } from '../store/watch.js';
import { keeperAlive, serverAlive } from './identity.js';
import { observeRow, reconcileRow, type Observed } from './reconcile.js';
import { readKeeperFile } from './keeper-file.js';
import { explainStoreFault, isStoreFault } from '../store/faults.js';
import { emptyRuntimeRow } from '../store/rows.js';
import { startedConfig } from './started-config.js';
import { stopGroup } from './stop.js';
import { withInstanceLock } from './instance-lock.js';
import { readGgufCached, GgufError, type GgufInfo } from '../models/gguf.js';
import { fitAdvice } from './memory-advice.js';
import { fitReportFor, runningFitInstances } from './memory-fit.js';
import type { HostMemory } from '../platform/memory.js';
import type { GpuSample } from '../domain/gpu.js';

/** What `up`, `down`, `restart` and the daemon act through; built in app/context.ts, scripted in tests. */
export interface SupervisorDeps {
  home: Home;
  store: Store;
  /** Tells waits that the store changed (store/watch.ts). */
  feed: ChangeFeed;
  procs: Processes;
  env: NodeJS.ProcessEnv;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Starts the detached keeper and returns its pid (synchronously: it runs inside the claim transaction). */
  spawnKeeper: (name: string, logFd: number) => number;
  /** Says what may not work as meant but does not stop a start (the CLI: stderr). */
  warn?: (message: string) => void;
  /** The GPUs a backend can select (platform/gpu/inventory.ts unless a test says otherwise). */
  gpuInventory?: GpuInventoryReader;
  /** GPU memory now, for the memory-fit preflight (engine/gpus.ts currentGpuSample unless a test says otherwise). */
  gpuSample?: () => Promise<GpuSample>;
  /** Host memory now (platform/memory.ts unless a test says otherwise). */
  hostMemory?: () => HostMemory;
}

export interface UpResult {
  name: string;
  keeperPid: number;
  /** The server was already running (its keeper had died) and the new keeper re-attached to it. */
  adopted: boolean;
  /** Adopted while the config file differs from the config the server runs: a restart applies it. */
  configChanged?: boolean;
  pid: number | null;
  status: string;
  health: string | null;
  error?: string;
}

/** The home-wide lock of the memory-fit check (state/pipes/.memory-fit/op.lock): never an instance name. */
const FIT_LOCK = '.memory-fit';

/** Everything `up` checks before it starts anything; each failure names what and where. Returns the model's header. */
export async function preflight(deps: SupervisorDeps, inst: LoadedInstance): Promise<GgufInfo> {
  const { config, file, name } = inst;
  const bin = resolveServerBinary(deps.home, config, deps.env);
  if (!bin.path) {
    throw new UserError(
      `${name}: llama-server executable not found (tried ${bin.tried.join(', ')})`,
      ExitCode.executableNotFound,
      `set server.binary in ${file}, set LLAMA_SERVER, or build one with "npm run setup:llama"`,
    );
  }
  // extra_args the binary does not know would make the server exit at once: refuse before
  // anything is stopped (restart) or started. A binary whose flags cannot be read is not refused.
  const args = checkExtraArgs(deps.home, inst, bin.path, deps.env);
  if (args.problems.length > 0) {
    throw new UserError(
      `invalid config for "${name}":\n` + args.problems.map((p) => '  ' + formatProblem(p)).join('\n'),
      ExitCode.general,
      `fix server.extra_args in ${file} (the flags a llama-server accepts differ between llama.cpp versions)`,
    );
  }
  if (args.unchecked?.fresh) deps.warn?.(`${name}: ${args.unchecked.message}`);
  const backend = backendWarning(inst, process.platform) ?? checkBinaryBackend(deps.home, inst, bin.path, deps.env);
  if (backend) deps.warn?.(`${name}: ${formatProblem(backend)}`);
  // A device that is not there would leave CUDA with no device: the server would quietly run on the CPU.
  const inventory = (deps.gpuInventory ?? ((b: string) => readGpuInventory(b, deps.env)))(config.gpu.backend);
  const devices = checkDevices(inst, inventory);
  if (devices.problems.length > 0) {
    throw new UserError(
      `${name}: ` + devices.problems.map((p) => p.message).join('; ') + ` ($.gpu.devices in ${file})`,
      ExitCode.general,
      `fix gpu.devices ("${orchCommand(deps.home, 'gpus', deps.env)}" lists the GPUs of this machine)`,
    );
  }
  for (const w of devices.warnings) deps.warn?.(`${name}: ${formatProblem(w)}`);
  // A model id another instance claims too: the proxy would refuse requests for it (409).
  const others = discoverInstanceNames(deps.home)
    .filter((n) => n !== name)
    .map((n) => loadConfigFile(instanceConfigPath(deps.home, n), n))
    .flatMap((r) => (r.ok ? [r.instance] : []));
  for (const p of modelIdConflicts([inst, ...others]).filter((x) => x.file === file)) {
    deps.warn?.(`${name}: ${formatProblem(p)}`);
  }
  const model = resolveModelPath(deps.home, config);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(model);
  } catch {
    st = undefined;
  }
  if (!st?.isFile()) {
    throw new UserError(
      `${name}: model file ${model} ${st ? `is ${fileKind(st)}, not a regular file` : 'does not exist'} ($.model.path in ${file})`,
      ExitCode.general,
      'fix model.path (relative paths are resolved against the home directory)',
    );
  }
  let header: GgufInfo;
  try {
    header = await readGgufCached(model, ggufCacheFile(deps.home));
  } catch (e) {
    if (!(e instanceof GgufError)) throw e;
    throw new UserError(
      `${name}: ${e.message} ($.model.path in ${file})`,
      ExitCode.general,
      `point model.path at a GGUF model ("${orchCommand(deps.home, 'models list', deps.env)}" lists those found)`,
    );
  }
  if (config.server.api_key_env && !deps.env[config.server.api_key_env]) {
    throw new UserError(
      `${name}: server.api_key_env names ${config.server.api_key_env}, but that environment variable is not set`,
      ExitCode.general,
      `export ${config.server.api_key_env}=... before "${orchCommand(deps.home, `up ${name}`, deps.env)}"`,
    );
  }
  return header;
}

/**
 * The memory-fit preflight of one `up` (engine/memory-fit.ts): this instance's estimate with those
 * that run, per device. Refuses (exit 8) unless forced, which only warns.
 */
async function checkFit(deps: SupervisorDeps, inst: LoadedInstance, model: GgufInfo, force: boolean): Promise<void> {
  const running = await runningFitInstances(deps, new Set([inst.name]));
  const report = await fitReportFor(deps, [...running, { inst, model, running: false }]);
  const failed = report.devices.filter((d) => !d.fits && d.message);
  if (failed.length === 0) return;
  const text = failed.map((d) => d.message).join('; ');
  if (force) {
    deps.warn?.(`${inst.name}: starting anyway (--force): ${text}`);
    return;
  }
  throw new UserError(
    `${inst.name} does not fit: ${text}`,
    ExitCode.doesNotFit,
    `${[...new Set(failed.map(fitAdvice))].join('; ')} in ${inst.file}, stop another instance, or add --force to start anyway ("${orchCommand(deps.home, `models info ${inst.name}`, deps.env)}" shows the estimate)`,
  );
}

/** `ownPid`: the instance's own live server, which may hold the port (restart checks before stopping it). */
function checkPorts(deps: SupervisorDeps, inst: LoadedInstance, ownPid?: number): void {
  const port = inst.config.server.port;
  for (const row of deps.store.listRuntime()) {
    if (row.name === inst.name || row.port !== port) continue;
    if (keeperAlive(row, deps.procs) || serverAlive(row, deps.procs)) {
      throw new UserError(
        `${inst.name}: port ${port} is already used by running instance "${row.name}"${row.pid ? ` (pid ${row.pid})` : ''}`,
        ExitCode.portCollision,
        `stop it first ("${orchCommand(deps.home, `down ${row.name}`, deps.env)}") or change server.port in ${inst.file}`,
      );
    }
  }
  const holder = deps.procs.portHolder(port);
  if (holder && !(ownPid !== undefined && holder.pid === ownPid)) {
    const who = holder.pid
      ? `pid ${holder.pid}${holder.command ? ` (${holder.command.slice(0, 120)})` : ''}`
      : 'another process (its pid is not readable by this user)';
    throw new UserError(
      `${inst.name}: port ${port} is held by ${who}`,
      ExitCode.portCollision,
      `stop that process or change server.port in ${inst.file}`,
    );
  }
}

function openKeeperLog(home: Home, name: string): number {
  const dir = instanceLogDir(home, name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'keeper.log');
  try {
    if (fs.statSync(file).size > 1024 * 1024) fs.renameSync(file, `${file}.1`);
  } catch {
    // no keeper.log yet
  }
  return fs.openSync(file, 'a', 0o600);
}

type Tolerate = <T>(what: string, fn: () => T) => T | undefined;
const strict: Tolerate = (_what, fn) => fn();

/** Stops a server whose keeper is gone, after its identity is proven. */
export async function stopOrphan(
  deps: SupervisorDeps,
  row: RuntimeRow,
  graceMs: number,
  tolerate: Tolerate = strict,
): Promise<void> {
  if (!row.pid || !serverAlive(row, deps.procs)) return;
  const pid = row.pid;
  const message = `stopping orphaned server pid ${pid} (its keeper is gone)`;
  tolerate('the stop event', () => deps.store.addEvent(row.name, 'warn', 'orphan-stop', message));
  const res = await stopGroup({ pid, pgid: row.pgid ?? pid }, graceMs, deps);
  const left = res.leftovers.length ? `; left: ${res.leftovers.join(', ')}` : '';
  tolerate('the stop', () =>
    deps.store.recordOrphanStopped(row.name, {
      pid,
      at: deps.now(),
      level: res.leftovers.length ? 'error' : 'info',
      message: `orphaned server pid ${pid} stopped${res.killed ? ' (needed SIGKILL)' : ''}${left}`,
    }),
  );
}

export interface UpOptions {
  /** Keep restart counters (the daemon replacing a dead keeper); a user's `up` starts afresh. */
  carryCounters?: boolean;
  /** Wait (up to 3 s) for the keeper to report the server pid. */
  waitForPid?: boolean;
  reason?: string;
  /** The memory-fit preflight: 'check' (refuse, exit 8), 'force' (warn and start), 'skip'. Default: check, except for the daemon's replacements (carryCounters). */
  memoryFit?: 'check' | 'force' | 'skip';
}

/** `up NAME`: preflight, claim under BEGIN IMMEDIATE (one keeper, however many run at once), start the keeper. */
export function up(deps: SupervisorDeps, name: string, opts: UpOptions = {}): Promise<UpResult> {
  return withInstanceLock(deps, name, () => upLocked(deps, name, opts));
}

async function upLocked(deps: SupervisorDeps, name: string, opts: UpOptions): Promise<UpResult> {
  const { store, procs } = deps;
  const inst = loadInstance(deps.home, name);
  const model = await preflight(deps, inst);
  const fit = opts.memoryFit ?? (opts.carryCounters ? 'skip' : 'check');
  store.immediate(() => store.ensureInstance(name, inst.file));
  const seen = reconcileRow(store, procs, name);
  if (seen?.keeper) {
    throw new UserError(
      `${name} is already running (keeper pid ${seen.row.keeper_pid}${seen.row.pid ? `, server pid ${seen.row.pid}` : ''}, ${seen.row.status})`,
      ExitCode.alreadyRunning,
      `use "${orchCommand(deps.home, `restart ${name}`, deps.env)}" to restart it`,
    );
  }
  // A server whose keeper died is re-attached by the new keeper, with no reload (docs/ARCHITECTURE.md,
  // "Adoption"), when it was starting or serving on a recorded config; otherwise (it was being
  // stopped) it is stopped first.
  const adoptable = (row: RuntimeRow) =>
    (row.status === 'running' || row.status === 'starting') && store.startedConfigJson(name) !== undefined;
  if (seen?.orphan && !adoptable(seen.row)) await stopOrphan(deps, seen.row, inst.config.stop_timeout * 1000);
  let adopted = false;
  const eventsBefore = store.lastEventId();
  const claim = (): number => {
    const logFd = openKeeperLog(deps.home, name);
    try {
      return store.immediate(() => {
        const row = store.getRuntime(name) as RuntimeRow;
        if (keeperAlive(row, procs)) {
          throw new UserError(`${name} is already running (keeper pid ${row.keeper_pid})`, ExitCode.alreadyRunning);
        }
        const live = serverAlive(row, procs);
        adopted = live && adoptable(row);
        if (live && !adopted) {
          throw new UserError(
            `${name}: server pid ${row.pid} is running without a keeper`,
            ExitCode.alreadyRunning,
            `run "${orchCommand(deps.home, `down ${name}`, deps.env)}" first`,
          );
        }
        checkPorts(deps, inst, adopted ? (row.pid ?? undefined) : undefined);
        const pid = deps.spawnKeeper(name, logFd);
        const keeperStart = procs.stat(pid)?.starttime ?? null;
        // An adopted server keeps the config it runs; the file's applies on the next restart.
        if (adopted) store.claimAdoption(name, pid, keeperStart);
        else
          store.claimStart(name, {
            keeperPid: pid,
            keeperStarttime: keeperStart,
            port: inst.config.server.port,
            configJson: JSON.stringify(inst.config),
            carryCounters: opts.carryCounters ?? false,
            reason: opts.reason ?? 'up',
          });
        return pid;
      });
    } finally {
      fs.closeSync(logFd);
    }
  };
  // The fit check and the claim under one home-wide lock: two `up`s of different instances (or the
  // daemon's autostart and an operator) each see the other's claim, not the same free memory.
  // An orphan about to be re-attached is loaded already: nothing new to fit.
  const keeperPid =
    fit !== 'skip' && !(seen?.orphan && adoptable(seen.row))
      ? await withInstanceLock(deps, FIT_LOCK, async () => {
          await checkFit(deps, inst, model, fit === 'force');
          return claim();
        })
      : claim();
  // Report the server's pid: the keeper records it within milliseconds of its start. An adopting
  // keeper is waited for until it has re-attached the server's output (its `adopt` event).
  const reported = () => {
    if (adopted) return store.eventsSince(name, eventsBefore).some((e) => e.event_type === 'adopt') || undefined;
    const row = store.getRuntime(name) as RuntimeRow;
    return row.pid !== null || row.status !== 'starting' || undefined;
  };
  if (opts.waitForPid !== false) {
    // The recheck notices a keeper that died before it wrote anything.
    await deps.feed.until(
      () => reported() ?? (keeperAlive(store.getRuntime(name) as RuntimeRow, procs) ? undefined : true),
      3000,
      {
        recheckMs: 100,
      },
    );
  }
  const row = store.getRuntime(name) as RuntimeRow;
  // A keeper that died before it started (or re-attached) the server: that is a failure, with the
  // reason from its log, not a success with a pending pid.
  if (opts.waitForPid !== false && row.status !== 'failed' && !keeperAlive(row, procs)) {
    const attached = !adopted || store.eventsSince(name, eventsBefore).some((e) => e.event_type === 'adopt');
    if (!attached || row.pid === null) {
      const logFile = path.join(instanceLogDir(deps.home, name), 'keeper.log');
      throw new UserError(
        `${name}: its keeper (pid ${keeperPid}) exited at once${lastLine(logFile)}`,
        ExitCode.general,
        `see ${logFile}`,
      );
    }
  }
  return {
    name,
    keeperPid,
    adopted,
    ...(adopted && store.startedConfigJson(name) !== JSON.stringify(inst.config) ? { configChanged: true } : {}),
    pid: row.pid,
    status: row.status,
    health: row.health,
    ...(row.status === 'failed' && row.last_error ? { error: row.last_error } : {}),
  };
}

/** The last line of a small log file, as ": LINE" (or nothing). */
function lastLine(file: string): string {
  try {
    const text = readRegularFile(file).toString('utf8').trimEnd();
    const line = text.slice(text.lastIndexOf('\n') + 1).trim();
    return line ? `: ${line.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}

/** Waits for health ok; fails early when the instance fails or its keeper dies. */
export async function waitHealthy(
  deps: SupervisorDeps,
  name: string,
  timeoutMs: number,
  /** Told the row at every change while waiting (`up --wait` shows progress). */
  onProgress?: (row: RuntimeRow) => void,
): Promise<RuntimeRow> {
  const { store, procs } = deps;
  const settled = () => {
    const row = store.getRuntime(name) as RuntimeRow;
    onProgress?.(row);
    // Health stays ok while a server is being stopped: only a running one counts.
    if ((row.status === 'running' && row.health === 'ok') || row.status === 'failed' || row.status === 'stopped')
      return row;
    return keeperAlive(row, procs) ? undefined : row;
  };
  const row = (await deps.feed.until(settled, timeoutMs, { recheckMs: 500 })) ?? store.getRuntime(name);
  if (!row) throw new UserError(`${name} is not recorded in the state database`);
  if (row.status === 'running' && row.health === 'ok') return row;
  if (row.status === 'failed' || row.status === 'stopped') {
    throw new UserError(`${name} did not become healthy: ${row.status}${row.last_error ? ` (${row.last_error})` : ''}`);
  }
  if (!keeperAlive(row, procs)) {
    throw new UserError(
      `${name} did not become healthy: its keeper (pid ${row.keeper_pid ?? '-'}) exited`,
      ExitCode.general,
      `see ${path.join(instanceLogDir(deps.home, name), 'keeper.log')}`,
    );
  }
  throw new UserError(
    `${name} not healthy after ${Math.round(timeoutMs / 1000)} s (status ${row.status}, health ${row.health ?? '-'}${row.health_detail ? `: ${row.health_detail}` : ''})`,
    ExitCode.general,
    `see "${orchCommand(deps.home, `describe ${name}`, deps.env)}" and "${orchCommand(deps.home, `logs ${name}`, deps.env)}"`,
  );
}

export interface DownResult {
  name: string;
  wasRunning: boolean;
  message: string;
}

/**
 * `down NAME`: through the keeper; an orphaned server is stopped directly after an identity check.
 * It works whatever the state database does (docs/ARCHITECTURE.md, "Faults"): a write it refuses
 * (locked, full, read-only) is skipped and said; with no readable row the keeper is found from its
 * own file (engine/keeper-file.ts).
 */
export function down(deps: SupervisorDeps, name: string): Promise<DownResult> {
  return withInstanceLock(deps, name, () => downLocked(deps, name));
}

async function downLocked(deps: SupervisorDeps, name: string): Promise<DownResult> {
  const { store, procs } = deps;
  const notes: string[] = [];
  const tolerate = <T>(what: string, fn: () => T): T | undefined => {
    try {
      return fn();
    } catch (e) {
      if (!isStoreFault(e)) throw e;
      const why = explainStoreFault(e, deps.home.dbPath).what;
      if (!notes.some((n) => n.endsWith(why))) notes.push(`${what}: ${why}`);
      return undefined;
    }
  };
  const result = (wasRunning: boolean, message: string): DownResult => ({
    name,
    wasRunning,
    message: notes.length ? `${message} (not recorded: ${notes.join('; ')})` : message,
  });
  // No valid config needed: a server must stay stoppable after its file is broken or removed.
  tolerate('the desired state', () =>
    store.immediate(() => {
      store.ensureInstance(name, instanceConfigPath(deps.home, name));
      store.setDesired(name, 'stopped');
    }),
  );
  const graceMs = (tolerate('the grace period', () => stopTimeoutS(deps, name)) ?? DEFAULT_STOP_TIMEOUT_S) * 1000;
  const recorded = tolerate('reading the instance', () => store.getRuntime(name));
  let seen =
    tolerate('the reconciliation', () => reconcileRow(store, procs, name)) ??
    (recorded ? observeRow(recorded, procs) : undefined);
  // Nothing running in the database's view (a new or replaced file, before the keeper re-registers):
  // the keeper's own file may still name a running keeper.
  if (!seen?.keeper && !seen?.orphan) seen = fromKeeperFile(deps, name) ?? seen;
  if (!seen) return result(false, `${name} is not running`);
  if (seen.keeper && seen.row.keeper_pid) {
    const keeperRow = seen.row;
    const keeperPid = keeperRow.keeper_pid as number;
    const serverPid = keeperRow.pid;
    if (!procs.signal(keeperPid, 'SIGTERM') && keeperAlive(keeperRow, procs)) {
      throw new UserError(
        `${name}: cannot signal keeper pid ${keeperPid} (not permitted: it runs as another user)`,
        ExitCode.general,
        'run llama-orch as the user that started the instance',
      );
    }
    // The keeper records the stop and exits; the recheck sees its exit in /proc whether or not it
    // could write.
    const gone = () => (keeperAlive(keeperRow, procs) ? undefined : true);
    await deps.feed.until(gone, graceMs + 5000, { recheckMs: 50 });
    if (keeperAlive(keeperRow, procs)) {
      // The keeper is wedged: take over, stop the server ourselves, then the keeper.
      if (serverAlive(keeperRow, procs)) await stopOrphan(deps, keeperRow, 1000, tolerate);
      procs.signal(keeperPid, 'SIGKILL');
      tolerate('the reconciliation', () => reconcileRow(store, procs, name));
      return result(true, `${name} stopped (keeper pid ${keeperPid} did not exit and was killed)`);
    }
    return result(true, `${name} stopped${serverPid ? ` (server pid ${serverPid})` : ''}`);
  }
  if (seen.orphan) {
    const pid = seen.row.pid;
    await stopOrphan(deps, seen.row, graceMs, tolerate);
    tolerate('the reconciliation', () => reconcileRow(store, procs, name));
    return result(true, `${name}: orphaned server pid ${pid} stopped (its keeper had died)`);
  }
  tolerate('acknowledging the failure', () => store.acknowledgeFailed(name));
  return result(false, `${name} is not running`);
}

/** The instance as its keeper's file describes it, when the database has no readable row for it. */
function fromKeeperFile(deps: SupervisorDeps, name: string): Observed | undefined {
  const found = readKeeperFile(deps.home, name);
  if (!found) return undefined;
  const f = found.file;
  const row: RuntimeRow = {
    ...emptyRuntimeRow(name),
    keeper_pid: f.keeper_pid,
    keeper_starttime: f.keeper_starttime,
    pid: f.pid,
    pgid: f.pgid,
    starttime: f.starttime,
    port: f.port,
    cmdline: f.binary ? JSON.stringify([f.binary]) : null,
    status: 'running',
  };
  const seen = observeRow(row, deps.procs);
  return seen.keeper || seen.orphan ? seen : undefined;
}

/**
 * `restart NAME`: the new config and what it needs (binary, model, key, port) are checked before the
 * running server is stopped, so a broken edit fails the restart instead of causing an outage.
 */
export function restart(deps: SupervisorDeps, name: string): Promise<UpResult> {
  // One lock for both halves: a parallel restart waits for this one, then restarts in turn.
  return withInstanceLock(deps, name, () => restartLocked(deps, name));
}

async function restartLocked(outer: SupervisorDeps, name: string): Promise<UpResult> {
  // up() runs preflight again (the file may change while the old server stops); what it would warn
  // about again was said already: once per command.
  const said = new Set<string>();
  const deps: SupervisorDeps = {
    ...outer,
    warn: (message) => {
      if (said.has(message)) return;
      said.add(message);
      outer.warn?.(message);
    },
  };
  const inst = loadInstance(deps.home, name);
  await preflight(deps, inst);
  const seen = reconcileRow(deps.store, deps.procs, name);
  checkPorts(deps, inst, seen?.server && seen.row.pid ? seen.row.pid : undefined);
  await down(deps, name);
  // The memory it held is freed by the stop; refusing now would leave it stopped, so the fit only warns.
  return up(deps, name, { memoryFit: 'force' });
}

/**
 * The grace period the keeper uses: from the config it was started with (what `up` recorded), else
 * the file's when it is valid, else the default.
 */
function stopTimeoutS(deps: SupervisorDeps, name: string): number {
  const started = startedConfig(deps.store, name);
  if (started) return started.stop_timeout;
  try {
    return loadInstance(deps.home, name).config.stop_timeout;
  } catch {
    return DEFAULT_STOP_TIMEOUT_S;
  }
}
// The schema's default for stop_timeout (config/schema.ts).
const DEFAULT_STOP_TIMEOUT_S = 10;

/** Instances the store says may be running (a keeper or server pid recorded), configured or not. */
export function recordedLiveNames(store: Store): string[] {
  return store
    .listRuntime()
    .filter((r) => r.pid !== null || r.keeper_pid !== null)
    .map((r) => r.name);
}

/**
 * NAME... or --all, validated: unknown names exit 2 before anything is touched. `alsoKnown` adds
 * names without a config dir (`down` passes the instances that may still be running).
 */
export function selectNames(home: Home, names: string[], all: boolean, alsoKnown: string[] = []): string[] {
  const known = new Set([...discoverInstanceNames(home), ...alsoKnown]);
  if (all) return [...known].sort();
  if (names.length === 0) {
    throw new UserError('name at least one instance, or pass --all', ExitCode.general);
  }
  for (const n of names) {
    if (!known.has(n)) {
      throw new UserError(
        `unknown instance "${n}": no ${path.join(home.instancesDir, n, 'config.json')}`,
        ExitCode.notFound,
        known.size
          ? `known instances: ${[...known].join(', ')}`
          : `no instances in this home yet: create one with: ${orchCommand(home, `init ${n} --profile cpu --model PATH --port N`)}`,
      );
    }
  }
  return names;
}
