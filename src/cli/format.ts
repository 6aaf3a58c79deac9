import type { InstanceSnapshot } from '../engine/snapshot.js';
import { formatUptime } from '../format.js';

export function stateLabel(i: InstanceSnapshot): string {
  if (i.state === 'backoff' && i.next_restart_in_s !== null) return `backoff ${i.next_restart_in_s.toFixed(1)}s`;
  return i.state;
}

export function healthLabel(i: InstanceSnapshot): string {
  if (!i.health) return '-';
  if (i.health === 'ok') return 'ok';
  return i.health_detail ? `${i.health}: ${i.health_detail}` : i.health;
}

export function gpuLabel(i: InstanceSnapshot): string {
  if (i.backend === 'cpu' || i.backend === null) return '-';
  return i.gpus.length ? i.gpus.join(',') : 'all';
}

export const TABLE_COLUMNS = [
  'NAME',
  'STATE',
  'HEALTH',
  'PID',
  'PORT',
  'BACKEND',
  'GPU',
  'MODEL',
  'UPTIME',
  'RESTARTS',
] as const;

export function tableRow(i: InstanceSnapshot): string[] {
  return [
    i.name,
    stateLabel(i),
    healthLabel(i),
    i.pid === null ? '-' : String(i.pid),
    i.port === null ? '-' : String(i.port),
    i.backend ?? '-',
    gpuLabel(i),
    i.model ?? '-',
    formatUptime(i.uptime_s),
    String(i.restarts),
  ];
}

export function renderTextTable(header: readonly string[], rows: string[][], maxCell = 48): string {
  const clip = (s: string) => (s.length > maxCell ? s.slice(0, maxCell - 1) + '…' : s);
  const all = [header.map(String), ...rows.map((r) => r.map(clip))];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function psTable(list: InstanceSnapshot[]): string {
  if (list.length === 0) return 'no instances (add instances/NAME/config.json or run "llama-orch init")';
  return renderTextTable(TABLE_COLUMNS, list.map(tableRow));
}

export { formatUptime };
