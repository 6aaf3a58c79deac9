/**
 * The dashboard's one reducer: reduce(view, msg) -> view, pure. Keys become commands (keymap.ts);
 * the model's updates, the log, the terminal's size and action results come in as messages. What
 * it asks of the world (run an action, quit) it puts in `effects` for the App to perform.
 */
import type { InstanceSnapshot } from '../src/domain/snapshot.js';
import type { ActionName } from '../src/app/dashboard.js';
import { formatUptime } from '../src/format/text.js';
import { matchKey, type Command } from './keymap.js';
import { layout, oneLine, paneContent } from './layout.js';
import {
  anchored,
  isTail,
  matchOf,
  paneShown,
  scrollOf,
  selectedIndex,
  selectedRow,
  shownPane,
  withRows,
  type KeyPress,
  type Msg,
  type ViewState,
} from './state.js';
import { AT_TOP, FOLLOW, findMatch, nextSort, scrollBy, scrollTo, visibleRange, type Scroll } from './view.js';

/** States in which stopping or restarting interrupts something (a server serving or loading). */
const ACTIVE = new Set(['running', 'starting', 'backoff', 'stopping', 'orphaned']);
const HISTORY_KEEP = 50;

export function reduce(s: ViewState, msg: Msg): ViewState {
  switch (msg.type) {
    case 'key':
      return keyPress(s, msg.input, msg.key);
    case 'command':
      return command(s, msg.command);
    case 'data':
      if (msg.data === s.data) return s;
      // A new state with the same rows (the details moved): nothing to filter or sort again.
      return msg.data.instances === s.data.instances ? { ...s, data: msg.data } : withRows({ ...s, data: msg.data });
    case 'log':
      if (msg.lines.length === 0 && s.log.lines.length === 0 && msg.trimmed === s.log.trimmed) return s;
      return { ...s, log: { lines: msg.lines, trimmed: msg.trimmed } };
    case 'resize':
      return { ...s, size: { columns: msg.columns, rows: msg.rows } };
    case 'result':
      return actionResult(s, msg);
    case 'expire':
      // A message that is not an error goes after a while; a newer one stays.
      return s.message === msg.message ? { ...s, message: null } : s;
  }
}

function keyPress(s: ViewState, ch: string, key: KeyPress): ViewState {
  if (s.confirm) {
    const { action, names } = s.confirm;
    const next = { ...s, confirm: null };
    if (ch === 'y' || ch === 'Y')
      return requestRun(next, action, names, names.length > 1 ? `${action} all` : undefined);
    return { ...next, message: `${action}: cancelled` };
  }
  if (s.input) return typing(s, s.input, ch, key);
  // Alt-x is not x (Escape and escape sequences carry meta too: only a printable key is dropped).
  if (key.meta && !key.escape && /^[\x20-\x7e]$/.test(ch)) return s;
  const cmd = matchKey(ch, key);
  if (!cmd) return s;
  // While help covers the screen, only closing it and quitting act: nothing hidden is touched.
  if (s.help && cmd !== 'help' && cmd !== 'cancel' && cmd !== 'quit') return s;
  return command(s, cmd);
}

/** A filter or a search being typed: the filter applies as it is typed, the search on Enter. */
function typing(s: ViewState, input: NonNullable<ViewState['input']>, ch: string, key: KeyPress): ViewState {
  const edit = (text: string) =>
    input.kind === 'filter'
      ? withRows({ ...s, input: { ...input, text }, filter: text })
      : { ...s, input: { ...input, text } };
  if (key.return) {
    const next = { ...s, input: null };
    if (input.kind === 'filter') return next;
    // The term is kept once it matches (jump); an empty search clears it.
    if (!input.text) return { ...next, term: '' };
    // Logs and events: the newest match first (searching up from the bottom); details: from the top.
    const tail = isTail(next);
    return jump(next, tail ? -1 : 1, tail ? paneContent(next, layout(next).width).lines.length : -1, input.text);
  }
  if (key.escape) return input.kind === 'filter' ? withRows({ ...s, input: null, filter: '' }) : { ...s, input: null };
  if (key.backspace || key.delete) return edit(input.text.slice(0, -1));
  if (ch && !key.ctrl && !key.meta) return edit(input.text + ch);
  return s;
}

function setScroll(s: ViewState, value: Scroll): ViewState {
  return { ...s, scroll: anchored(s, value) };
}

/** To the next match of `term` after `from`; says so when there is none. */
function jump(s: ViewState, dir: 1 | -1, from: number, term: string): ViewState {
  const { lines } = paneContent(s, layout(s).width);
  const idx = findMatch(lines, term, from, dir);
  if (idx === -1) return { ...s, message: `no match for "${term}" in ${shownPane(s)}` };
  const next = { ...s, term, match: anchored(s, idx) };
  return setScroll(next, scrollTo(idx, lines.length, layout(s).contentHeight));
}

/** Who is about to be affected, for the question before a single stop or restart. */
function impact(i: InstanceSnapshot): string {
  const parts: string[] = [i.state];
  if (i.pid !== null) parts.push(`pid ${i.pid}`);
  if (i.port !== null) parts.push(`port ${i.port}`);
  if (i.model) parts.push(`model ${i.model}`);
  if (i.uptime_s !== null) parts.push(`up ${formatUptime(i.uptime_s)}`);
  return parts.join(', ');
}

const otherStream = (s: ViewState): ViewState => ({ ...s, stream: s.stream === 'stderr' ? 'stdout' : 'stderr' });

export function command(s: ViewState, cmd: Command): ViewState {
  const selected = selectedRow(s);
  switch (cmd) {
    case 'up':
    case 'down': {
      if (s.rows.length === 0) return s;
      const at = selectedIndex(s);
      const next = cmd === 'up' ? Math.max(0, at - 1) : Math.min(s.rows.length - 1, at + 1);
      return { ...s, selected: s.rows[next]?.name };
    }
    case 'start':
      return selected ? requestRun(s, 'start', [selected.name]) : s;
    case 'stop':
    case 'restart':
      if (!selected) return s;
      if (s.confirmSingle && ACTIVE.has(selected.state)) {
        return {
          ...s,
          confirm: { action: cmd, names: [selected.name], text: `${cmd} ${selected.name} (${impact(selected)})?` },
        };
      }
      return requestRun(s, cmd, [selected.name]);
    case 'startAll':
    case 'stopAll':
    case 'restartAll': {
      if (s.rows.length === 0) return s;
      const action = cmd === 'startAll' ? 'start' : cmd === 'stopAll' ? 'stop' : 'restart';
      const names = s.rows.map((i) => i.name);
      const serving = s.rows.filter((i) => ACTIVE.has(i.state)).length;
      const list = names.length <= 4 ? `: ${names.join(', ')}` : '';
      const text = `${action} all ${names.length} shown${s.filter ? ` (matching "${s.filter}")` : ''}${list}${action === 'start' ? '' : `; ${serving} running`}`;
      return { ...s, confirm: { action, names, text } };
    }
    case 'logs':
      // Again, while the log pane shows: the other stream (stderr / stdout).
      return shownPane(s) === 'logs' && paneShown(s) ? otherStream(s) : { ...s, pane: 'logs', paneOpen: true };
    case 'fullLog':
      return selected ? { ...s, fullLog: !s.fullLog } : s;
    case 'events':
    case 'allEvents':
      return { ...s, fullLog: false, pane: 'events', allEvents: cmd === 'allEvents', paneOpen: true };
    case 'details':
    case 'history':
      return { ...s, fullLog: false, pane: cmd, paneOpen: true };
    case 'closePane':
      return s.fullLog ? { ...s, fullLog: false } : { ...s, paneOpen: !s.paneOpen };
    case 'pageUp':
    case 'pageDown': {
      const { contentHeight } = layout(s);
      const count = paneContent(s, layout(s).width).lines.length;
      const delta = (cmd === 'pageUp' ? -1 : 1) * Math.max(1, contentHeight - 1);
      return setScroll(s, scrollBy(scrollOf(s), delta, count, contentHeight, isTail(s)));
    }
    case 'top':
      return setScroll(s, AT_TOP);
    case 'bottom': {
      const { contentHeight } = layout(s);
      const count = paneContent(s, layout(s).width).lines.length;
      return setScroll(s, isTail(s) ? FOLLOW : { top: Math.max(0, count - contentHeight), follow: false });
    }
    case 'search':
      return { ...s, input: { kind: 'search', text: '' } };
    case 'nextMatch':
    case 'prevMatch': {
      if (!s.term) return s;
      const { width, contentHeight } = layout(s);
      const range = visibleRange(paneContent(s, width).lines.length, contentHeight, scrollOf(s));
      const at = matchOf(s);
      return cmd === 'nextMatch' ? jump(s, 1, at ?? range.start - 1, s.term) : jump(s, -1, at ?? range.end, s.term);
    }
    case 'filter':
      return { ...s, input: { kind: 'filter', text: s.filter } };
    case 'sort':
      return withRows({ ...s, sort: nextSort(s.sort) });
    case 'sortReverse':
      return withRows({ ...s, sort: { ...s.sort, reverse: !s.sort.reverse } });
    case 'help':
      return { ...s, help: !s.help };
    case 'cancel':
      if (s.help) return { ...s, help: false };
      if (s.fullLog) return { ...s, fullLog: false };
      if (s.term) return { ...s, term: '', match: null };
      return { ...s, message: null };
    case 'quit':
      return { ...s, effects: [...s.effects, { kind: 'quit' }] };
  }
}

// ---- actions and their results

/** Runs `action` on each name not busy already; a batch (`label`: S, X, R) reports once, when all answered. */
function requestRun(s: ViewState, action: ActionName, names: string[], label?: string): ViewState {
  const todo = names.filter((n) => !s.busy.includes(n));
  if (todo.length === 0) return s;
  const batch = label ? s.nextBatch : null;
  return {
    ...s,
    busy: [...s.busy, ...todo],
    message: `${label ?? action} ${todo.length === 1 ? todo[0] : `${todo.length} instances`}…`,
    batches:
      batch === null
        ? s.batches
        : { ...s.batches, [batch]: { label: label as string, total: todo.length, done: 0, failed: [] } },
    nextBatch: batch === null ? s.nextBatch : batch + 1,
    effects: [...s.effects, ...todo.map((name) => ({ kind: 'run' as const, action, name, batch }))],
  };
}

function actionResult(s: ViewState, r: Extract<Msg, { type: 'result' }>): ViewState {
  const next: ViewState = {
    ...s,
    busy: s.busy.filter((n) => n !== r.name),
    history: [...s.history, { at: r.at, text: oneLine(r.text), error: r.error }].slice(-HISTORY_KEEP),
  };
  if (r.batch === null) return { ...next, message: r.text };
  const b = s.batches[r.batch];
  if (!b) return next;
  const done = b.done + 1;
  const failed = r.error ? [...b.failed, r.name] : b.failed;
  if (done < b.total) return { ...next, batches: { ...s.batches, [r.batch]: { ...b, done, failed } } };
  const batches = { ...s.batches };
  delete batches[r.batch];
  const ok = b.total - failed.length;
  return {
    ...next,
    batches,
    message:
      `${failed.length ? 'error: ' : ''}${b.label}: ${ok} of ${b.total} done` +
      (failed.length ? `, failed: ${failed.join(', ')}` : '') +
      ' (a: results)',
  };
}
