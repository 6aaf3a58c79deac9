/**
 * The dashboard as data: everything the screen depends on (the model's latest state, the log tail,
 * the terminal's size and the view: selection, pane, scroll, search, filter, sort, prompts, action
 * results) in one value, changed only by reduce.ts. The selectors here derive what both the reducer
 * and the components need from it.
 */
import type { InstanceSnapshot } from '../src/domain/snapshot.js';
import type { LogStream } from '../src/domain/status.js';
import type { ActionName } from '../src/app/dashboard.js';
import type { DashboardState } from './model.js';
import type { Command, KeyInfo } from './keymap.js';
import { AT_TOP, FOLLOW, sortRows, type Scroll, type Sort } from './view.js';

export type Pane = 'logs' | 'events' | 'details' | 'history';

/** One finished action, for the results pane (`a`). */
export interface ActionResult {
  at: number;
  text: string;
  error: boolean;
}

/**
 * A pane position kept for one view (`key`: the pane, its instance, the stream), with the log's
 * trimmed count when it was set (`base`): lines dropped from the front of the buffer since then move
 * the position back by as many.
 */
export interface Anchored<T> {
  key: string;
  value: T;
  base: number;
}

/** S / X / R: one summary line once every action of the batch answered. */
export interface Batch {
  label: string;
  total: number;
  done: number;
  failed: string[];
}

/** What the dashboard asks of the world after a change: run an action, quit. */
export type Effect = { kind: 'run'; action: ActionName; name: string; batch: number | null } | { kind: 'quit' };

export interface ViewState {
  /** The model's latest state. */
  data: DashboardState;
  /** The selected instance's log (a bounded tail; `trimmed`: lines dropped from its front so far). */
  log: { lines: readonly string[]; trimmed: number };
  size: { columns: number; rows: number };
  /** Ask before x and r act on a running instance (`llama-orch --yes` turns it off). */
  confirmSingle: boolean;
  /** The rows shown: the instances the filter keeps, sorted (kept current by reduce). */
  rows: InstanceSnapshot[];
  selected: string | undefined;
  pane: Pane;
  paneOpen: boolean;
  fullLog: boolean;
  allEvents: boolean;
  stream: LogStream;
  filter: string;
  sort: Sort;
  /** A line being typed (filter, search). */
  input: { kind: 'filter' | 'search'; text: string } | null;
  /** The search term in effect. */
  term: string;
  match: Anchored<number> | null;
  scroll: Anchored<Scroll> | null;
  help: boolean;
  /** A question before an action (y/N). */
  confirm: { action: ActionName; names: string[]; text: string } | null;
  message: string | null;
  history: ActionResult[];
  /** Instances with an action under way (a second one is not started). */
  busy: readonly string[];
  batches: Readonly<Record<number, Batch>>;
  nextBatch: number;
  /** Effects asked for by the last change; the App performs them and empties the list. */
  effects: readonly Effect[];
}

/** A key press as Ink reports it (what the matcher and the prompts read). */
export type KeyPress = KeyInfo & { meta?: boolean; backspace?: boolean; delete?: boolean };

/** What changes the view: key presses (mapped to commands), model updates, the log, the terminal, action results. */
export type Msg =
  | { type: 'key'; input: string; key: KeyPress }
  | { type: 'command'; command: Command }
  | { type: 'data'; data: DashboardState }
  | { type: 'log'; lines: readonly string[]; trimmed: number }
  | { type: 'resize'; columns: number; rows: number }
  | { type: 'result'; name: string; text: string; error: boolean; at: number; batch: number | null }
  | { type: 'expire'; message: string };

export function initialView(
  data: DashboardState,
  size: { columns: number; rows: number },
  confirmSingle = true,
): ViewState {
  return withRows({
    data,
    log: { lines: [], trimmed: 0 },
    size,
    confirmSingle,
    rows: [],
    selected: undefined,
    pane: 'logs',
    paneOpen: true,
    fullLog: false,
    allEvents: false,
    stream: 'stderr',
    filter: '',
    sort: { key: 'name', reverse: false },
    input: null,
    term: '',
    match: null,
    scroll: null,
    help: false,
    confirm: null,
    message: null,
    history: [],
    busy: [],
    batches: {},
    nextBatch: 1,
    effects: [],
  });
}

/**
 * The rows shown, after the instances, the filter or the sort changed. What is shown as selected is
 * what stays selected (a filter typed or cleared never moves it): a selection the filter hides
 * moves to the first row shown.
 */
export function withRows(s: ViewState): ViewState {
  const rows = sortRows(
    s.data.instances.filter((i) => i.name.includes(s.filter)),
    s.sort,
  );
  const shown =
    rows[
      Math.max(
        0,
        rows.findIndex((i) => i.name === s.selected),
      )
    ];
  return { ...s, rows, selected: shown ? shown.name : s.selected };
}

// ---- selectors

export function selectedIndex(s: ViewState): number {
  return Math.max(
    0,
    s.rows.findIndex((i) => i.name === s.selected),
  );
}

export function selectedRow(s: ViewState): InstanceSnapshot | undefined {
  return s.rows[selectedIndex(s)];
}

/** The pane on screen (the full-screen log is the log pane). */
export function shownPane(s: ViewState): Pane {
  return s.fullLog ? 'logs' : s.pane;
}

export function paneShown(s: ViewState): boolean {
  return s.paneOpen || s.fullLog;
}

/** Logs and events follow new lines at their end; details and results read from the top. */
export function isTail(s: ViewState): boolean {
  return shownPane(s) !== 'details';
}

/** Which view a scroll position or a match belongs to. */
export function viewKey(s: ViewState): string {
  const pane = shownPane(s);
  return `${pane}:${pane === 'events' && s.allEvents ? '*' : (selectedRow(s)?.name ?? '')}:${s.stream}`;
}

function trimmedOf(s: ViewState): number {
  return shownPane(s) === 'logs' ? s.log.trimmed : 0;
}

export function scrollOf(s: ViewState): Scroll {
  const a = s.scroll;
  if (a?.key !== viewKey(s)) return isTail(s) ? FOLLOW : AT_TOP;
  return a.value.follow ? a.value : { top: Math.max(0, a.value.top - (trimmedOf(s) - a.base)), follow: false };
}

export function matchOf(s: ViewState): number | null {
  const a = s.match;
  return a?.key === viewKey(s) ? Math.max(0, a.value - (trimmedOf(s) - a.base)) : null;
}

export function anchored<T>(s: ViewState, value: T): Anchored<T> {
  return { key: viewKey(s), value, base: trimmedOf(s) };
}

/** The instance whose log is followed: the log pane shows it. */
export function logTarget(s: ViewState): string | undefined {
  return paneShown(s) && shownPane(s) === 'logs' ? selectedRow(s)?.name : undefined;
}

/** The instance the model describes: the details pane shows it. */
export function detailsTarget(s: ViewState): string | undefined {
  return shownPane(s) === 'details' && s.paneOpen ? selectedRow(s)?.name : undefined;
}
