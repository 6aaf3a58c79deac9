import { homeAt } from '../domain/home.js';
import { runProbe } from '../health/probes.js';
import { realProcesses } from '../platform/processes.js';
import { abortableSleep } from '../platform/sleep.js';
import { openDatabase } from '../store/db.js';
import { Store } from '../store/store.js';
import { Keeper } from './keeper.js';

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
    process.stderr.write('usage: keeper NAME --home DIR\n');
    return 1;
  }
  process.title = `llama-orch keeper ${name}`;
  const home = homeAt(root);
  // Restore what the CLI set aside for the keeper's own start-up (see cli/context.ts, spawnKeeperProcess).
  if (process.env.LLAMA_ORCH_NODE_EXTRA_CA_CERTS) {
    process.env.NODE_EXTRA_CA_CERTS = process.env.LLAMA_ORCH_NODE_EXTRA_CA_CERTS;
    delete process.env.LLAMA_ORCH_NODE_EXTRA_CA_CERTS;
  }
  const { db } = openDatabase(home.dbPath);
  const store = new Store(db);
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => stop.abort());
  process.on('SIGHUP', () => undefined);
  process.on('SIGPIPE', () => undefined);

  const keeper = new Keeper(
    name,
    {
      store,
      home,
      procs: realProcesses,
      pid: process.pid,
      env: process.env,
      now: Date.now,
      random: Math.random,
      sleep: abortableSleep,
      probe: (hc, target) => runProbe(hc, target, process.env),
    },
    stop.signal,
  );
  if (!keeper.claim()) {
    process.stderr.write(`keeper ${name}: another keeper owns this instance; exiting\n`);
    return 3;
  }
  try {
    return await keeper.run();
  } catch (e) {
    const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`${new Date().toISOString()} keeper ${name} crashed: ${msg}\n`);
    try {
      store.recordKeeperCrash(name, `keeper crashed: ${e instanceof Error ? e.message : String(e)}`);
    } catch {
      // the database itself may be the problem; keeper.log has the stack
    }
    return 1;
  } finally {
    store.close();
  }
}
