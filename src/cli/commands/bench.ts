import { cachedLoader } from '../../config/cached.js';
import { loadConfigFile, loadInstance } from '../../config/load.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { orchCommand } from '../../domain/home.js';
import type { BenchResult } from '../../domain/metrics.js';
import { snapshotInstance } from '../../app/snapshot.js';
import { benchLines } from '../../format/metrics.js';
import { runBench, slotContext } from '../../metrics/bench.js';
import type { Context } from '../../app/context.js';
import type { Out } from '../output.js';

export interface BenchArgs {
  requests: number;
  concurrency: number;
  promptTokens: number;
  maxTokens: number;
  json: boolean;
}

/** Room the chat template takes around the prompt (role markers, BOS), in tokens. */
const TEMPLATE_TOKENS = 32;

/**
 * `bench NAME`: a load test through the instance's own OpenAI-compatible endpoint (metrics/bench.ts).
 * A stopped, starting or unhealthy instance is refused at once (exit 7), never waited on. Ctrl-C
 * ends the run and prints what completed (exit 130). The result is kept; `describe` shows the last.
 */
export async function benchCommand(ctx: Context, name: string, args: BenchArgs, out: Out): Promise<number> {
  const inst = loadInstance(ctx.home, name); // exit 2 for an unknown instance, 1 for a bad config
  const { config } = inst;
  const snap = snapshotInstance(ctx.sources(cachedLoader(ctx.store, loadConfigFile)), name, Date.now());
  const cmd = (args: string) => `"${orchCommand(ctx.home, args)}"`;
  if (snap.state === 'orphaned') {
    throw new UserError(
      `${name} is not supervised: its server runs but its keeper died (state: orphaned)`,
      ExitCode.notRunning,
      `${cmd(`up ${name} --wait`)} re-attaches a keeper without restarting the server`,
    );
  }
  if (snap.state === 'starting' || (snap.state === 'running' && snap.health === 'loading')) {
    throw new UserError(
      `${name} is still starting (${snap.health_detail ?? snap.health ?? snap.state})`,
      ExitCode.notRunning,
      `${cmd(`up ${name} --wait`)} returns once it is healthy`,
    );
  }
  if (snap.state !== 'running' || snap.pid === null) {
    throw new UserError(
      `${name} is not running (state: ${snap.state})`,
      ExitCode.notRunning,
      `start it with ${cmd(`up ${name} --wait`)}`,
    );
  }
  if (snap.health !== 'ok') {
    const why = snap.health_detail ? `${snap.health}: ${snap.health_detail}` : (snap.health ?? 'not probed yet');
    throw new UserError(`${name} is not healthy (${why})`, ExitCode.notRunning, `see ${cmd(`describe ${name}`)}`);
  }
  let apiKey: string | undefined;
  if (config.server.api_key_env) {
    apiKey = process.env[config.server.api_key_env];
    if (!apiKey) {
      throw new UserError(
        `${name} requires an API key and ${config.server.api_key_env} is not set in this shell`,
        ExitCode.general,
        `export ${config.server.api_key_env}=... as for the server`,
      );
    }
  }
  const target = { host: config.server.host, port: config.server.port, apiKey };
  const ctxSize = await slotContext(target);
  const need = args.promptTokens + args.maxTokens + TEMPLATE_TOKENS;
  if (ctxSize !== null && need > ctxSize) {
    throw new UserError(
      `${args.promptTokens} prompt + ${args.maxTokens} generated tokens (+ ~${TEMPLATE_TOKENS} for the chat template) do not fit the ${ctxSize}-token context of one slot of ${name}`,
      ExitCode.general,
      `lower --prompt-tokens/--max-tokens, or raise model.context_size (a slot holds context_size / server.parallel)`,
    );
  }

  const stop = new AbortController();
  // The first Ctrl-C ends the run and prints what completed; a second one leaves at once.
  const onSigint = () => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
  };
  process.on('SIGINT', onSigint);
  const bar = !args.json && process.stderr.isTTY ? progressBar(args.requests) : undefined;
  let result: BenchResult;
  try {
    result = await runBench({
      instance: name,
      target,
      model: config.model.alias ?? name,
      requests: args.requests,
      concurrency: args.concurrency,
      promptTokens: args.promptTokens,
      maxTokens: args.maxTokens,
      signal: stop.signal,
      onProgress: bar,
    });
  } finally {
    process.off('SIGINT', onSigint);
    if (bar) process.stderr.write('\r\u001b[K');
  }
  out.log(args.json ? JSON.stringify(result, null, 2) : benchLines(result).join('\n'));
  try {
    ctx.store.recordBench(name, result);
  } catch (e) {
    out.error(`the result was not kept (${e instanceof Error ? e.message : String(e)}); it is printed above`);
  }
  if (result.interrupted) return 130;
  return result.errors > 0 ? ExitCode.general : ExitCode.ok;
}

/** `[#####.....] 12/20  1 err  456 tok/s  4.2 s` on stderr, redrawn in place. */
function progressBar(total: number) {
  return (p: { done: number; errors: number; tokens: number; elapsedS: number }) => {
    const width = 24;
    const filled = Math.round((p.done / total) * width);
    const rate = p.elapsedS > 0 ? Math.round(p.tokens / p.elapsedS) : 0;
    const err = p.errors ? `  ${p.errors} err` : '';
    process.stderr.write(
      `\r\u001b[K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${total}${err}  ${rate} tok/s  ${p.elapsedS.toFixed(1)} s`,
    );
  };
}
