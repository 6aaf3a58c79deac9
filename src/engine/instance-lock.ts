import fs from 'node:fs';
import path from 'node:path';
import { ExitCode, UserError } from '../domain/errors.js';
import { instancePipeDir, type Home } from '../domain/home.js';
import { createLockFile, readLockHolder, removeLockIf } from '../platform/lock-file.js';
import type { Processes } from '../platform/processes.js';

export interface LockDeps {
  home: Home;
  procs: Processes;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

/**
 * Runs fn while holding the instance's operation lock (state/pipes/NAME/op.lock, O_EXCL, holding
 * "pid starttime"), so `up`, `down` and `restart` of one instance run one after another: eight
 * parallel restarts are eight restarts in turn, not keepers killing each other's servers. A lock
 * whose holder is gone (its pid dead or reused) is taken over.
 */
export async function withInstanceLock<T>(
  deps: LockDeps,
  name: string,
  fn: () => Promise<T>,
  timeoutMs = 120_000,
): Promise<T> {
  const dir = instancePipeDir(deps.home, name);
  const file = path.join(dir, 'op.lock');
  const me = `${process.pid} ${deps.procs.stat(process.pid)?.starttime ?? 0}`;
  const deadline = deps.now() + timeoutMs;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch {
    // No directory for the lock (something else in its place, a full or read-only disk): a lock must
    // never stop a `down`, and `up` reports the real problem itself. Go on unlocked.
    return fn();
  }
  // The lock appears with its content at once (link of a written file): a reader never sees an empty
  // lock file, which it would take for a stale one (found by a CI run: two restarts held it).
  const tmp = `${file}.${process.pid}.tmp`;
  for (;;) {
    let created: boolean;
    try {
      created = createLockFile(file, me, tmp);
    } catch {
      return fn();
    }
    if (created) break;
    const holder = readLockHolder(file);
    // Held by this process already (restart = down + up): go on, the outer call releases it.
    if (holder?.text === me) return fn();
    if (!holder || deps.procs.identify({ pid: holder.pid, starttime: holder.starttime }) === 'no') {
      // Stale: remove it only if it is still what we judged stale.
      removeLockIf(file, holder?.text);
      continue;
    }
    if (deps.now() >= deadline) {
      throw new UserError(
        `${name}: another llama-orch command (pid ${holder.pid}) is still starting or stopping it`,
        ExitCode.general,
        'wait for it to finish, then try again',
      );
    }
    await deps.sleep(25);
  }
  try {
    return await fn();
  } finally {
    removeLockIf(file, me);
  }
}
