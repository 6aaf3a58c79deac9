import type { InstanceSnapshot } from '../engine/snapshot.js';
import { formatUptime, gpuText, healthText, orDash, stateText } from '../format.js';

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
    stateText(i, 1),
    healthText(i),
    orDash(i.pid),
    orDash(i.port),
    i.backend ?? '-',
    gpuText(i),
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
  const table = renderTextTable(TABLE_COLUMNS, list.map(tableRow));
  // A config problem is not always visible in the table (a running server keeps its config).
  const notes = list
    .filter((i) => i.config_error !== null)
    .map((i) =>
      i.state === 'invalid'
        ? `${i.name}: config problem: ${i.config_error}`
        : `${i.name}: config problem (the ${i.state} server keeps the config it was started with): ${i.config_error}`,
    );
  return notes.length > 0 ? `${table}\n\n${notes.join('\n')}` : table;
}
