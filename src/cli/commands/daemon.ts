import type { Context } from '../../app/context.js';
import { runDaemonHere, type DaemonRunOptions } from '../../daemon/compose.js';
import { daemonStatusOf, startDaemon, stopDaemon } from '../../daemon/control.js';
import type { Out } from '../output.js';

export type { DaemonRunOptions };

export async function daemonRun(ctx: Context, opts: DaemonRunOptions, out: Out): Promise<number> {
  await runDaemonHere(ctx, opts);
  out.log('daemon stopped');
  return 0;
}

export async function daemonStart(ctx: Context, opts: DaemonRunOptions, out: Out): Promise<number> {
  const started = await startDaemon(ctx, opts);
  out.log(`daemon started (pid ${started.pid}); log: ${started.log}`);
  if (started.proxy) out.log(`proxy: ${started.proxy} (OpenAI-compatible /v1, REST /api, /metrics)`);
  return 0;
}

export async function daemonStop(ctx: Context, out: Out): Promise<number> {
  out.log(await stopDaemon(ctx));
  return 0;
}

export function daemonStatusCommand(ctx: Context, out: Out, json = false): number {
  const status = daemonStatusOf(ctx);
  if (json) out.log(JSON.stringify(status, null, 2));
  else if (status.running)
    out.log(`daemon running (pid ${status.pid})${status.proxy ? `; proxy ${status.proxy}` : '; no proxy'}`);
  else out.log('daemon not running');
  return status.running ? 0 : 1;
}
