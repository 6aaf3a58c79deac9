import { orchCommand, type Home } from '../domain/home.js';
import type { InstanceSnapshot } from '../domain/snapshot.js';
import { COLUMNS } from './columns.js';
import { cutMiddle } from './text.js';

/**
 * A plain-text table. Cells over `maxCell` are cut in the middle, except in the `whole` columns
 * (identifiers a script or an operator types back, such as instance names).
 */
export function renderTextTable(
  header: readonly string[],
  rows: string[][],
  maxCell = 48,
  whole: readonly number[] = [],
): string {
  const all = [
    header.map(String),
    ...rows.map((r) => r.map((s, c) => (whole.includes(c) ? s : cutMiddle(s, maxCell)))),
  ];
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

export function psTable(list: InstanceSnapshot[], home: Home): string {
  if (list.length === 0) return `no instances (add instances/NAME/config.json or run "${orchCommand(home, 'init')}")`;
  const table = renderTextTable(
    COLUMNS.map((c) => c.title),
    list.map((i) => COLUMNS.map((c) => c.value(i, 'text'))),
    48,
    [COLUMNS.findIndex((c) => c.key === 'name')],
  );
  // A config problem is not always visible in the table (a running server keeps its config).
  const notes = list
    .filter((i) => i.config_error !== null)
    .map((i) =>
      i.state === 'invalid'
        ? `${i.name}: config problem: ${i.config_error}`
        : `${i.name}: config problem (the ${i.state} server keeps the config it was started with): ${i.config_error}`,
    );
  for (const i of list) for (const w of i.warnings) notes.push(`${i.name}: warning: ${w}`);
  return notes.length > 0 ? `${table}\n\n${notes.join('\n')}` : table;
}
