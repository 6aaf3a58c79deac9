import fs from 'node:fs';
import type { Home } from '../domain/home.js';
import { resolveServerBinary } from './binary.js';
import { loadAllConfigs, resolveModelPath, type ConfigProblem, type LoadedInstance } from './load.js';
import type { InstanceConfig } from './schema.js';

export interface LintDeps {
  env: NodeJS.ProcessEnv;
  /** Number of GPUs of a backend visible on this machine, or undefined when it cannot be told. */
  gpuCount: (backend: InstanceConfig['gpu']['backend']) => number | undefined;
}

export interface LintReport {
  checked: number;
  problems: ConfigProblem[];
  instances: LoadedInstance[];
}

/** Problems that need the file system: the model file and the server binary. */
export function checkInstanceEnvironment(home: Home, inst: LoadedInstance, deps: LintDeps): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const { config, file } = inst;
  const modelPath = resolveModelPath(home, config);
  try {
    const real = fs.realpathSync(modelPath);
    if (!fs.statSync(real).isFile()) {
      problems.push({ file, jsonPath: '$.model.path', message: `${modelPath} is not a regular file` });
    }
  } catch {
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
      message: `llama-server not found (tried ${bin.tried.join(', ')}); run "npm run setup:llama" or set server.binary`,
    });
  }
  const count = deps.gpuCount(config.gpu.backend);
  if (count !== undefined) {
    config.gpu.devices.forEach((d, i) => {
      if (typeof d === 'number' && d >= count) {
        problems.push({
          file,
          jsonPath: `$.gpu.devices[${i}]`,
          message: `GPU ${d} does not exist: this machine has ${count} ${config.gpu.backend} device(s) (0-${count - 1})`,
        });
      }
    });
  }
  return problems;
}

export function lintHome(home: Home, deps: LintDeps): LintReport {
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
  for (const inst of instances) problems.push(...checkInstanceEnvironment(home, inst, deps));
  return { checked: results.length, problems, instances };
}
