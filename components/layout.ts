/**
 * The frame's layout and the pane's lines, from the view state (pure): every line of the terminal
 * is accounted for, so a frame never exceeds it.
 */
import type { GpuInfo } from '../src/domain/gpu.js';
import type { EventRow } from '../src/app/dashboard.js';
import { selectedRow, shownPane, type ActionResult, type ViewState } from './state.js';
import { wrapLines } from './view.js';

/** Lines the GPU panel takes: one per GPU (at most a quarter of the screen), else one for the note. */
export function gpuPanelHeight(p: { gpus: GpuInfo[]; error: string | null; cpuOnly: boolean }, rows: number): number {
  if (p.gpus.length === 0) return p.error || p.cpuOnly ? 1 : 0;
  return Math.min(p.gpus.length, Math.max(1, Math.floor(rows / 4)));
}

export interface Layout {
  /** Columns drawn (one short of the terminal's: a full last column makes some terminals wrap). */
  width: number;
  gpuLines: number;
  /** Lines under the GPU panel that help may take. */
  helpHeight: number;
  /** Table rows (0 in the full-screen log). */
  tableRows: number;
  /** The pane's lines of content (its title and rule not counted). */
  contentHeight: number;
}

export function layout(s: ViewState): Layout {
  const { columns, rows } = s.size;
  const d = s.data;
  const gpuLines = gpuPanelHeight({ gpus: d.gpus, error: d.gpuError, cpuOnly: d.cpuOnly }, rows);
  const chrome = 1 + (d.error ? 1 : 0) + gpuLines + 2 + 1; // header, error, GPU panel, footer (2), spare
  const tableRows = s.fullLog
    ? 0
    : s.paneOpen
      ? Math.min(Math.max(s.rows.length, 1), Math.max(3, Math.floor((rows - 6) / 2)))
      : Math.max(1, rows - chrome - 1);
  const contentHeight = s.fullLog ? Math.max(1, rows - chrome - 1) : Math.max(1, rows - chrome - (1 + tableRows) - 2);
  return { width: columns - 1, gpuLines, helpHeight: rows - chrome, tableRows, contentHeight };
}

// ---- the pane's lines

export interface PaneContent {
  title: string;
  lines: readonly string[];
  /** A colour per line (events by level, failed results). */
  colors?: ReadonlyArray<string | undefined>;
}

const SGR_LEVEL: Record<string, string | undefined> = { error: 'red', warn: 'yellow', info: undefined, debug: 'gray' };
const time = (ts: number) => new Date(ts).toLocaleTimeString('en-GB', { hour12: false });

/** Events as pane lines, with their colours. */
export function eventLines(events: readonly EventRow[]): { lines: string[]; colors: Array<string | undefined> } {
  // The name column is as wide as the longest name listed (at most 32): the other columns stay put.
  const nameWidth = Math.min(32, Math.max(10, ...events.map((e) => (e.instance_name ?? '-').length)));
  return {
    lines: events.map(
      (e) => `${time(e.ts)} ${(e.instance_name ?? '-').padEnd(nameWidth)} ${e.event_type.padEnd(13)} ${e.message}`,
    ),
    colors: events.map((e) => SGR_LEVEL[e.level]),
  };
}

/** The results of the last actions, newest last. */
export function historyLines(results: readonly ActionResult[]): {
  lines: string[];
  colors: Array<string | undefined>;
} {
  return {
    lines: results.map((r) => `${time(r.at)} ${r.text}`),
    colors: results.map((r) => (r.error ? 'red' : undefined)),
  };
}

/** What the pane shows: its title and lines (the details as the model described them, wrapped). */
export function paneContent(s: ViewState, width: number): PaneContent {
  const name = selectedRow(s)?.name;
  switch (shownPane(s)) {
    case 'logs':
      return { lines: s.log.lines, title: `logs · ${name ?? '-'} · ${s.stream}${s.fullLog ? ' (Esc: back)' : ''}` };
    case 'events': {
      const evs = s.allEvents
        ? s.data.events
        : s.data.events.filter((e) => name === undefined || e.instance_name === name || e.instance_name === null);
      return { ...eventLines(evs), title: s.allEvents ? 'events · all instances' : `events · ${name ?? '-'}` };
    }
    case 'details': {
      const d = s.data.details;
      return { lines: wrapLines(d && d.name === name ? d.lines : [], width), title: `details · ${name ?? '-'}` };
    }
    case 'history': {
      // Wrapped, not cut: a failed action's whole reason (every problem, the hint) is read here.
      const h = historyLines(s.history);
      const lines: string[] = [];
      const colors: Array<string | undefined> = [];
      h.lines.forEach((l, i) => {
        const wrapped = wrapLines([l], width);
        lines.push(...wrapped);
        colors.push(...wrapped.map(() => h.colors[i]));
      });
      return { lines, colors, title: 'results of the last actions' };
    }
  }
}

/** What an empty pane says. */
export function emptyText(s: ViewState): string {
  const pane = shownPane(s);
  return pane === 'logs' ? '(no output yet)' : pane === 'history' ? '(no actions yet)' : '(none)';
}

// ---- the footer

/** A message as one line: an error can list several problems, one per line. */
export function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' · ');
}

/** Filter and sort in effect, shown before the keys. */
export function footerPrefix(s: ViewState): string {
  return (
    (s.filter ? `[f ${s.filter}] ` : '') +
    (s.sort.key !== 'name' || s.sort.reverse ? `[sort ${s.sort.key}${s.sort.reverse ? ' ▲' : ''}] ` : '')
  );
}

export type Prompt = { kind: 'confirm' | 'input'; text: string } | null;

/** A question (y/N) or a line being typed: it replaces the key line. */
export function prompt(s: ViewState): Prompt {
  if (s.confirm) return { kind: 'confirm', text: s.confirm.text };
  if (s.input) return { kind: 'input', text: `${s.input.kind === 'filter' ? 'filter: ' : 'search: /'}${s.input.text}` };
  return null;
}
