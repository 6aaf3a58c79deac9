import type { Status } from './status.js';

/** The one lifecycle table (docs/ARCHITECTURE.md, "Lifecycle"): which status may follow which. */
export const TRANSITIONS: Record<Status, readonly Status[]> = {
  stopped: ['starting'],
  starting: ['running', 'backoff', 'failed', 'stopping', 'stopped'],
  running: ['stopping', 'backoff', 'failed', 'stopped'],
  backoff: ['starting', 'stopping', 'failed', 'stopped'],
  // backoff: a server stopped because its health failed, to be restarted.
  stopping: ['stopped', 'failed', 'backoff'],
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

/** Statuses in which a keeper is (or should be) at work. */
export const ACTIVE_STATUSES: ReadonlySet<Status> = new Set(['starting', 'running', 'backoff', 'stopping']);
