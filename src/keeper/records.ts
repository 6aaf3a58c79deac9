import type { StateWrites } from '../health/loop.js';
import { describeExit, describeOutOfMemory, outOfMemory } from './classify.js';

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
  // A server that died of an out-of-memory (at load or at run time) says so, in the event and last_error.
  const oom = r.cause === 'exit' ? outOfMemory(r.stderrTail) : undefined;
  const reason = oom ? describeOutOfMemory(oom) : null;
  const facts = {
    pid: r.pid,
    code: r.code,
    signal: r.signal,
    at: r.at,
    cause: r.cause,
    stderrTail: r.stderrTail,
    message: `server pid ${r.pid} ${what}${extra}${left}${reason ? `: ${reason}` : ''}`,
    reason,
    meta: {
      pid: r.pid,
      code: r.code,
      signal: r.signal,
      run_ms: r.runMs,
      cause: r.cause,
      ...(reason ? { reason } : {}),
    },
  };
  state.write('exit', (s) => s.recordExit(name, facts, r.cause === 'stop' ? 'info' : 'error'));
}
