import type { InstanceConfig } from '../config/schema.js';

export interface ServerCommand {
  file: string;
  args: string[];
  /** Variables added to the child's environment (the API key included, never in args). */
  env: Record<string, string>;
}

export const GPU_ENV_VAR: Record<InstanceConfig['gpu']['backend'], string | undefined> = {
  cpu: undefined,
  cuda: 'CUDA_VISIBLE_DEVICES',
  vulkan: 'GGML_VK_VISIBLE_DEVICES',
  rocm: 'HIP_VISIBLE_DEVICES',
  metal: undefined,
};

export interface BuildInput {
  name: string;
  config: InstanceConfig;
  binary: string;
  modelPath: string;
  /** The environment the API key is read from (api_key_env names a variable in it). */
  env: NodeJS.ProcessEnv;
}

/** Pure: config -> argv + env. Never a shell string; the API key only as LLAMA_API_KEY. */
export function buildServerCommand({ name, config, binary, modelPath, env }: BuildInput): ServerCommand {
  const { model, server, gpu } = config;
  const args = ['-m', modelPath, '--alias', model.alias ?? name, '--host', server.host, '--port', String(server.port)];
  if (model.context_size !== undefined) args.push('-c', String(model.context_size));
  if (model.batch_size !== undefined) args.push('-b', String(model.batch_size));
  if (model.threads !== undefined) args.push('-t', String(model.threads));
  if (server.parallel !== undefined) args.push('-np', String(server.parallel));
  if (model.n_gpu_layers !== undefined) args.push('-ngl', String(model.n_gpu_layers));
  // The keeper reads /metrics for tokens/s and the queue (keeper/metrics.ts). Configs written before
  // the `metrics` field often pass it in extra_args: once is enough.
  if (config.metrics && !server.extra_args.includes('--metrics')) args.push('--metrics');
  args.push(...server.extra_args);

  // Info-level logging (4) prints what the server loaded where (buffer sizes per device, offload,
  // --fit's changes), which keeper/load-facts.ts reads; the default (3) prints none of it.
  // The config's env or an -lv in extra_args (the command line wins over the env) overrides it.
  // Colours off (llama.cpp's --log-colors as an env var; older builds ignore it): a user who forces
  // them in extra_args still gets them, and keeper/load-facts.ts strips ANSI codes anyway.
  const childEnv: Record<string, string> = { LLAMA_ARG_LOG_VERBOSITY: '4', LLAMA_ARG_LOG_COLORS: 'off', ...server.env };
  const gpuVar = GPU_ENV_VAR[gpu.backend];
  if (gpuVar && gpu.devices.length > 0) childEnv[gpuVar] = gpu.devices.join(',');
  // CUDA numbers devices fastest first by default, nvidia-smi by PCI bus: pinned indices mean the
  // GPUs nvidia-smi (and `llama-orch gpus`) shows under those numbers.
  if (gpu.backend === 'cuda' && gpu.devices.length > 0) childEnv.CUDA_DEVICE_ORDER ??= 'PCI_BUS_ID';
  if (server.api_key_env) {
    const key = env[server.api_key_env];
    if (key) childEnv.LLAMA_API_KEY = key;
  }
  return { file: binary, args, env: childEnv };
}

const SECRET_FLAGS = new Set(['--api-key', '--api-key-file', '--hf-token', '-hft']);

/** The command as shown to people: secrets in args and env are masked. */
export function maskedCommand(cmd: ServerCommand): { argv: string[]; env: Record<string, string> } {
  const argv = [cmd.file];
  for (let i = 0; i < cmd.args.length; i++) {
    const a = cmd.args[i] as string;
    const eq = a.indexOf('=');
    if (eq > 0 && SECRET_FLAGS.has(a.slice(0, eq))) {
      argv.push(`${a.slice(0, eq)}=***`);
    } else if (SECRET_FLAGS.has(a)) {
      argv.push(a);
      if (i + 1 < cmd.args.length) argv.push('***');
      i++;
    } else {
      argv.push(a);
    }
  }
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(cmd.env)) {
    env[k] = /KEY|TOKEN|SECRET|PASSWORD/i.test(k) ? '***' : v;
  }
  return { argv, env };
}
