import type { StateWrites } from '../health/loop.js';
import { describeExit } from './classify.js';

export interface ExitRecord {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  runMs: number;
  /** What ended the run: the server itself, a stop request, or a health restart. */
  cause: 'exit' | 'stop' | 'health';
  at: number;
  stderrTail: string[];
  killed?: boolean;
  leftovers?: number[];
  /** A re-attached server is not this keeper's child: its exit status cannot be known. */
  adopted?: boolean;
}

/** How a run ended, in words and facts, for the store's exit intent. */
export function recordExit(state: StateWrites, name: string, r: ExitRecord): void {
  const what = describeExit(r.code, r.signal, r.runMs, r.adopted);
  const extra = r.killed ? ' (needed SIGKILL)' : '';
  const left = r.leftovers && r.leftovers.length > 0 ? `; processes left: ${r.leftovers.join(', ')}` : '';
  const facts = {
    pid: r.pid,
    code: r.code,
    signal: r.signal,
    at: r.at,
    cause: r.cause,
    stderrTail: r.stderrTail,
    message: `server pid ${r.pid} ${what}${extra}${left}`,
    meta: { pid: r.pid, code: r.code, signal: r.signal, run_ms: r.runMs, cause: r.cause },
  };
  state.write('exit', (s) => s.recordExit(name, facts, r.cause === 'stop' ? 'info' : 'error'));
}
