import type { InstanceSnapshot } from '../domain/snapshot.js';
import {
  cutMiddle,
  formatRate,
  formatUptime,
  gpuText,
  healthText,
  orDash,
  proxyText,
  requestsText,
  slotsText,
  stateText,
} from './text.js';

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
  /**
   * Changes from one tick to the next (state, health, pid, uptime, restarts): the dashboard gives it
   * a fixed width, so values like `loading 9 s` -> `loading 10 s` do not shift the other columns.
   * The others come from the configs (name, port, model) and change only when a config does.
   */
  volatile?: boolean;
  /** Shown only when some row has it (the proxy's column: only while a daemon serves the proxy). */
  present?: (i: InstanceSnapshot) => boolean;
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
    volatile: true,
    value: (i, style) => stateText(i, style === 'text' ? 1 : 0),
  },
  {
    key: 'health',
    title: 'HEALTH',
    priority: 1,
    min: 6,
    max: 30,
    volatile: true,
    value: (i, style) => healthText(i, { latency: style === 'live' }),
  },
  { key: 'pid', title: 'PID', priority: 1, min: 3, max: 7, volatile: true, value: (i) => orDash(i.pid) },
  { key: 'port', title: 'PORT', priority: 2, min: 4, max: 5, value: (i) => orDash(i.port) },
  { key: 'backend', title: 'BACKEND', priority: 5, min: 7, max: 7, value: (i) => i.backend ?? '-' },
  { key: 'gpu', title: 'GPU', priority: 4, min: 3, max: 8, value: (i) => gpuText(i) },
  { key: 'model', title: 'MODEL', priority: 3, min: 5, max: 24, value: (i) => i.model ?? '-' },
  {
    key: 'uptime',
    title: 'UPTIME',
    priority: 2,
    min: 6,
    max: 7,
    volatile: true,
    value: (i) => formatUptime(i.uptime_s),
  },
  {
    key: 'restarts',
    title: 'RESTARTS',
    priority: 3,
    min: 8,
    max: 8,
    volatile: true,
    value: (i) => String(i.restarts),
  },
  // What the server serves (domain/metrics.ts): `-` when unknown or `metrics: false`.
  {
    key: 'tokens',
    title: 'TOK/S',
    priority: 3,
    min: 5,
    max: 6,
    volatile: true,
    value: (i) => formatRate(i.tokens_per_s),
  },
  { key: 'slots', title: 'SLOTS', priority: 4, min: 5, max: 6, volatile: true, value: (i) => slotsText(i) },
  { key: 'req', title: 'REQ', priority: 4, min: 3, max: 6, volatile: true, value: (i) => requestsText(i) },
  {
    key: 'proxy',
    title: 'PROXY',
    priority: 4,
    min: 5,
    max: 7,
    volatile: true,
    present: (i) => i.proxy_in_flight !== null,
    value: (i) => proxyText(i),
  },
];

const GAP = 2;
/** The dashboard's HEALTH column never shrinks below this; it takes the width that is left. */
const HEALTH_MIN = 12;
const HEALTH_MAX = 24;

export type Layout = 'fit' | 'stable';

/**
 * Picks the columns and widths that fit: low-priority columns drop out instead of wrapping.
 * `fit` (ps, --once): each column as wide as its longest value. `stable` (the dashboard): volatile
 * columns at a fixed width, the others from the configs present (NAME and MODEL may use a quarter
 * of a wide terminal), HEALTH takes what is left; the same terminal width and configs give the same
 * layout on every tick. Long values are cut in the table (and whole in details).
 */
export function layoutColumns(
  rows: InstanceSnapshot[],
  width: number,
  layout: Layout = 'fit',
): Array<Column & { width: number }> {
  const longest = (c: Column) => Math.max(c.title.length, ...rows.map((r) => c.value(r, 'live').length));
  const sized = COLUMNS.filter((c) => !c.present || rows.some(c.present)).map((c) => {
    if (layout === 'fit') return { ...c, width: Math.max(c.min, Math.min(c.max, longest(c))) };
    // Room for a sort marker after the title.
    const floor = Math.max(c.min, c.title.length + 1);
    if (c.key === 'health') return { ...c, width: HEALTH_MIN };
    if (c.volatile) return { ...c, width: Math.max(floor, c.max) };
    const cap = c.key === 'name' || c.key === 'model' ? Math.max(c.max, Math.floor(width / 4)) : c.max;
    return { ...c, width: Math.max(floor, Math.min(cap, longest(c))) };
  });
  // Two names must never print the same: the NAME column widens until its cut names differ.
  const name = sized.find((c) => c.key === 'name');
  if (name) name.width = distinctNames(rows, name.width);
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
    // Stable: wide enough for a reason, not the whole of a 200-column terminal.
    health.width =
      layout === 'stable'
        ? Math.min(HEALTH_MAX, health.width + spare)
        : Math.min(longest(health), health.width + spare);
  }
  return shown;
}

/** A cell at `width`: cut at the end (names in the middle, see `cell`), padded. */
export function fit(text: string, width: number, middle = false): string {
  if (text.length > width)
    return middle ? cutMiddle(text, width) : width > 1 ? text.slice(0, width - 1) + '…' : text.slice(0, width);
  return text.padEnd(width);
}

/** A column's cell: the NAME column is cut in the middle, so that names sharing a prefix stay apart. */
export const cell = (c: Column & { width: number }, r: InstanceSnapshot, style: ColumnStyle = 'live'): string =>
  fit(c.value(r, style), c.width, c.key === 'name');

/** The narrowest width from `width` up at which the rows' names, cut in the middle, are all distinct. */
function distinctNames(rows: InstanceSnapshot[], width: number): number {
  const names = [...new Set(rows.map((r) => r.name))];
  const longest = Math.max(0, ...names.map((n) => n.length));
  let w = width;
  while (w < longest && new Set(names.map((n) => cutMiddle(n, w))).size < names.length) w++;
  return w;
}
