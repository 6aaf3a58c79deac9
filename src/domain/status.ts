// The instance vocabularies (docs/ARCHITECTURE.md, "Domain"). Every layer above speaks these; the
// store persists them as text and `ps --json` publishes them.

/** Lifecycle status of an instance, as recorded by its keeper (one state machine: lifecycle.ts). */
export const STATUSES = ['stopped', 'starting', 'running', 'stopping', 'backoff', 'failed'] as const;
export type Status = (typeof STATUSES)[number];

/** What the health checks last said (llama.cpp semantics: 503 "Loading model" is `loading`). */
export type Health = 'unknown' | 'starting' | 'loading' | 'ok' | 'unhealthy' | 'unauthorized';

export type EventLevel = 'debug' | 'info' | 'warn' | 'error';

/** What an operator wants: `up` records running, `down` records stopped. */
export type DesiredState = 'running' | 'stopped';

/**
 * The state shown to people and scripts: the recorded status, plus what only an observation of
 * /proc and the config file can tell (`orphaned`: the server runs but its keeper died; `invalid`:
 * stopped with a config that does not validate).
 */
export type DisplayState = Status | 'orphaned' | 'invalid';

/** The two output streams of a server; each has its FIFO, its rotating log file and its follower. */
export type LogStream = 'stdout' | 'stderr';
export const LOG_STREAMS: readonly LogStream[] = ['stdout', 'stderr'];
