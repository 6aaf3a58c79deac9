import type { GpuInfo, GpuProcess } from '../domain/gpu.js';
import { formatBytes } from '../domain/units.js';

/** A bar of `width` cells for a ratio 0..1 (null: unknown, all dots). */
export function bar(ratio: number | null, width: number): string {
  if (width <= 0) return '';
  if (ratio === null || !Number.isFinite(ratio)) return '·'.repeat(width);
  const full = Math.max(0, Math.min(width, Math.round(ratio * width)));
  return '█'.repeat(full) + '░'.repeat(width - full);
}

const pct = (v: number | null) => (v === null ? '-' : `${Math.round(v)}%`);

export function memoryRatio(g: GpuInfo): number | null {
  return g.memory_used_bytes !== null && g.memory_total_bytes ? g.memory_used_bytes / g.memory_total_bytes : null;
}

/** `demo-a 7.9G, other: python3 12.3G (pid 4242)`: what holds the GPU's memory, largest first. */
export function gpuUsers(processes: GpuProcess[]): string {
  const byInstance = new Map<string, number>();
  const foreign: string[] = [];
  for (const p of processes) {
    if (p.instance) byInstance.set(p.instance, (byInstance.get(p.instance) ?? 0) + (p.memory_bytes ?? 0));
    else foreign.push(`other: ${p.command ?? '?'} ${formatBytes(p.memory_bytes)} (pid ${p.pid})`);
  }
  return [...[...byInstance].map(([n, b]) => (b ? `${n} ${formatBytes(b)}` : n)), ...foreign].join(', ');
}

/** The parts of one GPU's line, most important first; a narrow terminal drops from the end. */
export function gpuLineParts(g: GpuInfo, barWidth: number): { fixed: string[]; optional: string[] } {
  // Lost or unreadable: no readings to show; the warning says what the tool printed.
  if (g.state === 'lost' || g.state === 'unreadable') {
    return { fixed: [`GPU ${g.index}`, g.state.toUpperCase()], optional: [] };
  }
  const ratio = memoryRatio(g);
  const mem =
    g.memory_total_bytes !== null
      ? `${formatBytes(g.memory_used_bytes)}/${formatBytes(g.memory_total_bytes)}`
      : formatBytes(g.memory_used_bytes);
  const fixed = [
    `GPU ${g.index}`,
    `util ${barWidth ? bar(g.utilization_pct === null ? null : g.utilization_pct / 100, barWidth) + ' ' : ''}${pct(g.utilization_pct).padStart(4)}`,
    `mem ${barWidth ? bar(ratio, barWidth) + ' ' : ''}${mem}`,
  ];
  const optional = [
    g.temperature_c !== null ? `${Math.round(g.temperature_c)}C` : '',
    g.power_w !== null ? `${Math.round(g.power_w)}${g.power_limit_w ? `/${Math.round(g.power_limit_w)}` : ''}W` : '',
    gpuUsers(g.processes),
    g.name ?? '',
  ].filter(Boolean);
  return { fixed, optional };
}

/** One line per GPU for `--once` and `gpus` (the dashboard's panel draws the same parts). */
export function gpuLines(gpus: GpuInfo[], width: number): string[] {
  return gpus.map((g) => {
    const barWidth = width >= 100 ? 10 : width >= 70 ? 5 : 0;
    const { fixed, optional } = gpuLineParts(g, barWidth);
    let line = fixed.join('  ');
    for (const part of optional) {
      if (line.length + 2 + part.length > width) break;
      line += '  ' + part;
    }
    const warn = g.warnings.length ? `  ! ${g.warnings.join('; ')}` : '';
    return (line + warn).slice(0, Math.max(width, 20));
  });
}
