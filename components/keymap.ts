/**
 * Keys are commands: one table, KEYS, says which key gives which command and how the
 * help screen and the footer's key line name it; the matcher, the help and the footer are made from
 * it. tests/unit/dashboard-keys.test.tsx checks that every command has a key and that the help, the
 * footer and the README's key table name only keys that are bound, to the command they describe.
 */

/** Every command of the dashboard; each is given by a key of KEYS (tests/unit/dashboard-keys.test.tsx). */
export const COMMANDS = [
  'up',
  'down',
  'start',
  'stop',
  'restart',
  'startAll',
  'stopAll',
  'restartAll',
  'logs',
  'fullLog',
  'events',
  'allEvents',
  'details',
  'history',
  'closePane',
  'pageUp',
  'pageDown',
  'top',
  'bottom',
  'search',
  'nextMatch',
  'prevMatch',
  'filter',
  'sort',
  'sortReverse',
  'help',
  'quit',
  'cancel',
] as const;
export type Command = (typeof COMMANDS)[number];

/** The keys Ink names, in the order the matcher looks at them. */
export const NAMED_KEYS = ['upArrow', 'downArrow', 'pageUp', 'pageDown', 'home', 'end', 'return', 'escape'] as const;
export type NamedKey = (typeof NAMED_KEYS)[number];

/** What the matcher reads of Ink's key: which named key, and whether Ctrl was held. */
export type KeyInfo = Partial<Record<NamedKey | 'ctrl', boolean>>;

/** A printable character, a key Ink names, or Ctrl with a letter. */
export type KeySpec = string | { named: NamedKey } | { ctrl: string };

/** One entry of the footer's key line. */
export interface FooterEntry {
  keys: string;
  word: string;
  /** Its place in the line (lowest first): entries drop from the end on a narrow terminal. */
  rank: number;
}

export interface KeyRow {
  /** The help screen's line: the keys as written there, and what they do. Absent: not listed (Esc). */
  help?: readonly [keys: string, what: string];
  /** The row's commands and the keys that give each. */
  bind: Partial<Record<Command, readonly KeySpec[]>>;
  /** The row's entries in the footer's key line. */
  footer?: readonly FooterEntry[];
  /** Shown in the footer at any width (`? help`, `q quit`), after the other entries. */
  always?: readonly [keys: string, word: string];
}

const named = (k: NamedKey): KeySpec => ({ named: k });
const ctrl = (c: string): KeySpec => ({ ctrl: c });

/** The dashboard's keys, in the help screen's order (README, "The dashboard", keeps the same list). */
export const KEYS: readonly KeyRow[] = [
  {
    help: ['↑↓ / j k', 'select instance'],
    bind: { up: [named('upArrow'), 'k'], down: [named('downArrow'), 'j'] },
    footer: [{ keys: '↑↓', word: 'select', rank: 1 }],
  },
  {
    help: ['s / x / r', 'start / stop / restart selected (x, r ask when it runs)'],
    bind: { start: ['s'], stop: ['x'], restart: ['r'] },
    footer: [
      { keys: 's', word: 'start', rank: 2 },
      { keys: 'x', word: 'stop', rank: 3 },
      { keys: 'r', word: 'restart', rank: 4 },
    ],
  },
  {
    help: ['S / X / R', 'start / stop / restart all shown (asks first)'],
    bind: { startAll: ['S'], stopAll: ['X'], restartAll: ['R'] },
  },
  {
    // Pressed while the log pane shows, `l` switches the stream (reduce.ts, 'logs').
    help: ['l', 'log pane; again: switch stderr/stdout'],
    bind: { logs: ['l'] },
    footer: [{ keys: 'l', word: 'logs', rank: 5 }],
  },
  {
    help: ['L / Enter', 'full-screen log of the selected instance (Esc back)'],
    bind: { fullLog: ['L', named('return')] },
    footer: [{ keys: 'L', word: 'full log', rank: 6 }],
  },
  {
    help: ['e / E', 'events of the selected instance / of all instances'],
    bind: { events: ['e'], allEvents: ['E'] },
    footer: [{ keys: 'e', word: 'events', rank: 7 }],
  },
  {
    help: ['d', 'details (what describe prints)'],
    bind: { details: ['d'] },
    footer: [{ keys: 'd', word: 'details', rank: 8 }],
  },
  { help: ['a', 'results of the last actions'], bind: { history: ['a'] } },
  {
    help: ['c', 'close / open the pane'],
    bind: { closePane: ['c'] },
    footer: [{ keys: 'c', word: 'pane', rank: 12 }],
  },
  {
    help: ['PgUp PgDn', 'scroll the pane (Ctrl-U / Ctrl-D too)'],
    bind: { pageUp: [named('pageUp'), ctrl('u')], pageDown: [named('pageDown'), ctrl('d')] },
  },
  {
    help: ['Home End', 'top / bottom of the pane (End: follow new lines)'],
    bind: { top: [named('home'), 'g'], bottom: [named('end'), 'G'] },
  },
  {
    help: ['/', 'search in the pane; n / N next / previous match'],
    bind: { search: ['/'], nextMatch: ['n'], prevMatch: ['N'] },
    footer: [{ keys: '/', word: 'search', rank: 9 }],
  },
  {
    help: ['f', 'filter instances by name (Enter keeps, Esc clears)'],
    bind: { filter: ['f'] },
    footer: [{ keys: 'f', word: 'filter', rank: 10 }],
  },
  {
    help: ['o / O', 'sort by the next column / reverse the order'],
    bind: { sort: ['o'], sortReverse: ['O'] },
    footer: [{ keys: 'o', word: 'sort', rank: 11 }],
  },
  { help: ['?', 'help'], bind: { help: ['?'] }, always: ['?', 'help'] },
  { help: ['q', 'quit (instances keep running)'], bind: { quit: ['q', ctrl('c')] }, always: ['q', 'quit'] },
  // Closes help, the full-screen log, a search, the message (reduce.ts, 'cancel').
  { bind: { cancel: [named('escape')] } },
];

// ---- what the table makes

/** Every key of the table with its command. */
export function bindings(): Array<[KeySpec, Command]> {
  return KEYS.flatMap((row) =>
    Object.entries(row.bind).flatMap(([cmd, keys]) => (keys ?? []).map((k): [KeySpec, Command] => [k, cmd as Command])),
  );
}

/** A key's kind (where the matcher looks it up) and name. */
export function keyOf(k: KeySpec): ['char' | 'named' | 'ctrl', string] {
  return typeof k === 'string' ? ['char', k] : 'named' in k ? ['named', k.named] : ['ctrl', k.ctrl];
}

const BOUND = { char: new Map<string, Command>(), named: new Map<string, Command>(), ctrl: new Map<string, Command>() };
for (const [k, cmd] of bindings()) {
  const [kind, name] = keyOf(k);
  if (BOUND[kind].has(name)) throw new Error(`the ${kind} key ${name} is bound twice`);
  BOUND[kind].set(name, cmd);
}
const NAMED_BOUND = NAMED_KEYS.filter((k) => BOUND.named.has(k));

/** The command of a key press; undefined when the key does nothing. */
export function matchKey(input: string, key: KeyInfo): Command | undefined {
  for (const k of NAMED_BOUND) if (key[k]) return BOUND.named.get(k);
  if (key.ctrl) return BOUND.ctrl.get(input);
  return BOUND.char.get(input);
}

/** The help screen's lines: [keys, what they do]. */
export const KEY_HELP: ReadonlyArray<readonly [string, string]> = KEYS.flatMap((r) => (r.help ? [r.help] : []));

/** The footer's key line: its entries by rank, and those it always shows. */
export const FOOTER_KEYS: ReadonlyArray<readonly [string, string]> = KEYS.flatMap((r) => r.footer ?? [])
  .sort((a, b) => a.rank - b.rank)
  .map((f) => [f.keys, f.word] as const);
export const FOOTER_ALWAYS: ReadonlyArray<readonly [string, string]> = KEYS.flatMap((r) =>
  r.always ? [r.always] : [],
);
