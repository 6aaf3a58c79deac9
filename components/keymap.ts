/** Keys are commands: one pure map from a key press to a named command (CONVENTIONS). */
export type Command =
  | 'up'
  | 'down'
  | 'start'
  | 'stop'
  | 'restart'
  | 'startAll'
  | 'stopAll'
  | 'restartAll'
  | 'logs'
  | 'toggleStream'
  | 'fullLog'
  | 'events'
  | 'allEvents'
  | 'details'
  | 'history'
  | 'closePane'
  | 'pageUp'
  | 'pageDown'
  | 'top'
  | 'bottom'
  | 'search'
  | 'nextMatch'
  | 'prevMatch'
  | 'filter'
  | 'sort'
  | 'sortReverse'
  | 'help'
  | 'quit'
  | 'cancel';

export interface KeyInfo {
  upArrow?: boolean;
  downArrow?: boolean;
  pageUp?: boolean;
  pageDown?: boolean;
  home?: boolean;
  end?: boolean;
  return?: boolean;
  escape?: boolean;
  ctrl?: boolean;
}

export const KEY_HELP: ReadonlyArray<[string, string]> = [
  ['↑↓ / j k', 'select instance'],
  ['s / x / r', 'start / stop / restart selected (x, r ask when it runs)'],
  ['S / X / R', 'start / stop / restart all shown (asks first)'],
  ['l', 'log pane; again: switch stderr/stdout'],
  ['L / Enter', 'full-screen log of the selected instance (Esc back)'],
  ['e / E', 'events of the selected instance / of all instances'],
  ['d', 'details (what describe prints)'],
  ['a', 'results of the last actions'],
  ['c', 'close / open the pane'],
  ['PgUp PgDn', 'scroll the pane (Ctrl-U / Ctrl-D too)'],
  ['Home End', 'top / bottom of the pane (End: follow new lines)'],
  ['/', 'search in the pane; n / N next / previous match'],
  ['f', 'filter instances by name (Enter keeps, Esc clears)'],
  ['o / O', 'sort by the next column / reverse the order'],
  ['?', 'help'],
  ['q', 'quit (instances keep running)'],
];

export function matchKey(input: string, key: KeyInfo): Command | undefined {
  if (key.upArrow) return 'up';
  if (key.downArrow) return 'down';
  if (key.pageUp) return 'pageUp';
  if (key.pageDown) return 'pageDown';
  if (key.home) return 'top';
  if (key.end) return 'bottom';
  if (key.return) return 'fullLog';
  if (key.escape) return 'cancel';
  if (key.ctrl) {
    if (input === 'c') return 'quit';
    if (input === 'u') return 'pageUp';
    if (input === 'd') return 'pageDown';
    return undefined;
  }
  switch (input) {
    case 'k':
      return 'up';
    case 'j':
      return 'down';
    case 's':
      return 'start';
    case 'x':
      return 'stop';
    case 'r':
      return 'restart';
    case 'S':
      return 'startAll';
    case 'X':
      return 'stopAll';
    case 'R':
      return 'restartAll';
    case 'l':
      return 'logs';
    case 'L':
      return 'fullLog';
    case 'e':
      return 'events';
    case 'E':
      return 'allEvents';
    case 'd':
      return 'details';
    case 'a':
      return 'history';
    case 'c':
      return 'closePane';
    case 'g':
      return 'top';
    case 'G':
      return 'bottom';
    case '/':
      return 'search';
    case 'n':
      return 'nextMatch';
    case 'N':
      return 'prevMatch';
    case 'f':
      return 'filter';
    case 'o':
      return 'sort';
    case 'O':
      return 'sortReverse';
    case '?':
      return 'help';
    case 'q':
      return 'quit';
    default:
      return undefined;
  }
}
