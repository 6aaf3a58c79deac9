import React from 'react';
import { Box, Text } from 'ink';
import type { InstanceSnapshot } from '../src/domain/snapshot.js';
import { cell as cellText, fit, layoutColumns, type Column } from '../src/format/columns.js';
import type { Sort } from './view.js';

const SGR: Record<string, [number, number]> = { red: [31, 39], green: [32, 39], yellow: [33, 39], bold: [1, 22] };

export function paint(text: string, color: string): string {
  const code = process.env.NO_COLOR ? undefined : SGR[color];
  return code ? `\u001b[${code[0]}m${text}\u001b[${code[1]}m` : text;
}

export function stateColor(i: InstanceSnapshot): string | undefined {
  if (i.state === 'failed' || i.state === 'orphaned' || i.state === 'invalid') return 'red';
  if (i.warnings.length > 0) return 'red';
  if (i.health === 'unhealthy' || i.health === 'unauthorized') return 'red';
  if (i.state === 'backoff' || i.state === 'starting' || i.state === 'stopping' || i.health === 'loading')
    return 'yellow';
  if (i.health === 'ok') return 'green';
  return undefined;
}

interface Props {
  rows: InstanceSnapshot[];
  selected: number;
  width: number;
  /** The clock of the state shown: a new tick redraws the row (uptimes). */
  now: number;
  /** At most this many rows are drawn (the selection stays visible). */
  maxRows: number;
  /** The column the rows are sorted by: marked in the title row. */
  sort?: Sort;
  /** Every instance, filtered or not: the widths come from these (typing a filter moves nothing). */
  layoutRows?: InstanceSnapshot[];
  /** The name filter in effect, to say why no row is shown. */
  filter?: string;
}

/**
 * One row as a line with its colour codes inline: a node per cell made every frame ~10x the layout
 * and output work (bench/BENCHMARKS.md, dashboard idle CPU). No trailing padding: it is characters
 * Ink processes on every frame for nothing.
 */
export function rowLine(
  r: InstanceSnapshot,
  cols: Array<Column & { width: number }>,
  color: string | undefined,
): string {
  return cols
    .map((c) => {
      const cell = cellText(c, r);
      if (color && (c.key === 'state' || c.key === 'health')) return paint(cell, color);
      // Requests waiting for a slot: the instance is saturated.
      if (c.key === 'req' && (r.requests_deferred ?? 0) > 0) return paint(cell, 'yellow');
      return cell;
    })
    .join('  ')
    .trimEnd();
}

/** Our own table on Box/Text: the live table needs row selection and per-cell colour (see README). */
export const InstanceTable = React.memo(function InstanceTable({
  rows,
  selected,
  width,
  maxRows,
  sort,
  layoutRows,
  filter,
}: Props) {
  // Stable widths: a tick that changes a value never moves the other columns.
  const cols = layoutColumns(layoutRows ?? rows, width, 'stable');
  const title = (c: { key: string; title: string }) =>
    sort && c.key === sort.key ? `${c.title}${sort.reverse ? '▲' : '▼'}` : c.title;
  const start = Math.max(0, Math.min(selected - maxRows + 1, rows.length - maxRows));
  const visible = rows.slice(Math.max(0, start), Math.max(0, start) + maxRows);
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {('  ' + cols.map((c) => fit(title(c), c.width)).join('  ')).trimEnd()}
      </Text>
      {rows.length === 0 ? (
        <Text dimColor>
          {filter && (layoutRows?.length ?? 0) > 0
            ? ` no instance name contains "${filter}" (f to change the filter, Esc in it clears)`
            : ' no instances: add instances/NAME/config.json or run "llama-orch init"'}
        </Text>
      ) : null}
      {visible.map((r, idx) => {
        const isSel = idx + Math.max(0, start) === selected;
        const color = stateColor(r);
        const line = rowLine(r, cols, color);
        return (
          <Text key={r.name} inverse={isSel} wrap="truncate">
            {(isSel ? '› ' : '  ') + line}
          </Text>
        );
      })}
    </Box>
  );
});
