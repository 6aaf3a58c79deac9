import type { InstanceConfigInput } from './schema.js';

export const PROFILES = ['cpu', 'cuda', 'vulkan', 'rocm', 'metal'] as const;
export type Profile = (typeof PROFILES)[number];

/**
 * Profiles whose backend selects no GPU by index: cpu uses none, Metal the one GPU of the Mac
 * (llama.cpp has no device variable for it), so `--gpu` would be written and then ignored.
 */
export const NO_DEVICE_PROFILES: readonly Profile[] = ['cpu', 'metal'];

export interface InitInput {
  profile: Profile;
  modelPath: string;
  port: number;
  gpus: Array<number | string>;
  ctx?: number;
}

/**
 * Sensible starting points per backend: everything offloaded on GPUs, more parallel slots where
 * there is GPU memory to serve them, flash attention forced on where the backend supports it
 * (CUDA, ROCm; elsewhere llama.cpp's "auto" decides), a longer start period for big GPU loads.
 */
export function profileConfig(input: InitInput): InstanceConfigInput {
  const gpu = input.profile !== 'cpu';
  const cfg: InstanceConfigInput = {
    $schema: '../config.schema.json',
    model: {
      path: input.modelPath,
      context_size: input.ctx ?? (gpu ? 8192 : 4096),
      ...(gpu ? { n_gpu_layers: 999 } : { n_gpu_layers: 0 }),
    },
    server: {
      port: input.port,
      parallel: input.profile === 'cuda' || input.profile === 'rocm' ? 4 : 2,
      extra_args: input.profile === 'cuda' || input.profile === 'rocm' ? ['--flash-attn', 'on'] : [],
    },
    gpu: { backend: input.profile, devices: NO_DEVICE_PROFILES.includes(input.profile) ? [] : input.gpus },
    healthcheck: { start_period: gpu ? 120 : 30 },
    autostart: false,
  };
  return cfg;
}
