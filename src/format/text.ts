/** Formatting shared by the text output (`ps`, `--once`) and the dashboard's table. */

import { formatBytes } from '../domain/units.js';
import type { InstanceSnapshot } from '../domain/snapshot.js';

/**
 * The dashboard's clock, HH:MM local time: with seconds it would redraw an idle dashboard every tick.
 * Not Intl's toLocaleTimeString: ~0.1 ms a call, and its first call adds ~8 MiB of RSS.
 */
export function clockText(now: number): string {
  const d = new Date(now);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/**
 * Seconds while they matter (the first 10 minutes of a run), then minutes: an uptime that moves
 * every second makes an idle dashboard redraw every tick (bench/BENCHMARKS.md, dashboard idle CPU).
 */
export function formatUptime(s: number | null): string {
  if (s === null) return '-';
  if (s < 60) return `${s}s`;
  if (s < 600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

export function stateText(i: InstanceSnapshot, decimals = 0): string {
  if (i.state === 'backoff' && i.next_restart_in_s !== null) return `backoff ${i.next_restart_in_s.toFixed(decimals)}s`;
  return i.state;
}

/**
 * A probe's latency as the dashboard shows it: nothing below 10 ms (a healthy llama-server answers
 * /health in about a millisecond, and its jitter would redraw the frame on every probe), else to one
 * significant digit: `20ms`, `300ms`, `2s`. The full figure is in `ps --json` and `describe`.
 */
export function latencyText(ms: number | null): string {
  if (ms === null || ms < 10) return '';
  const unit = 10 ** Math.floor(Math.log10(ms));
  const rounded = Math.round(ms / unit) * unit;
  return rounded >= 1000 ? `${Math.round(rounded / 1000)}s` : `${rounded}ms`;
}

export function healthText(i: InstanceSnapshot, opts: { latency?: boolean } = {}): string {
  if (!i.health) return '-';
  if (i.health === 'ok') {
    const latency = opts.latency ? latencyText(i.health_latency_ms) : '';
    return latency ? `ok ${latency}` : 'ok';
  }
  if (i.health === 'loading') return i.health_detail ?? 'loading';
  return i.health_detail ? `${i.health}: ${i.health_detail}` : i.health;
}

/** `1 7.9G`: the GPUs it is on (else the ones it is pinned to, else "all") and its GPU memory. */
export function gpuText(i: InstanceSnapshot): string {
  const vram = i.vram_bytes ? ` ${formatBytes(i.vram_bytes)}` : '';
  if (i.on_gpus.length) return `${i.on_gpus.join(',')}${vram}`;
  if (i.backend === 'cpu' || i.backend === null) return vram ? vram.trim() : '-';
  return `${i.gpus.length ? i.gpus.join(',') : 'all'}${vram}`;
}

/**
 * Text cut to `width` in the middle (`llama-3.1-8b…q4-a`): names that share a long prefix (or a
 * suffix) stay apart, where cutting the end made them print the same.
 */
export function cutMiddle(text: string, width: number): string {
  if (text.length <= width) return text;
  if (width <= 1) return text.slice(0, width);
  const head = Math.ceil((width - 1) / 2);
  return text.slice(0, head) + '…' + text.slice(text.length - (width - 1 - head));
}

export const orDash = (v: number | string | null): string => (v === null ? '-' : String(v));

/** Tokens per second as the table shows it: `-` unknown, `0`, `8.4`, `123`, `12k`. */
export function formatRate(v: number | null): string {
  if (v === null) return '-';
  if (v === 0) return '0';
  if (v < 10) return v.toFixed(1);
  if (v < 10_000) return String(Math.round(v));
  return v < 1e6 ? `${Math.round(v / 1000)}k` : `${(v / 1e6).toFixed(1)}M`;
}

/** Busy/total slots: `1/4`. */
export function slotsText(i: InstanceSnapshot): string {
  return i.slots_total === null ? '-' : `${i.slots_busy ?? '?'}/${i.slots_total}`;
}

/** The daemon's proxy: requests in flight to the instance, and those waiting for it to start after a `+`. */
export function proxyText(i: InstanceSnapshot): string {
  if (i.proxy_in_flight === null) return '-';
  const queued = i.proxy_queued ?? 0;
  return queued > 0 ? `${i.proxy_in_flight}+${queued}` : String(i.proxy_in_flight);
}

/** Requests processing, and deferred (queued for a slot) after a `+`: `2`, `4+3`. */
export function requestsText(i: InstanceSnapshot): string {
  if (i.requests_processing === null) return '-';
  const deferred = i.requests_deferred ?? 0;
  return deferred > 0 ? `${i.requests_processing}+${deferred}` : String(i.requests_processing);
}
