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
  | 'events'
  | 'details'
  | 'filter'
  | 'help'
  | 'quit'
  | 'cancel';

export interface KeyInfo {
  upArrow?: boolean;
  downArrow?: boolean;
  escape?: boolean;
  ctrl?: boolean;
}

export const KEY_HELP: ReadonlyArray<[string, string]> = [
  ['↑↓ / j k', 'select instance'],
  ['s / x / r', 'start / stop / restart selected'],
  ['S / X / R', 'start / stop / restart all (asks first)'],
  ['l', 'log pane; again: switch stderr/stdout'],
  ['e', 'event feed'],
  ['d', 'details (describe)'],
  ['/', 'filter by name (Enter keeps, Esc clears)'],
  ['?', 'help'],
  ['q', 'quit (instances keep running)'],
];

export function matchKey(input: string, key: KeyInfo): Command | undefined {
  if (key.upArrow) return 'up';
  if (key.downArrow) return 'down';
  if (key.escape) return 'cancel';
  if (key.ctrl && input === 'c') return 'quit';
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
    case 'e':
      return 'events';
    case 'd':
      return 'details';
    case '/':
      return 'filter';
    case '?':
      return 'help';
    case 'q':
      return 'quit';
    default:
      return undefined;
  }
}
