import { z } from 'zod';

/** The single source of truth for instance configuration (README, "Configuration reference"). Durations in seconds, sizes in bytes. */

export const INSTANCE_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** CUDA/HIP/Vulkan accept indices; CUDA also accepts GPU-/MIG- UUIDs. */
const GPU_DEVICE_RE = /^(?:\d+|GPU-[0-9a-fA-F-]{8,}|MIG-[0-9a-zA-Z/-]{8,})$/;

const seconds = (min = 0) => z.number().min(min).finite();
const positiveInt = () => z.number().int().min(1);

export const ModelSchema = z.strictObject({
  path: z.string().min(1).describe('GGUF model file, relative to the home or absolute'),
  alias: z.string().min(1).optional().describe('Model id served by /v1/models [instance name]'),
  context_size: positiveInt().optional().describe('-c: context size in tokens'),
  batch_size: positiveInt().optional().describe('-b: logical batch size'),
  threads: positiveInt().optional().describe('-t: CPU threads for generation'),
  n_gpu_layers: z.number().int().min(0).optional().describe('-ngl: layers to offload to the GPU'),
});

export const ServerSchema = z.strictObject({
  binary: z
    .string()
    .min(1)
    .optional()
    .describe('llama-server path [config -> LLAMA_SERVER env -> PATH -> setup cache]'),
  host: z.string().min(1).default('127.0.0.1').describe('Listen address'),
  port: z.number().int().min(1).max(65535).describe('Listen port (required, always passed explicitly)'),
  parallel: positiveInt().optional().describe('-np: number of parallel slots'),
  api_key_env: z
    .string()
    .regex(ENV_NAME_RE, 'must be an environment variable name such as LLAMA_KEY')
    .optional()
    .describe('Name of the env var holding the API key; passed to the server as LLAMA_API_KEY'),
  extra_args: z.array(z.string()).default([]).describe('Extra llama-server arguments, one per element'),
  env: z.record(z.string().regex(ENV_NAME_RE), z.string()).default({}).describe('Extra environment'),
});

export const BACKENDS = ['cpu', 'cuda', 'vulkan', 'rocm', 'metal'] as const;
export type Backend = (typeof BACKENDS)[number];

export const GpuSchema = z.strictObject({
  backend: z.enum(BACKENDS).default('cpu'),
  devices: z
    .array(
      z.union([
        z.number().int().min(0),
        z.string().regex(GPU_DEVICE_RE, 'must be a GPU index such as 0 or a GPU-/MIG- UUID'),
      ]),
    )
    .default([])
    .describe('GPU indices or UUIDs the server may see'),
});

export const HEALTH_TYPES = ['http', 'tcp', 'exec', 'inference'] as const;

export const HealthcheckSchema = z.strictObject({
  type: z.enum(HEALTH_TYPES).default('http'),
  path: z.string().startsWith('/').default('/health'),
  command: z.array(z.string()).min(1).optional().describe('argv for type "exec"; exit 0 = healthy'),
  interval: seconds(0.05).default(5),
  timeout: seconds(0.05).default(3),
  retries: positiveInt().default(3),
  start_period: seconds().default(30),
  startup_timeout: seconds().default(600).describe('How long 503 "Loading model" is tolerated'),
});

export const RestartSchema = z.strictObject({
  enabled: z.boolean().default(true),
  initial_delay: seconds().default(1),
  multiplier: z.number().min(1).default(2),
  max_delay: seconds().default(60),
  jitter: z.number().min(0).max(1).default(0.2),
  max_retries: z.number().int().min(0).default(5),
  reset_after: seconds().default(300).describe('Seconds of continuous health that reset the retry count'),
});

export const LogsSchema = z.strictObject({
  max_bytes: z
    .number()
    .int()
    .min(1024)
    .default(10 * 1024 * 1024),
  backups: z.number().int().min(0).max(100).default(3),
});

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export const InstanceConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    description: z.string().optional(),
    model: ModelSchema,
    server: ServerSchema,
    gpu: GpuSchema.prefault({}),
    healthcheck: HealthcheckSchema.prefault({}),
    restart: RestartSchema.prefault({}),
    stop_timeout: seconds().default(10),
    logs: LogsSchema.prefault({}),
    autostart: z.boolean().default(false),
  })
  .superRefine((cfg, ctx) => {
    if (!isLoopbackHost(cfg.server.host) && !cfg.server.api_key_env) {
      ctx.addIssue({
        code: 'custom',
        path: ['server', 'api_key_env'],
        message: `host "${cfg.server.host}" is not loopback: set server.api_key_env so the server requires an API key`,
      });
    }
    if (cfg.healthcheck.type === 'exec' && !cfg.healthcheck.command) {
      ctx.addIssue({
        code: 'custom',
        path: ['healthcheck', 'command'],
        message: 'healthcheck type "exec" needs a command (an argv array)',
      });
    }
    if (cfg.gpu.backend === 'cpu' && cfg.gpu.devices.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['gpu', 'devices'],
        message: 'backend "cpu" uses no GPU devices: remove gpu.devices or pick a GPU backend',
      });
    }
  });

export type InstanceConfigInput = z.input<typeof InstanceConfigSchema>;
export type InstanceConfig = z.output<typeof InstanceConfigSchema>;
