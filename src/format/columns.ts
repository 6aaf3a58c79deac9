import type { InstanceSnapshot } from '../domain/snapshot.js';
import { formatUptime, gpuText, healthText, orDash, stateText } from './text.js';

/**
 * `text`: `ps` and `--once` (scripts and logs: the backoff countdown to a tenth of a second).
 * `live`: the dashboard (it redraws, so whole seconds; health with its latency).
 */
export type ColumnStyle = 'text' | 'live';

export interface Column {
  key: string;
  title: string;
  /** Lower stays longer when the terminal is narrow. */
  priority: number;
  min: number;
  max: number;
  value: (i: InstanceSnapshot, style: ColumnStyle) => string;
}

/** The instance table's columns: one definition for `ps`, `--once` and the dashboard. */
export const COLUMNS: readonly Column[] = [
  { key: 'name', title: 'NAME', priority: 0, min: 6, max: 20, value: (i) => i.name },
  {
    key: 'state',
    title: 'STATE',
    priority: 0,
    min: 7,
    max: 12,
    value: (i, style) => stateText(i, style === 'text' ? 1 : 0),
  },
  {
    key: 'health',
    title: 'HEALTH',
    priority: 1,
    min: 6,
    max: 30,
    value: (i, style) => healthText(i, { latency: style === 'live' }),
  },
  { key: 'pid', title: 'PID', priority: 1, min: 3, max: 8, value: (i) => orDash(i.pid) },
  { key: 'port', title: 'PORT', priority: 2, min: 4, max: 5, value: (i) => orDash(i.port) },
  { key: 'backend', title: 'BACKEND', priority: 5, min: 7, max: 7, value: (i) => i.backend ?? '-' },
  { key: 'gpu', title: 'GPU', priority: 4, min: 3, max: 8, value: (i) => gpuText(i) },
  { key: 'model', title: 'MODEL', priority: 3, min: 5, max: 24, value: (i) => i.model ?? '-' },
  { key: 'uptime', title: 'UPTIME', priority: 2, min: 6, max: 7, value: (i) => formatUptime(i.uptime_s) },
  { key: 'restarts', title: 'RESTARTS', priority: 3, min: 8, max: 8, value: (i) => String(i.restarts) },
];

const GAP = 2;

/** Picks the columns and widths that fit: low-priority columns drop out instead of wrapping. */
export function layoutColumns(rows: InstanceSnapshot[], width: number): Array<Column & { width: number }> {
  const sized = COLUMNS.map((c) => {
    const longest = Math.max(c.title.length, ...rows.map((r) => c.value(r, 'live').length));
    return { ...c, width: Math.max(c.min, Math.min(c.max, longest)) };
  });
  let shown = [...sized];
  const total = (cols: typeof shown) => cols.reduce((a, c) => a + c.width, 0) + GAP * (cols.length - 1) + 2;
  while (total(shown) > width && shown.length > 2) {
    const worst = shown.reduce((a, c) => (c.priority >= a.priority ? c : a));
    if (worst.priority === 0) break;
    shown = shown.filter((c) => c !== worst);
  }
  // Give the HEALTH column what is left over (it carries the reasons).
  const spare = width - total(shown);
  const health = shown.find((c) => c.key === 'health');
  if (health && spare > 0) {
    const longest = Math.max(...rows.map((r) => health.value(r, 'live').length), health.title.length);
    health.width = Math.min(longest, health.width + spare);
  }
  return shown;
}

export function fit(text: string, width: number): string {
  if (text.length > width) return width > 1 ? text.slice(0, width - 1) + '…' : text.slice(0, width);
  return text.padEnd(width);
}
