import crypto from 'node:crypto';
import type Http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLoopbackHost } from '../config/schema.js';
import type { ProxySettings } from '../config/settings.js';
import type { InstanceSnapshot } from '../domain/snapshot.js';
import { answerApi, type ApiSources } from './api.js';
import { ClientBounds } from './client-bounds.js';
import { asProxyError, ProxyError } from './errors.js';
import { exposition, ProxyCounters } from './exposition.js';
import { modelsList, type Route, type RouteTable } from './routes.js';
import { fleetModels, routeInFleet } from './fleet-forward.js';
import { HOP_HEADER, type FleetRouter } from './fleet-router.js';
import type { Scheduler } from './scheduler.js';
import { forward, Upstreams } from './upstream.js';
import { LOGS_PATH, streamLogs } from './log-stream.js';
import { http } from '../platform/builtins.js';

export interface ProxyDeps {
  settings: ProxySettings;
  /** The key every request must send (proxy.api_key_env's value); null: none. */
  apiKey: string | null;
  /** Where the instances' own keys are read (server.api_key_env). */
  env: NodeJS.ProcessEnv;
  /** The routable instances now (cheap: the caller caches it). */
  routes(): RouteTable;
  scheduler: Scheduler;
  api: ApiSources;
  log(msg: string): void;
  /** The host the server is bound to (a name clients may use besides loopback ones). */
  listenHost?: string;
  /** The other rigs, when llama-orch.json names a fleet: this endpoint then serves the fleet's models. */
  fleet?: { router: FleetRouter; localName: string };
}

/** llama.cpp's own endpoints that take a JSON body naming the model; every POST under /v1/ does too. */
const LLAMA_PATHS = new Set([
  '/chat/completions',
  '/completion',
  '/completions',
  '/embedding',
  '/embeddings',
  '/tokenize',
  '/detokenize',
  '/rerank',
  '/reranking',
  '/infill',
  '/apply-template',
]);

function send(res: Http.ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: Http.ServerResponse, e: ProxyError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  send(res, e.status, e.body());
}

function knownModels(table: RouteTable): string {
  const ids = table.routes.map((r) => r.id);
  return ids.length ? ids.join(', ') : 'none (no instance config under instances/)';
}

/**
 * The daemon's HTTP server (docs/ARCHITECTURE.md, "Proxy and REST API"): OpenAI-compatible routing
 * by the body's `model` (on-demand start through the scheduler), /upstream/MODEL/PATH for anything
 * else an instance serves, the management API under /api, and /metrics.
 */
export class ProxyServer {
  readonly server: Http.Server;
  readonly counters = new ProxyCounters();
  readonly bounds: ClientBounds;
  private readonly upstreams: Upstreams;
  private readonly keyHash: Buffer | null;
  private closing: Promise<void> | undefined;
  /** The following log streams (GET .../logs?follow=1), ended when the daemon stops. */
  private readonly logStreams = new Set<() => void>();

  constructor(private readonly deps: ProxyDeps) {
    this.upstreams = new Upstreams(deps.settings.upstream_timeout * 1000);
    this.keyHash = deps.apiKey ? crypto.createHash('sha256').update(deps.apiKey).digest() : null;
    this.server = http().createServer({ noDelay: true, keepAliveTimeout: 30_000, requestTimeout: 0 }, (req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        const err = asProxyError(e);
        // A full memory for bodies is counted in /metrics, not logged per request (a flood would fill the log).
        if (err.status >= 500 && err.code !== 'overloaded') deps.log(`proxy: ${req.method} ${req.url}: ${err.message}`);
        sendError(res, err);
      });
    });
    this.bounds = new ClientBounds(this.server, deps.settings, (line) => deps.log(line));
  }

  /** Binds; rejects with the socket error (EADDRINUSE: the caller names the holder). */
  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting; requests in flight get `graceMs` to finish, then their connections are cut. */
  close(graceMs = 2000): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      for (const end of this.logStreams) end();
      const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
      await this.upstreams.close();
      await this.deps.fleet?.router.close();
    })();
    return this.closing;
  }

  /** Lets go of the connections to addresses no instance serves on now. */
  retainUpstreams(live: ReadonlySet<string>): void {
    this.upstreams.retain(live);
  }

  private authorized(req: Http.IncomingMessage): boolean {
    if (!this.keyHash) return true;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const given = crypto
      .createHash('sha256')
      .update((m[1] as string).trim())
      .digest();
    return crypto.timingSafeEqual(given, this.keyHash);
  }

  /**
   * Without a key, only local clients by name: a Host that is not loopback (or the listen address)
   * is DNS rebinding, an Origin that is not local is a web page; either could start and stop
   * instances from a browser. With a key the key decides.
   */
  private foreign(req: Http.IncomingMessage): string | undefined {
    if (this.keyHash) return undefined;
    const local = (host: string) => {
      const h = host
        .replace(/:\d+$/, '')
        .replace(/^\[(.*)\]$/, '$1')
        .toLowerCase();
      return isLoopbackHost(h) || h === 'localhost' || h === '::1' || h === this.deps.listenHost;
    };
    const host = req.headers.host;
    if (host && !local(host)) return `Host "${host}"`;
    const origin = req.headers.origin;
    if (origin && origin !== 'null') {
      try {
        if (!local(new URL(origin).host)) return `Origin "${origin}"`;
      } catch {
        return `Origin "${origin}"`;
      }
    } else if (origin === 'null') return 'Origin "null"';
    return undefined;
  }

  private async handle(req: Http.IncomingMessage, res: Http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const method = req.method ?? 'GET';
    const foreign = this.foreign(req);
    if (foreign) {
      req.resume();
      throw new ProxyError(
        403,
        `refused: ${foreign} is not this machine, and the proxy has no key`,
        'permission_error',
        'forbidden',
        'set proxy.api_key_env in llama-orch.json to serve other hosts or web pages',
      );
    }
    // Browsers: the origin passed the check above (any, with a key): it may read the answers, and
    // its preflight (which carries no key) is answered here, as llama-server answers its own.
    const origin = req.headers.origin;
    if (origin) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'Origin');
    }
    if (method === 'OPTIONS') {
      req.resume();
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, OPTIONS',
        'access-control-allow-headers': req.headers['access-control-request-headers'] ?? 'authorization, content-type',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    if (!this.authorized(req)) {
      req.resume();
      res.setHeader('www-authenticate', 'Bearer');
      throw new ProxyError(
        401,
        'missing or wrong API key: send Authorization: Bearer KEY',
        'authentication_error',
        'invalid_api_key',
      );
    }
    const path = url.pathname;
    if (path === '/health' && method === 'GET') return send(res, 200, { status: 'ok' });
    if ((path === '/v1/models' || path === '/models') && method === 'GET') return send(res, 200, this.models());
    const one = /^\/v1\/models\/(.+)$/.exec(path);
    if (one && method === 'GET') {
      let id: string;
      try {
        id = decodeURIComponent(one[1] as string);
      } catch {
        throw new ProxyError(400, `malformed model id in ${path}: not valid percent-encoding`);
      }
      const entry = this.models().data.find((m) => m.id === id || (m.aliases as string[]).includes(id));
      if (!entry) this.route(id); // throws the 404 (or 409) with the known models
      return send(res, 200, entry);
    }
    if (path === '/metrics' && method === 'GET') {
      return send(res, 200, await this.metricsText(), 'text/plain; version=0.0.4; charset=utf-8');
    }
    const logs = LOGS_PATH.exec(path);
    if (logs && (method === 'GET' || method === 'HEAD')) {
      const name = logs[1] as string;
      const end = streamLogs(req, res, url, name, await this.deps.api.logDir(name));
      if (end) {
        this.logStreams.add(end);
        res.on('close', () => this.logStreams.delete(end));
      }
      return;
    }
    if (path === '/api' || path.startsWith('/api/')) {
      if (method === 'POST') await this.bounds.bodies.read(req, res, 64 * 1024);
      const a = await answerApi(method, url, this.deps.api, (rows) => this.withCounts(rows));
      return send(res, a.status, a.body);
    }
    const up = /^\/upstream\/([^/]+)(\/.*)?$/.exec(path);
    if (up) {
      let model: string;
      try {
        model = decodeURIComponent(up[1] as string);
      } catch {
        throw new ProxyError(400, `malformed model name in ${path}: not valid percent-encoding`);
      }
      const route = this.route(model);
      // A read (a monitoring GET of /slots, /metrics, /health) neither starts an instance nor moves its idle clock.
      const read = method === 'GET' || method === 'HEAD';
      const body = read ? null : await this.bounds.bodies.read(req, res);
      const opts = read ? { start: false, touch: false } : {};
      return this.proxy(route, req, res, `${up[2] ?? '/'}${url.search}`, body, opts);
    }
    if (method === 'POST' && (path.startsWith('/v1/') || LLAMA_PATHS.has(path))) {
      const body = await this.bounds.bodies.read(req, res);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch (e) {
        throw new ProxyError(400, `request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
      }
      const model = (parsed as { model?: unknown } | null)?.model;
      if (typeof model !== 'string' || model === '') {
        throw new ProxyError(
          400,
          `the request names no model: set "model" to one of ${knownModels(this.deps.routes())}`,
          'invalid_request_error',
          'model_required',
        );
      }
      const fleet = this.deps.fleet;
      if (fleet && req.headers[HOP_HEADER] === undefined) {
        const local = {
          table: this.deps.routes(),
          scheduler: this.deps.scheduler,
          upstreamTimeoutMs: this.deps.settings.upstream_timeout * 1000,
          localName: fleet.localName,
        };
        if (await routeInFleet(fleet.router, local, model, req, res, `${path}${url.search}`, body)) return;
      }
      return this.proxy(this.route(model), req, res, `${path}${url.search}`, body);
    }
    req.resume();
    throw new ProxyError(
      404,
      `no route for ${method} ${path}: POST /v1/... and llama.cpp's endpoints route by "model"; GET /v1/models, /api/..., /metrics, /upstream/MODEL/PATH`,
      'invalid_request_error',
      'not_found',
    );
  }

  private route(model: string): Route {
    const table = this.deps.routes();
    const conflict = table.conflicts.get(model);
    if (conflict) throw new ProxyError(409, conflict, 'invalid_request_error', 'model_ambiguous');
    const name = table.byId.get(model);
    const route = name === undefined ? undefined : table.routes.find((r) => r.name === name);
    if (!route) {
      const broken = table.broken.get(model);
      throw new ProxyError(
        404,
        broken
          ? `model "${model}": the config of instance ${model} is invalid (${broken})`
          : `model "${model}" is not served here; known models: ${knownModels(table)}`,
        'invalid_request_error',
        'model_not_found',
      );
    }
    return route;
  }

  private async proxy(
    route: Route,
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    path: string,
    body: Buffer | null,
    opts: { start?: boolean; touch?: boolean } = {},
  ): Promise<void> {
    const started = performance.now();
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    let status = 500;
    let ok = false;
    try {
      const lease = await this.deps.scheduler.acquire(route, this.deps.routes().routes, abort.signal, opts);
      try {
        const apiKey = route.apiKeyEnv ? this.deps.env[route.apiKeyEnv] || null : null;
        if (route.apiKeyEnv && !apiKey) {
          throw new ProxyError(
            503,
            `${route.name} wants the key in ${route.apiKeyEnv} (its server.api_key_env), which is not set in the daemon's environment: the proxy cannot authenticate to it`,
            'server_error',
            'upstream_key_missing',
            `start the daemon with ${route.apiKeyEnv} set (a systemd unit: Environment= or EnvironmentFile=)`,
          );
        }
        const pool = this.upstreams.pool(lease.host, lease.port);
        const timeout = this.deps.settings.upstream_timeout * 1000;
        const r = await forward(
          pool,
          { method: req.method ?? 'GET', path, headers: req.headers, body, apiKey, signal: abort.signal },
          res,
          route.name,
          timeout,
        );
        status = r.broken && abort.signal.aborted ? 499 : r.status;
        ok = !r.broken && r.status < 500;
      } finally {
        lease.release(ok);
      }
    } catch (e) {
      const err = asProxyError(e);
      status = err.status;
      if (err.code === 'upstream_error') this.deps.scheduler.forget(route.name);
      throw err;
    } finally {
      this.counters.record(route.name, status, (performance.now() - started) / 1000);
    }
  }

  /** GET /v1/models: this rig's models (routes.ts), and with a fleet those of the other rigs too. */
  private models(): { data: Array<Record<string, unknown>> } {
    const here = modelsList(this.deps.routes(), (name) => this.deps.scheduler.view(name));
    return this.deps.fleet ? fleetModels(here, this.deps.fleet.router, this.deps.fleet.localName) : here;
  }

  private withCounts(rows: InstanceSnapshot[]): InstanceSnapshot[] {
    const counts = this.deps.scheduler.snapshot();
    return rows.map((r) => {
      const c = counts.get(r.name);
      return { ...r, proxy_in_flight: c?.inFlight ?? 0, proxy_queued: c?.queued ?? 0 };
    });
  }

  private async metricsText(): Promise<string> {
    const [instances, gpus] = await Promise.all([this.deps.api.instances(), this.deps.api.gpus()]);
    const text = exposition({
      instances,
      gpus: gpus.gpus,
      counts: this.deps.scheduler.snapshot(),
      counters: this.counters,
      pressure: this.bounds.pressure(),
    });
    return this.deps.fleet ? text + this.deps.fleet.router.exposition() : text;
  }
}
