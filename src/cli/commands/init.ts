import fs from 'node:fs';
import path from 'node:path';
import { formatProblem, parseConfigText, validateName } from '../../config/load.js';
import { checkInstanceEnvironment } from '../../config/lint.js';
import { NO_DEVICE_PROFILES, PROFILES, profileConfig, type Profile } from '../../config/profiles.js';
import { discoverInstanceNames } from '../../config/paths.js';
import { writeInstanceJsonSchema } from '../../config/write-schema.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { instanceConfigPath, orchCommand, resolveHome } from '../../domain/home.js';
import { readGpuInventory } from '../../platform/gpu/inventory.js';
import { readRegularText } from '../../platform/regular-file.js';
import type { Out } from '../output.js';

export interface InitOptions {
  /** One JSON object on stdout instead of the lines (README, "init --json"). */
  json?: boolean;
  profile: string;
  model: string;
  port: string;
  gpu?: string;
  ctx?: string;
}

function parseGpus(spec: string | undefined): Array<number | string> {
  if (!spec) return [];
  return spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** `init NAME`: writes instances/NAME/config.json from a profile; never overwrites; validates first. */
export async function initCommand(
  homeOpt: string | undefined,
  name: string,
  opts: InitOptions,
  out: Out,
): Promise<number> {
  const home = resolveHome(homeOpt);
  const nameProblem = validateName(name);
  if (nameProblem) throw new UserError(nameProblem);
  if (!(PROFILES as readonly string[]).includes(opts.profile)) {
    throw new UserError(`unknown profile "${opts.profile}": use one of ${PROFILES.join(', ')}`);
  }
  const profile = opts.profile as Profile;
  // An error, not a warning: the config would be written without the GPUs asked for.
  if (opts.gpu !== undefined && NO_DEVICE_PROFILES.includes(profile)) {
    throw new UserError(
      `--gpu does not apply to the ${profile} profile: ${profile === 'cpu' ? 'it uses no GPU' : "Metal uses the Mac's one GPU and llama.cpp selects none by index"}`,
      ExitCode.general,
      profile === 'cpu' ? 'drop --gpu, or pick a GPU profile: cuda, vulkan or rocm' : 'drop --gpu',
    );
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new UserError(`--port must be 1-65535, got "${opts.port}"`);
  const ctx = opts.ctx === undefined ? undefined : Number(opts.ctx);
  if (ctx !== undefined && (!Number.isInteger(ctx) || ctx < 1))
    throw new UserError(`--ctx must be a positive whole number, got "${opts.ctx}"`);
  const file = instanceConfigPath(home, name);
  if (fs.existsSync(path.dirname(file))) {
    throw new UserError(
      `instance "${name}" already exists (${file})`,
      ExitCode.general,
      'pick another name, or edit that file',
    );
  }
  let modelArg = opts.model;
  if (modelArg.startsWith('hf:')) {
    // Pulled first (into the home's models/), then written like any local file.
    const { pullWithProgress } = await import('./models.js');
    const pulled = await pullWithProgress(home, modelArg, { json: opts.json ?? false }, out);
    if (!opts.json) out.error(`pulled ${pulled.path}`);
    modelArg = pulled.path;
  }
  const absModel = path.resolve(modelArg);
  // --model is a path typed in a shell: read from the current directory (the config then stores it
  // relative to the home when it lies inside). Said as such, not as the config's home-relative rule.
  if (!fs.existsSync(absModel))
    throw new UserError(
      `not written: model file ${absModel} does not exist (--model ${opts.model} is read from the current directory ${process.cwd()})`,
      ExitCode.general,
      'pass --model with an existing GGUF file',
    );
  const rel = path.relative(home.root, absModel);
  const modelPath = rel.startsWith('..') || path.isAbsolute(rel) ? absModel : rel;
  const config = profileConfig({ profile, modelPath, port, gpus: parseGpus(opts.gpu), ctx });
  const text = JSON.stringify(config, null, 2) + '\n';
  const parsed = parseConfigText(text, file);
  if (!parsed.config) throw new UserError(parsed.problems.map((p) => formatProblem(p)).join('\n'));
  const { problems, warnings } = await checkInstanceEnvironment(
    home,
    { name, file, config: parsed.config },
    { env: process.env, gpuInventory: (b) => readGpuInventory(b, process.env) },
  );
  const modelMissing = problems.find((p) => p.jsonPath === '$.model.path');
  if (modelMissing)
    throw new UserError(
      `not written: ${modelMissing.message}`,
      ExitCode.general,
      'pass --model with an existing GGUF file',
    );
  const badDevice = problems.find((p) => p.jsonPath.startsWith('$.gpu.devices'));
  if (badDevice)
    throw new UserError(
      `not written: ${badDevice.message}`,
      ExitCode.general,
      'pass --gpu with the index or UUID of a GPU of this machine ("llama-orch gpus" lists them)',
    );
  const clash = discoverInstanceNames(home).find((other) => {
    let text = '{}';
    try {
      text = readRegularText(instanceConfigPath(home, other));
    } catch {
      // missing, not a regular file or not UTF-8: no port to clash with
    }
    const r = parseConfigText(text, '');
    return r.config?.server.port === port;
  });
  if (clash)
    throw new UserError(
      `not written: port ${port} is already configured for instance "${clash}"`,
      ExitCode.portCollision,
    );
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { flag: 'wx' });
  // The file the config's "$schema" names (editors read it): written when missing, never replaced.
  const schemaFile = path.resolve(path.dirname(file), String(config.$schema));
  const schemaWritten = !fs.existsSync(schemaFile);
  if (schemaWritten) writeInstanceJsonSchema(schemaFile);
  const notes = [...problems, ...warnings].map((p) => formatProblem(p));
  const start = orchCommand(home, `up ${name}`);
  if (opts.json) {
    // README, "init --json".
    out.log(
      JSON.stringify(
        {
          name,
          file,
          profile,
          schema_written: schemaWritten ? schemaFile : null,
          warnings: notes,
          start_command: start,
        },
        null,
        2,
      ),
    );
    return 0;
  }
  out.log(`wrote ${file} (${profile} profile)`);
  if (schemaWritten) out.log(`wrote ${schemaFile} (the JSON schema its "$schema" names)`);
  for (const n of notes) out.error(`warning: ${n}`);
  out.log(`start it with: ${start}`);
  return 0;
}
