import fs from 'node:fs';
import { fileKind } from '../platform/regular-file.js';
import { ggufCacheFile, type Home } from '../domain/home.js';
import { resolveServerBinary } from './binary.js';
import { loadAllConfigs, resolveModelPath, type ConfigProblem, type LoadedInstance } from './load.js';
import type { GpuInventory, GpuInventoryReader } from '../platform/gpu/inventory.js';
import { checkExtraArgs, type HelpRunner } from './server-flags.js';
import { checkBinaryBackend, type LinkRunner } from './backend-check.js';
import { GgufError, readGgufCached, type GgufInfo } from '../models/gguf.js';
import { isErrnoException } from '../domain/errors.js';
import { settingsEnvironmentProblems, settingsProblems } from './settings.js';
import type { InstanceConfig } from './schema.js';

export interface LintDeps {
  env: NodeJS.ProcessEnv;
  /** The GPUs a backend can select here (platform/gpu/inventory.ts unless a test says otherwise). */
  gpuInventory: GpuInventoryReader;
  /** process.platform unless a test says otherwise. */
  platform?: NodeJS.Platform;
  /** Runs `llama-server --help` (platform/server-help.ts unless a test says otherwise). */
  runHelp?: HelpRunner;
  /** Lists a binary's libraries (`ldd`; config/backend-check.ts unless a test says otherwise). */
  runLinks?: LinkRunner;
}

export interface LintReport {
  checked: number;
  problems: ConfigProblem[];
  /** What may not work as meant but does not stop a start (exit 0). */
  warnings: ConfigProblem[];
  instances: LoadedInstance[];
  /** The headers of the models that could be read, by instance (for the memory-fit check). */
  models: Map<string, GgufInfo>;
}

export interface EnvironmentCheck {
  problems: ConfigProblem[];
  warnings: ConfigProblem[];
}

/** The setup command that builds a server for a backend (setup's auto might pick another one). */
function setupCommand(backend: InstanceConfig['gpu']['backend']): string {
  return backend === 'metal' ? 'npm run setup:llama' : `npm run setup:llama -- --backend ${backend}`;
}

/** A backend this machine cannot run, said where it is configured. */
export function backendWarning(inst: LoadedInstance, platform: NodeJS.Platform): ConfigProblem | undefined {
  if (inst.config.gpu.backend !== 'metal' || platform === 'darwin') return undefined;
  return {
    file: inst.file,
    jsonPath: '$.gpu.backend',
    message: `"metal" is Apple's GPU API and cannot run on ${platform}: llama-server would not use it here (use cpu, cuda, vulkan or rocm)`,
  };
}

/**
 * What needs the file system: the model file, the server binary, the flags it accepts (extra_args),
 * the GPUs; and what this machine cannot run (warnings).
 */
export async function checkInstanceEnvironment(
  home: Home,
  inst: LoadedInstance,
  deps: LintDeps,
): Promise<EnvironmentCheck & { model?: GgufInfo }> {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const { config, file } = inst;
  const modelPath = resolveModelPath(home, config);
  let model: GgufInfo | undefined;
  try {
    const real = fs.realpathSync(modelPath);
    const st = fs.statSync(real);
    if (!st.isFile()) {
      problems.push({ file, jsonPath: '$.model.path', message: `${modelPath} is ${fileKind(st)}, not a regular file` });
    } else {
      try {
        model = await readGgufCached(modelPath, ggufCacheFile(home));
      } catch (e) {
        if (!(e instanceof GgufError)) throw e;
        problems.push({ file, jsonPath: '$.model.path', message: e.message });
      }
    }
  } catch (e) {
    if (e instanceof Error && !isErrnoException(e)) throw e;
    problems.push({
      file,
      jsonPath: '$.model.path',
      message: `model file ${modelPath} does not exist (paths are relative to the home ${home.root})`,
    });
  }
  const bin = resolveServerBinary(home, config, deps.env);
  if (!bin.path) {
    problems.push({
      file,
      jsonPath: '$.server.binary',
      message: `llama-server not found (tried ${bin.tried.join(', ')}); run "${setupCommand(config.gpu.backend)}" or set server.binary`,
    });
  } else {
    const args = checkExtraArgs(home, inst, bin.path, deps.env, deps.runHelp);
    problems.push(...args.problems);
    if (args.unchecked) warnings.push({ file, jsonPath: '$.server.extra_args', message: args.unchecked.message });
    // A GPU backend the binary was not built with: it still starts, on the CPU or another GPU API.
    const mismatch = checkBinaryBackend(home, inst, bin.path, deps.env, {
      ...(deps.runLinks ? { run: deps.runLinks } : {}),
      platform: deps.platform ?? process.platform,
    });
    if (mismatch) warnings.push(mismatch);
  }
  const backend = backendWarning(inst, deps.platform ?? process.platform);
  if (backend) warnings.push(backend);
  const metricsIndex = config.server.extra_args.indexOf('--metrics');
  if (!config.metrics && metricsIndex >= 0) {
    warnings.push({
      file,
      jsonPath: `$.server.extra_args[${metricsIndex}]`,
      message: '"--metrics" turns the endpoint on, but "metrics": false means llama-orch never reads it: drop one',
    });
  }
  const gpu = checkDevices(inst, deps.gpuInventory(config.gpu.backend));
  problems.push(...gpu.problems);
  warnings.push(...gpu.warnings);
  return { problems, warnings, ...(model ? { model } : {}) };
}

const VENDOR_GPU = { nvidia: 'NVIDIA', amd: 'AMD' } as const;

/**
 * The configured devices against the GPUs the vendor tool lists: an index or UUID that is not there
 * is a problem (CUDA would see no device and the server would run on the CPU); a GPU backend on a
 * machine with neither the tool nor the driver's device node is a warning naming both.
 */
export function checkDevices(inst: LoadedInstance, inv: GpuInventory | undefined): EnvironmentCheck {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const { config, file } = inst;
  if (!inv) return { problems, warnings };
  const backend = config.gpu.backend;
  if (!inv.ok) {
    const message =
      inv.kind === 'no-tool' && !inv.device
        ? `backend "${backend}" but no ${VENDOR_GPU[inv.vendor]} GPU was found: ${inv.message}; llama-server would run on the CPU`
        : `GPU devices not checked and GPU use not shown: ${inv.message}`;
    warnings.push({ file, jsonPath: '$.gpu.backend', message });
    return { problems, warnings };
  }
  const listed = `${inv.tool.split('/').pop()} lists ${inv.indices.length} GPU(s): ${inv.indices.join(', ')}`;
  config.gpu.devices.forEach((d, i) => {
    const jsonPath = `$.gpu.devices[${i}]`;
    if (typeof d === 'number') {
      if (!inv.indices.includes(d)) problems.push({ file, jsonPath, message: `GPU ${d} does not exist: ${listed}` });
    } else if (!inv.uuids.some((u) => u.toLowerCase().startsWith(d.toLowerCase()))) {
      problems.push({
        file,
        jsonPath,
        message: `${d} is not a GPU or MIG device of this machine: ${listed}${inv.uuids.length ? ` (${inv.uuids.join(', ')})` : ''}`,
      });
    }
  });
  return { problems, warnings };
}

/** Model ids (alias, aliases, name) the proxy routes: each must name one instance. */
export function modelIdConflicts(instances: LoadedInstance[]): ConfigProblem[] {
  const owners = new Map<string, string[]>();
  for (const inst of instances) {
    const m = inst.config.model;
    for (const id of new Set([m.alias ?? inst.name, ...(m.aliases ?? []), inst.name])) {
      owners.set(id, [...(owners.get(id) ?? []), inst.name]);
    }
  }
  const problems: ConfigProblem[] = [];
  for (const inst of instances) {
    const m = inst.config.model;
    const own: Array<[string, string]> = [
      [m.alias ?? inst.name, m.alias !== undefined ? '$.model.alias' : '(directory name)'],
      ...(m.aliases ?? []).map((a, i): [string, string] => [a, `$.model.aliases[${i}]`]),
    ];
    for (const [id, where] of own) {
      const others = (owners.get(id) ?? []).filter((n) => n !== inst.name);
      if (others.length === 0) continue;
      problems.push({
        file: inst.file,
        jsonPath: where,
        message: `model id "${id}" is also routed to ${others.join(', ')}: the proxy needs each id to name one instance`,
      });
    }
  }
  return problems;
}

export async function lintHome(home: Home, deps: LintDeps): Promise<LintReport> {
  const results = loadAllConfigs(home);
  const problems: ConfigProblem[] = [];
  const instances: LoadedInstance[] = [];
  for (const r of results) {
    if (!r.ok) problems.push(...r.problems);
    else instances.push(r.instance);
  }
  const byPort = new Map<number, LoadedInstance[]>();
  for (const inst of instances) {
    const list = byPort.get(inst.config.server.port) ?? [];
    list.push(inst);
    byPort.set(inst.config.server.port, list);
  }
  for (const [port, list] of byPort) {
    if (list.length < 2) continue;
    for (const inst of list) {
      const others = list.filter((o) => o !== inst).map((o) => o.name);
      problems.push({
        file: inst.file,
        jsonPath: '$.server.port',
        message: `port ${port} is also used by ${others.join(', ')}: every instance needs its own port`,
      });
    }
  }
  problems.push(...modelIdConflicts(instances));
  // The home's settings (the daemon's proxy) are checked with the instances.
  problems.push(...settingsProblems(home), ...settingsEnvironmentProblems(home, deps.env));
  const warnings: ConfigProblem[] = [];
  const models = new Map<string, GgufInfo>();
  for (const inst of instances) {
    const env = await checkInstanceEnvironment(home, inst, deps);
    problems.push(...env.problems);
    warnings.push(...env.warnings);
    if (env.model) models.set(inst.name, env.model);
  }
  return { checked: results.length, problems, warnings, instances, models };
}
