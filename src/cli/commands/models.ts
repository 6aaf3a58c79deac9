import path from 'node:path';
import readline from 'node:readline/promises';
import { ExitCode, UserError } from '../../domain/errors.js';
import { orchCommand, type Home } from '../../domain/home.js';
import { pullModel, type PullProgress } from '../../models/pull.js';
import { removeModelFiles } from '../../models/remove.js';
import type { Context } from '../../app/context.js';
import { modelInfo, modelInfoJson, type InfoSettings } from '../../app/model-info.js';
import { listModels, modelJson, planRemoval } from '../../app/models.js';
import { displayPath, modelInfoLines, modelsTable } from '../../format/models.js';
import { sizeText } from '../../domain/units.js';
import { progressBar, progressLine } from '../../format/progress.js';
import type { Out } from '../output.js';

/** `models list|info|pull|rm`: the options parsed, the output printed (app/models.ts and app/model-info.ts answer). */

/** `models list`: every GGUF under the home's models/, the instances' models and the download caches. */
export async function modelsList(ctx: Context, json: boolean, out: Out): Promise<number> {
  const { models, roots } = await listModels(ctx);
  if (json) {
    out.log(JSON.stringify(models.map(modelJson), null, 2));
    return 0;
  }
  if (models.length === 0) {
    out.log(
      `no GGUF models found (looked in ${roots.join(', ')}); "${orchCommand(ctx.home, 'models pull REPO:QUANT')}" downloads one`,
    );
    return 0;
  }
  out.log(modelsTable(ctx.home, models));
  for (const { model: m } of models) if (m.error) out.error(`warning: ${m.error}`);
  out.log(`\n${models.length} model${models.length === 1 ? '' : 's'}; * = running`);
  return 0;
}

export interface InfoArgs extends InfoSettings {
  json: boolean;
}

/** `models info PATH|NAME`: the header, who uses it, and the memory estimate for the given settings. */
export async function modelsInfo(ctx: Context, spec: string, args: InfoArgs, out: Out): Promise<number> {
  const m = await modelInfo(ctx, spec, args);
  if (args.json) {
    out.log(JSON.stringify(modelInfoJson(m), null, 2));
    return 0;
  }
  for (const line of modelInfoLines(m)) out.log(line);
  if (m.projection && !m.projection.ok) out.error(`warning: no projection from llama.cpp: ${m.projection.error}`);
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
      : `${sizeText(f.bytes)}${f.resumedFrom ? `, resumed at ${sizeText(f.resumedFrom)}` : ''}`;
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

/** `models rm PATH|NAME`: refuses a model a running instance uses; asks on a terminal unless --yes. */
export async function modelsRm(ctx: Context, spec: string, yes: boolean, out: Out): Promise<number> {
  const { file, files, bytes, used } = await planRemoval(ctx, spec);
  const what = `${files.length > 1 ? `${files.length} files of ` : ''}${file} (${sizeText(bytes)})`;
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
  removeModelFiles(files, ctx.home.modelsDir, process.env);
  out.log(`removed ${what}`);
  for (const u of used)
    out.error(`warning: instance ${u.name} is configured with it (model.path); "up ${u.name}" will fail`);
  return 0;
}
