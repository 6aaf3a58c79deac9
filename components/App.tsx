import React, { useEffect, useMemo, useRef, useState } from 'react';
import { Box, Text, useApp, useInput, useStdout } from 'ink';
import type { DashboardActions, LogSource } from '../src/app/dashboard.js';
import { GpuPanel } from './GpuPanel.js';
import { Header } from './Header.js';
import { InstanceTable } from './InstanceTable.js';
import { Footer, Help, ScrollPane } from './Panes.js';
import { terminalSize, useLogTail, useResize } from './hooks.js';
import { emptyText, footerPrefix, layout, oneLine, paneContent, prompt } from './layout.js';
import type { DashboardState } from './model.js';
import { reduce } from './reduce.js';
import {
  detailsTarget,
  initialView,
  logTarget,
  scrollOf,
  selectedIndex,
  selectedRow,
  shownPane,
  type Effect,
  type Msg,
  type ViewState,
} from './state.js';

export type { ActionName, DashboardActions } from '../src/app/dashboard.js';

/** What the App reads of the model (components/model.ts DashboardModel). */
export interface ModelLike {
  subscribe: (fn: () => void) => () => void;
  getSnapshot: () => DashboardState;
  /** Told about every key press (the model ticks faster while someone is typing). */
  touch?: () => void;
  /** The instance the details pane shows (undefined: none): the model describes it into its state. */
  showDetails?: (name: string | undefined) => void;
}

export interface AppProps {
  model: ModelLike;
  logs: LogSource;
  actions: DashboardActions;
  onQuit?: () => void;
  /** Ask before `x` and `r` act on a running instance (default); `llama-orch --yes` turns it off. */
  confirmSingle?: boolean;
}

/**
 * The view state, changed only through reduce (state.ts, reduce.ts); the effects it asks for (an
 * action, quitting) are performed here, and their results come back as messages.
 */
function useView(props: AppProps) {
  const { exit } = useApp();
  const { stdout } = useStdout();
  const latest = useRef(props);
  latest.current = props;
  const [view, setView] = useState(() =>
    initialView(props.model.getSnapshot(), terminalSize(stdout), props.confirmSingle ?? true),
  );
  const current = useRef(view);
  const dispatch = useMemo(() => {
    const perform = (e: Effect) => {
      if (e.kind === 'quit') {
        latest.current.onQuit?.();
        exit();
        return;
      }
      const { action, name, batch } = e;
      const done = (text: string, error: boolean) =>
        dispatch({ type: 'result', name, text, error, at: Date.now(), batch });
      latest.current.actions.run(action, name).then(
        (res) => done(res, res.startsWith('error')),
        (err: unknown) => done(`error: ${err instanceof Error ? err.message : String(err)}`, true),
      );
    };
    const dispatch = (msg: Msg): void => {
      let next = reduce(current.current, msg);
      const effects = next.effects;
      if (effects.length) next = { ...next, effects: [] };
      current.current = next;
      setView(next);
      for (const e of effects) perform(e);
    };
    return dispatch;
  }, [exit]);
  useResize(stdout, dispatch);
  return { view, dispatch };
}

export function App(props: AppProps) {
  const { model, logs } = props;
  const { view, dispatch } = useView(props);

  // The model's updates come in as messages.
  useEffect(() => {
    const update = () => dispatch({ type: 'data', data: model.getSnapshot() });
    const off = model.subscribe(update);
    update();
    return off;
  }, [model, dispatch]);
  // A message that is not an error goes after 15 s; an error stays until Esc or the next message.
  useEffect(() => {
    const m = view.message;
    if (m === null || m.startsWith('error')) return;
    const t = setTimeout(() => dispatch({ type: 'expire', message: m }), 15_000);
    return () => clearTimeout(t);
  }, [view.message, dispatch]);
  useLogTail(logs, logTarget(view), view.stream, dispatch);
  // The model describes the instance the details pane shows, when it changes and as the data does.
  const describing = detailsTarget(view);
  useEffect(() => model.showDetails?.(describing), [model, describing]);

  useInput((input, key) => {
    model.touch?.();
    dispatch({ type: 'key', input, key });
  });

  return <Frame view={view} />;
}

/** The frame: header, errors, GPU panel, then help, or the table and the pane; the footer. */
function Frame({ view }: { view: ViewState }) {
  const data = view.data;
  const l = layout(view);
  const pane = shownPane(view);
  const name = selectedRow(view)?.name;
  const content = useMemo(
    () => paneContent(view, l.width),
    // The pane's lines change only with these (not with every tick of the model).
    [
      pane,
      view.log.lines,
      name,
      view.stream,
      view.fullLog,
      view.allEvents,
      data.events,
      data.details,
      l.width,
      view.history,
    ],
  );
  return (
    <Box flexDirection="column" width={l.width}>
      <Header state={data} />
      {data.error ? (
        <Text color="red" wrap="truncate">
          error reading state: {data.error}
        </Text>
      ) : null}
      <GpuPanel
        gpus={data.gpus}
        error={data.gpuError}
        cpuOnly={data.cpuOnly}
        off={data.gpuOff ?? null}
        width={l.width}
        height={l.gpuLines}
      />
      {view.help ? (
        <Box height={l.helpHeight} overflow="hidden">
          <Help />
        </Box>
      ) : (
        <>
          {view.fullLog ? null : (
            <InstanceTable
              rows={view.rows}
              layoutRows={data.instances}
              filter={view.filter}
              selected={selectedIndex(view)}
              width={l.width}
              now={data.now}
              maxRows={l.tableRows}
              sort={view.sort}
            />
          )}
          {view.paneOpen || view.fullLog ? (
            <Box
              flexDirection="column"
              height={l.contentHeight + (view.fullLog ? 1 : 2)}
              overflow="hidden"
              // A rule above the pane, except in the full-screen log (nothing above it to set apart).
              {...(view.fullLog
                ? {}
                : { borderStyle: 'single' as const, borderLeft: false, borderRight: false, borderBottom: false })}
            >
              <ScrollPane
                title={content.title}
                lines={content.lines}
                {...(content.colors ? { colors: content.colors } : {})}
                height={l.contentHeight}
                width={l.width}
                scroll={scrollOf(view)}
                term={view.term}
                empty={emptyText(view)}
              />
            </Box>
          ) : null}
        </>
      )}
      <Footer
        message={view.message === null ? null : oneLine(view.message)}
        prefix={footerPrefix(view)}
        prompt={prompt(view)}
        width={l.width}
      />
    </Box>
  );
}
