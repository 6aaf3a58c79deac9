import type { Command } from '@commander-js/extra-typings';
import { UserError } from '../../domain/errors.js';
import { resolveHome } from '../../domain/home.js';
import { CACHE_TYPE_BYTES } from '../../models/estimate.js';
import { stdOut } from '../output.js';
import { homeOf, parseCount, positive, setExit, withContext } from './support.js';

const isOnOff = (v: string): v is 'on' | 'off' => v === 'on' || v === 'off';

/** `models list|info|pull|rm`. */
export function addModelCommands(program: Command): void {
  const models = program
    .command('models')
    .description('GGUF models: list what is on disk, read a header and its memory estimate, download, remove');
  models
    .command('list')
    .description("every GGUF under the home's models/, the instances' models, the Hugging Face and llama.cpp caches")
    .option('--json', 'one object per model, in an array (README)')
    .action(async (opts, cmd) => {
      const { modelsList } = await import('../commands/models.js');
      setExit(await withContext(homeOf(cmd), (ctx) => modelsList(ctx, opts.json ?? false, stdOut)));
    });
  models
    .command('info <model>')
    .description('a model (path, file name, or instance) : its GGUF header and memory estimate')
    .option(
      '--ctx <n>',
      "context size (-c) to estimate for [the instance's, else the trained context]",
      positive('--ctx'),
    )
    .option('--parallel <n>', 'slots (-np) [auto: 4, sharing one cache]', positive('--parallel'))
    .option('--ngl <n>', 'layers on the GPUs (-ngl) [all when --gpus]', parseCount)
    .option('--gpus <n>', "GPUs to split across [the instance's; 0 for a model]", parseCount)
    .option('--cache-type <type>', 'KV cache type, K and V (f16, q8_0, q4_0, ...) [f16]')
    .option('--cache-type-k <type>', 'K cache type')
    .option('--cache-type-v <type>', 'V cache type')
    .option('--flash-attn <on|off>', "flash attention [on, as llama-server's auto on CPU/CUDA/Metal/Vulkan]")
    .option('--json', 'the header and the estimate as one object (README)')
    .action(async (spec, opts, cmd) => {
      const flashAttn = opts.flashAttn;
      if (flashAttn !== undefined && !isOnOff(flashAttn)) {
        throw new UserError(`--flash-attn expects on or off, got "${flashAttn}"`);
      }
      for (const t of [opts.cacheType, opts.cacheTypeK, opts.cacheTypeV]) {
        if (t !== undefined && !(t.toLowerCase() in CACHE_TYPE_BYTES)) {
          throw new UserError(`unknown KV cache type "${t}": use one of ${Object.keys(CACHE_TYPE_BYTES).join(', ')}`);
        }
      }
      const { modelsInfo } = await import('../commands/models.js');
      const args = { ...opts, flashAttn, json: opts.json ?? false };
      setExit(await withContext(homeOf(cmd), (ctx) => modelsInfo(ctx, spec, args, stdOut)));
    });
  models
    .command('pull <ref>')
    .description('download REPO[:QUANT], REPO/FILE.gguf or a URL: progress, resume, sha256 check')
    .option('--to <dir>', "where to put it [the home's models/]")
    .option('--sha256 <hex>', "expected sha256 (else the hub's LFS hash is checked)")
    .option('--json', '{"path", "files"} when done')
    .action(async (ref, opts, cmd) => {
      const { modelsPull } = await import('../commands/models.js');
      setExit(await modelsPull(resolveHome(homeOf(cmd)), ref, { ...opts, json: opts.json ?? false }, stdOut));
    });
  models
    .command('rm <model>')
    .description('remove a model (all its shards); refuses one a running instance uses')
    .option('-y, --yes', 'do not ask')
    .action(async (spec, opts, cmd) => {
      const { modelsRm } = await import('../commands/models.js');
      setExit(await withContext(homeOf(cmd), (ctx) => modelsRm(ctx, spec, opts.yes ?? false, stdOut)));
    });
}
