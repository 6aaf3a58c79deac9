import fs from 'node:fs';
import type { execa as ExecaFn } from 'execa';
import { ExitCode, UserError } from '../errors.js';
import { resolveHome, type Home } from '../home.js';
import { openDatabase } from '../store/db.js';
import { Store } from '../store/store.js';
import type { SupervisorDeps } from '../engine/supervisor.js';
import { keeperEntry } from '../paths.js';
import { abortableSleep } from '../engine/sleep.js';

/** The composition root: the one place where real side effects are wired in. */
export interface Context {
  home: Home;
  store: Store;
  deps: SupervisorDeps;
  close: () => void;
}

export function spawnKeeperProcess(
  execa: typeof ExecaFn,
  home: Home,
  name: string,
  logFd: number,
  env: NodeJS.ProcessEnv,
): number {
  // execa's types only accept the literal fds 0-2; any inherited fd number works at run time.
  const fd = logFd as 1;
  // The keeper makes no TLS connections: extra CA bundles would only cost start-up time and memory
  // (Node parses them eagerly; measured +90 ms and several MB here). The server gets the variable back.
  const keeperEnv: NodeJS.ProcessEnv = { ...env };
  if (keeperEnv.NODE_EXTRA_CA_CERTS) {
    keeperEnv.LLAMA_ORCH_NODE_EXTRA_CA_CERTS = keeperEnv.NODE_EXTRA_CA_CERTS;
    delete keeperEnv.NODE_EXTRA_CA_CERTS;
  }
  const child = execa(process.execPath, [keeperEntry(), 'keeper', name, '--home', home.root], {
    detached: true,
    stdio: ['ignore', fd, fd],
    cleanup: false,
    reject: false,
    env: keeperEnv,
    extendEnv: false,
  });
  if (child.pid === undefined) throw new Error(`could not start the keeper for ${name}`);
  child.unref();
  // The keeper outlives us; its result is of no interest here.
  child.catch(() => undefined);
  return child.pid;
}

/**
 * Opens the home's store and wires the supervisor's side effects. Commands that start keepers pass
 * execa (loaded by the caller, so that `ps` never loads it).
 */
export function openContext(homeOpt: string | undefined, opts: { execa?: typeof ExecaFn } = {}): Context {
  const { execa } = opts;
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
  const env = process.env;
  const deps: SupervisorDeps = {
    home,
    store,
    env,
    now: Date.now,
    sleep: (ms) => abortableSleep(ms),
    spawnKeeper: (name, fd) => {
      if (!execa) throw new Error('internal: this command was not set up to start keepers');
      return spawnKeeperProcess(execa, home, name, fd, env);
    },
  };
  return { home, store, deps, close: () => store.close() };
}
