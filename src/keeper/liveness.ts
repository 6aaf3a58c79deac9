import fs from 'node:fs';
import { instanceConfigPath, type Home } from '../domain/home.js';
import { HEARTBEAT_MS, writeKeeperFile, type KeeperFile } from '../engine/keeper-file.js';
import type { Store } from '../store/store.js';
import type { StateWriter } from './state-writer.js';

export interface LivenessDeps {
  home: Home;
  name: string;
  state: StateWriter;
  /** Who the keeper and its current server are. */
  identity: () => KeeperFile;
  /** Opens the database file anew (it was deleted or replaced). */
  reopen: () => Store;
  /** The database's files can be written now (store/db.ts, databaseWritable). */
  writable?: () => boolean;
  log: (msg: string) => void;
  intervalMs?: number;
  /**
   * How often the database file's inode is checked, ms (default 1 s): until the keeper re-registers,
   * `ps` shows the instance stopped and `down` finds nothing to stop, so the window is kept short.
   */
  dbCheckMs?: number;
  /** How often the keeper's memory goes to keeper.log, ms (0: never); default 10 minutes. */
  memoryLogMs?: number;
}

const MiB = (b: number) => (b / 1024 / 1024).toFixed(1);

/**
 * The keeper's memory as one keeper.log line: what a soak (bench/soak.mjs) attributes growth with.
 * Under `node --expose-gc` (NODE_OPTIONS, benchmarks only) a full collection runs first, so the heap
 * figure is live objects rather than wherever the collector's sawtooth happens to be.
 */
export function memoryLine(m?: NodeJS.MemoryUsage): string {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!m && typeof gc === 'function') gc();
  m ??= process.memoryUsage();
  return `memory${typeof gc === 'function' ? ' (after gc)' : ''}: rss ${MiB(m.rss)} MiB, heap ${MiB(m.heapUsed)}/${MiB(m.heapTotal)} MiB, external ${MiB(m.external)} MiB, array buffers ${MiB(m.arrayBuffers)} MiB`;
}

/**
 * The keeper's periodic checks (docs/ARCHITECTURE.md, "Faults"): the heartbeat file, and whether
 * the database file it writes to is still the one at state/llama-orch.db. When that file was deleted
 * or replaced, the keeper opens the new one (creating it if need be) and re-registers itself there,
 * with the row it still reads from the old, open file: nothing runs untracked. Returns the stop function.
 */
export function startLiveness(deps: LivenessDeps): { stop: () => void; refresh: () => void } {
  const dbFile = deps.home.dbPath;
  const inode = () => fs.statSync(dbFile, { throwIfNoEntry: false })?.ino;
  let opened = inode();
  let written: string | undefined;
  let heartbeatTrouble = false;

  const heartbeat = () => {
    try {
      written = writeKeeperFile(deps.home, deps.name, deps.identity(), written);
      if (heartbeatTrouble) deps.log('heartbeat file writable again');
      heartbeatTrouble = false;
    } catch (e) {
      if (!heartbeatTrouble) deps.log(`cannot write the heartbeat file: ${e instanceof Error ? e.message : String(e)}`);
      heartbeatTrouble = true;
      written = undefined;
    }
  };
  const checkDatabase = () => {
    const now = inode();
    if (now !== undefined && now === opened) return;
    // Opened now, a connection to unwritable files would stay read-only: wait until they are writable.
    if (deps.writable && !deps.writable()) {
      deps.log(`cannot re-register in ${dbFile} yet: its files are not writable`);
      return;
    }
    try {
      const old = deps.state.store;
      const fresh = deps.reopen();
      const row = old.getRuntime(deps.name);
      const configJson = old.startedConfigJson(deps.name) ?? null;
      fresh.recordReRegistration(deps.name, {
        configPath: instanceConfigPath(deps.home, deps.name),
        configJson,
        row,
        message: `the state database ${dbFile} was ${now === undefined ? 'deleted' : 'replaced'}; keeper pid ${process.pid} re-registered the instance (server pid ${row?.pid ?? '-'})`,
      });
      deps.state.swap(fresh);
      try {
        old.close();
      } catch {
        // already unusable
      }
      opened = inode();
      deps.log(`state database ${dbFile} was ${now === undefined ? 'deleted' : 'replaced'}: re-registered`);
    } catch (e) {
      // Created by someone else a moment later, or not creatable now (a full disk): next tick.
      deps.log(`cannot re-register in ${dbFile} yet: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  heartbeat();
  checkDatabase();
  const timer = setInterval(heartbeat, deps.intervalMs ?? HEARTBEAT_MS);
  const dbTimer = setInterval(checkDatabase, deps.dbCheckMs ?? Math.min(1000, deps.intervalMs ?? 1000));
  const memoryMs = deps.memoryLogMs ?? 600_000;
  const memory = memoryMs > 0 ? setInterval(() => deps.log(memoryLine()), memoryMs) : undefined;
  memory?.unref();
  // refresh: the server changed (spawned, exited); the file says so at once.
  return {
    stop: () => {
      clearInterval(timer);
      clearInterval(dbTimer);
      if (memory) clearInterval(memory);
    },
    refresh: heartbeat,
  };
}
