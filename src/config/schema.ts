import { z } from 'zod';

/** The single source of truth for instance configuration (README, "Configuration reference"). Durations in seconds, sizes in bytes. */

export const INSTANCE_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** CUDA/HIP/Vulkan accept indices; CUDA also accepts GPU-/MIG- UUIDs. */
const GPU_DEVICE_RE = /^(?:\d+|GPU-[0-9a-fA-F-]{8,}|MIG-[0-9a-zA-Z/-]{8,})$/;

/**
 * Every duration and size has a documented range (README, "Configuration reference"): Node's timers
 * overflow past 2^31 ms (about 24.8 days) and fire at once, so no duration may come near that.
 */
export const DAY_S = 86_400;
export const seconds = (min: number, max: number) => z.number().min(min).max(max).finite();
const positiveInt = (max = 1_000_000) => z.number().int().min(1).max(max);

export const ModelSchema = z.strictObject({
  path: z.string().min(1).describe('GGUF model file, relative to the home or absolute'),
  alias: z.string().min(1).optional().describe('Model id served by /v1/models and routed by the proxy [instance name]'),
  aliases: z
    .array(z.string().min(1))
    .optional()
    .describe('More model ids the proxy routes to this instance (each unique across the home)'),
  context_size: positiveInt(16_777_216).optional().describe('-c: context size in tokens'),
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
  interval: seconds(0.1, DAY_S).default(5).describe('Seconds between probes (0.1 to 86400)'),
  timeout: seconds(0.1, 3600).default(3).describe('Seconds a probe may take (0.1 to 3600)'),
  retries: positiveInt(1000).default(3).describe('Failed probes in a row that make it unhealthy (1 to 1000)'),
  start_period: seconds(0, DAY_S)
    .default(30)
    .describe('Seconds an unreachable server is tolerated at start (0 to 86400)'),
  startup_timeout: seconds(1, 7 * DAY_S)
    .default(600)
    .describe('How long 503 "Loading model" is tolerated, seconds (1 to 604800)'),
});

export const RestartSchema = z.strictObject({
  enabled: z.boolean().default(true),
  initial_delay: seconds(0.1, DAY_S).default(1).describe('First restart delay, seconds (0.1 to 86400)'),
  multiplier: z.number().min(1).max(10).default(2).describe('Backoff growth per restart (1 to 10)'),
  max_delay: seconds(0.1, DAY_S).default(60).describe('Longest restart delay, seconds (0.1 to 86400)'),
  jitter: z.number().min(0).max(1).default(0.2).describe('Random spread of each delay, a fraction (0 to 1)'),
  max_retries: z
    .number()
    .int()
    .min(0)
    .max(1000)
    .default(5)
    .describe('Restarts in a crash loop (runs that never stay healthy for min_uptime) before failed (0 to 1000)'),
  min_uptime: seconds(1, DAY_S)
    .default(30)
    .describe('Seconds of health after which a crash is sporadic, not a crash loop (1 to 86400)'),
  reset_after: seconds(1, 7 * DAY_S)
    .default(300)
    .describe('Window, seconds, over which sporadic crashes grow the restart delay (1 to 604800)'),
});

export const LogsSchema = z.strictObject({
  max_bytes: z
    .number()
    .int()
    .min(1024)
    .max(1024 ** 4)
    .default(10 * 1024 * 1024)
    .describe('Rotate a log file at this size, bytes (1024 to 1 TiB)'),
  backups: z.number().int().min(0).max(100).default(3).describe('Rotated files kept (0 to 100)'),
});

/**
 * The flags the command builder (engine/command.ts) writes itself, with the config field that sets
 * each: the same flag in extra_args would override the checked value (a host that is not loopback
 * without a key, a key in plain text) or contradict what llama-orch records (the port).
 */
export const OWNED_FLAGS: Readonly<Record<string, string>> = {
  '-m': 'model.path',
  '--model': 'model.path',
  '-a': 'model.alias',
  '--alias': 'model.alias',
  '--host': 'server.host',
  '--port': 'server.port',
  '--api-key': 'server.api_key_env',
  '--api-key-file': 'server.api_key_env',
  '-c': 'model.context_size',
  '--ctx-size': 'model.context_size',
  '-b': 'model.batch_size',
  '--batch-size': 'model.batch_size',
  '-t': 'model.threads',
  '--threads': 'model.threads',
  '-np': 'server.parallel',
  '--parallel': 'server.parallel',
  '-ngl': 'model.n_gpu_layers',
  '--gpu-layers': 'model.n_gpu_layers',
  '--n-gpu-layers': 'model.n_gpu_layers',
};

function ownedFlag(arg: string): string | undefined {
  const eq = arg.indexOf('=');
  const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
  return OWNED_FLAGS[flag];
}

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
    stop_timeout: seconds(0.1, 3600).default(10).describe('Seconds from SIGTERM to SIGKILL (0.1 to 3600)'),
    logs: LogsSchema.prefault({}),
    autostart: z.boolean().default(false),
    metrics: z
      .boolean()
      .default(true)
      .describe('Pass --metrics and read tokens/s, slots and queue from the server on the health cadence'),
    on_demand: z
      .boolean()
      .optional()
      .describe('The proxy starts it when a request names it [llama-orch.json proxy.on_demand, true]'),
    idle_ttl: seconds(1, 30 * DAY_S)
      .optional()
      .describe(
        'Seconds without proxied requests after which the daemon stops it [llama-orch.json proxy.idle_ttl, none]',
      ),
    group: z
      .string()
      .regex(INSTANCE_NAME_RE, 'must be a name such as "big-models" (a-z, 0-9, "_", "-")')
      .optional()
      .describe('Instances of one group never run together: an on-demand start stops the others first'),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.restart.max_delay < cfg.restart.initial_delay) {
      ctx.addIssue({
        code: 'custom',
        path: ['restart', 'max_delay'],
        message: `max_delay (${cfg.restart.max_delay} s) is shorter than initial_delay (${cfg.restart.initial_delay} s)`,
      });
    }
    cfg.server.extra_args.forEach((arg, i) => {
      const owner = ownedFlag(arg);
      if (owner) {
        ctx.addIssue({
          code: 'custom',
          path: ['server', 'extra_args', i],
          message: `"${arg}" is set by llama-orch from ${owner}: use ${owner} instead of passing it in extra_args`,
        });
      }
    });
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
