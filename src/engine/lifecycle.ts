import type { EventLevel, RuntimePatch, Status, Store } from '../store/store.js';

/** The one lifecycle table (DESIGN §6): which status may follow which. */
export const TRANSITIONS: Record<Status, readonly Status[]> = {
  stopped: ['starting'],
  starting: ['running', 'backoff', 'failed', 'stopping', 'stopped'],
  running: ['stopping', 'backoff', 'failed', 'stopped'],
  backoff: ['starting', 'stopping', 'failed', 'stopped'],
  stopping: ['stopped', 'failed'],
  failed: ['starting', 'stopped'],
};

export class InvalidTransitionError extends Error {
  constructor(
    readonly instance: string,
    readonly from: Status,
    readonly to: Status,
  ) {
    super(`invalid lifecycle transition for ${instance}: ${from} -> ${to}`);
  }
}

export function canTransition(from: Status, to: Status): boolean {
  return from === to || TRANSITIONS[from].includes(to);
}

export interface TransitionOptions {
  reason?: string;
  level?: EventLevel;
  patch?: RuntimePatch;
  meta?: Record<string, unknown>;
}

/**
 * The only writer of `runtime.status`: validates the move against the table, persists it with its
 * patch and emits the event, all in one IMMEDIATE transaction. Returns the previous status.
 */
export function transition(store: Store, name: string, to: Status, opts: TransitionOptions = {}): Status {
  return store.immediate(() => {
    const row = store.getRuntime(name);
    const from: Status = row?.status ?? 'stopped';
    if (!canTransition(from, to)) throw new InvalidTransitionError(name, from, to);
    store.updateRuntime(name, { ...opts.patch, status: to });
    if (from !== to) {
      const level = opts.level ?? (to === 'failed' ? 'error' : to === 'backoff' ? 'warn' : 'info');
      const msg = `${from} -> ${to}${opts.reason ? `: ${opts.reason}` : ''}`;
      store.addEvent(name, level, 'state', msg, { from, to, ...opts.meta });
    }
    return from;
  });
}
