import fs from 'node:fs';
import path from 'node:path';
import type { InstanceConfig } from '../config/schema.js';
import { FIT_MIN_CONTEXT, type EstimateInput } from '../models/estimate.js';
import type { ModelIdentity } from '../store/measurements.js';

/**
 * What makes two runs the same for memory (engine/memory-calibration.ts keeps a run's measured
 * figure under it): the estimator's inputs from a config, the flags that change memory, the model
 * file's identity; and the byte units the fit and calibration messages share.
 */

/** The value of a flag in an argument list (`-c 4096`, `--ctx-size=4096`); the last one wins, as in llama.cpp. */
export function flagValue(args: readonly string[], ...names: string[]): string | undefined {
  let found: string | undefined;
  args.forEach((a, i) => {
    for (const n of names) {
      if (a === n && i + 1 < args.length) found = args[i + 1];
      else if (n.startsWith('--') && a.startsWith(`${n}=`)) found = a.slice(n.length + 1);
    }
  });
  return found;
}

export const hasFlag = (args: readonly string[], ...names: string[]) => args.some((a) => names.includes(a));

function intOf(v: string | undefined): number | undefined {
  const n = v === undefined ? NaN : Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * What a config asks llama-server for, as the estimator's input; `gpus`: how many devices it is
 * split across. With `model` and an unset context_size, the context is the smallest --fit would
 * shrink it to (4096 per stream), since the server fits an unset context to the memory it finds;
 * with --fit off it is the server's default.
 */
export function estimateInputFor(
  config: InstanceConfig,
  gpus: number,
  model?: { context_length: number | null },
): EstimateInput {
  const args = config.server.extra_args;
  const fitOff = ['off', '0', 'false'].includes(flagValue(args, '-fit', '--fit') ?? 'on');
  let contextSize = config.model.context_size;
  if (contextSize === undefined && model?.context_length && !fitOff) {
    const np = config.server.parallel ?? 4;
    const streams = config.server.parallel === undefined || hasFlag(args, '-kvu', '--kv-unified') ? 1 : np;
    const fitMin = intOf(flagValue(args, '-fitc', '--fit-ctx')) ?? FIT_MIN_CONTEXT;
    contextSize = Math.min(model.context_length * np, fitMin * streams);
  } else if (contextSize === undefined && model?.context_length && fitOff) {
    // Without --fit an unset -c is the trained context in all (llama-context.cpp), not per slot.
    contextSize = model.context_length;
  }
  const fa = flagValue(args, '-fa', '--flash-attn');
  const split = flagValue(args, '-ts', '--tensor-split');
  return {
    contextSize,
    parallel: config.server.parallel,
    gpuLayers: config.model.n_gpu_layers,
    gpus,
    split: split ? split.split(/[,/]/).map(Number) : undefined,
    cacheTypeK: flagValue(args, '-ctk', '--cache-type-k'),
    cacheTypeV: flagValue(args, '-ctv', '--cache-type-v'),
    flashAttn: fa === undefined ? undefined : !['off', '0', 'false'].includes(fa),
    batchSize: config.model.batch_size,
    ubatchSize: intOf(flagValue(args, '-ub', '--ubatch-size')),
    kvUnified: hasFlag(args, '-kvu', '--kv-unified')
      ? true
      : hasFlag(args, '-no-kvu', '--no-kv-unified')
        ? false
        : undefined,
    kvOffload: hasFlag(args, '-nkvo', '--no-kv-offload') ? false : undefined,
    swaFull: hasFlag(args, '--swa-full') ? true : undefined,
  };
}

// ---- which runs count as the same: the model file and the flags that change memory

/** Flags of extra_args that change how much memory a run takes, or where (value flags). */
const MEMORY_VALUE_FLAGS: ReadonlyArray<readonly string[]> = [
  ['-ub', '--ubatch-size'],
  ['-ctk', '--cache-type-k'],
  ['-ctv', '--cache-type-v'],
  ['-fa', '--flash-attn'],
  ['-fit', '--fit'],
  ['-fitt', '--fit-target'],
  ['-fitc', '--fit-ctx'],
  ['-ts', '--tensor-split'],
  ['-sm', '--split-mode'],
  ['-mg', '--main-gpu'],
  ['-ncmoe', '--n-cpu-moe'],
  ['-dev', '--device'],
  ['-ctxcp', '--ctx-checkpoints'],
  ['-cram', '--cache-ram'],
  // What else goes on the devices: a multimodal projector, a draft model and its layers and context.
  ['-mm', '--mmproj'],
  ['-md', '--model-draft'],
  ['-ngld', '--gpu-layers-draft', '--n-gpu-layers-draft'],
  ['-cd', '--ctx-size-draft'],
  ['-devd', '--device-draft'],
];
/** Flags without a value that change memory. */
const MEMORY_SWITCHES: ReadonlyArray<readonly string[]> = [
  ['-kvu', '--kv-unified'],
  ['-no-kvu', '--no-kv-unified'],
  ['-nkvo', '--no-kv-offload'],
  ['--swa-full'],
  ['-cmoe', '--cpu-moe'],
  ['--no-mmap'],
  ['--mlock'],
];
/** Flags that may be given more than once, each value counting (-ot). */
const MEMORY_LIST_FLAGS: ReadonlyArray<readonly string[]> = [
  ['-ot', '--override-tensor'],
  ['--lora'],
  ['--lora-scaled'],
];

/**
 * The settings of a config that change the memory a run takes (canonical: the first name of each
 * flag, only what is set): backend, devices, -c, -np, -ngl, -b and the memory flags of extra_args
 * (-ub, -ctk/-ctv, -fa, --fit and its target, -kvu, -nkvo, --swa-full, split and placement flags).
 */
export function memoryFlags(config: InstanceConfig): Record<string, unknown> {
  const args = config.server.extra_args;
  const out: Record<string, unknown> = {
    backend: config.gpu.backend,
    devices: config.gpu.devices,
    c: config.model.context_size ?? null,
    np: config.server.parallel ?? null,
    ngl: config.model.n_gpu_layers ?? null,
    b: config.model.batch_size ?? null,
  };
  for (const names of MEMORY_VALUE_FLAGS) {
    const v = flagValue(args, ...names);
    if (v !== undefined) out[names[0] as string] = v;
  }
  for (const names of MEMORY_SWITCHES) if (hasFlag(args, ...names)) out[names[0] as string] = true;
  for (const names of MEMORY_LIST_FLAGS) {
    const values = args.flatMap((a, i) => {
      if (names.includes(a)) return args[i + 1] !== undefined ? [args[i + 1] as string] : [];
      const long = names.find((n) => n.startsWith('--') && a.startsWith(`${n}=`));
      return long ? [a.slice(long.length + 1)] : [];
    });
    if (values.length) out[names[0] as string] = values;
  }
  // llama.cpp reads any flag from LLAMA_ARG_* (server.env), and ggml's own settings from GGML_*:
  // all of them count, but the logging ones. Code-point order (memoryFlagsKey sorts so too):
  // localeCompare would load ICU's collator, 3 MiB in every keeper.
  const counted = Object.entries(config.server.env).filter(
    ([k]) => (k.startsWith('LLAMA_ARG_') && !k.startsWith('LLAMA_ARG_LOG_')) || k.startsWith('GGML_'),
  );
  for (const [k, v] of counted.sort(([a], [b]) => (a < b ? -1 : 1))) out[`env:${k}`] = v;
  return out;
}

/** memoryFlags as a key: JSON with the keys in a fixed order. */
export function memoryFlagsKey(config: InstanceConfig): string {
  const flags = memoryFlags(config);
  return JSON.stringify(
    Object.fromEntries(
      Object.keys(flags)
        .sort()
        .map((k) => [k, flags[k]]),
    ),
  );
}

/** The identity of the model file now; undefined when it cannot be read. `size`: all shards (GgufInfo.size). */
export function modelIdentity(file: string, size: number): ModelIdentity | undefined {
  try {
    const st = fs.statSync(file);
    return { path: path.resolve(file), size, mtime_ms: Math.floor(st.mtimeMs) };
  } catch {
    return undefined;
  }
}
