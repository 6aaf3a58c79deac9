import fs from 'node:fs';
import { ExitCode, UserError } from '../domain/errors.js';
import { resolveHome, type Home } from '../domain/home.js';
import type { SupervisorDeps } from '../engine/supervisor.js';
import type { SnapshotSources } from './snapshot.js';
import type { ConfigLoader } from '../config/cached.js';
import type { GpuSample } from '../domain/gpu.js';
import { readNsPids } from '../platform/proc.js';
import { realProcesses } from '../platform/processes.js';
import { abortableSleep } from '../platform/sleep.js';
import { openDatabase } from '../store/db.js';
import { Store } from '../store/store.js';
import { ChangeFeed } from '../store/watch.js';
import { spawnKeeperProcess } from '../keeper/launch.js';

/**
 * The composition root of the application (the CLI, the dashboard and the daemon's REST API use it):
 * the one place where real side effects are wired in.
 */
export interface Context {
  home: Home;
  store: Store;
  deps: SupervisorDeps;
  /** What a snapshot reads, given a config loader (and the GPUs, when they were read). */
  sources: (load: ConfigLoader, gpu?: GpuSample) => SnapshotSources;
  close: () => void;
}

/** Opens the home's store and wires the supervisor's side effects. */
export function openContext(homeOpt: string | undefined): Context {
  const home = resolveHome(homeOpt);
  if (!fs.existsSync(home.root)) {
    throw new UserError(
      `home ${home.root} does not exist`,
      ExitCode.general,
      'pass --home DIR (or set LLAMA_ORCH_HOME) to the folder that holds instances/, or create it',
    );
  }
  const { db } = openDatabase(home.dbPath);
  const store = new Store(db);
  const feed = new ChangeFeed(store);
  const env = process.env;
  const procs = realProcesses;
  const deps: SupervisorDeps = {
    home,
    store,
    feed,
    procs,
    env,
    now: Date.now,
    sleep: (ms) => abortableSleep(ms),
    spawnKeeper: (name, fd) => spawnKeeperProcess(procs, home, name, fd, env),
    // On stderr: --json output on stdout stays one document.
    warn: (message) => process.stderr.write(`warning: ${message}\n`),
  };
  return {
    home,
    store,
    deps,
    sources: (load, gpu) => ({ home, store, procs, load, gpu, nsPids: readNsPids }),
    close: () => {
      feed.close();
      store.close();
    },
  };
}
