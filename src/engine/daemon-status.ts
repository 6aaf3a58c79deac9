import { daemonPidFile, type Home } from '../domain/home.js';
import type { DaemonStatus } from '../domain/snapshot.js';
import { liveDaemon } from '../platform/pidfile.js';

/** Reads the daemon's pid file; a stale file (dead or reused pid) means not running. */
export function daemonStatus(home: Home): DaemonStatus {
  const owner = liveDaemon(daemonPidFile(home));
  return owner ? { running: true, pid: owner.pid } : { running: false, pid: null };
}
