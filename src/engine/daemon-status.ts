import fs from 'node:fs';
import path from 'node:path';
import type { Home } from '../home.js';
import { isLive } from '../platform/proc.js';

export interface DaemonStatus {
  running: boolean;
  pid: number | null;
}

export function daemonPidFile(home: Home): string {
  return path.join(home.stateDir, 'daemon.pid');
}

/** Reads the daemon's pid file; a stale file (dead pid) means not running. */
export function daemonStatus(home: Home): DaemonStatus {
  try {
    const pid = Number(fs.readFileSync(daemonPidFile(home), 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && isLive(pid)) return { running: true, pid };
  } catch {
    // no pid file
  }
  return { running: false, pid: null };
}
