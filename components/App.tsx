import React, { useEffect, useMemo, useRef, useState } from 'react';
import { Box, Text, useApp, useInput } from 'ink';
import type { InstanceSnapshot } from '../src/domain/snapshot.js';
import type { LogSource } from '../src/logs/follow.js';
import type { LogStream } from '../src/domain/status.js';
import { formatUptime } from '../src/format/text.js';
import { GpuPanel, gpuPanelHeight } from './GpuPanel.js';
import { Header } from './Header.js';
import { InstanceTable } from './InstanceTable.js';
import { Footer, Help, ScrollPane, eventLines, historyLines, type ActionResult } from './Panes.js';
import { useDashboard, useLogTail, useTerminalSize, type ModelLike } from './hooks.js';
import { matchKey, type Command } from './keymap.js';
import {
  AT_TOP,
  FOLLOW,
  findMatch,
  nextSort,
  scrollBy,
  scrollTo,
  sortRows,
  visibleRange,
  wrapLines,
  type Scroll,
  type Sort,
} from './view.js';

export type ActionName = 'start' | 'stop' | 'restart';

export interface DashboardActions {
  /** Runs the same engine function as the CLI; resolves to a one-line result, rejects with a readable error. */
  run: (action: ActionName, name: string) => Promise<string>;
  describe: (name: string) => string[];
}

type Pane = 'logs' | 'events' | 'details' | 'history';

export interface AppProps {
  model: ModelLike;
  logs: LogSource;
  actions: DashboardActions;
  onQuit?: () => void;
  /** Ask before `x` and `r` act on a running instance (default); `llama-orch --yes` turns it off. */
  confirmSingle?: boolean;
}

/** States in which stopping or restarting interrupts something (a server serving or loading). */
const ACTIVE = new Set(['running', 'starting', 'backoff', 'stopping', 'orphaned']);
const HISTORY_KEEP = 50;

/** A message as one line: an error can list several problems, one per line. */
function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' · ');
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

export function App({ model, logs, actions, onQuit, confirmSingle = true }: AppProps) {
  const state = useDashboard(model);
  const { exit } = useApp();
  const { columns, rows } = useTerminalSize();
  const width = columns - 1;
  const [selectedName, setSelectedName] = useState<string | undefined>(undefined);
  const [pane, setPane] = useState<Pane>('logs');
  const [paneOpen, setPaneOpen] = useState(true);
  const [fullLog, setFullLog] = useState(false);
  const [allEvents, setAllEvents] = useState(false);
  const [stream, setStream] = useState<LogStream>('stderr');
  const [filter, setFilter] = useState('');
  const [input, setInput] = useState<{ kind: 'filter' | 'search'; text: string } | null>(null);
  const [term, setTerm] = useState('');
  const [matchState, setMatchState] = useState<{ key: string; at: number; base: number } | null>(null);
  const [sort, setSort] = useState<Sort>({ key: 'name', reverse: false });
  const [help, setHelp] = useState(false);
  const [confirm, setConfirm] = useState<{ action: ActionName; names: string[]; text: string } | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [history, setHistory] = useState<ActionResult[]>([]);
  const busy = useRef(new Set<string>());
  // A message that is not an error goes after 15 s; an error stays until Esc or the next message.
  useEffect(() => {
    if (message === null || message.startsWith('error')) return;
    const t = setTimeout(() => setMessage((m) => (m === message ? null : m)), 15_000);
    return () => clearTimeout(t);
  }, [message]);
  // Positions are kept with the log's trimmed count when set (`base`): lines dropped from the front of
  // the buffer since then move the view and the last match back by as many.
  const [scrollState, setScrollState] = useState<{ key: string; s: Scroll; base: number } | null>(null);

  const visible = useMemo(
    () =>
      sortRows(
        state.instances.filter((i) => i.name.includes(filter)),
        sort,
      ),
    [state.instances, filter, sort],
  );
  const selectedIdx = Math.max(
    0,
    visible.findIndex((i) => i.name === selectedName),
  );
  const selected = visible[selectedIdx];
  // What is shown as selected is what stays selected (a filter typed or cleared never moves it).
  useEffect(() => {
    if (selected && selected.name !== selectedName) setSelectedName(selected.name);
  }, [selected, selectedName]);
  const shownPane: Pane = fullLog ? 'logs' : pane;
  const logTail = useLogTail(logs, (paneOpen || fullLog) && shownPane === 'logs' ? selected?.name : undefined, stream);
  const logLines = logTail.lines;

  // ---- layout: every line is accounted for, so a frame never exceeds the terminal
  const errorLines = state.error ? 1 : 0;
  const gpuPanel = { gpus: state.gpus, error: state.gpuError, cpuOnly: state.cpuOnly };
  const gpuLines = gpuPanelHeight(gpuPanel, rows);
  const chrome = 1 + errorLines + gpuLines + 2 + 1; // header, error, GPU panel, footer (2), spare
  const tableRows = fullLog
    ? 0
    : paneOpen
      ? Math.min(Math.max(visible.length, 1), Math.max(3, Math.floor((rows - 6) / 2)))
      : Math.max(1, rows - chrome - 1);
  const contentHeight = fullLog ? Math.max(1, rows - chrome - 1) : Math.max(1, rows - chrome - (1 + tableRows) - 2);

  // ---- the pane's lines
  const selectedKey = selected?.name;
  // describe reads the config and SQL: once per published state, not on every render.
  const detailLines = useMemo(
    () => (shownPane === 'details' && paneOpen && selectedKey ? actions.describe(selectedKey) : []),
    [shownPane, paneOpen, selectedKey, state, actions],
  );
  const paneContent = useMemo((): { lines: string[]; colors?: Array<string | undefined>; title: string } => {
    switch (shownPane) {
      case 'logs':
        return {
          lines: logLines,
          title: `logs · ${selected?.name ?? '-'} · ${stream}${fullLog ? ' (Esc: back)' : ''}`,
        };
      case 'events': {
        const evs = allEvents
          ? state.events
          : state.events.filter((e) => !selected || e.instance_name === selected.name || e.instance_name === null);
        return {
          ...eventLines(evs),
          title: allEvents ? 'events · all instances' : `events · ${selected?.name ?? '-'}`,
        };
      }
      case 'details':
        return { lines: wrapLines(detailLines, width), title: `details · ${selected?.name ?? '-'}` };
      case 'history': {
        // Wrapped, not cut: a failed action's whole reason (every problem, the hint) is read here.
        const h = historyLines(history);
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
  }, [shownPane, logLines, selected, stream, fullLog, allEvents, state.events, detailLines, width, history]);
  const tail = shownPane !== 'details';
  const viewKey = `${shownPane}:${shownPane === 'events' && allEvents ? '*' : (selected?.name ?? '')}:${stream}`;
  const trimmed = shownPane === 'logs' ? logTail.trimmed : 0;
  const scroll =
    scrollState?.key === viewKey
      ? scrollState.s.follow
        ? scrollState.s
        : { top: Math.max(0, scrollState.s.top - (trimmed - scrollState.base)), follow: false }
      : tail
        ? FOLLOW
        : AT_TOP;
  const setScroll = (s: Scroll) => setScrollState({ key: viewKey, s, base: trimmed });
  const matchAt = matchState?.key === viewKey ? Math.max(0, matchState.at - (trimmed - matchState.base)) : null;
  const setMatchAt = (at: number | null) => setMatchState(at === null ? null : { key: viewKey, at, base: trimmed });

  // ---- actions
  const record = (text: string, error: boolean) =>
    setHistory((h) => [...h, { at: Date.now(), text: oneLine(text), error }].slice(-HISTORY_KEEP));

  const run = (action: ActionName, names: string[], label?: string) => {
    const todo = names.filter((n) => !busy.current.has(n));
    if (todo.length === 0) return;
    let done = 0;
    const failed: string[] = [];
    setMessage(`${label ?? action} ${todo.length === 1 ? todo[0] : `${todo.length} instances`}…`);
    for (const name of todo) {
      busy.current.add(name);
      actions
        .run(action, name)
        .then(
          (res) => {
            const err = res.startsWith('error');
            if (err) failed.push(name);
            record(res, err);
            if (!label) setMessage(res);
          },
          (e: unknown) => {
            const text = `error: ${e instanceof Error ? e.message : String(e)}`;
            failed.push(name);
            record(text, true);
            if (!label) setMessage(text);
          },
        )
        .finally(() => {
          busy.current.delete(name);
          done++;
          if (label && done === todo.length) {
            const ok = todo.length - failed.length;
            setMessage(
              `${failed.length ? 'error: ' : ''}${label}: ${ok} of ${todo.length} done` +
                (failed.length ? `, failed: ${failed.join(', ')}` : '') +
                ' (a: results)',
            );
          }
        });
    }
  };

  const jump = (dir: 1 | -1, from: number, t = term) => {
    const idx = findMatch(paneContent.lines, t, from, dir);
    if (idx === -1) {
      setMessage(`no match for "${t}" in ${shownPane}`);
      return;
    }
    setTerm(t);
    setMatchAt(idx);
    setScroll(scrollTo(idx, paneContent.lines.length, contentHeight));
  };

  const dispatch = (cmd: Command) => {
    const count = paneContent.lines.length;
    const range = visibleRange(count, contentHeight, scroll);
    switch (cmd) {
      case 'up':
      case 'down': {
        if (visible.length === 0) return;
        const next = cmd === 'up' ? Math.max(0, selectedIdx - 1) : Math.min(visible.length - 1, selectedIdx + 1);
        setSelectedName(visible[next]?.name);
        return;
      }
      case 'start':
        if (selected) run('start', [selected.name]);
        return;
      case 'stop':
      case 'restart':
        if (!selected) return;
        if (confirmSingle && ACTIVE.has(selected.state)) {
          setConfirm({
            action: cmd,
            names: [selected.name],
            text: `${cmd} ${selected.name} (${impact(selected)})?`,
          });
        } else run(cmd, [selected.name]);
        return;
      case 'startAll':
      case 'stopAll':
      case 'restartAll': {
        if (visible.length === 0) return;
        const action = cmd === 'startAll' ? 'start' : cmd === 'stopAll' ? 'stop' : 'restart';
        const names = visible.map((i) => i.name);
        const serving = visible.filter((i) => ACTIVE.has(i.state)).length;
        const list = names.length <= 4 ? `: ${names.join(', ')}` : '';
        setConfirm({
          action,
          names,
          text: `${action} all ${names.length} shown${filter ? ` (matching "${filter}")` : ''}${list}${action === 'start' ? '' : `; ${serving} running`}`,
        });
        return;
      }
      case 'logs':
        if (shownPane === 'logs' && (paneOpen || fullLog)) setStream((s) => (s === 'stderr' ? 'stdout' : 'stderr'));
        else {
          setPane('logs');
          setPaneOpen(true);
        }
        return;
      case 'toggleStream':
        setStream((s) => (s === 'stderr' ? 'stdout' : 'stderr'));
        return;
      case 'fullLog':
        if (!selected) return;
        setFullLog((f) => !f);
        return;
      case 'events':
      case 'allEvents':
        setFullLog(false);
        setPane('events');
        setAllEvents(cmd === 'allEvents');
        setPaneOpen(true);
        return;
      case 'details':
      case 'history':
        setFullLog(false);
        setPane(cmd);
        setPaneOpen(true);
        return;
      case 'closePane':
        if (fullLog) setFullLog(false);
        else setPaneOpen((o) => !o);
        return;
      case 'pageUp':
      case 'pageDown':
        setScroll(
          scrollBy(scroll, (cmd === 'pageUp' ? -1 : 1) * Math.max(1, contentHeight - 1), count, contentHeight, tail),
        );
        return;
      case 'top':
        setScroll(AT_TOP);
        return;
      case 'bottom':
        setScroll(tail ? FOLLOW : { top: Math.max(0, count - contentHeight), follow: false });
        return;
      case 'search':
        setInput({ kind: 'search', text: '' });
        return;
      case 'nextMatch':
        if (term) jump(1, matchAt ?? range.start - 1);
        return;
      case 'prevMatch':
        if (term) jump(-1, matchAt ?? range.end);
        return;
      case 'filter':
        setInput({ kind: 'filter', text: filter });
        return;
      case 'sort':
        setSort((s) => nextSort(s));
        return;
      case 'sortReverse':
        setSort((s) => ({ ...s, reverse: !s.reverse }));
        return;
      case 'help':
        setHelp((h) => !h);
        return;
      case 'cancel':
        if (help) setHelp(false);
        else if (fullLog) setFullLog(false);
        else if (term) {
          setTerm('');
          setMatchAt(null);
        } else setMessage(null);
        return;
      case 'quit':
        onQuit?.();
        exit();
        return;
    }
  };

  useInput(
    (ch, key) => {
      model.touch?.();
      if (confirm) {
        if (ch === 'y' || ch === 'Y')
          run(confirm.action, confirm.names, confirm.names.length > 1 ? `${confirm.action} all` : undefined);
        else setMessage(`${confirm.action}: cancelled`);
        setConfirm(null);
        return;
      }
      if (input) {
        const apply = (text: string) => {
          if (input.kind === 'filter') setFilter(text);
        };
        if (key.return) {
          setInput(null);
          if (input.kind === 'search') {
            // The term is kept once it matches (jump); an empty search clears it.
            if (!input.text) setTerm('');
            // Logs and events: the newest match first (searching up from the bottom); details: from the top.
            if (input.text) jump(tail ? -1 : 1, tail ? paneContent.lines.length : -1, input.text);
          }
        } else if (key.escape) {
          if (input.kind === 'filter') setFilter('');
          setInput(null);
        } else if (key.backspace || key.delete) {
          const text = input.text.slice(0, -1);
          setInput({ ...input, text });
          apply(text);
        } else if (ch && !key.ctrl && !key.meta) {
          const text = input.text + ch;
          setInput({ ...input, text });
          apply(text);
        }
        return;
      }
      // Alt-x is not x (Escape and escape sequences carry meta too: only a printable key is dropped).
      if (key.meta && !key.escape && /^[\x20-\x7e]$/.test(ch)) return;
      const cmd = matchKey(ch, key);
      // While help covers the screen, only closing it and quitting act: nothing hidden is touched.
      if (cmd && help && cmd !== 'help' && cmd !== 'cancel' && cmd !== 'quit') return;
      if (cmd) dispatch(cmd);
    },
    { isActive: true },
  );

  const prefix =
    (filter ? `[f ${filter}] ` : '') +
    (sort.key !== 'name' || sort.reverse ? `[sort ${sort.key}${sort.reverse ? ' ▲' : ''}] ` : '');
  const prompt = confirm
    ? { kind: 'confirm' as const, text: confirm.text }
    : input
      ? { kind: 'input' as const, text: `${input.kind === 'filter' ? 'filter: ' : 'search: /'}${input.text}` }
      : null;

  return (
    <Box flexDirection="column" width={width}>
      <Header state={state} />
      {state.error ? (
        <Text color="red" wrap="truncate">
          error reading state: {state.error}
        </Text>
      ) : null}
      <GpuPanel {...gpuPanel} width={width} height={gpuLines} />
      {help ? (
        <Box height={rows - chrome} overflow="hidden">
          <Help />
        </Box>
      ) : (
        <>
          {fullLog ? null : (
            <InstanceTable
              rows={visible}
              layoutRows={state.instances}
              filter={filter}
              selected={selectedIdx}
              width={width}
              now={state.now}
              maxRows={tableRows}
              sort={sort}
            />
          )}
          {paneOpen || fullLog ? (
            <Box
              flexDirection="column"
              height={contentHeight + (fullLog ? 1 : 2)}
              overflow="hidden"
              // A rule above the pane, except in the full-screen log (nothing above it to set apart).
              {...(fullLog
                ? {}
                : { borderStyle: 'single' as const, borderLeft: false, borderRight: false, borderBottom: false })}
            >
              <ScrollPane
                title={paneContent.title}
                lines={paneContent.lines}
                {...(paneContent.colors ? { colors: paneContent.colors } : {})}
                height={contentHeight}
                width={width}
                scroll={scroll}
                term={term}
                empty={
                  shownPane === 'logs' ? '(no output yet)' : shownPane === 'history' ? '(no actions yet)' : '(none)'
                }
              />
            </Box>
          ) : null}
        </>
      )}
      <Footer message={message === null ? null : oneLine(message)} prefix={prefix} prompt={prompt} width={width} />
    </Box>
  );
}
