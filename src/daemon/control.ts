import fs from 'node:fs';
import path from 'node:path';
import { formatListen } from '../config/settings.js';
import { proxyAddress } from '../app/daemon-status.js';
import { ExitCode, UserError } from '../domain/errors.js';
import { daemonPidFile } from '../domain/home.js';
import { packageRoot } from '../platform/package.js';
import { readRegularFile } from '../platform/regular-file.js';
import { liveDaemon } from '../platform/pidfile.js';
import { abortableSleep } from '../platform/sleep.js';
import type { Context } from '../app/context.js';
import { checkProxyPort, proxyPlan, type DaemonRunOptions } from './compose.js';

/** `daemon start`, `stop` and `status`: the daemon as a detached process of this home. */

/** Starts `daemon run` detached and waits until it holds its pid file (and with a proxy, its address). */
export async function startDaemon(
  ctx: Context,
  opts: DaemonRunOptions,
): Promise<{ pid: number; log: string; proxy: string | null }> {
  const pidFile = daemonPidFile(ctx.home);
  const existing = liveDaemon(pidFile);
  if (existing) throw new UserError(`the daemon is already running (pid ${existing.pid})`, ExitCode.daemon);
  // The settings and the proxy's port are checked here too: a refusal is this command's error, not a log line.
  const plan = proxyPlan(ctx, opts);
  if (plan) checkProxyPort(plan.listen);
  fs.mkdirSync(ctx.home.logsDir, { recursive: true, mode: 0o700 });
  const errLog = path.join(ctx.home.logsDir, 'daemon.stderr.log');
  const errFd = fs.openSync(errLog, 'a', 0o600);
  // What this start's child writes: the file is appended to across starts.
  const errFrom = fs.fstatSync(errFd).size;
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
        ...(opts.listen !== undefined ? ['--listen', opts.listen] : []),
        ...(opts.proxy === false ? ['--no-proxy'] : []),
      ],
      { env: process.env, stdout: 'ignore', stderr: errFd },
    );
  } finally {
    fs.closeSync(errFd);
  }
  child.unref();
  child.once('error', () => undefined);
  // Started: its pid file, and with a proxy the address it recorded once bound (a bind can fail
  // after the pid file is taken: an address not on this machine, a port below 1024, a race).
  const childGone = () => child.pid !== undefined && !ctx.deps.procs.isLive(child.pid);
  const started = await ctx.deps.feed.until(
    () => {
      if (childGone()) return null;
      const d = liveDaemon(pidFile);
      if (!d) return undefined;
      return !plan || proxyAddress(ctx.store, d.pid) ? d : undefined;
    },
    5000,
    { recheckMs: 25 },
  );
  if (started) {
    return {
      pid: started.pid,
      log: path.join(ctx.home.logsDir, 'daemon.log'),
      proxy: plan ? `http://${formatListen(plan.listen)}` : null,
    };
  }
  throw new UserError(`the daemon did not start${lastErrorLine(errLog, errFrom)}`, ExitCode.daemon, `see ${errLog}`);
}

/** Stops the daemon (SIGTERM, SIGKILL after 5 s); instances keep running. Returns what happened. */
export async function stopDaemon(ctx: Context): Promise<string> {
  const { procs } = ctx.deps;
  const pidFile = daemonPidFile(ctx.home);
  const owner = liveDaemon(pidFile);
  if (!owner) return 'the daemon is not running';
  procs.signal(owner.pid, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && procs.isLive(owner.pid)) await abortableSleep(20);
  if (procs.isLive(owner.pid)) {
    procs.signal(owner.pid, 'SIGKILL');
    fs.rmSync(pidFile, { force: true });
    return `daemon pid ${owner.pid} did not stop within 5 s and was killed (instances keep running)`;
  }
  return `daemon stopped (pid ${owner.pid}); instances keep running`;
}

/** ": the last error line" of the daemon's stderr log (what `daemon run` printed before it exited). */
function lastErrorLine(file: string, from: number): string {
  try {
    const lines = readRegularFile(file).subarray(from).toString('utf8').trimEnd().split('\n');
    const err = [...lines].reverse().find((l) => l.startsWith('error: '));
    return err ? `: ${err.slice('error: '.length).slice(0, 300)}` : '';
  } catch {
    return '';
  }
}

/** `daemon status --json` (README): `running` says what the exit code says. */
export function daemonStatusOf(ctx: Context) {
  const owner = liveDaemon(daemonPidFile(ctx.home));
  const proxy = owner ? proxyAddress(ctx.store, owner.pid) : null;
  return {
    running: owner !== undefined && owner !== null,
    pid: owner?.pid ?? null,
    home: ctx.home.root,
    pid_file: daemonPidFile(ctx.home),
    log: path.join(ctx.home.logsDir, 'daemon.log'),
    proxy: proxy ? `http://${proxy}` : null,
  };
}
