import fs from 'node:fs';
import { resolveServerBinary } from '../config/binary.js';
import {
  discoverInstanceNames,
  formatProblem,
  loadConfigFile,
  resolveModelPath,
  type LoadedInstance,
} from '../config/load.js';
import { backendWarning, checkDevices, modelIdConflicts } from '../config/lint.js';
import { readGpuInventory } from '../platform/gpu/inventory.js';
import { checkExtraArgs } from '../config/server-flags.js';
import { checkBinaryBackend } from '../config/backend-check.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { ggufCacheFile, instanceConfigPath, orchCommand } from '../domain/home.js';
import { fileKind } from '../platform/regular-file.js';
import { holdsForServer, keeperAlive, serverAlive } from './identity.js';
import { readGgufCached, GgufError, type GgufInfo } from '../models/gguf.js';
import { fitAdvice } from './memory-advice.js';
import { fitReportFor, runningFitInstances } from './memory-fit.js';
import type { SupervisorDeps } from './supervisor.js';
import type { RuntimeRow } from '../store/store.js';

// What a start checks before it touches anything (`up`, and `restart` before it stops the running
// server): the binary and its flags, the devices, the model, the key, the memory fit and the port.

/** Everything `up` checks before it starts anything; each failure names what and where. Returns the model's header. */
export async function preflight(deps: SupervisorDeps, inst: LoadedInstance): Promise<GgufInfo> {
  const { config, file, name } = inst;
  checkBinary(deps, inst);
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
  const header = await readModel(deps, inst);
  if (config.server.api_key_env && !deps.env[config.server.api_key_env]) {
    throw new UserError(
      `${name}: server.api_key_env names ${config.server.api_key_env}, but that environment variable is not set`,
      ExitCode.general,
      `export ${config.server.api_key_env}=... before "${orchCommand(deps.home, `up ${name}`, deps.env)}"`,
    );
  }
  return header;
}

/** The llama-server binary: found, knowing the extra_args, built for the configured backend (that one only warns). */
function checkBinary(deps: SupervisorDeps, inst: LoadedInstance): void {
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
}

/** The model file: a regular file with a GGUF header, which it returns (read through the header cache). */
async function readModel(deps: SupervisorDeps, inst: LoadedInstance): Promise<GgufInfo> {
  const { config, file, name } = inst;
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
  try {
    return await readGgufCached(model, ggufCacheFile(deps.home));
  } catch (e) {
    if (!(e instanceof GgufError)) throw e;
    throw new UserError(
      `${name}: ${e.message} ($.model.path in ${file})`,
      ExitCode.general,
      `point model.path at a GGUF model ("${orchCommand(deps.home, 'models list', deps.env)}" lists those found)`,
    );
  }
}

/**
 * The memory-fit preflight of one `up` (engine/memory-fit.ts): this instance's estimate with those
 * that run, per device. Refuses (exit 8) unless forced, which only warns.
 */
export async function checkFit(
  deps: SupervisorDeps,
  inst: LoadedInstance,
  model: GgufInfo,
  force: boolean,
): Promise<void> {
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

/** `own`: the instance's own row when its live server may hold the port (restart checks before stopping it). */
export function checkPorts(deps: SupervisorDeps, inst: LoadedInstance, own?: RuntimeRow): void {
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
  if (holder && !(own && holdsForServer(holder.pid, own, deps.procs))) {
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
