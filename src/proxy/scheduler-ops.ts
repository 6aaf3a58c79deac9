// What the scheduler (scheduler.ts) sees of an instance and the engine calls it makes: the port
// engine-ops.ts implements with the store and `up`/`down`, and the unit tests script.

/** What the scheduler needs to know of an instance now (proxy/engine-ops.ts reads it from the store). */
export interface InstanceView {
  /** A live keeper or server: starting, running, in backoff or stopping. */
  running: boolean;
  /** Running and its health is ok: requests can go to it. */
  healthy: boolean;
  status: string;
  health: string | null;
  lastError: string | null;
  /** The current run's address. */
  host: string | null;
  port: number | null;
  /** When the current run started (ms), for the idle clock of an instance no request reached yet. */
  startedAt: number | null;
  /**
   * When the keeper's last metrics scrape saw the server processing requests (null: not busy, or
   * not known). After the proxy's last request ended, that is clients calling its port directly,
   * which the proxy does not count: such an instance is neither idle nor evicted.
   */
  servingAt?: number | null;
}

/** An instance with nothing running (no runtime row, or its keeper and server gone). */
export const STOPPED_VIEW: Readonly<InstanceView> = {
  running: false,
  healthy: false,
  status: 'stopped',
  health: null,
  lastError: null,
  host: null,
  port: null,
  startedAt: null,
};

/** The memory-fit check of one instance against what runs now. */
export type FitCheck =
  | { fits: true }
  | {
      fits: false;
      message: string;
      /** The running instances on the devices that are short, whose stop would free memory there. */
      holders: string[];
    };

/** The engine calls behind on-demand start, eviction and idle unload (side effects, injected). */
export interface SchedulerOps {
  view(name: string): InstanceView;
  /** `up NAME` (locks, port checks, the memory preflight); rejects with the UserError. */
  start(name: string, reason: string): Promise<void>;
  /** Resolves when healthy; rejects when it fails, stops or `timeoutMs` passes. */
  waitHealthy(name: string, timeoutMs: number): Promise<void>;
  /** `down NAME`, recording why. */
  stop(name: string, reason: string): Promise<void>;
  fit(name: string): Promise<FitCheck>;
  /** Drops what is remembered of the instance (its upstream refused a connection). */
  forget?(name: string): void;
  event(name: string, level: 'info' | 'warn' | 'error', type: string, message: string): void;
  now(): number;
}
