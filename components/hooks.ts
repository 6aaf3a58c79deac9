import { useEffect } from 'react';
import type { LogSource } from '../src/app/dashboard.js';
import type { LogStream } from '../src/domain/status.js';
import { terminalSafe } from '../src/domain/sanitize.js';
import type { Msg } from './state.js';

/** Ink's stdout: a writable stream, with the terminal's size where it is a terminal. */
type Out = NodeJS.WritableStream & { columns?: number; rows?: number };

/** The terminal's size now. */
export function terminalSize(stdout: Out): { columns: number; rows: number } {
  return { columns: stdout.columns || 80, rows: stdout.rows || 24 };
}

/** Each change of the terminal's size as a `resize` message. */
export function useResize(stdout: Out, dispatch: (m: Msg) => void): void {
  useEffect(() => {
    const onResize = () => dispatch({ type: 'resize', ...terminalSize(stdout) });
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout, dispatch]);
}

/**
 * Follows one instance's log into `log` messages: a bounded buffer, and lines are batched so a flood
 * cannot re-render per line.
 */
export function useLogTail(
  source: LogSource,
  name: string | undefined,
  stream: LogStream,
  dispatch: (m: Msg) => void,
  keep = 2000,
  flushMs = 100,
): void {
  useEffect(() => {
    dispatch({ type: 'log', lines: [], trimmed: 0 });
    if (!name) return;
    let pending: string[] = [];
    let buffer: string[] = [];
    // Lines dropped from the front so far: a pane scrolled back keeps its place as the buffer moves.
    let trimmed = 0;
    // The pane scrolls back: start with as many lines as it keeps.
    const stop = source.follow(name, stream, keep, (l) => {
      // A server can print anything: its colours stay, other escape and control codes do not reach
      // the terminal (domain/sanitize.ts). The files keep every byte.
      pending.push(...l.map((x) => terminalSafe(x, true)));
    });
    const timer = setInterval(() => {
      if (pending.length === 0) return;
      const all = [...buffer, ...pending];
      trimmed += Math.max(0, all.length - keep);
      buffer = all.slice(-keep);
      pending = [];
      dispatch({ type: 'log', lines: buffer, trimmed });
    }, flushMs);
    return () => {
      clearInterval(timer);
      stop();
    };
  }, [source, name, stream, keep, flushMs, dispatch]);
}
