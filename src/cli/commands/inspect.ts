import fs from 'node:fs';
import { loadConfigFile, loadInstance, resolveModelPath } from '../../config/load.js';
import { cachedLoader } from '../../config/cached.js';
import { resolveServerBinary } from '../../config/binary.js';
import { buildServerCommand, maskedCommand } from '../../engine/command.js';
import { snapshotAll, snapshotInstance, type InstanceSnapshot } from '../../engine/snapshot.js';
import { instanceLogDir } from '../../domain/home.js';
import { followLog } from '../../logs/follow.js';
import { lastLines, logFile, type LogStream } from '../../logs/tail.js';
import type { EventRow } from '../../store/store.js';
import type { Context } from '../context.js';
import { renderTextTable } from '../format.js';
import { formatBytes, formatRate, healthText, slotsText, stateText } from '../../format/text.js';
import { benchSummary, sparkline } from '../../format/metrics.js';
import type { GpuSample, LoadFacts } from '../../domain/gpu.js';
import { attributeGpus, currentGpuSample, instanceGpuPids, vramHistory } from '../../engine/gpus.js';
import { readNsPids } from '../../platform/proc.js';
import { NotRegularFileError } from '../../platform/regular-file.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { bytesText, type MemoryComparison } from '../../engine/memory-calibration.js';
import type { Out } from '../output.js';
import { terminalSafe } from '../../domain/sanitize.js';

function requireKnown(ctx: Context, name: string, gpu?: GpuSample): InstanceSnapshot {
  // loadInstance gives the exit-2 "unknown instance" error with the list of known names.
  if (!fs.existsSync(`${ctx.home.instancesDir}/${name}/config.json`) && !ctx.store.getRuntime(name))
    loadInstance(ctx.home, name);
  return snapshotInstance(ctx.sources(cachedLoader(ctx.store, loadConfigFile), gpu), name, Date.now());
}

function loadFactsOf(json: string | null | undefined): LoadFacts | null {
  try {
    return json ? (JSON.parse(json) as LoadFacts) : null;
  } catch {
    return null;
  }
}

/** describe's `memory`: the keeper's comparison of the run's estimate with its buffers and the tool's figure. */
export type DescribeMemory = Omit<MemoryComparison, 'measured_at'> & { measured_at: string | null };

function memoryOf(json: string | null | undefined): DescribeMemory | null {
  try {
    const m = json ? (JSON.parse(json) as MemoryComparison) : null;
    return m ? { ...m, measured_at: m.measured_at === null ? null : new Date(m.measured_at).toISOString() } : null;
  } catch {
    return null;
  }
}

/** The estimate against this run, per GPU (and the host's share), for describe's text. */
export function memoryLines(m: DescribeMemory): string[] {
  const out: string[] = [];
  const pct = (est: number, real: number) => (est > 0 ? `${Math.round(((real - est) / est) * 100)}%` : '');
  for (const d of m.per_device) {
    const figures = [
      `estimated ${bytesText(d.estimated_bytes)} (${bytesText(d.estimated_runtime_bytes)} of it runtime)`,
      `loaded ${bytesText(d.loaded_bytes)}`,
    ];
    if (d.measured_bytes !== null && d.runtime_bytes !== null) {
      figures.push(`measured ${bytesText(d.measured_bytes)} (${bytesText(d.runtime_bytes)} outside the buffers)`);
    }
    const real = d.measured_bytes ?? d.loaded_bytes + d.estimated_runtime_bytes;
    const verdict = d.differs ? `differs: ${pct(d.estimated_bytes, real)} against the estimate` : 'as estimated';
    const label = `${d.device}${d.gpu !== null ? ` (GPU ${d.gpu})` : ''}`;
    out.push(`  ${label.padEnd(14)} ${figures.join(', ')}: ${verdict}`);
  }
  if (m.host) {
    out.push(
      `  ${'host'.padEnd(14)} estimated ${bytesText(m.host.estimated_bytes)}, loaded ${bytesText(m.host.loaded_bytes)}`,
    );
  }
  if (m.preflight_bytes !== null) {
    const basis = m.measured_bytes !== null ? 'the measured figure' : 'the buffers plus the runtime allowance';
    out.push(
      `  the next preflight of this model with these flags counts ${bytesText(m.preflight_bytes)} on the GPUs (${basis})`,
    );
  }
  return out;
}

function formatEvent(e: EventRow): string {
  const t = new Date(e.ts).toISOString().replace('T', ' ').slice(0, 23);
  return `${t}  ${e.level.padEnd(5)}  ${(e.instance_name ?? '-').padEnd(12)}  ${e.event_type.padEnd(13)}  ${e.message}`;
}

/** How far back describe's sparklines go. */
export const SERVING_WINDOW_MS = 10 * 60_000;

function configOf(ctx: Context, name: string) {
  try {
    return loadInstance(ctx.home, name).config;
  } catch {
    return undefined;
  }
}

/** What the server served over the window (the keeper's scrapes) and its GPU memory (the daemon's samples). */
function servingHistory(ctx: Context, name: string, pid: number | null, gpu: GpuSample | undefined, now: number) {
  const since = now - SERVING_WINDOW_MS;
  const metrics = ctx.store.metricsSince(name, since);
  let vram: Array<{ ts: number; v: number | null }> = [];
  if (gpu && pid !== null) {
    const servers = ctx.store
      .listRuntime()
      .filter((r) => r.pid !== null)
      .map((r) => ({ name: r.name, pid: r.pid as number }));
    const pids = instanceGpuPids(attributeGpus(gpu, servers, { procs: ctx.deps.procs, nsPids: readNsPids }), name);
    vram = vramHistory(ctx.store.gpuSamplesSince(since), pids);
  }
  return { since, metrics, vram };
}

/** `gpu`: the rig's GPUs at this moment, for the instance's VRAM and GPU warnings. */
export function describeData(ctx: Context, name: string, gpu?: GpuSample) {
  const snap = requireKnown(ctx, name, gpu);
  const now = Date.now();
  const row = ctx.store.getRuntime(name);
  let command: { argv: string[]; env: Record<string, string> } | null = null;
  let commandError: string | null = null;
  try {
    const inst = loadInstance(ctx.home, name);
    const bin = resolveServerBinary(ctx.home, inst.config, process.env);
    command = maskedCommand(
      buildServerCommand({
        name,
        config: inst.config,
        binary: bin.path ?? '(llama-server not found)',
        modelPath: resolveModelPath(ctx.home, inst.config),
        env: process.env,
      }),
    );
  } catch (e) {
    commandError = e instanceof Error ? e.message : String(e);
  }
  let stderrTail: string[] = [];
  try {
    stderrTail = row?.stderr_tail ? (JSON.parse(row.stderr_tail) as string[]) : [];
  } catch {
    stderrTail = [];
  }
  return {
    ...snap,
    config_path: `${ctx.home.instancesDir}/${name}/config.json`,
    log_dir: instanceLogDir(ctx.home, name),
    command,
    command_error: commandError,
    restart_attempts: row?.restart_attempts ?? 0,
    next_restart_at: row?.next_restart_at ? new Date(row.next_restart_at).toISOString() : null,
    last_health_ok_at: row?.last_health_ok_at ? new Date(row.last_health_ok_at).toISOString() : null,
    health_failures: row?.health_failures ?? 0,
    stderr_tail: stderrTail,
    /** What the current run's server loaded where (keeper/load-facts.ts); null when none runs. */
    load: snap.pid !== null ? loadFactsOf(row?.load_facts) : null,
    /**
     * The run's memory against the estimate (engine/memory-calibration.ts MemoryComparison): per GPU
     * the estimate, the server's buffers and the vendor tool's figure, and whether they differ by
     * more than 10 % or 512 MiB; null until the keeper compared them (once the server is healthy).
     */
    memory: snap.pid !== null ? memoryOf(row?.memory) : null,
    /** The config turns the scrape off. */
    metrics_off: configOf(ctx, name)?.metrics === false,
    /** The keeper's scrapes and the GPU memory over the last 10 minutes (the sparklines). */
    serving_history: servingHistory(ctx, name, snap.pid, gpu, now),
    /** The newest `bench` result (domain/metrics.ts BenchResult), or null. */
    last_bench: ctx.store.lastBench(name) ?? null,
    recent_events: ctx.store.listEvents(name, 15).map((e) => ({
      ts: new Date(e.ts).toISOString(),
      level: e.level,
      type: e.event_type,
      message: e.message,
    })),
    recent_health: ctx.store.listHealth(name, 10).map((h) => ({
      ts: new Date(h.ts).toISOString(),
      result: h.result,
      latency_ms: h.latency_ms === null ? null : Math.round(h.latency_ms * 10) / 10,
      detail: h.detail,
    })),
  };
}

export async function describeCommand(ctx: Context, name: string, json: boolean, out: Out): Promise<number> {
  const d = describeData(ctx, name, await currentGpuSample(ctx.store, process.env, Date.now()));
  out.log(json ? JSON.stringify(describeJson(d), null, 2) : describeLines(d).join('\n'));
  return 0;
}

/** `describe --json`: times as ISO 8601 like every other field. */
export function describeJson(d: ReturnType<typeof describeData>) {
  const iso = (ms: number) => new Date(ms).toISOString();
  const h = d.serving_history;
  return {
    ...d,
    serving_history: {
      since: iso(h.since),
      metrics: h.metrics.map((p) => ({ ...p, ts: iso(p.ts) })),
      vram: h.vram.map((p) => ({ ts: iso(p.ts), bytes: p.v })),
    },
  };
}

/** What the server said it loaded where: offload, context, buffers per device, devices seen. */
export function loadLines(f: LoadFacts): string[] {
  const out: string[] = [];
  const parts = [
    f.offload ? `offloaded ${f.offload.layers}/${f.offload.total} layers to GPU` : 'no layers offloaded to a GPU',
    f.n_ctx !== null ? `context ${f.n_ctx}` : null,
    f.n_slots !== null && f.n_ctx_slot !== null ? `${f.n_slots} slot(s) of ${f.n_ctx_slot}` : null,
    f.loaded ? null : 'still loading',
  ].filter(Boolean);
  out.push(`  ${parts.join(', ')}`);
  const devices = [...new Set(f.buffers.map((b) => b.device))];
  for (const dev of devices) {
    const of = f.buffers.filter((b) => b.device === dev);
    const total = of.reduce((a, b) => a + b.bytes, 0);
    out.push(
      `  ${dev.padEnd(12)} ${formatBytes(total).padStart(6)}  (${of.map((b) => `${b.kind} ${formatBytes(b.bytes)}`).join(', ')})`,
    );
  }
  if (f.fit_projected_bytes !== null) out.push(`  --fit projected ${formatBytes(f.fit_projected_bytes)}`);
  for (const d of f.devices) {
    const mem =
      d.free_bytes !== null
        ? ` (${d.total_bytes !== null ? `${formatBytes(d.total_bytes)}, ` : ''}${formatBytes(d.free_bytes)} free at load)`
        : '';
    out.push(`  device ${d.name}: ${d.description}${mem}`);
  }
  for (const w of f.warnings) out.push(`  warning: ${w}`);
  return out;
}

/** What the server serves now, and sparklines of the last 10 minutes. */
function servingLines(d: ReturnType<typeof describeData>): string[] {
  const h = d.serving_history;
  if (d.metrics_off) return ['', 'Serving: not read ("metrics": false in the config)'];
  if (d.metrics_at === null && h.metrics.length === 0 && h.vram.length === 0) return [];
  const out = ['', 'Serving (last 10 min):'];
  if (d.metrics_at !== null) {
    const parts = [
      `${formatRate(d.tokens_per_s)} tok/s generated, ${formatRate(d.prompt_tokens_per_s)} prompt`,
      d.slots_total !== null ? `slots ${slotsText(d)} busy` : null,
      d.requests_processing !== null
        ? `requests ${d.requests_processing} processing, ${d.requests_deferred ?? 0} deferred`
        : null,
      d.ctx_size !== null ? `context ${d.ctx_size} per slot` : null,
      d.kv_cache_usage !== null ? `KV cache ${Math.round(d.kv_cache_usage * 100)}% used` : null,
    ].filter(Boolean);
    out.push(`  now          ${parts.join('; ')}`);
  }
  const to = h.since + SERVING_WINDOW_MS;
  const width = 40;
  if (h.metrics.length) {
    const gen = sparkline(
      h.metrics.map((p) => ({ ts: p.ts, v: p.tokens_per_s })),
      h.since,
      to,
      width,
    );
    out.push(`  tokens/s     ${gen.line}  max ${formatRate(gen.max)}`);
    const req = sparkline(
      h.metrics.map((p) => ({
        ts: p.ts,
        v: p.requests_processing === null ? null : p.requests_processing + (p.requests_deferred ?? 0),
      })),
      h.since,
      to,
      width,
    );
    out.push(`  requests     ${req.line}  max ${Math.round(req.max * 10) / 10}`);
  }
  if (h.vram.length) {
    const vram = sparkline(h.vram, h.since, to, width);
    out.push(`  GPU memory   ${vram.line}  max ${formatBytes(vram.max)}`);
  }
  return out;
}

export function describeLines(d: ReturnType<typeof describeData>): string[] {
  const lines: string[] = [];
  const kv = (k: string, v: string | number | null | undefined) => lines.push(`${(k + ':').padEnd(16)} ${v ?? '-'}`);
  kv('Name', d.name);
  kv('Config', d.config_path);
  if (d.config_error) kv('Config error', d.config_error);
  kv('State', stateText(d, 1));
  kv('Health', healthText(d) + (d.health_latency_ms !== null ? ` (${d.health_latency_ms} ms)` : ''));
  kv('Server pid', d.pid);
  kv('Keeper pid', d.keeper_pid);
  kv('Listen', d.host && d.port ? `${d.host}:${d.port}` : null);
  kv('Backend', `${d.backend ?? '-'}${d.gpus.length ? ` (devices ${d.gpus.join(',')})` : ''}`);
  kv('Model', d.model_path);
  kv('Started', d.started_at);
  kv('Uptime', d.uptime_s === null ? null : `${d.uptime_s} s`);
  kv('Restarts', `${d.restarts} total, ${d.restart_attempts} since last stable run`);
  if (d.next_restart_at) kv('Next restart', `${d.next_restart_at} (in ${d.next_restart_in_s} s)`);
  kv('Last health ok', d.last_health_ok_at);
  if (d.last_exit)
    kv(
      'Last exit',
      d.last_exit.signal
        ? `signal ${d.last_exit.signal} at ${d.last_exit.at}`
        : d.last_exit.code !== null
          ? `code ${d.last_exit.code} at ${d.last_exit.at}`
          : `status unknown (the server was not the keeper's child) at ${d.last_exit.at}`,
    );
  if (d.last_error) kv('Last error', d.last_error);
  if (d.vram_bytes !== null)
    kv('GPU memory', `${formatBytes(d.vram_bytes)}${d.on_gpus.length ? ` on GPU ${d.on_gpus.join(', ')}` : ''}`);
  for (const w of d.warnings) kv('Warning', w);
  const m = d.memory;
  if (m && m.estimated_bytes !== null && m.loaded_bytes !== null) {
    const parts = [`estimated ${bytesText(m.estimated_bytes)}`, `loaded ${bytesText(m.loaded_bytes)}`];
    if (m.measured_bytes !== null) parts.push(`measured ${bytesText(m.measured_bytes)}`);
    kv('Memory fit', `${parts.join(', ')}${m.differs ? ' (differs from the estimate)' : ''}`);
  }
  kv('Logs', d.log_dir);
  lines.push(...servingLines(d));
  if (d.last_bench) kv('Last bench', benchSummary(d.last_bench));
  if (d.load && (d.load.buffers.length || d.load.offload || d.load.n_ctx !== null || d.load.warnings.length)) {
    lines.push('', "Loaded (from the server's log):", ...loadLines(d.load));
  }
  if (d.memory && (d.memory.per_device.length || d.memory.host)) {
    lines.push('', 'Memory (estimate / server buffers / GPU tool):', ...memoryLines(d.memory));
  }
  if (d.command) {
    lines.push('', 'Command:', '  ' + d.command.argv.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(' '));
    const env = Object.entries(d.command.env);
    if (env.length) lines.push('Environment:', ...env.map(([k, v]) => `  ${k}=${v}`));
  } else if (d.command_error) {
    lines.push('', `Command: cannot be built: ${d.command_error}`);
  }
  if (d.stderr_tail.length) {
    lines.push('', 'Last stderr lines:', ...d.stderr_tail.map((l) => '  ' + terminalSafe(l, true)));
  }
  if (d.recent_events.length)
    lines.push(
      '',
      'Recent events:',
      ...d.recent_events.map((e) => `  ${e.ts}  ${e.level.padEnd(5)}  ${e.type.padEnd(13)}  ${e.message}`),
    );
  if (d.recent_health.length)
    lines.push(
      '',
      'Recent health:',
      ...d.recent_health.map((h) => `  ${h.ts}  ${h.result.padEnd(11)}  ${h.latency_ms ?? '-'} ms  ${h.detail ?? ''}`),
    );
  return lines;
}

export function eventsCommand(ctx: Context, name: string | undefined, n: number, json: boolean, out: Out): number {
  if (name) requireKnown(ctx, name);
  const events = ctx.store.listEvents(name, n);
  if (json) {
    out.log(
      JSON.stringify(
        events.map((e) => ({
          ...e,
          ts: new Date(e.ts).toISOString(),
          meta: e.meta_json ? (JSON.parse(e.meta_json) as unknown) : null,
          meta_json: undefined,
        })),
        null,
        2,
      ),
    );
  } else {
    out.log(events.length ? events.map(formatEvent).join('\n') : 'no events');
  }
  return 0;
}

export function healthCommand(ctx: Context, names: string[], all: boolean, json: boolean, out: Out): number {
  const list =
    all || names.length === 0
      ? snapshotAll(ctx.sources(cachedLoader(ctx.store, loadConfigFile)), Date.now())
      : names.map((n) => requireKnown(ctx, n));
  const rows = list.map((s) => {
    const row = ctx.store.getRuntime(s.name);
    return {
      name: s.name,
      state: s.state,
      // One of the documented values, or null when no server runs (as in ps --json); state says why.
      health: s.health,
      ok: s.health === 'ok',
      latency_ms: s.health_latency_ms,
      consecutive_failures: row?.health_failures ?? 0,
      last_ok_at: row?.last_health_ok_at ? new Date(row.last_health_ok_at).toISOString() : null,
      reason:
        s.health === 'ok' ? null : (s.health_detail ?? s.last_error ?? (s.state === 'stopped' ? 'not running' : null)),
    };
  });
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
