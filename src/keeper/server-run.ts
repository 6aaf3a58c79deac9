import fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { resolveServerBinary } from '../config/binary.js';
import type { LoadedInstance } from '../config/load.js';
import { resolveModelPath } from '../config/paths.js';
import { buildServerCommand, maskedCommand } from '../engine/command.js';
import { serverAlive } from '../engine/identity.js';
import { transition } from '../engine/lifecycle.js';
import { readStat } from '../platform/proc.js';
import type { RuntimeRow } from '../store/store.js';
import type { KeeperDeps } from './keeper.js';
import { STREAMS, attachServerPipes, openServerPipes } from './log-pipes.js';
import type { KeeperOutput } from './output.js';

export type RunEnd =
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'stop' }
  | { kind: 'health'; reason: string }
  | { kind: 'spawn-error'; message: string };

/** One server under supervision: spawned by this keeper, or re-attached after its keeper died. */
export interface ServerRun {
  pid: number;
  pgid: number;
  startedAt: number;
  exited: Promise<RunEnd>;
  /** The server's output has reached EOF (it and everything it started have exited). */
  outputDone: Promise<void>;
  adopted: boolean;
  /** Ends what watches the run (the /proc poll of an adopted server). */
  cancel: () => void;
}

export interface RunContext {
  name: string;
  deps: KeeperDeps;
  pipeDir: string;
  output: KeeperOutput;
}

/** Starts a new server on fresh FIFOs (see log-pipes.ts) and records it; a message when it cannot. */
export async function spawnRun(
  ctx: RunContext,
  inst: LoadedInstance,
  attempts: number,
): Promise<ServerRun | { error: string }> {
  const { name, deps } = ctx;
  const { store, now } = deps;
  const { config } = inst;
  const bin = resolveServerBinary(deps.home, config, deps.env);
  if (!bin.path) return { error: `llama-server not found (tried ${bin.tried.join(', ')})` };
  const cmd = buildServerCommand({
    name,
    config,
    binary: bin.path,
    modelPath: resolveModelPath(deps.home, config),
    env: deps.env,
  });
  const childEnv: NodeJS.ProcessEnv = { ...deps.env, ...cmd.env };
  // The key reaches the server only as LLAMA_API_KEY; drop our copy and anything inherited.
  if (config.server.api_key_env) delete childEnv[config.server.api_key_env];
  if (!cmd.env.LLAMA_API_KEY) delete childEnv.LLAMA_API_KEY;

  transition(store, name, 'starting', {
    reason: attempts > 0 ? `restart ${attempts}` : 'starting server',
    patch: { next_restart_at: null, health: 'starting', health_detail: null, health_failures: 0 },
  });

  let pipes: ReturnType<typeof openServerPipes>;
  try {
    pipes = openServerPipes(ctx.pipeDir);
  } catch (e) {
    const detail = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { error: `cannot create the log pipes in ${ctx.pipeDir}: ${detail}` };
  }
  let child: ChildProcess;
  try {
    child = deps.spawnServer(cmd.file, cmd.args, childEnv, pipes.writeFds);
  } catch (e) {
    for (const r of Object.values(pipes.readers)) r.destroy();
    return { error: `cannot start ${cmd.file}: ${String(e)}` };
  } finally {
    // The server holds its own copies; ours would keep the readers from ever seeing EOF.
    for (const fd of Object.values(pipes.writeFds)) fs.closeSync(fd);
  }
  const startedAt = now();
  const exited = new Promise<RunEnd>((resolve) => {
    child.once('exit', (code, signal) => resolve({ kind: 'exit', code, signal }));
    child.once('error', (e) => resolve({ kind: 'spawn-error', message: `cannot start ${cmd.file}: ${e.message}` }));
  });
  const pid = child.pid;
  const outputDone = ctx.output.follow(
    pipes.readers,
    `server pid ${pid ?? '-'} started ${new Date(startedAt).toISOString()} (restart ${attempts})`,
  );
  if (pid === undefined) {
    const end = await exited;
    return { error: end.kind === 'spawn-error' ? end.message : `cannot start ${cmd.file}` };
  }
  const stat = readStat(pid);
  store.immediate(() => {
    store.updateRuntime(name, {
      pid,
      pgid: pid,
      starttime: stat?.starttime ?? null,
      port: config.server.port,
      cmdline: JSON.stringify(maskedCommand(cmd).argv),
      started_at: startedAt,
      last_error: null,
    });
    store.addEvent(name, 'info', 'spawn', `server started, pid ${pid}`, { pid, restart: attempts });
  });
  return { pid, pgid: pid, startedAt, exited, outputDone, adopted: false, cancel: () => undefined };
}

/**
 * Takes over a server whose keeper died (DESIGN §4): no reload. It is not our child, so its exit
 * is seen by watching /proc (every 50 ms) and its exit status is unknown.
 */
export function attachRun(ctx: RunContext, row: RuntimeRow): ServerRun {
  const { name, deps } = ctx;
  const pid = row.pid as number;
  const alive = serverAlive(row);
  const readers = alive ? attachServerPipes(ctx.pipeDir, pid) : {};
  const attached = STREAMS.filter((s) => readers[s]);
  const outputDone = ctx.output.follow(
    readers,
    `re-attached to server pid ${pid} at ${new Date(deps.now()).toISOString()} (lines written while no keeper ran are lost)`,
  );
  const watch = new AbortController();
  const exited = (async (): Promise<RunEnd> => {
    while (!watch.signal.aborted && serverAlive(row)) await deps.sleep(50, watch.signal);
    return watch.signal.aborted ? new Promise<RunEnd>(() => undefined) : { kind: 'exit', code: null, signal: null };
  })();
  const logs =
    attached.length === 2
      ? 'logging resumed'
      : attached.length
        ? `only ${attached[0]} resumed`
        : "its output cannot be re-attached (it was not started on this keeper's named pipes)";
  deps.store.addEvent(
    name,
    'warn',
    'adopt',
    alive
      ? `re-attached to running server pid ${pid} (its keeper had died): no reload; ${logs}`
      : `server pid ${pid} exited before it could be re-attached`,
    { pid },
  );
  return {
    pid,
    pgid: row.pgid ?? pid,
    startedAt: row.started_at ?? deps.now(),
    exited,
    outputDone,
    adopted: true,
    cancel: () => watch.abort(),
  };
}
