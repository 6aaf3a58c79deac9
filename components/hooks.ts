import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { useStdout } from 'ink';
import type { DashboardState } from './model.js';
import type { LogSource } from '../src/logs/follow.js';
import type { LogStream } from '../src/domain/status.js';
import { terminalSafe } from '../src/domain/sanitize.js';

export interface ModelLike {
  subscribe: (fn: () => void) => () => void;
  getSnapshot: () => DashboardState;
  /** Told about every key press (the model ticks faster while someone is typing). */
  touch?: () => void;
}

export function useDashboard(model: ModelLike): DashboardState {
  return useSyncExternalStore(model.subscribe, model.getSnapshot);
}

export function useTerminalSize(): { columns: number; rows: number } {
  const { stdout } = useStdout();
  const read = () => ({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);
  return size;
}

/** Follows one instance's log; a bounded buffer, and lines are batched so a flood cannot re-render per line. */
export function useLogTail(
  source: LogSource,
  name: string | undefined,
  stream: LogStream,
  keep = 2000,
  flushMs = 100,
): { lines: string[]; trimmed: number } {
  const [tail, setTail] = useState<{ lines: string[]; trimmed: number }>({ lines: [], trimmed: 0 });
  const pending = useRef<string[]>([]);
  useEffect(() => {
    setTail({ lines: [], trimmed: 0 });
    pending.current = [];
    if (!name) return;
    let buffer: string[] = [];
    // Lines dropped from the front so far: a pane scrolled back keeps its place as the buffer moves.
    let trimmed = 0;
    // The pane scrolls back: start with as many lines as it keeps.
    const stop = source.follow(name, stream, keep, (l) => {
      // A server can print anything: its colours stay, other escape and control codes do not reach
      // the terminal (format/sanitize.ts). The files keep every byte.
      pending.current.push(...l.map((x) => terminalSafe(x, true)));
    });
    const timer = setInterval(() => {
      if (pending.current.length === 0) return;
      const all = [...buffer, ...pending.current];
      trimmed += Math.max(0, all.length - keep);
      buffer = all.slice(-keep);
      pending.current = [];
      setTail({ lines: buffer, trimmed });
    }, flushMs);
    return () => {
      clearInterval(timer);
      stop();
    };
  }, [source, name, stream, keep, flushMs]);
  return tail;
}
