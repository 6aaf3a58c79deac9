import path from 'node:path';
import type { Home } from '../home.js';
import { liveDaemon } from '../daemon/pidfile.js';

export interface DaemonStatus {
  running: boolean;
  pid: number | null;
}

export function daemonPidFile(home: Home): string {
  return path.join(home.stateDir, 'daemon.pid');
}

/** Reads the daemon's pid file; a stale file (dead or reused pid) means not running. */
export function daemonStatus(home: Home): DaemonStatus {
  const owner = liveDaemon(daemonPidFile(home));
  return owner ? { running: true, pid: owner.pid } : { running: false, pid: null };
}
