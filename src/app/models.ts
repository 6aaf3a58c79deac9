import fs from 'node:fs';
import path from 'node:path';
import { loadAllConfigs, resolveModelPath } from '../config/load.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { ggufCacheFile, orchCommand } from '../domain/home.js';
import { keeperAlive, serverAlive } from '../engine/identity.js';
import { startedConfig } from '../engine/started-config.js';
import { modelFiles } from '../models/gguf.js';
import { checkRemovable } from '../models/remove.js';
import { modelRoots, scanModels, type FoundModel } from '../models/scan.js';
import type { Context } from './context.js';

/**
 * The models on this machine and the instances that use them (`models list`, `models rm`, and the
 * model `models info` reads): found on disk, named by path, instance or file name.
 */

/** An instance that names a model file, and whether its server runs now. */
export interface ModelUser {
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
export function modelUsers(ctx: Context): ModelUser[] {
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

export const usersOf = (users: ModelUser[], file: string) => {
  const real = realOf(file);
  return users.filter((u) => u.real === real);
};

async function scan(ctx: Context, users: ModelUser[]): Promise<FoundModel[]> {
  return scanModels(
    modelRoots(ctx.home.modelsDir, process.env),
    users.map((u) => u.path),
    ggufCacheFile(ctx.home),
  );
}

/** A model found, and the instances that use it. */
export interface ListedModel {
  model: FoundModel;
  usedBy: ModelUser[];
}

/**
 * `models list`: every GGUF under the home's models/, the instances' models and the download caches,
 * by source then path; `roots` are the folders searched.
 */
export async function listModels(ctx: Context): Promise<{ models: ListedModel[]; roots: string[] }> {
  const users = modelUsers(ctx);
  const models = await scan(ctx, users);
  models.sort((a, b) => a.source.localeCompare(b.source) || a.path.localeCompare(b.path));
  return {
    models: models.map((m) => ({ model: m, usedBy: usersOf(users, m.path) })),
    roots: modelRoots(ctx.home.modelsDir, process.env).map((r) => r.dir),
  };
}

/** One model of `models list --json` (README). */
export function modelJson({ model: m, usedBy }: ListedModel) {
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
    used_by: usedBy.map((u) => ({ name: u.name, running: u.running })),
    error: m.error,
  };
}

/**
 * A model given as a path (to the cwd, then the home), as an instance's name (its model), or as
 * the file name of a model `models list` finds (with or without .gguf).
 */
export async function resolveModel(ctx: Context, spec: string, users: ModelUser[]): Promise<string> {
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

/** What `models rm` would remove: the model's files (all its shards), their bytes, who is configured with it. */
export interface Removal {
  file: string;
  files: string[];
  bytes: number;
  used: ModelUser[];
}

/**
 * `models rm PATH|NAME` before anything is removed: every file must be a GGUF model (checkRemovable),
 * and a model a running instance uses is refused.
 */
export async function planRemoval(ctx: Context, spec: string): Promise<Removal> {
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
  const bytes = files.reduce((a, f) => a + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
  return { file, files, bytes, used };
}
