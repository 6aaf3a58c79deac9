import React, { useMemo, useState } from 'react';
import { Box, Text, useApp, useInput } from 'ink';
import type { LogSource } from '../src/logs/follow.js';
import type { LogStream } from '../src/domain/status.js';
import { Header } from './Header.js';
import { InstanceTable } from './InstanceTable.js';
import { DetailsPane, EventFeed, Footer, Help, LogPane } from './Panes.js';
import { useDashboard, useLogTail, useTerminalSize, type ModelLike } from './hooks.js';
import { matchKey, type Command } from './keymap.js';

export type ActionName = 'start' | 'stop' | 'restart';

export interface DashboardActions {
  /** Runs the same engine function as the CLI; resolves to a one-line result, rejects with a readable error. */
  run: (action: ActionName, name: string) => Promise<string>;
  describe: (name: string) => string[];
}

type Pane = 'logs' | 'events' | 'details';

export interface AppProps {
  model: ModelLike;
  logs: LogSource;
  actions: DashboardActions;
  onQuit?: () => void;
}

export function App({ model, logs, actions, onQuit }: AppProps) {
  const state = useDashboard(model);
  const { exit } = useApp();
  const { columns, rows } = useTerminalSize();
  const [selectedName, setSelectedName] = useState<string | undefined>(undefined);
  const [pane, setPane] = useState<Pane>('logs');
  const [stream, setStream] = useState<LogStream>('stderr');
  const [filter, setFilter] = useState('');
  const [filtering, setFiltering] = useState(false);
  const [help, setHelp] = useState(false);
  const [confirm, setConfirm] = useState<{ action: ActionName; text: string } | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState<Set<string>>(new Set());

  const visible = useMemo(() => state.instances.filter((i) => i.name.includes(filter)), [state.instances, filter]);
  const selectedIdx = Math.max(
    0,
    visible.findIndex((i) => i.name === selectedName),
  );
  const selected = visible[selectedIdx];
  const logLines = useLogTail(logs, pane === 'logs' ? selected?.name : undefined, stream);

  const run = (action: ActionName, names: string[]) => {
    for (const name of names) {
      if (busy.has(name)) continue;
      setBusy((b) => new Set(b).add(name));
      setMessage(`${action} ${name}…`);
      actions
        .run(action, name)
        .then(
          (res) => setMessage(res),
          (e: unknown) => setMessage(`error: ${e instanceof Error ? e.message : String(e)}`),
        )
        .finally(() =>
          setBusy((b) => {
            const n = new Set(b);
            n.delete(name);
            return n;
          }),
        );
    }
  };

  const dispatch = (cmd: Command) => {
    switch (cmd) {
      case 'up':
      case 'down': {
        if (visible.length === 0) return;
        const next = cmd === 'up' ? Math.max(0, selectedIdx - 1) : Math.min(visible.length - 1, selectedIdx + 1);
        setSelectedName(visible[next]?.name);
        return;
      }
      case 'start':
      case 'stop':
      case 'restart':
        if (selected) run(cmd, [selected.name]);
        return;
      case 'startAll':
      case 'stopAll':
      case 'restartAll': {
        const action = cmd === 'startAll' ? 'start' : cmd === 'stopAll' ? 'stop' : 'restart';
        setConfirm({
          action,
          text: `${action} all ${visible.length} instance(s)${filter ? ` matching "${filter}"` : ''}?`,
        });
        return;
      }
      case 'logs':
        if (pane === 'logs') setStream((s) => (s === 'stderr' ? 'stdout' : 'stderr'));
        else setPane('logs');
        return;
      case 'toggleStream':
        setStream((s) => (s === 'stderr' ? 'stdout' : 'stderr'));
        return;
      case 'events':
        setPane('events');
        return;
      case 'details':
        setPane('details');
        return;
      case 'filter':
        setFiltering(true);
        return;
      case 'help':
        setHelp((h) => !h);
        return;
      case 'cancel':
        setHelp(false);
        setMessage(null);
        return;
      case 'quit':
        onQuit?.();
        exit();
        return;
    }
  };

  useInput(
    (input, key) => {
      model.touch?.();
      if (confirm) {
        if (input === 'y' || input === 'Y')
          run(
            confirm.action,
            visible.map((i) => i.name),
          );
        setConfirm(null);
        return;
      }
      if (filtering) {
        if (key.return) setFiltering(false);
        else if (key.escape) {
          setFilter('');
          setFiltering(false);
        } else if (key.backspace || key.delete) setFilter((f) => f.slice(0, -1));
        else if (input && !key.ctrl && !key.meta) setFilter((f) => f + input);
        return;
      }
      const cmd = matchKey(input, key);
      if (cmd) dispatch(cmd);
    },
    { isActive: true },
  );

  // Every line is accounted for, so a frame never exceeds the terminal (that would scroll and smear).
  const tableRows = Math.min(Math.max(visible.length, 1), Math.max(3, Math.floor((rows - 6) / 2)));
  const fixed = 1 + (state.error ? 1 : 0) + 1 + tableRows + 1 + 2 + 1; // header, error, table head+rows, pane border, footer, spare
  const paneHeight = Math.max(2, rows - fixed);
  const contentHeight = paneHeight - 1;
  // describe reads the config and SQL: once per published state, not on every render.
  const selectedKey = selected?.name;
  const detailLines = useMemo(
    () => (pane === 'details' && selectedKey ? actions.describe(selectedKey) : []),
    [pane, selectedKey, state, actions],
  );
  const events =
    pane === 'events'
      ? state.events.filter((e) => !selected || e.instance_name === selected.name || e.instance_name === null)
      : [];

  return (
    <Box flexDirection="column" width={columns - 1}>
      <Header state={state} />
      {state.error ? <Text color="red">error reading state: {state.error}</Text> : null}
      <InstanceTable rows={visible} selected={selectedIdx} width={columns - 1} now={state.now} maxRows={tableRows} />
      <Box
        borderStyle="single"
        borderLeft={false}
        borderRight={false}
        borderBottom={false}
        flexDirection="column"
        height={paneHeight + 1}
        overflow="hidden"
      >
        {help ? (
          <Help />
        ) : pane === 'logs' ? (
          <LogPane name={selected?.name} stream={stream} lines={logLines} height={contentHeight} width={columns - 1} />
        ) : pane === 'events' ? (
          <EventFeed events={events} height={contentHeight} name={selected?.name} />
        ) : (
          <DetailsPane lines={detailLines} height={contentHeight} />
        )}
      </Box>
      <Footer message={message} filter={filter} filtering={filtering} confirm={confirm?.text ?? null} />
    </Box>
  );
}
