import { daemonPidFile, type Home } from '../domain/home.js';
import type { DaemonStatus } from '../domain/snapshot.js';
import { liveDaemon } from '../platform/pidfile.js';
import type { StoreBase } from '../store/base.js';

/** Reads the daemon's pid file; a stale file (dead or reused pid) means not running. */
export function daemonStatus(home: Home, store?: StoreBase): DaemonStatus {
  const owner = liveDaemon(daemonPidFile(home));
  if (!owner) return { running: false, pid: null, proxy: null };
  const address = proxyAddress(store, owner.pid);
  return { running: true, pid: owner.pid, proxy: address ? `http://${address}` : null };
}

/** Where the live daemon's proxy listens (it records the address once bound); null: no proxy. */
export function proxyAddress(store: StoreBase | undefined, daemonPid: number): string | null {
  try {
    const row = store?.proxyListen();
    return row && row.daemon_pid === daemonPid ? row.address : null;
  } catch {
    return null; // an old or busy database: no address to show
  }
}
