import type { FleetEvent, FleetGpu, FleetInstance, FleetRig, RigStatus } from '../domain/fleet.js';
import { terminalSafe } from '../domain/sanitize.js';
import { COLUMNS } from './columns.js';
import { gpuLines } from './gpu.js';
import { renderTextTable } from './table.js';
import { formatUptime } from './text.js';

/**
 * Text of the fleet view (`ps --fleet`, `--once --fleet`, `gpus --fleet`, `events --fleet`). What
 * other rigs send is text we did not write: every line passes the terminal sanitiser.
 */

const safeLines = (text: string) =>
  text
    .split('\n')
    .map((l) => terminalSafe(l))
    .join('\n');

/** "unreachable (connection refused); rows as last seen 2026-12-05 12:03:04, 3m ago". */
export function rigNote(r: RigStatus, now: number, what = 'rows'): string | undefined {
  if (r.state === 'ok') return undefined;
  const seen = r.seen_at
    ? `${what} as last seen ${r.seen_at.replace('T', ' ').slice(0, 19)}, ${formatUptime(Math.max(0, Math.round((now - Date.parse(r.seen_at)) / 1000)))} ago`
    : 'never seen';
  return `rig ${r.rig}${r.url ? ` (${r.url})` : ''}: ${r.state}${r.error ? ` (${r.error})` : ''}; ${seen}`;
}

function rigCell(rig: string, state: RigStatus['state']): string {
  return state === 'ok' ? rig : `${rig} (${state})`;
}

export function fleetPsTable(rows: FleetInstance[], rigs: RigStatus[], now: number): string {
  const table =
    rows.length === 0
      ? 'no instances on any rig'
      : renderTextTable(
          ['RIG', ...COLUMNS.map((c) => c.title)],
          rows.map((i) => [rigCell(i.rig, i.rig_state), ...COLUMNS.map((c) => c.value(i, 'text'))]),
          48,
          [0, 1 + COLUMNS.findIndex((c) => c.key === 'name')],
        );
  const notes: string[] = [];
  for (const r of rigs) {
    const note = rigNote(r, now);
    if (note) notes.push(note);
  }
  for (const i of rows) {
    if (i.config_error !== null) notes.push(`${i.rig}/${i.name}: config problem: ${i.config_error}`);
    for (const w of i.warnings) notes.push(`${i.rig}/${i.name}: warning: ${w}`);
  }
  return safeLines(notes.length > 0 ? `${table}\n\n${notes.join('\n')}` : table);
}

export function fleetGpuText(
  gpus: FleetGpu[],
  rigs: RigStatus[],
  errors: Record<string, string>,
  now: number,
  width: number,
): string {
  const out: string[] = [];
  for (const r of rigs) {
    const mine = gpus.filter((g) => g.rig === r.rig);
    out.push(`rig ${r.rig}${r.url ? `  ${r.url}` : ''}`);
    const note = rigNote(r, now, 'GPUs');
    if (note) out.push(`  ${note}`);
    if (errors[r.rig]) out.push(`  GPUs not read: ${errors[r.rig]}`);
    else if (mine.length === 0) out.push('  no GPU');
    for (const line of gpuLines(mine, width - 2)) out.push(`  ${line}`);
  }
  return safeLines(out.join('\n'));
}

export function fleetOnceText(rigs: FleetRig[], now: number, width: number): string {
  const out: string[] = [];
  for (const r of rigs) {
    const daemon = r.daemon
      ? r.daemon.running
        ? `daemon: running (pid ${r.daemon.pid}${r.daemon.proxy ? `, proxy ${r.daemon.proxy}` : ''})`
        : 'daemon: not running'
      : `daemon: ${r.url}`;
    out.push(`rig ${r.rig}  ${r.state}  ${daemon}`);
    const note = rigNote(r, now);
    if (note) out.push(note);
    for (const line of gpuLines(r.gpus, width)) out.push(line);
    if (r.gpu_error) out.push(`GPUs: not read: ${r.gpu_error}`);
    out.push(
      r.instances.length === 0
        ? 'no instances'
        : renderTextTable(
            COLUMNS.map((c) => c.title),
            r.instances.map((i) => COLUMNS.map((c) => c.value(i, 'text'))),
            48,
            [COLUMNS.findIndex((c) => c.key === 'name')],
          ),
    );
    out.push('');
  }
  return safeLines(out.join('\n').trimEnd());
}

export function fleetEventLine(e: FleetEvent): string {
  const t = e.ts.replace('T', ' ').slice(0, 23);
  return terminalSafe(
    `${e.rig.padEnd(12)}  ${t}  ${e.level.padEnd(5)}  ${(e.instance ?? '-').padEnd(12)}  ${e.type.padEnd(13)}  ${e.message}`,
  );
}
