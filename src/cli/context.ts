import fs from 'node:fs';
import { execa } from 'execa';
import { resolveHome, type Home } from '../home.js';
import { openDatabase } from '../store/db.js';
import { Store } from '../store/store.js';
import { KEEPER_ENTRY, type SupervisorDeps } from '../engine/supervisor.js';
import { abortableSleep } from '../engine/sleep.js';

/** The composition root: the one place where real side effects are wired in. */
export interface Context {
  home: Home;
  store: Store;
  deps: SupervisorDeps;
  close: () => void;
}

export function spawnKeeperProcess(home: Home, name: string, logFd: number, env: NodeJS.ProcessEnv): number {
  // execa's types only accept the literal fds 0-2; any inherited fd number works at run time.
  const fd = logFd as 1;
  const child = execa(process.execPath, [KEEPER_ENTRY, 'keeper', name, '--home', home.root], {
    detached: true,
    stdio: ['ignore', fd, fd],
    cleanup: false,
    reject: false,
    env,
    extendEnv: false,
  });
  if (child.pid === undefined) throw new Error(`could not start the keeper for ${name}`);
  child.unref();
  // The keeper outlives us; its result is of no interest here.
  child.catch(() => undefined);
  return child.pid;
}

export function openContext(homeOpt: string | undefined): Context {
  const home = resolveHome(homeOpt);
  if (!fs.existsSync(home.root)) throw new Error(`home ${home.root} does not exist`);
  const { db } = openDatabase(home.dbPath);
  const store = new Store(db);
  const env = process.env;
  const deps: SupervisorDeps = {
    home,
    store,
    env,
    now: Date.now,
    sleep: (ms) => abortableSleep(ms),
    spawnKeeper: (name, fd) => spawnKeeperProcess(home, name, fd, env),
  };
  return { home, store, deps, close: () => store.close() };
}
