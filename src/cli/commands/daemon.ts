import fs from 'node:fs';
import path from 'node:path';
import { cachedLoader } from '../../config/cached.js';
import { discoverInstanceNames, loadConfigFile, loadInstance } from '../../config/load.js';
import { isLoopbackHost } from '../../config/schema.js';
import {
  formatListen,
  loadSettings,
  parseListen,
  settingsPath,
  type ListenAddress,
  type ProxySettings,
} from '../../config/settings.js';
import { ProxyService } from '../../daemon/proxy-service.js';
import { proxyAddress } from '../../engine/daemon-status.js';
import { keeperAlive, serverAlive } from '../../engine/identity.js';
import { startedConfig } from '../../engine/started-config.js';
import { engineOps } from '../../http/engine-ops.js';
import { routeSource } from '../../http/routes.js';
import { Scheduler } from '../../http/scheduler.js';
import { ProxyServer } from '../../http/server.js';
import { findPortHolder } from '../../platform/ports.js';
import { apiSources } from '../api-sources.js';
import { runDaemon } from '../../daemon/daemon.js';
import { ExitCode, UserError, errnoCode } from '../../domain/errors.js';
import { daemonPidFile, instanceConfigPath, orchCommandWithHome } from '../../domain/home.js';
import { RotatingFile } from '../../logs/rotating-file.js';
import { packageRoot } from '../../platform/package.js';
import { readRegularFile } from '../../platform/regular-file.js';
import { acquirePidFile, liveDaemon, releasePidFile } from '../../platform/pidfile.js';
import { abortableSleep } from '../../platform/sleep.js';
import type { Context } from '../context.js';
import type { Out } from '../output.js';

export interface DaemonRunOptions {
  interval: number;
  stagger: number;
  autostart: boolean;
  /** --listen HOST:PORT (overrides proxy.listen). */
  listen?: string;
  /** false: --no-proxy. */
  proxy?: boolean;
}

/** The proxy's address and key as the settings and flags say, checked; null: --no-proxy. */
export function proxyPlan(
  ctx: Context,
  opts: DaemonRunOptions,
): { settings: ProxySettings; listen: ListenAddress; apiKey: string | null } | null {
  // --no-proxy gets a daemon past a broken llama-orch.json (autostart and supervision need none of it).
  if (opts.proxy === false) {
    if (opts.listen !== undefined) ctx.deps.warn?.(`--listen ${opts.listen} is ignored: --no-proxy serves nothing`);
    return null;
  }
  const settings = loadSettings(ctx.home).proxy;
  const text = opts.listen ?? settings.listen;
  const listen = parseListen(text);
  const where = opts.listen !== undefined ? '--listen' : `proxy.listen in ${settingsPath(ctx.home)}`;
  if (!listen) {
    throw new UserError(`${where}: "${text}" is not HOST:PORT (such as 127.0.0.1:8080, or [::1]:8080)`);
  }
  let apiKey: string | null = null;
  if (settings.api_key_env) {
    apiKey = ctx.deps.env[settings.api_key_env] || null;
    if (!apiKey) {
      throw new UserError(
        `proxy.api_key_env in ${settingsPath(ctx.home)} names ${settings.api_key_env}, which is not set (or empty) in the daemon's environment`,
        ExitCode.daemon,
        `export ${settings.api_key_env}=... before starting the daemon (a systemd unit: Environment= or EnvironmentFile=)`,
      );
    }
  }
  if (!isLoopbackHost(listen.host) && !apiKey) {
    throw new UserError(
      `${where}: ${formatListen(listen)} is not loopback, and no key is configured: anyone who can reach it could start and stop instances`,
      ExitCode.daemon,
      `set proxy.api_key_env in ${settingsPath(ctx.home)} to the name of an environment variable holding the key`,
    );
  }
  return { settings, listen, apiKey };
}

/** The port is free, or a UserError naming who holds it (as for instances). */
function checkProxyPort(listen: ListenAddress): void {
  const holder = findPortHolder(listen.port);
  if (!holder) return;
  const who = holder.pid
    ? `pid ${holder.pid}${holder.command ? ` (${holder.command.slice(0, 120)})` : ''}`
    : 'another process (its pid is not readable by this user)';
  throw new UserError(
    `the proxy's port ${listen.port} is held by ${who}`,
    ExitCode.portCollision,
    'stop that process, pick another address with --listen HOST:PORT (or proxy.listen in llama-orch.json), or pass --no-proxy',
  );
}

/** Builds the proxy (scheduler, routes, server) and binds it; the daemon's ProxyService runs it. */
async function bindProxy(
  ctx: Context,
  plan: NonNullable<ReturnType<typeof proxyPlan>>,
  log: (msg: string) => void,
): Promise<ProxyService> {
  const loader = cachedLoader(ctx.store, loadConfigFile);
  // A running instance keeps the config it was started with: a file edited into an invalid state
  // does not take its route away (as ps shows what runs); the new config applies on restart.
  const configOf = (name: string) => {
    const file = instanceConfigPath(ctx.home, name);
    const r = loader(file, name);
    if (r.ok) return r;
    const row = ctx.store.getRuntime(name);
    const config = startedConfig(ctx.store, name);
    if (row && config && (keeperAlive(row, ctx.deps.procs) || serverAlive(row, ctx.deps.procs))) {
      return { ok: true as const, instance: { name, file, config } };
    }
    return r;
  };
  let conflicts = '';
  const routes = routeSource(
    () => discoverInstanceNames(ctx.home).map(configOf),
    plan.settings,
    Date.now,
    500,
    (table) => {
      // Said once per change in the daemon's log: a request for such an id is refused (409).
      const now = [...table.conflicts.values()].join('; ');
      if (now && now !== conflicts) log(`proxy: ${now}`);
      conflicts = now;
    },
  );
  // Engine warnings (a backend that will fall back to the CPU, say) go to the daemon's log.
  const deps = { ...ctx.deps, warn: (m: string) => log(`warning: ${m}`) };
  const scheduler = new Scheduler(engineOps(deps), {
    startTimeoutMs: plan.settings.start_timeout * 1000,
    command: (args) => orchCommandWithHome(ctx.home, args),
  });
  const server = new ProxyServer({
    settings: plan.settings,
    apiKey: plan.apiKey,
    env: ctx.deps.env,
    routes: routes.table,
    scheduler,
    api: apiSources(ctx),
    log,
    listenHost: plan.listen.host,
  });
  try {
    await server.listen(plan.listen.host, plan.listen.port);
  } catch (e) {
    if (errnoCode(e) === 'EADDRINUSE') checkProxyPort(plan.listen);
    throw new UserError(
      `the proxy cannot listen on ${formatListen(plan.listen)}: ${e instanceof Error ? e.message : String(e)}`,
      errnoCode(e) === 'EADDRINUSE' ? ExitCode.portCollision : ExitCode.daemon,
      'pick another address with --listen HOST:PORT (or proxy.listen in llama-orch.json), or pass --no-proxy',
    );
  }
  return new ProxyService({
    server,
    scheduler,
    routes: () => routes.table().routes,
    store: ctx.store,
    address: formatListen(plan.listen),
    pid: process.pid,
    wait: abortableSleep,
    log,
  });
}

export async function daemonRun(ctx: Context, opts: DaemonRunOptions, out: Out): Promise<number> {
  const pidFile = daemonPidFile(ctx.home);
  if (!acquirePidFile(pidFile)) {
    const owner = liveDaemon(pidFile);
    throw new UserError(`a daemon is already running for ${ctx.home.root} (pid ${owner?.pid ?? '?'})`, ExitCode.daemon);
  }
  let plan: ReturnType<typeof proxyPlan>;
  try {
    plan = proxyPlan(ctx, opts);
  } catch (e) {
    releasePidFile(pidFile);
    throw e;
  }
  fs.mkdirSync(ctx.home.logsDir, { recursive: true, mode: 0o700 });
  const logFile = new RotatingFile(path.join(ctx.home.logsDir, 'daemon.log'), 1024 * 1024, 3);
  const log = (msg: string) => logFile.writeLine(`${new Date().toISOString()} ${msg}`);
  let proxy: ProxyService | undefined;
  try {
    proxy = plan ? await bindProxy(ctx, plan, log) : undefined;
  } catch (e) {
    logFile.close();
    releasePidFile(pidFile);
    throw e;
  }
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
      {
        intervalMs: opts.interval * 1000,
        staggerMs: opts.stagger * 1000,
        autostart: opts.autostart,
        ...(proxy ? { extra: [proxy] } : {}),
      },
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
    out.log(`daemon started (pid ${started.pid}); log: ${path.join(ctx.home.logsDir, 'daemon.log')}`);
    if (plan) out.log(`proxy: http://${formatListen(plan.listen)} (OpenAI-compatible /v1, REST /api, /metrics)`);
    return 0;
  }
  throw new UserError(`the daemon did not start${lastErrorLine(errLog, errFrom)}`, ExitCode.daemon, `see ${errLog}`);
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

export function daemonStatusCommand(ctx: Context, out: Out, json = false): number {
  const owner = liveDaemon(daemonPidFile(ctx.home));
  const proxy = owner ? proxyAddress(ctx.store, owner.pid) : null;
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
          proxy: proxy ? `http://${proxy}` : null,
        },
        null,
        2,
      ),
    );
    return owner ? 0 : 1;
  }
  if (owner) {
    out.log(`daemon running (pid ${owner.pid})${proxy ? `; proxy http://${proxy}` : '; no proxy'}`);
    return 0;
  }
  out.log('daemon not running');
  return 1;
}
