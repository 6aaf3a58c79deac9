import fs from 'node:fs';
import path from 'node:path';
import { loadInstance } from '../../config/load.js';
import { runDaemon } from '../../daemon/daemon.js';
import { ExitCode, UserError } from '../../domain/errors.js';
import { daemonPidFile } from '../../domain/home.js';
import { RotatingFile } from '../../logs/rotating-file.js';
import { packageRoot } from '../../platform/package.js';
import { acquirePidFile, liveDaemon, releasePidFile } from '../../platform/pidfile.js';
import { abortableSleep } from '../../platform/sleep.js';
import type { Context } from '../context.js';
import type { Out } from '../output.js';

export interface DaemonRunOptions {
  interval: number;
  stagger: number;
  autostart: boolean;
}

export async function daemonRun(ctx: Context, opts: DaemonRunOptions, out: Out): Promise<number> {
  const pidFile = daemonPidFile(ctx.home);
  if (!acquirePidFile(pidFile)) {
    const owner = liveDaemon(pidFile);
    throw new UserError(`a daemon is already running for ${ctx.home.root} (pid ${owner?.pid ?? '?'})`, ExitCode.daemon);
  }
  fs.mkdirSync(ctx.home.logsDir, { recursive: true, mode: 0o700 });
  const logFile = new RotatingFile(path.join(ctx.home.logsDir, 'daemon.log'), 1024 * 1024, 3);
  const log = (msg: string) => logFile.writeLine(`${new Date().toISOString()} ${msg}`);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => undefined);
  try {
    await runDaemon(
      {
        ...ctx.deps,
        wait: abortableSleep,
        log,
        isAutostart: (name) => loadInstance(ctx.home, name).config.autostart,
      },
      { intervalMs: opts.interval * 1000, staggerMs: opts.stagger * 1000, autostart: opts.autostart },
      stop.signal,
    );
    out.log('daemon stopped');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    logFile.close();
    releasePidFile(pidFile);
  }
}

export async function daemonStart(ctx: Context, opts: DaemonRunOptions, out: Out): Promise<number> {
  const pidFile = daemonPidFile(ctx.home);
  const existing = liveDaemon(pidFile);
  if (existing) throw new UserError(`the daemon is already running (pid ${existing.pid})`, ExitCode.daemon);
  fs.mkdirSync(ctx.home.logsDir, { recursive: true, mode: 0o700 });
  const errFd = fs.openSync(path.join(ctx.home.logsDir, 'daemon.stderr.log'), 'a', 0o600);
  let child;
  try {
    child = ctx.deps.procs.spawnDetached(
      process.execPath,
      [
        path.join(packageRoot(), 'bin', 'llama-orch.cjs'),
        'daemon',
        'run',
        '--home',
        ctx.home.root,
        '--interval',
        String(opts.interval),
        '--stagger',
        String(opts.stagger),
        ...(opts.autostart ? [] : ['--no-autostart']),
      ],
      { env: process.env, stdout: 'ignore', stderr: errFd },
    );
  } finally {
    fs.closeSync(errFd);
  }
  child.unref();
  child.once('error', () => undefined);
  const started = await ctx.deps.feed.until(
    () => liveDaemon(pidFile) ?? (child.pid !== undefined && !ctx.deps.procs.isLive(child.pid) ? null : undefined),
    5000,
    { recheckMs: 25 },
  );
  if (started) {
    out.log(`daemon started (pid ${started.pid}); log: ${path.join(ctx.home.logsDir, 'daemon.log')}`);
    return 0;
  }
  throw new UserError(
    'the daemon did not start',
    ExitCode.daemon,
    `see ${path.join(ctx.home.logsDir, 'daemon.stderr.log')}`,
  );
}

export async function daemonStop(ctx: Context, out: Out): Promise<number> {
  const { procs } = ctx.deps;
  const pidFile = daemonPidFile(ctx.home);
  const owner = liveDaemon(pidFile);
  if (!owner) {
    out.log('the daemon is not running');
    return 0;
  }
  procs.signal(owner.pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && procs.isLive(owner.pid)) await abortableSleep(20);
  if (procs.isLive(owner.pid)) {
    procs.signal(owner.pid, 'SIGKILL');
    fs.rmSync(pidFile, { force: true });
    out.log(`daemon pid ${owner.pid} did not stop within 5 s and was killed (instances keep running)`);
    return 0;
  }
  out.log(`daemon stopped (pid ${owner.pid}); instances keep running`);
  return 0;
}

export function daemonStatusCommand(ctx: Context, out: Out, json = false): number {
  const owner = liveDaemon(daemonPidFile(ctx.home));
  if (json) {
    // README, "daemon status --json": the exit code says the same as `running`.
    out.log(
      JSON.stringify(
        {
          running: owner !== undefined && owner !== null,
          pid: owner?.pid ?? null,
          home: ctx.home.root,
          pid_file: daemonPidFile(ctx.home),
          log: path.join(ctx.home.logsDir, 'daemon.log'),
        },
        null,
        2,
      ),
    );
    return owner ? 0 : 1;
  }
  if (owner) {
    out.log(`daemon running (pid ${owner.pid})`);
    return 0;
  }
  out.log('daemon not running');
  return 1;
}
