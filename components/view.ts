/**
 * The dashboard's pure view logic (no React, no Ink): pane scrolling and search, wrapping, sorting
 * the table, and the footer that always keeps `? help` and `q quit`. Unit-tested in
 * tests/unit/dashboard-view.test.ts; reduce.ts and the components use them.
 */
import type { InstanceSnapshot } from '../src/domain/snapshot.js';
import { FOOTER_ALWAYS, FOOTER_KEYS } from './keymap.js';

/** Where a pane is scrolled: `follow` sticks to the newest line (logs, events); else `top` is the first line shown. */
export interface Scroll {
  top: number;
  follow: boolean;
}

export const FOLLOW: Scroll = { top: 0, follow: true };
export const AT_TOP: Scroll = { top: 0, follow: false };

/** The range of lines shown: [start, end). */
export function visibleRange(count: number, height: number, s: Scroll): { start: number; end: number } {
  const maxTop = Math.max(0, count - height);
  const start = s.follow ? maxTop : Math.min(Math.max(0, s.top), maxTop);
  return { start, end: Math.min(count, start + height) };
}

/** Moves by `delta` lines from what is shown now; reaching the end of a tailing pane follows again. */
export function scrollBy(s: Scroll, delta: number, count: number, height: number, tail: boolean): Scroll {
  const maxTop = Math.max(0, count - height);
  const from = visibleRange(count, height, s).start;
  const top = Math.min(Math.max(0, from + delta), maxTop);
  return { top, follow: tail && top >= maxTop && delta > 0 };
}

/** The next line (after `from`, wrapping around) containing `term`, case-insensitive; -1 when none. */
export function findMatch(lines: readonly string[], term: string, from: number, dir: 1 | -1): number {
  if (!term || lines.length === 0) return -1;
  const t = term.toLowerCase();
  for (let k = 1; k <= lines.length; k++) {
    const i = (((from + dir * k) % lines.length) + lines.length) % lines.length;
    if ((lines[i] as string).toLowerCase().includes(t)) return i;
  }
  return -1;
}

/** Scrolled so that line `i` shows a third of the way down. */
export function scrollTo(i: number, count: number, height: number): Scroll {
  const maxTop = Math.max(0, count - height);
  return { top: Math.min(maxTop, Math.max(0, i - Math.floor(height / 3))), follow: false };
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/** A line as the terminal shows it: no escape codes of its own, tabs as two spaces. */
export function plain(line: string): string {
  return line.replace(ANSI, '').replace(/\t/g, '  ');
}

/** Lines longer than `width` broken into several (details: the describe command whole). */
export function wrapLines(lines: readonly string[], width: number): string[] {
  const w = Math.max(10, width);
  const out: string[] = [];
  for (const raw of lines) {
    const line = plain(raw);
    if (line.length <= w) {
      out.push(line);
      continue;
    }
    const indent = /^\s*/.exec(line)?.[0].length ?? 0;
    const pad = ' '.repeat(Math.min(indent + 2, Math.floor(w / 3)));
    let rest = line;
    let first = true;
    while (rest.length > 0) {
      const room = first ? w : w - pad.length;
      let cut = rest.length <= room ? rest.length : rest.lastIndexOf(' ', room);
      if (cut <= room / 2) cut = Math.min(room, rest.length);
      out.push((first ? '' : pad) + rest.slice(0, cut).trimEnd());
      rest = rest.slice(cut).trimStart();
      first = false;
    }
  }
  return out;
}

/** Cut to `width` with an ellipsis; `term` shown in reverse video where it occurs. */
export function clip(line: string, width: number, term = ''): string {
  const p = plain(line);
  const cut = p.length > width ? p.slice(0, Math.max(0, width - 1)) + '…' : p;
  if (!term || process.env.NO_COLOR) return cut;
  const t = term.toLowerCase();
  const low = cut.toLowerCase();
  let out = '';
  let i = 0;
  for (let j = low.indexOf(t); j !== -1; j = low.indexOf(t, i)) {
    out += cut.slice(i, j) + '\u001b[7m' + cut.slice(j, j + t.length) + '\u001b[27m';
    i = j + t.length;
  }
  return out + cut.slice(i);
}

// ---- sorting

export type SortKey = 'name' | 'state' | 'port' | 'uptime' | 'restarts' | 'tokens';
export const SORT_KEYS: readonly SortKey[] = ['name', 'state', 'port', 'uptime', 'restarts', 'tokens'];

export interface Sort {
  key: SortKey;
  reverse: boolean;
}

/** Problems first: what needs the operator comes to the top when sorting by state. */
const STATE_ORDER = ['failed', 'orphaned', 'invalid', 'backoff', 'stopping', 'starting', 'running', 'stopped'];

function attention(i: InstanceSnapshot): number {
  const base = STATE_ORDER.indexOf(i.state);
  // A running instance that is not healthy ranks with the troubled ones.
  if (i.state === 'running' && i.health !== 'ok' && i.health !== null) return 3.5;
  return base === -1 ? STATE_ORDER.length : base;
}

const compare: Record<SortKey, (a: InstanceSnapshot, b: InstanceSnapshot) => number> = {
  name: () => 0,
  state: (a, b) => attention(a) - attention(b),
  port: (a, b) => (a.port ?? Infinity) - (b.port ?? Infinity),
  // Longest running first; stopped ones last.
  uptime: (a, b) => (b.uptime_s ?? -1) - (a.uptime_s ?? -1),
  restarts: (a, b) => b.restarts - a.restarts,
  // Busiest first.
  tokens: (a, b) => (b.tokens_per_s ?? -1) - (a.tokens_per_s ?? -1),
};

/** A stable order: the key, then the name (so rows do not swap places between ticks). */
export function sortRows(rows: readonly InstanceSnapshot[], sort: Sort): InstanceSnapshot[] {
  const by = compare[sort.key];
  const sorted = [...rows].sort((a, b) => by(a, b) || a.name.localeCompare(b.name));
  return sort.reverse ? sorted.reverse() : sorted;
}

export function nextSort(s: Sort): Sort {
  const i = SORT_KEYS.indexOf(s.key);
  return { key: SORT_KEYS[(i + 1) % SORT_KEYS.length] as SortKey, reverse: false };
}

// ---- footer (its keys come from keymap.ts)

const ALWAYS = FOOTER_ALWAYS.map(([k, w]) => `${k} ${w}`).join(' · ');

/**
 * The key line, fitted to `width`: `? help` and `q quit` always show; the other keys drop from the
 * end, then their words go (`s x r` instead of `s start`), before anything is cut.
 */
export function footerText(width: number, prefix = ''): string {
  const room = width - ALWAYS.length - prefix.length;
  const long = FOOTER_KEYS.map(([k, w]) => `${k} ${w}`);
  for (let n = long.length; n > 0; n--) {
    const text = long.slice(0, n).join(' · ');
    if (text.length + 3 <= room) return `${prefix}${text} · ${ALWAYS}`;
  }
  const short = FOOTER_KEYS.map(([k]) => k).join(' ');
  if (short.length + 3 <= room) return `${prefix}${short} · ${ALWAYS}`;
  return room >= 0 ? `${prefix}${ALWAYS}` : ALWAYS.slice(0, Math.max(0, width));
}
