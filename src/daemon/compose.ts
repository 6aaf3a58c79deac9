import fs from 'node:fs';
import path from 'node:path';
import { cachedLoader } from '../config/cached.js';
import { discoverInstanceNames, loadConfigFile, loadInstance } from '../config/load.js';
import { isLoopbackHost } from '../config/schema.js';
import {
  formatListen,
  loadSettings,
  parseListen,
  settingsPath,
  type ListenAddress,
  type ProxySettings,
} from '../config/settings.js';
import { ProxyService } from './proxy-service.js';
import { FleetService, fleetRouting } from './fleet-service.js';
import { StateWatchService } from './state-watch.js';
import { openDatabase } from '../store/db.js';
import { liveConfig } from '../engine/reconcile.js';
import { engineOps } from '../proxy/engine-ops.js';
import { routeSource } from '../proxy/routes.js';
import { Scheduler } from '../proxy/scheduler.js';
import { ProxyServer } from '../proxy/server.js';
import { findPortHolder } from '../platform/ports.js';
import { apiSources } from '../app/api.js';
import { runDaemon } from './daemon.js';
import { ExitCode, UserError, errnoCode } from '../domain/errors.js';
import { daemonPidFile, instanceConfigPath, orchCommandWithHome } from '../domain/home.js';
import { RotatingFile } from '../logs/rotating-file.js';
import { acquirePidFile, liveDaemon, releasePidFile } from '../platform/pidfile.js';
import { abortableSleep } from '../platform/sleep.js';
import type { Context } from '../app/context.js';

/**
 * The daemon's composition: the proxy's plan from the settings and flags, the proxy built on the
 * application (its REST API is app/api.ts), and supervision with autostart (daemon.ts), run in
 * this process by `daemon run`.
 */

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

export /** The port is free, or a UserError naming who holds it (as for instances). */
function checkProxyPort(listen: ListenAddress): void {
  const holder = findPortHolder(listen.port, listen.host);
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
): Promise<{ proxy: ProxyService; fleet?: FleetService }> {
  const loader = cachedLoader(ctx.store, loadConfigFile);
  // A running instance keeps the config it was started with: a file edited into an invalid state
  // does not take its route away (as ps shows what runs); the new config applies on restart.
  const configOf = (name: string) => {
    const file = instanceConfigPath(ctx.home, name);
    const r = loader(file, name);
    if (r.ok) return r;
    const config = liveConfig(ctx.store, ctx.deps.procs, name);
    return config ? { ok: true as const, instance: { name, file, config } } : r;
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
  // With other rigs in llama-orch.json, this endpoint serves the fleet's models (README, "Several rigs").
  const fleet = fleetRouting(ctx, log, plan.settings.upstream_timeout * 1000);
  const server = new ProxyServer({
    fleet,
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
  const proxy = new ProxyService({
    server,
    scheduler,
    routes: () => routes.table().routes,
    store: ctx.store,
    address: formatListen(plan.listen),
    pid: process.pid,
    wait: abortableSleep,
    log,
  });
  return { proxy, fleet: fleet ? new FleetService(fleet.router, abortableSleep) : undefined };
}

/** `daemon run`: supervision, autostart and the proxy in this process, until SIGTERM or SIGINT. */
export async function runDaemonHere(ctx: Context, opts: DaemonRunOptions): Promise<void> {
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
  let fleet: FleetService | undefined;
  try {
    const bound = plan ? await bindProxy(ctx, plan, log) : undefined;
    proxy = bound?.proxy;
    fleet = bound?.fleet;
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
        extra: [
          ...(proxy ? [proxy] : []),
          ...(fleet ? [fleet] : []),
          new StateWatchService({
            home: ctx.home,
            store: ctx.store,
            pidFile,
            open: () => openDatabase(ctx.home.dbPath).db,
            reopened: () => proxy?.recordListen(),
            wait: abortableSleep,
            log,
          }),
        ],
      },
      stop.signal,
    );
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    logFile.close();
    releasePidFile(pidFile);
  }
}
