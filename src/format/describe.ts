import type { LoadFacts } from '../domain/gpu.js';
import { terminalSafe } from '../domain/sanitize.js';
import { bytesText, formatBytes } from '../domain/units.js';
import { SERVING_WINDOW_MS, type DescribeMemory, type InstanceDetails } from '../app/describe.js';
import { formatRate, healthText, slotsText, stateText } from './text.js';
import { benchSummary, sparkline } from './metrics.js';

/** `describe`'s text (also the dashboard's details pane) and the events' lines. */

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
function servingLines(d: InstanceDetails): string[] {
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

export function describeLines(d: InstanceDetails): string[] {
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

/** One event as `events` prints it. */
export function formatEvent(e: {
  ts: number;
  level: string;
  instance_name: string | null;
  event_type: string;
  message: string;
}): string {
  const t = new Date(e.ts).toISOString().replace('T', ' ').slice(0, 23);
  return `${t}  ${e.level.padEnd(5)}  ${(e.instance_name ?? '-').padEnd(12)}  ${e.event_type.padEnd(13)}  ${e.message}`;
}
