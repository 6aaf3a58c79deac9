import fs from 'node:fs';
import { errnoCode } from '../domain/errors.js';
import { identify, readCmdline, readStat } from './proc.js';

export interface PidFileOwner {
  pid: number;
  starttime: number;
}

export function readOwner(file: string): PidFileOwner | undefined {
  try {
    const [pid, starttime] = fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (!pid || Number.isNaN(pid)) return undefined;
    return { pid, starttime: starttime ?? 0 };
  } catch {
    return undefined;
  }
}

/**
 * The daemon recorded in the pid file, unless it is known to be gone (dead, or its pid reused): a
 * /proc that cannot be read (EMFILE and the like) is not its death.
 */
export function liveDaemon(file: string): PidFileOwner | undefined {
  const owner = readOwner(file);
  if (!owner) return undefined;
  if (owner.starttime)
    return identify({ pid: owner.pid, starttime: owner.starttime, cmdlineIncludes: ['daemon'] }) === 'no'
      ? undefined
      : owner;
  // A pid file without a start time (written by an older version): the pid and its command line.
  const st = readStat(owner.pid);
  if (!st || st.state === 'Z') return undefined;
  const cmd = readCmdline(owner.pid)?.join(' ') ?? '';
  return cmd.includes('daemon') ? owner : undefined;
}

/**
 * Takes the per-home daemon lock: an O_EXCL pid file holding "pid starttime". A stale file (dead
 * pid, or a reused pid with another start time) is replaced. Returns false when a live daemon holds it.
 */
export function acquirePidFile(file: string): boolean {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      const me = readStat(process.pid);
      fs.writeSync(fd, `${process.pid} ${me?.starttime ?? 0}\n`);
      fs.closeSync(fd);
      return true;
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
      if (liveDaemon(file)) return false;
      // Stale: remove it only if it still holds what we judged stale (another starter may have replaced it).
      const before = fs.readFileSync(file, 'utf8');
      if (!liveDaemon(file) && fs.readFileSync(file, 'utf8') === before) fs.rmSync(file, { force: true });
    }
  }
  return false;
}

export function releasePidFile(file: string): void {
  const owner = readOwner(file);
  if (owner?.pid === process.pid) fs.rmSync(file, { force: true });
}
