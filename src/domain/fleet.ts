import type { GpuInfo } from './gpu.js';
import type { InstanceSnapshot, RigSnapshot } from './snapshot.js';

/**
 * The fleet view (README, "Several rigs"): every rig's rows, each with its rig. These field names are
 * a public API, as the snapshot's are.
 *
 * A rig's state: `ok` (it answered now), `unreachable` (no answer within the deadline: refused, timed
 * out, a network error), `unauthorized` (it refused our key), `refused` (we did not ask it: its key
 * variable is unset, or its key would cross the network in clear), `error` (it answered with
 * something else).
 */
export type RigState = 'ok' | 'unreachable' | 'unauthorized' | 'refused' | 'error';

export interface RigStatus {
  rig: string;
  /** The daemon asked; null for this rig, read from its home. */
  url: string | null;
  state: RigState;
  /** Why it is not `ok`; null when it is. */
  error: string | null;
  /** When it last answered (ISO 8601); null: never, as far as this home remembers. */
  seen_at: string | null;
}

/** One row of `ps --fleet --json`: the rig, then the instance as `ps --json` shows it. */
export type FleetInstance = { rig: string } & InstanceSnapshot & {
    /** The rig's state now: rows of a rig that is not `ok` are as it last answered (`rig_seen_at`). */
    rig_state: RigState;
    rig_seen_at: string | null;
  };

/** One element of `gpus --fleet --json`. */
export type FleetGpu = { rig: string } & GpuInfo & { rig_state: RigState; rig_seen_at: string | null };

/** One rig of `--once --fleet --json`. */
export type FleetRig = RigStatus &
  Pick<RigSnapshot, 'instances' | 'gpus' | 'gpu_error'> & { daemon: RigSnapshot['daemon'] | null };

/** One event of `events --fleet --json`: the REST API's event, with its rig. */
export interface FleetEvent {
  rig: string;
  id: number;
  ts: string;
  instance: string | null;
  level: string;
  type: string;
  message: string;
  meta: unknown;
}
