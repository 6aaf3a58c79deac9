import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline/promises';
import { cachedServerBinary, resolveServerBinary } from '../../config/binary.js';
import { loadAllConfigs, resolveModelPath } from '../../config/load.js';
import { fitParamsBinary, runFitParams } from '../../platform/fit-params.js';
import { openRegular } from '../../platform/regular-file.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { ggufCacheFile, orchCommand, type Home } from '../../domain/home.js';
import { keeperAlive, serverAlive } from '../../engine/identity.js';
import { estimateInputFor } from '../../engine/memory-fit.js';
import { unitFor } from '../../domain/units.js';
import { startedConfig } from '../../engine/started-config.js';
import { formatBytes } from '../../format/text.js';
import { formatSize, progressBar, progressLine } from '../../format/progress.js';
import { estimateMemory, type EstimateInput, type MemoryEstimate } from '../../models/estimate.js';
import { modelFiles, readGgufCached, GgufError, type GgufInfo } from '../../models/gguf.js';
import { pullModel, type PullProgress } from '../../models/pull.js';
import { modelRoots, scanModels, type FoundModel } from '../../models/scan.js';
import type { Context } from '../../app/context.js';
import { renderTextTable } from '../../format/table.js';
import type { Out } from '../output.js';
import { safeName } from '../../domain/sanitize.js';

/** An instance that names a model file, and whether its server runs now. */
interface ModelUser {
  name: string;
  running: boolean;
  /** The model's real path (symlinks resolved), to match files found elsewhere. */
  real: string;
  path: string;
}

function realOf(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** Every configured instance's model, and the model a running server was started with. */
function modelUsers(ctx: Context): ModelUser[] {
  const users: ModelUser[] = [];
  const runningNames = new Set<string>();
  for (const row of ctx.store.listRuntime()) {
    if (!(keeperAlive(row, ctx.deps.procs) || serverAlive(row, ctx.deps.procs))) continue;
    const cfg = startedConfig(ctx.store, row.name);
    if (!cfg) continue;
    runningNames.add(row.name);
    const p = resolveModelPath(ctx.home, cfg);
    users.push({ name: row.name, running: true, real: realOf(p), path: p });
  }
  for (const r of loadAllConfigs(ctx.home)) {
    if (!r.ok || runningNames.has(r.instance.name)) continue;
    const p = resolveModelPath(ctx.home, r.instance.config);
    users.push({ name: r.instance.name, running: false, real: realOf(p), path: p });
  }
  return users;
}

const usersOf = (users: ModelUser[], file: string) => {
  const real = realOf(file);
  return users.filter((u) => u.real === real);
};

export function formatParams(n: number | null): string {
  if (n === null) return '-';
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e11 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)}M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)}K`;
  return String(n);
}

function modelJson(m: FoundModel, users: ModelUser[]) {
  const i = m.info;
  return {
    path: m.path,
    files: i?.files ?? modelFiles(m.path),
    source: m.source,
    name: i?.name ?? null,
    architecture: i?.architecture ?? null,
    parameters: i?.parameters ?? null,
    quantization: i?.quantization ?? null,
    size_bytes: i?.size ?? null,
    context_length: i?.context_length ?? null,
    used_by: usersOf(users, m.path).map((u) => ({ name: u.name, running: u.running })),
    error: m.error,
  };
}

async function scan(ctx: Context, users: ModelUser[]): Promise<FoundModel[]> {
  return scanModels(
    modelRoots(ctx.home.modelsDir, process.env),
    users.map((u) => u.path),
    ggufCacheFile(ctx.home),
  );
}

/** `models list`: every GGUF under the home's models/, the instances' models and the download caches. */
export async function modelsList(ctx: Context, json: boolean, out: Out): Promise<number> {
  const users = modelUsers(ctx);
  const models = await scan(ctx, users);
  models.sort((a, b) => a.source.localeCompare(b.source) || a.path.localeCompare(b.path));
  if (json) {
    out.log(
      JSON.stringify(
        models.map((m) => modelJson(m, users)),
        null,
        2,
      ),
    );
    return 0;
  }
  if (models.length === 0) {
    const roots = modelRoots(ctx.home.modelsDir, process.env).map((r) => r.dir);
    out.log(
      `no GGUF models found (looked in ${roots.join(', ')}); "${orchCommand(ctx.home, 'models pull REPO:QUANT')}" downloads one`,
    );
    return 0;
  }
  const rows = models.map((m) => {
    const i = m.info;
    const used = usersOf(users, m.path)
      .map((u) => (u.running ? `${u.name}*` : u.name))
      .join(',');
    const shards = i && i.files.length > 1 ? ` (+${i.files.length - 1} shards)` : '';
    // A file's name and its header's strings are anyone's: no control codes reach the terminal.
    return [
      safeName(displayPath(ctx.home, m.path)) + shards,
      i?.architecture ? safeName(i.architecture) : '-',
      formatParams(i?.parameters ?? null),
      i?.quantization ?? '-',
      i ? formatBytes(i.size) : '-',
      i?.context_length ? String(i.context_length) : '-',
      used || '-',
      m.source,
    ];
  });
  out.log(renderTextTable(['MODEL', 'ARCH', 'PARAMS', 'QUANT', 'SIZE', 'CTX', 'USED BY', 'FROM'], rows, 72));
  const broken = models.filter((m) => m.error);
  for (const m of broken) out.error(`warning: ${m.error}`);
  out.log(`\n${models.length} model${models.length === 1 ? '' : 's'}; * = running`);
  return 0;
}

function displayPath(home: Home, file: string): string {
  const rel = path.relative(home.root, file);
  return rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
}

/**
 * A model given as a path (to the cwd, then the home), as an instance's name (its model), or as
 * the file name of a model `models list` finds (with or without .gguf).
 */
async function resolveModel(ctx: Context, spec: string, users: ModelUser[]): Promise<string> {
  // An instance's name first: a file of the same name in the current directory must not win.
  const inst = users.find((u) => u.name === spec);
  if (inst) return inst.path;
  for (const p of [path.resolve(spec), path.resolve(ctx.home.root, spec)]) {
    if (fs.existsSync(p)) return p;
  }
  const models = await scan(ctx, users);
  const want = spec.toLowerCase().replace(/\.gguf$/, '');
  const matches = models.filter((m) => {
    const base = path
      .basename(m.path)
      .toLowerCase()
      .replace(/\.gguf$/, '');
    return base === want || base.replace(/-00001-of-\d{5}$/, '') === want || m.info?.name?.toLowerCase() === want;
  });
  if (matches.length === 1) return (matches[0] as FoundModel).path;
  if (matches.length > 1) {
    throw new UserError(
      `"${spec}" matches ${matches.length} models: ${matches.map((m) => m.path).join(', ')}`,
      ExitCode.general,
      'give the path',
    );
  }
  throw new UserError(
    `no model "${spec}": not a file, an instance, or a model "models list" finds`,
    ExitCode.notFound,
    `"${orchCommand(ctx.home, 'models list')}" shows the models found`,
  );
}

async function header(home: Home, file: string): Promise<GgufInfo> {
  try {
    return await readGgufCached(file, ggufCacheFile(home));
  } catch (e) {
    if (e instanceof GgufError) throw new UserError(e.message, ExitCode.general);
    throw e;
  }
}

export interface InfoArgs {
  json: boolean;
  ctx?: number;
  parallel?: number;
  ngl?: number;
  gpus?: number;
  cacheType?: string;
  cacheTypeK?: string;
  cacheTypeV?: string;
  flashAttn?: 'on' | 'off';
}

/** The estimator's input for `models info`: the instance's config when NAME is one, the options over it; and the server binary. */
function infoInput(
  ctx: Context,
  spec: string,
  args: InfoArgs,
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

/** `models info PATH|NAME`: the header, who uses it, and the memory estimate for the given settings. */
export async function modelsInfo(ctx: Context, spec: string, args: InfoArgs, out: Out): Promise<number> {
  const users = modelUsers(ctx);
  const file = await resolveModel(ctx, spec, users);
  const info = await header(ctx.home, file);
  const { input, server } = infoInput(ctx, spec, args, info);
  const est = estimateMemory(info, input);
  const used = usersOf(users, file);
  // llama.cpp's own projection on this machine's devices, when the set-up built llama-fit-params.
  const fitBin = fitParamsBinary(server, process.env);
  const projection = fitBin ? await runFitParams(fitBin, file, sizingArgs(input, est), process.env) : undefined;
  if (args.json) {
    const { weights, ...meta } = info;
    out.log(
      JSON.stringify(
        {
          ...meta,
          size_bytes: info.size,
          weights_bytes: weights.total,
          used_by: used.map((u) => ({ name: u.name, running: u.running })),
          estimate: estimateJson(est),
          projection: projection?.ok
            ? {
                tool: fitBin,
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
        },
        null,
        2,
      ),
    );
    return 0;
  }
  const n = (v: number | null) => (v === null ? '-' : String(v));
  const lines: Array<[string, string]> = [
    ['path', `${file}${info.files.length > 1 ? ` (${info.files.length} shards)` : ''}`],
    ['name', info.name ?? '-'],
    ['architecture', info.architecture ?? '-'],
    ['parameters', info.parameters === null ? '-' : `${formatParams(info.parameters)} (${info.parameters})`],
    ['quantization', info.quantization ?? '-'],
    ['size', `${formatSize(info.size)} (${info.size} bytes)`],
    ['trained context', n(info.context_length)],
    [
      'layers',
      `${n(info.block_count)} (embedding ${n(info.embedding_length)}, feed-forward ${n(info.feed_forward_length)})`,
    ],
    [
      'attention',
      `${n(info.head_count)} heads, ${n(info.head_count_kv)} KV heads, key/value length ${n(info.key_length)}/${n(info.value_length)}${info.sliding_window ? `, sliding window ${info.sliding_window}` : ''}`,
    ],
    ['experts', info.expert_count ? `${info.expert_count} (${n(info.expert_used_count)} used per token)` : '-'],
    ['chat template', info.chat_template ? 'yes' : 'no'],
    ['used by', used.length ? used.map((u) => `${u.name}${u.running ? ' (running)' : ''}`).join(', ') : '-'],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) out.log(`${k.padEnd(w)}  ${v}`);
  out.log('');
  const where =
    est.gpuLayers === 0 ? 'CPU only' : `-ngl ${est.gpuLayers} on ${input.gpus} GPU${input.gpus === 1 ? '' : 's'}`;
  out.log(
    `memory estimate: -c ${est.context} (${est.contextPerSlot} per slot), ${est.parallel} slot${est.parallel === 1 ? '' : 's'}${input.parallel === undefined ? ' (auto, unified KV)' : ''}, ${where}, KV ${est.cacheTypeK}/${est.cacheTypeV}, ubatch ${est.ubatch}`,
  );
  const u = unitFor(est.total);
  const rows = est.devices.map((d) => [
    d.device === 'host' ? 'host' : `gpu ${d.device}`,
    u.fmt(d.weights),
    u.fmt(d.kv),
    u.fmt(d.compute),
    d.device === 'host' ? '-' : u.fmt(d.margin),
    u.fmt(d.total),
  ]);
  if (est.devices.length > 1) {
    rows.push(['total', u.fmt(est.weights), u.fmt(est.kv), u.fmt(est.compute), u.fmt(est.margin), u.fmt(est.total)]);
  }
  out.log(
    renderTextTable(['DEVICE', 'WEIGHTS', 'KV', 'COMPUTE', 'RUNTIME', `TOTAL ${u.name}`], rows)
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  );
  if (projection?.ok) {
    out.log(
      `\nllama.cpp's projection on this machine (llama-fit-params ${sizingArgs(input, est).join(' ')}, ${projection.ms} ms):`,
    );
    const pu = unitFor(Math.max(...projection.devices.map((d) => d.model + d.context + d.compute)));
    const prow = projection.devices.map((d) => [
      d.device === 'Host' ? 'host' : d.device,
      pu.fmt(d.model),
      pu.fmt(d.context),
      pu.fmt(d.compute),
      pu.fmt(d.model + d.context + d.compute),
    ]);
    out.log(
      renderTextTable(['DEVICE', 'MODEL', 'KV', 'COMPUTE', `TOTAL ${pu.name}`], prow)
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  } else if (projection) {
    out.error(`warning: no projection from llama.cpp: ${projection.error}`);
  }
  return 0;
}

export interface PullArgs {
  to?: string;
  sha256?: string;
  json: boolean;
}

/**
 * `models pull REF`: downloads into the home's models/ (or --to) with a progress bar on a terminal
 * and a plain line every 5 s otherwise. Ctrl-C keeps a resumable part (exit 130).
 */
export async function modelsPull(home: Home, ref: string, args: PullArgs, out: Out): Promise<number> {
  const result = await pullWithProgress(home, ref, args, out);
  if (args.json) {
    out.log(JSON.stringify({ path: result.path, files: result.files }, null, 2));
    return 0;
  }
  for (const f of result.files) {
    const how = f.alreadyPresent
      ? 'already present'
      : `${formatSize(f.bytes)}${f.resumedFrom ? `, resumed at ${formatSize(f.resumedFrom)}` : ''}`;
    const hash =
      f.verified === 'lfs'
        ? 'sha256 verified against the hub'
        : f.verified === 'given'
          ? 'sha256 verified against --sha256'
          : 'no hash to verify against';
    out.log(`${f.path}: ${how}; ${hash}`);
  }
  out.log(`use it: "model": { "path": "${displayPath(home, result.path)}" }`);
  return 0;
}

/** The pull with Ctrl-C and progress wired to this terminal; `init --model hf:...` uses it too. */
export async function pullWithProgress(
  home: Home,
  ref: string,
  args: { to?: string; sha256?: string; json?: boolean },
  out: Out,
): ReturnType<typeof pullModel> {
  const stop = new AbortController();
  const onSigint = () => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
  };
  process.on('SIGINT', onSigint);
  const tty = process.stderr.isTTY === true && !args.json;
  let lastLine = 0;
  const onProgress = (p: PullProgress) => {
    if (tty) {
      process.stderr.write(`\r\u001b[K${progressBar(p, process.stderr.columns || 80)}`);
      return;
    }
    const now = Date.now();
    const done = p.total !== null && p.received >= p.total;
    if (now - lastLine >= 5000 || done) {
      lastLine = now;
      out.error(progressLine(p));
    }
  };
  try {
    return await pullModel({
      ref,
      toDir: path.resolve(args.to ?? home.modelsDir),
      ...(args.sha256 !== undefined ? { sha256: args.sha256 } : {}),
      env: process.env,
      signal: stop.signal,
      onProgress,
      onNotice: (line) => {
        if (tty) process.stderr.write('\r\u001b[K');
        out.error(line);
      },
    });
  } finally {
    process.off('SIGINT', onSigint);
    if (tty) process.stderr.write('\r\u001b[K');
  }
}

/** The `models--OWNER--NAME` folder of a hub-cache path, if it is in one. */
function hubRepoOf(file: string, hubRoot: string): string | undefined {
  const rel = path.relative(hubRoot, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  const top = rel.split(path.sep)[0];
  return top?.startsWith('models--') ? path.join(hubRoot, top) : undefined;
}

/** Only a GGUF model file (or a link to one) is ever removed: a name ending in .gguf and the magic bytes. */
function checkRemovable(file: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new UserError(`${file} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!st.isFile() || !/\.gguf$/i.test(file)) {
    throw new UserError(
      `not removed: ${file} is not a .gguf model file`,
      ExitCode.general,
      'models rm removes GGUF models only',
    );
  }
  const head = Buffer.alloc(4);
  try {
    const fd = openRegular(file);
    try {
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new UserError(`${file} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (head.toString('latin1') !== 'GGUF') {
    throw new UserError(
      `not removed: ${file} is not a GGUF file (no GGUF magic bytes)`,
      ExitCode.general,
      'models rm removes GGUF models only',
    );
  }
}

/** `models rm PATH|NAME`: refuses a model a running instance uses; asks on a terminal unless --yes. */
export async function modelsRm(ctx: Context, spec: string, yes: boolean, out: Out): Promise<number> {
  const users = modelUsers(ctx);
  const file = await resolveModel(ctx, spec, users);
  const files = modelFiles(file);
  for (const f of files) if (fs.existsSync(f)) checkRemovable(f);
  // Any shard names the whole model: who uses its first shard uses all of them.
  const used = [...new Map(files.flatMap((f) => usersOf(users, f)).map((u) => [u.name, u])).values()];
  const running = used.filter((u) => u.running);
  if (running.length > 0) {
    throw new UserError(
      `${file} is in use by running instance${running.length > 1 ? 's' : ''} ${running.map((u) => u.name).join(', ')}`,
      ExitCode.general,
      `stop ${running.length > 1 ? 'them' : 'it'} first ("${orchCommand(ctx.home, `down ${running.map((u) => u.name).join(' ')}`)}")`,
    );
  }
  const size = files.reduce((a, f) => a + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
  const what = `${files.length > 1 ? `${files.length} files of ` : ''}${file} (${formatSize(size)})`;
  if (!yes) {
    if (!process.stdin.isTTY) {
      throw new UserError(`not removed: ${what} (no terminal to ask on)`, ExitCode.general, 'add --yes to remove it');
    }
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
    const note = used.length ? ` (configured for ${used.map((u) => u.name).join(', ')})` : '';
    const answer = await rl.question(`remove ${what}${note}? [y/N] `).finally(() => rl.close());
    if (!/^y(es)?$/i.test(answer.trim())) {
      out.log('nothing removed');
      return 1;
    }
  }
  const hubRoot = modelRoots(ctx.home.modelsDir, process.env).find((r) => r.source === 'hf')?.dir;
  for (const f of files) {
    const real = realOf(f);
    try {
      fs.rmSync(f, { force: true });
      // A hub snapshot entry is a link to its repo's blob: the blob goes too, or the bytes stay.
      // Any other link is removed as a link; what it points to is not ours to delete.
      const repo = hubRoot ? hubRepoOf(path.resolve(f), hubRoot) : undefined;
      if (repo && real !== path.resolve(f) && !path.relative(path.join(repo, 'blobs'), real).startsWith('..')) {
        fs.rmSync(real, { force: true });
      }
    } catch (e) {
      throw new UserError(`could not remove ${f}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  out.log(`removed ${what}`);
  for (const u of used)
    out.error(`warning: instance ${u.name} is configured with it (model.path); "up ${u.name}" will fail`);
  return 0;
}
