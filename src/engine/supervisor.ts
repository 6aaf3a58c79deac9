import type { Home } from '../domain/home.js';
import type { GpuSample } from '../domain/gpu.js';
import type { GpuInventoryReader } from '../platform/gpu/inventory.js';
import type { HostMemory } from '../platform/memory.js';
import type { Processes } from '../platform/processes.js';
import type { Store } from '../store/store.js';
import type { ChangeFeed } from '../store/watch.js';

// The supervisor's contract: what its actions act through and what a start answers. The actions:
// `up` (up.ts, checked by preflight.ts), `down` (down.ts), `restart` (restart.ts), waiting for
// health (wait-healthy.ts) and choosing the instances a command names (selection.ts).

/** What `up`, `down`, `restart` and the daemon act through; built in app/context.ts, scripted in tests. */
export interface SupervisorDeps {
  home: Home;
  store: Store;
  /** Tells waits that the store changed (store/watch.ts). */
  feed: ChangeFeed;
  procs: Processes;
  env: NodeJS.ProcessEnv;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Starts the detached keeper and returns its pid (synchronously: it runs inside the claim transaction). */
  spawnKeeper: (name: string, logFd: number) => number;
  /** Says what may not work as meant but does not stop a start (the CLI: stderr). */
  warn?: (message: string) => void;
  /** The GPUs a backend can select (platform/gpu/inventory.ts unless a test says otherwise). */
  gpuInventory?: GpuInventoryReader;
  /** GPU memory now, for the memory-fit preflight (one reading of the vendor tool, engine/memory-fit.ts, unless a test says otherwise). */
  gpuSample?: () => Promise<GpuSample>;
  /** Host memory now (platform/memory.ts unless a test says otherwise). */
  hostMemory?: () => HostMemory;
}

/** What `up` and `restart` answer. */
export interface UpResult {
  name: string;
  keeperPid: number;
  /** The server was already running (its keeper had died) and the new keeper re-attached to it. */
  adopted: boolean;
  /** Adopted while the config file differs from the config the server runs: a restart applies it. */
  configChanged?: boolean;
  pid: number | null;
  status: string;
  health: string | null;
  error?: string;
}
