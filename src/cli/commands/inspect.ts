import { instanceLogDir } from '../../domain/home.js';
import { followLog } from '../../logs/follow.js';
import { lastLines, logFile, type LogStream } from '../../logs/tail.js';
import { NotRegularFileError } from '../../platform/regular-file.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { terminalSafe } from '../../domain/sanitize.js';
import type { Context } from '../../app/context.js';
import { describeData, describeJson, requireKnown } from '../../app/describe.js';
import { eventsJson, recentEvents } from '../../app/events.js';
import { currentGpuSample } from '../../app/gpu-source.js';
import { healthRows } from '../../app/health.js';
import { describeLines, formatEvent } from '../../format/describe.js';
import { renderTextTable } from '../../format/table.js';
import type { Out } from '../output.js';

/** describe, events, health and logs: the reads of one instance (or all). */

export async function describeCommand(ctx: Context, name: string, json: boolean, out: Out): Promise<number> {
  const d = describeData(ctx, name, await currentGpuSample(ctx.store, process.env, Date.now()));
  out.log(json ? JSON.stringify(describeJson(d), null, 2) : describeLines(d).join('\n'));
  return 0;
}

export function eventsCommand(ctx: Context, name: string | undefined, n: number, json: boolean, out: Out): number {
  const events = recentEvents(ctx, name, n);
  if (json) out.log(JSON.stringify(eventsJson(events), null, 2));
  else out.log(events.length ? events.map(formatEvent).join('\n') : 'no events');
  return 0;
}

export function healthCommand(ctx: Context, names: string[], all: boolean, json: boolean, out: Out): number {
  const rows = healthRows(ctx, names, all);
  if (json) out.log(JSON.stringify(rows, null, 2));
  else
    out.log(
      renderTextTable(
        ['NAME', 'HEALTH', 'LATENCY', 'FAILURES', 'LAST OK', 'REASON'],
        rows.map((r) => [
          r.name,
          r.health ?? `- (${r.state})`,
          r.latency_ms === null ? '-' : `${r.latency_ms} ms`,
          String(r.consecutive_failures),
          r.last_ok_at ?? '-',
          r.reason ?? '',
        ]),
        80,
      ),
    );
  return rows.every((r) => r.ok) && rows.length > 0 ? 0 : 1;
}

export async function logsCommand(
  ctx: Context,
  name: string,
  opts: { lines: number; follow: boolean; stream: LogStream; json?: boolean },
  out: Out,
  signal?: AbortSignal,
): Promise<number> {
  requireKnown(ctx, name);
  const dir = instanceLogDir(ctx.home, name);
  // --json: JSON lines, {"name", "stream", "line"} each (the server's lines carry their own times).
  const print = opts.json
    ? (l: string) => out.log(JSON.stringify({ name, stream: opts.stream, line: l }))
    : (l: string) => out.log(terminalSafe(l, true)); // the server's colours, no other codes (the file keeps all)
  let last: string[];
  try {
    last = lastLines(dir, opts.stream, opts.lines);
  } catch (e) {
    if (!(e instanceof NotRegularFileError)) throw e;
    throw new UserError(
      `cannot read the log of "${name}": ${e.message}`,
      ExitCode.general,
      'remove it: the keeper writes a new one',
    );
  }
  for (const l of last) print(l);
  if (!opts.follow) return 0;
  const stop = followLog(dir, opts.stream, {
    initial: 0,
    onLines: (lines) => {
      for (const l of lines) print(l);
    },
  });
  process.stderr.write(`following ${logFile(dir, opts.stream)} across rotation (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    signal?.addEventListener('abort', done, { once: true });
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  stop();
  return 0;
}
