import type { Home } from '../domain/home.js';
import { keeperEntry } from '../platform/package.js';
import type { Processes } from '../platform/processes.js';

/**
 * Starts `llama-orch keeper NAME` detached, its stdout and stderr on keeper.log. Returns its pid.
 * The variables renamed here for the keeper's own start-up are given back to the server in
 * keeper/main.ts.
 */
export function spawnKeeperProcess(
  procs: Processes,
  home: Home,
  name: string,
  logFd: number,
  env: NodeJS.ProcessEnv,
): number {
  // The keeper makes no TLS connections: extra CA bundles would only cost start-up time and memory
  // (Node parses them eagerly; measured +90 ms and several MB here). The server gets the variable back.
  const keeperEnv: NodeJS.ProcessEnv = { ...env };
  if (keeperEnv.NODE_EXTRA_CA_CERTS) {
    keeperEnv.LLAMA_ORCH_NODE_EXTRA_CA_CERTS = keeperEnv.NODE_EXTRA_CA_CERTS;
    delete keeperEnv.NODE_EXTRA_CA_CERTS;
  }
  // Two malloc arenas: glibc gives each thread that allocates its own arena (libuv's pool, V8's
  // helpers), and their fragments showed as a keeper's native memory creeping up over a soak
  // (bench/soak.mjs). The server gets the operator's value back (keeper/main.ts).
  keeperEnv.LLAMA_ORCH_MALLOC_ARENA_MAX = env.MALLOC_ARENA_MAX ?? '';
  keeperEnv.MALLOC_ARENA_MAX = env.MALLOC_ARENA_MAX ?? '2';
  // A 1 MB young generation: the keeper allocates steadily (a probe, a log chunk) and keeps little;
  // V8's default lets the young generation grow to 16 MB per semi-space, which showed as keeper RSS
  // creeping up for minutes (bench/soak.mjs, bench/BENCHMARKS.md) although the heap stayed at ~6 MB.
  // The interpreter only (no Sparkplug, Maglev or TurboFan): once a keeper's restart path got hot
  // they compiled it, and their own code, ~5.6 MiB of the Node binary's pages, became resident in
  // every keeper (bench/keeper-rss.mjs: 65.6 MiB after 10 restarts, 56.7 MiB with the interpreter
  // only). A keeper's work is I/O: its log pipeline keeps pace (bench/log-throughput.mjs). Not
  // --jitless, which would also take WebAssembly away.
  const v8 = ['--max-semi-space-size=1', '--no-opt', '--no-maglev', '--no-sparkplug'];
  const args = [...v8, keeperEntry(), 'keeper', name, '--home', home.root];
  const child = procs.spawnDetached(process.execPath, args, {
    env: keeperEnv,
    stdout: logFd,
    stderr: logFd,
  });
  if (child.pid === undefined) throw new Error(`could not start the keeper for ${name}`);
  // The keeper outlives us; its result is of no interest here.
  child.once('error', () => undefined);
  child.unref();
  return child.pid;
}
