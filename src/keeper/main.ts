import fs from 'node:fs';
import { homeAt } from '../domain/home.js';
import { removeKeeperFile } from '../engine/keeper-file.js';
import { runProbe } from '../health/probes.js';
import { ServingScraper } from '../metrics/scrape.js';
import { sampleOnce } from '../platform/gpu/sampler.js';
import { realProcesses } from '../platform/processes.js';
import { abortableSleep } from '../platform/sleep.js';
import { databaseWritable, openDatabase } from '../store/db.js';
import { Store } from '../store/store.js';
import { Keeper } from './keeper.js';
import { startLiveness } from './liveness.js';
import { StateWriter } from './state-writer.js';

/**
 * A line in keeper.log (the keeper's stdout and stderr are that file). Written with writeSync on
 * fd 2, never through process.stderr: on a full disk the stream's error arrives later, as an
 * uncaught exception that would end the keeper (seen on a 2 MB tmpfs).
 */
export function writeKeeperLog(line: string): void {
  try {
    fs.writeSync(2, line.endsWith('\n') ? line : `${line}\n`);
  } catch {
    // keeper.log is on a full or read-only disk: nothing to do about it here
  }
}

function memoryLogMs(v: string | undefined): number | undefined {
  const s = Number(v);
  return v !== undefined && Number.isFinite(s) && s >= 0 && s <= 86_400 ? s * 1000 : undefined;
}

function log(name: string, msg: string): void {
  writeKeeperLog(`${new Date().toISOString()} keeper ${name}: ${msg}`);
}

/**
 * The keeper's connection never waits for a lock (busy_timeout 0): a write the database does not
 * take at once is kept by the StateWriter and retried from a timer, so the server's pipes keep
 * draining (docs/ARCHITECTURE.md, "Faults"). Its page cache is small (see below).
 */
function openKeeperStore(dbPath: string): Store {
  const { db } = openDatabase(dbPath);
  db.pragma('busy_timeout = 0');
  // SQLite's page cache is 2 MB per connection by default and fills as the history tables grow:
  // in a 30-minute soak the keeper's private memory climbed for the whole run while its JS heap
  // stayed flat (bench/BENCHMARKS.md). A keeper writes a few rows a second and reads almost
  // nothing: 256 KiB of cache is plenty, and bounds it.
  db.pragma('cache_size = -256');
  return new Store(db);
}

/**
 * Entry of the detached keeper process: `node dist/bundle/keeper.mjs keeper NAME --home DIR`.
 * Loaded directly (not through the CLI) so the keeper imports only what it needs. The composition
 * root of the keeper: the real store, clock, probes and process effects are wired in here.
 */
export async function keeperMain(argv: string[]): Promise<number> {
  const name = argv[0];
  const homeIdx = argv.indexOf('--home');
  const root = homeIdx >= 0 ? argv[homeIdx + 1] : undefined;
  if (!name || !root) {
    writeKeeperLog('usage: keeper NAME --home DIR');
    return 1;
  }
  process.title = `llama-orch keeper ${name}`;
  const home = homeAt(root);
  // Restore what the CLI set aside for the keeper's own start-up (see keeper/launch.ts, spawnKeeperProcess).
  if (process.env.LLAMA_ORCH_NODE_EXTRA_CA_CERTS) {
    process.env.NODE_EXTRA_CA_CERTS = process.env.LLAMA_ORCH_NODE_EXTRA_CA_CERTS;
    delete process.env.LLAMA_ORCH_NODE_EXTRA_CA_CERTS;
  }
  if (process.env.LLAMA_ORCH_MALLOC_ARENA_MAX !== undefined) {
    if (process.env.LLAMA_ORCH_MALLOC_ARENA_MAX) process.env.MALLOC_ARENA_MAX = process.env.LLAMA_ORCH_MALLOC_ARENA_MAX;
    else delete process.env.MALLOC_ARENA_MAX;
    delete process.env.LLAMA_ORCH_MALLOC_ARENA_MAX;
  }
  const state = new StateWriter(openKeeperStore(home.dbPath), {
    name,
    now: Date.now,
    log: (m) => log(name, m),
    reopen: () => openKeeperStore(home.dbPath),
    writable: () => databaseWritable(home.dbPath),
  });
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => stop.abort());
  process.on('SIGHUP', () => undefined);
  process.on('SIGPIPE', () => undefined);
  // Nothing of ours writes to these streams (see writeKeeperLog); a library that does must not
  // end the keeper when keeper.log's disk is full.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);

  // Started once the keeper owns the instance, below; the keeper tells it when its server changes.
  const live: { liveness?: ReturnType<typeof startLiveness> } = {};
  const keeper = new Keeper(
    name,
    {
      state,
      onServerChange: () => live.liveness?.refresh(),
      home,
      procs: realProcesses,
      pid: process.pid,
      env: process.env,
      now: Date.now,
      random: Math.random,
      sleep: abortableSleep,
      probe: (hc, target) => runProbe(hc, target, process.env),
      scraper: (target, timeoutMs) => new ServingScraper(target, timeoutMs),
      log: (m) => log(name, m),
      // Only on an out-of-memory failure: one reading of the GPUs, after the server let go of its memory.
      gpuSample: () => sampleOnce({ env: process.env, timeoutMs: 3000 }),
    },
    stop.signal,
  );
  if (!(await keeper.claim())) {
    log(name, 'another keeper owns this instance; exiting');
    return 3;
  }
  const keeperStarttime = realProcesses.stat(process.pid)?.starttime ?? null;
  const liveness = startLiveness({
    home,
    name,
    state,
    identity: () => keeper.identity(keeperStarttime),
    reopen: () => openKeeperStore(home.dbPath),
    writable: () => databaseWritable(home.dbPath),
    log: (m) => log(name, m),
    // LLAMA_ORCH_MEMORY_LOG_S: how often the keeper's memory goes to keeper.log (0: never).
    memoryLogMs: memoryLogMs(process.env.LLAMA_ORCH_MEMORY_LOG_S),
  });
  live.liveness = liveness;
  try {
    return await keeper.run();
  } catch (e) {
    const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
    log(name, `crashed: ${msg}`);
    const why = `keeper crashed: ${e instanceof Error ? e.message : String(e)}`;
    state.write('crash', (s) => s.recordKeeperCrash(name, why));
    return 1;
  } finally {
    liveness.stop();
    // What the database refused so far is written before we go, if it takes it within 5 s.
    await state.flush(5000);
    try {
      removeKeeperFile(home, name, process.pid);
    } catch {
      // a later keeper replaces it
    }
    state.store.close();
  }
}
