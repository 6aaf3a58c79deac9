import { cachedServerBinary, resolveServerBinary } from '../config/binary.js';
import { loadAllConfigs } from '../config/load.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { ggufCacheFile, type Home } from '../domain/home.js';
import { estimateInputFor } from '../engine/memory-fit.js';
import { estimateMemory, type EstimateInput, type MemoryEstimate } from '../models/estimate.js';
import { readGgufCached, GgufError, type GgufInfo } from '../models/gguf.js';
import { fitParamsBinary, runFitParams, type FitProjection } from '../platform/fit-params.js';
import type { Context } from './context.js';
import { modelUsers, resolveModel, usersOf, type ModelUser } from './models.js';

/**
 * `models info`: a model's GGUF header, who uses it, the memory estimate for the given settings
 * (an instance's config under them when the model is named by the instance), and llama.cpp's own
 * projection on this machine when llama-fit-params is there.
 */

/** The settings `models info` estimates for (its options; each unset one from the instance, else the default). */
export interface InfoSettings {
  ctx?: number;
  parallel?: number;
  ngl?: number;
  gpus?: number;
  cacheType?: string;
  cacheTypeK?: string;
  cacheTypeV?: string;
  flashAttn?: 'on' | 'off';
}

export interface ModelInfo {
  /** The model's path (its first shard). */
  file: string;
  info: GgufInfo;
  input: EstimateInput;
  estimate: MemoryEstimate;
  used: ModelUser[];
  /** The arguments that size memory, as llama-server and llama-fit-params take them. */
  sizingArgs: string[];
  /** llama-fit-params, when the set-up built it, and what it projected (undefined without it). */
  fitTool: string | undefined;
  projection: FitProjection | undefined;
}

async function header(home: Home, file: string): Promise<GgufInfo> {
  try {
    return await readGgufCached(file, ggufCacheFile(home));
  } catch (e) {
    if (e instanceof GgufError) throw new UserError(e.message, ExitCode.general);
    throw e;
  }
}

/** The estimator's input for `models info`: the instance's config when NAME is one, the options over it; and the server binary. */
function infoInput(
  ctx: Context,
  spec: string,
  args: InfoSettings,
  model: GgufInfo,
): { input: EstimateInput; server: string | undefined } {
  const found = loadAllConfigs(ctx.home).find((r) => r.ok && r.instance.name === spec);
  const inst = found?.ok === true ? found.instance : undefined;
  const gpuBackend = inst !== undefined && inst.config.gpu.backend !== 'cpu' && inst.config.gpu.backend !== 'metal';
  const base: EstimateInput = inst
    ? estimateInputFor(inst.config, gpuBackend ? Math.max(inst.config.gpu.devices.length, 1) : 0, model)
    : { gpus: 0 };
  const server = inst
    ? resolveServerBinary(ctx.home, inst.config, process.env).path
    : (process.env.LLAMA_SERVER ?? cachedServerBinary(process.env));
  const input: EstimateInput = {
    ...base,
    ...(args.ctx !== undefined ? { contextSize: args.ctx } : {}),
    ...(args.parallel !== undefined ? { parallel: args.parallel } : {}),
    ...(args.ngl !== undefined ? { gpuLayers: args.ngl } : {}),
    ...(args.gpus !== undefined ? { gpus: args.gpus } : args.ngl !== undefined && base.gpus === 0 ? { gpus: 1 } : {}),
    ...((args.cacheTypeK ?? args.cacheType) ? { cacheTypeK: args.cacheTypeK ?? args.cacheType } : {}),
    ...((args.cacheTypeV ?? args.cacheType) ? { cacheTypeV: args.cacheTypeV ?? args.cacheType } : {}),
    ...(args.flashAttn ? { flashAttn: args.flashAttn === 'on' } : {}),
  };
  return { input, server };
}

/** The arguments that size memory, as llama-server (and llama-fit-params) take them. */
function sizingArgs(input: EstimateInput, est: MemoryEstimate): string[] {
  const args = ['-c', String(est.context)];
  if (input.parallel !== undefined) args.push('-np', String(input.parallel));
  args.push('-ngl', String(est.gpuLayers));
  args.push('-ctk', est.cacheTypeK, '-ctv', est.cacheTypeV);
  if (input.flashAttn === false) args.push('-fa', 'off');
  if (input.ubatchSize !== undefined) args.push('-ub', String(input.ubatchSize));
  if (input.batchSize !== undefined) args.push('-b', String(input.batchSize));
  return args;
}

/** `models info PATH|NAME`: the header, who uses it, and the memory estimate for the given settings. */
export async function modelInfo(ctx: Context, spec: string, args: InfoSettings): Promise<ModelInfo> {
  const users = modelUsers(ctx);
  const file = await resolveModel(ctx, spec, users);
  const info = await header(ctx.home, file);
  const { input, server } = infoInput(ctx, spec, args, info);
  const estimate = estimateMemory(info, input);
  const used = usersOf(users, file);
  const sizing = sizingArgs(input, estimate);
  // llama.cpp's own projection on this machine's devices, when the set-up built llama-fit-params.
  const fitTool = fitParamsBinary(server, process.env);
  const projection = fitTool ? await runFitParams(fitTool, file, sizing, process.env) : undefined;
  return { file, info, input, estimate, used, sizingArgs: sizing, fitTool, projection };
}

export function estimateJson(e: MemoryEstimate) {
  return {
    context: e.context,
    context_per_slot: e.contextPerSlot,
    parallel: e.parallel,
    ubatch: e.ubatch,
    gpu_layers: e.gpuLayers,
    cache_type_k: e.cacheTypeK,
    cache_type_v: e.cacheTypeV,
    weights_bytes: e.weights,
    kv_bytes: e.kv,
    compute_bytes: e.compute,
    margin_bytes: e.margin,
    total_bytes: e.total,
    devices: e.devices.map((d) => ({
      device: d.device === 'host' ? 'host' : `gpu${d.device}`,
      weights_bytes: d.weights,
      kv_bytes: d.kv,
      compute_bytes: d.compute,
      margin_bytes: d.margin,
      total_bytes: d.total,
    })),
  };
}

/** `models info --json` (README): the header, its users, the estimate and llama.cpp's projection. */
export function modelInfoJson(m: ModelInfo) {
  const { info, projection } = m;
  const { weights, ...meta } = info;
  return {
    ...meta,
    size_bytes: info.size,
    weights_bytes: weights.total,
    used_by: m.used.map((u) => ({ name: u.name, running: u.running })),
    estimate: estimateJson(m.estimate),
    projection: projection?.ok
      ? {
          tool: m.fitTool,
          ms: projection.ms,
          devices: projection.devices.map((d) => ({
            device: d.device,
            model_bytes: d.model,
            context_bytes: d.context,
            compute_bytes: d.compute,
          })),
        }
      : null,
    projection_error: projection && !projection.ok ? projection.error : null,
  };
}
