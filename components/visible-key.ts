import { clockText, formatUptime, latencyText } from '../src/format/text.js';
import type { DashboardState } from './model.js';

/**
 * What the screen shows: a refresh that changes none of it renders nothing. While someone uses the
 * dashboard every tick redraws (a pane may show times relative to now); idle, only what the table
 * and header show moves it (the clock to the minute, the uptimes as printed) and once a minute.
 */
export function visibleKey(s: DashboardState, tickMs: number, idle: boolean): string {
  const inst = s.instances.map((i) => [
    i.name,
    i.state,
    i.health,
    i.health_detail,
    i.pid,
    i.port,
    i.backend,
    i.gpus.join(','),
    i.model,
    i.started_at, // uptimes move with the tick, not on their own
    i.restarts,
    i.next_restart_in_s === null ? null : Math.round(i.next_restart_in_s),
    i.last_error,
    i.config_error,
    // A probe's latency as printed (below 10 ms not at all, else to one significant digit): its
    // jitter would otherwise redraw the whole frame on nearly every probe of 16 instances.
    latencyText(i.health_latency_ms),
    i.vram_bytes === null ? null : Math.round(i.vram_bytes / 2 ** 26),
    i.warnings.join('|'),
    i.tokens_per_s,
    i.slots_busy,
    i.slots_total,
    i.requests_processing,
    i.requests_deferred,
    i.proxy_in_flight,
    i.proxy_queued,
  ]);
  // GPU readings to the percent and 64 MiB: noise below that would re-render every sample.
  const gpus = s.gpus.map((g) => [
    g.index,
    g.utilization_pct,
    g.memory_used_bytes === null ? null : Math.round(g.memory_used_bytes / 2 ** 26),
    g.temperature_c,
    g.power_w === null ? null : Math.round(g.power_w / 5),
    g.processes.map((p) => `${p.pid}:${p.instance}:${Math.round((p.memory_bytes ?? 0) / 2 ** 26)}`).join(','),
  ]);
  const lastEvent = s.events.length ? s.events[s.events.length - 1]?.id : 0;
  const clock = idle
    ? [clockText(s.now), Math.floor(s.now / 60_000), s.instances.map((i) => formatUptime(i.uptime_s))]
    : Math.floor(s.now / tickMs);
  return JSON.stringify([
    clock,
    s.daemon.running,
    s.daemon.proxy,
    s.error,
    lastEvent,
    inst,
    gpus,
    s.gpuError,
    s.cpuOnly,
  ]);
}
