import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LoadResult } from '../../src/config/load.js';
import { InstanceConfigSchema } from '../../src/config/schema.js';
import { SettingsSchema } from '../../src/config/settings.js';
import { ExitCode, UserError } from '../../src/domain/errors.js';
import type { InstanceSnapshot } from '../../src/domain/snapshot.js';
import type { ApiSources } from '../../src/proxy/api.js';
import { buildRoutes, type RouteTable } from '../../src/proxy/routes.js';
import { Scheduler } from '../../src/proxy/scheduler.js';
import { type InstanceView, type SchedulerOps, STOPPED_VIEW } from '../../src/proxy/scheduler-ops.js';
import { ProxyServer } from '../../src/proxy/server.js';

// An in-process proxy on 127.0.0.1:0 in front of a small node:http upstream (also on port 0), with
// a scripted engine behind the scheduler and a recording management API.

interface Hit {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

const echo: UpstreamHandler = (req, res, body) => {
  const text = JSON.stringify({ echoed: body, url: req.url });
  res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' });
  res.end(text);
};

const STOPPED = STOPPED_VIEW;

function ok(name: string, model: Record<string, unknown> = {}, rest: Record<string, unknown> = {}): LoadResult {
  const { server, ...top } = rest as { server?: Record<string, unknown> };
  const config = InstanceConfigSchema.parse({
    model: { path: `${name}.gguf`, ...model },
    server: { port: 8081, ...server },
    ...top,
  });
  return { ok: true, instance: { name, file: `/home/instances/${name}/config.json`, config } };
}

const CONFIGS: LoadResult[] = [
  ok('alpha', { alias: 'alpha-model', aliases: ['gpt-4o-mini'] }, { server: { api_key_env: 'INST_KEY' } }),
  ok('beta'),
  ok('gamma', {}, { on_demand: false }),
  {
    ok: false,
    name: 'bad',
    file: '/home/instances/bad/config.json',
    problems: [{ file: '/home/instances/bad/config.json', jsonPath: '$.server.port', message: 'port is missing' }],
  },
];

function settle(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function eventually(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await settle(10);
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: () => { error?: { message: string; type: string; code: string | null }; [k: string]: unknown };
}

let upstream: http.Server;
let upstreamPort: number;
let hits: Hit[];
let handler: UpstreamHandler;
let views: Map<string, InstanceView>;
let starts: string[];
let apiCalls: unknown[][];
let logs: string[];
let proxies: ProxyServer[];
let table: RouteTable;
/** What an on-demand start waits for before its instance is healthy. */
let startGate: Promise<void>;
/** Instances the scheduler was told to read afresh (their upstream refused a connection). */
let forgotten: string[];

beforeEach(async () => {
  hits = [];
  handler = echo;
  starts = [];
  startGate = Promise.resolve();
  forgotten = [];
  apiCalls = [];
  logs = [];
  proxies = [];
  upstream = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  upstreamPort = (upstream.address() as AddressInfo).port;
  views = new Map([['alpha', healthyView(upstreamPort)]]);
  table = buildRoutes(CONFIGS, SettingsSchema.parse({}).proxy);
});

afterEach(async () => {
  for (const p of proxies) await p.close(50);
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

function healthyView(port: number): InstanceView {
  return {
    running: true,
    healthy: true,
    status: 'running',
    health: 'ok',
    lastError: null,
    host: '127.0.0.1',
    port,
    startedAt: 1_700_000_000_000,
  };
}

function opsFake(): SchedulerOps {
  return {
    view: (name) => views.get(name) ?? STOPPED,
    start: async (name) => {
      starts.push(name);
      await startGate;
      views.set(name, healthyView(upstreamPort));
    },
    waitHealthy: (name) =>
      views.get(name)?.healthy ? Promise.resolve() : Promise.reject(new UserError(`${name} did not become healthy`)),
    stop: (name) => {
      views.set(name, STOPPED);
      return Promise.resolve();
    },
    fit: () => Promise.resolve({ fits: true }),
    forget: (name) => {
      forgotten.push(name);
    },
    event: () => undefined,
    now: () => Date.now(),
  };
}

function row(name: string): InstanceSnapshot {
  return { name, state: 'running', health: 'ok', proxy_in_flight: null, proxy_queued: null } as InstanceSnapshot;
}

function apiFake(): ApiSources {
  const rec =
    (what: string) =>
    (...args: unknown[]) => {
      apiCalls.push([what, ...args]);
    };
  return {
    instances: () => {
      rec('instances')();
      return Promise.resolve([row('alpha'), row('beta')]);
    },
    describe: (name) => {
      rec('describe')(name);
      if (name === 'ghost') return Promise.reject(new UserError('unknown instance "ghost"', ExitCode.notFound));
      return Promise.resolve({ name, described: true });
    },
    gpus: () => Promise.resolve({ gpus: [], error: null }),
    events: (since, limit, instance) => {
      rec('events')(since, limit, instance);
      return [{ id: since + 1, instance: instance ?? null }];
    },
    logDir: (name) => Promise.resolve(`/nonexistent/logs/${name}`),
    latestEvents: (n, instance) => {
      rec('latestEvents')(n, instance);
      return [{ id: 1, instance: instance ?? null }];
    },
    start: (name, waitS) => {
      rec('start')(name, waitS);
      if (name === 'ghost') {
        return Promise.reject(
          new UserError('unknown instance "ghost": no such config', ExitCode.notFound, 'known: alpha, beta'),
        );
      }
      if (name === 'beta') return Promise.reject(new UserError('beta is already running', ExitCode.alreadyRunning));
      return Promise.resolve({ name, started: true });
    },
    stop: (name) => {
      rec('stop')(name);
      return Promise.resolve({ name, stopped: true });
    },
    restart: (name, waitS) => {
      rec('restart')(name, waitS);
      return Promise.resolve({ name, restarted: true });
    },
  };
}

async function startProxy(
  opts: { apiKey?: string | null; proxy?: Record<string, unknown>; env?: NodeJS.ProcessEnv } = {},
): Promise<{ proxy: ProxyServer; scheduler: Scheduler; base: string; port: number }> {
  const scheduler = new Scheduler(opsFake(), { startTimeoutMs: 2000 });
  const proxy = new ProxyServer({
    settings: SettingsSchema.parse({ proxy: { upstream_timeout: 5, ...opts.proxy } }).proxy,
    apiKey: opts.apiKey ?? null,
    env: opts.env ?? { INST_KEY: 'instance-secret' },
    routes: () => table,
    scheduler,
    api: apiFake(),
    log: (m) => logs.push(m),
  });
  proxies.push(proxy);
  const addr = await proxy.listen('127.0.0.1', 0);
  return { proxy, scheduler, base: `http://127.0.0.1:${addr.port}`, port: addr.port };
}

async function call(base: string, path: string, init: RequestInit = {}): Promise<Answer> {
  const r = await fetch(`${base}${path}`, init);
  const text = await r.text();
  return { status: r.status, headers: r.headers, text, json: () => JSON.parse(text) as ReturnType<Answer['json']> };
}

const post = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

/** A raw request whose response body is read chunk by chunk (`onChunk` sees each as it comes). */
function rawRequest(
  port: number,
  path: string,
  opts: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | string[];
    onChunk?: (chunk: string, req: http.ClientRequest) => void;
  } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string; chunks: string[]; aborted: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: string[] = [];
    const req = http.request(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'POST', headers: opts.headers ?? {} },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          chunks.push(c);
          opts.onChunk?.(c, req);
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: chunks.join(''), chunks, aborted: false }),
        );
        res.on('error', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: chunks.join(''), chunks, aborted: true }),
        );
      },
    );
    req.on('error', reject);
    const parts = opts.body === undefined ? [] : Array.isArray(opts.body) ? opts.body : [opts.body];
    for (const p of parts) req.write(p);
    req.end();
  });
}

const CHAT = { model: 'alpha-model', messages: [{ role: 'user', content: 'hi' }] };

describe('authentication', () => {
  it('with a key set: 401 without a key, with a wrong one, or another scheme; the right Bearer key passes', async () => {
    const { base } = await startProxy({ apiKey: 'sekret-key' });
    const tries: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong-key' },
      { authorization: 'Bearer sekret-key-and-more' },
      { authorization: 'Basic c2VrcmV0LWtleQ==' },
      { authorization: 'sekret-key' },
    ];
    for (const headers of tries) {
      const r = await call(base, '/v1/models', { headers });
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
      expect(r.json().error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    }
    expect((await call(base, '/v1/models', { headers: { authorization: 'Bearer sekret-key' } })).status).toBe(200);
    expect((await call(base, '/v1/models', { headers: { authorization: 'bearer  sekret-key ' } })).status).toBe(200);
  });

  it('nothing passes without the key: not the upstream, not the API, not /metrics', async () => {
    const { base } = await startProxy({ apiKey: 'sekret-key' });
    expect((await call(base, '/v1/chat/completions', post(CHAT))).status).toBe(401);
    expect((await call(base, '/api/instances/alpha/start', { method: 'POST' })).status).toBe(401);
    expect((await call(base, '/api/instances')).status).toBe(401);
    expect((await call(base, '/metrics')).status).toBe(401);
    expect((await call(base, '/upstream/alpha/props')).status).toBe(401);
    expect(hits).toEqual([]);
    expect(apiCalls).toEqual([]);
  });

  it("the client's key never goes upstream: the instance's own key does, where it has one", async () => {
    const { base } = await startProxy({ apiKey: 'sekret-key' });
    const auth = { authorization: 'Bearer sekret-key' };
    expect((await call(base, '/v1/chat/completions', post(CHAT, auth))).status).toBe(201);
    expect((await call(base, '/v1/completions', post({ model: 'beta', prompt: 'x' }, auth))).status).toBe(201);
    expect(hits.map((h) => h.headers.authorization)).toEqual(['Bearer instance-secret', undefined]);
  });

  it('no key set: requests need none', async () => {
    const { base } = await startProxy();
    expect((await call(base, '/v1/models')).status).toBe(200);
    expect((await call(base, '/health')).json()).toEqual({ status: 'ok' });
  });

  it('no key set: a foreign Host (DNS rebinding) or a web page Origin is 403; local names pass; a key lifts it', async () => {
    const get = (port: number, headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port, path: '/api/instances', method: 'POST', headers },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += String(c)));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const { port } = await startProxy();
    const rebinding = await get(port, { host: `attacker.example:${port}` });
    expect(rebinding.status).toBe(403);
    expect(JSON.parse(rebinding.body)).toMatchObject({
      error: {
        code: 'forbidden',
        message: `refused: Host "attacker.example:${port}" is not this machine, and the proxy has no key`,
      },
    });
    expect((await get(port, { host: `127.0.0.1:${port}`, origin: 'https://evil.example' })).status).toBe(403);
    expect((await get(port, { host: `localhost:${port}`, origin: 'null' })).status).toBe(403);
    // Local names and local pages are fine (405: the route wants GET, so the request got through).
    expect((await get(port, { host: `localhost:${port}` })).status).toBe(405);
    expect((await get(port, { host: `[::1]:${port}`, origin: `http://localhost:${port}` })).status).toBe(405);
    expect(apiCalls.filter(([w]) => w !== 'instances')).toEqual([]);
    const keyed = await startProxy({ apiKey: 'sekret-key' });
    expect((await get(keyed.port, { host: 'rig.lan', authorization: 'Bearer sekret-key' })).status).toBe(405);
  });
});

describe('routing by model', () => {
  it('forwards method, path, query, body and headers; the answer comes back as the upstream gave it', async () => {
    const { base, scheduler, proxy } = await startProxy();
    const body = JSON.stringify({ ...CHAT, note: 'ünïcödé' });
    const r = await call(base, '/v1/chat/completions?trace=1', post(body, { 'x-request-id': 'r-42' }));
    expect(r.status).toBe(201);
    expect(r.headers.get('x-upstream')).toBe('yes');
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.json()).toEqual({ echoed: body, url: '/v1/chat/completions?trace=1' });
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ method: 'POST', url: '/v1/chat/completions?trace=1', body });
    expect(hits[0]?.headers['x-request-id']).toBe('r-42');
    expect(hits[0]?.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    expect(scheduler.countsOf('alpha')).toMatchObject({ requests: 1, inFlight: 0, errors: 0, queued: 0 });
    expect(scheduler.countsOf('alpha').lastEnd).toBeGreaterThan(0);
    expect(proxy.counters.responses.get('alpha')?.get(201)).toBe(1);
  });

  it('the id, each alias and the instance name all route to the instance', async () => {
    const { base, scheduler } = await startProxy();
    for (const model of ['alpha-model', 'gpt-4o-mini', 'alpha']) {
      expect((await call(base, '/v1/embeddings', post({ model, input: 'x' }))).status).toBe(201);
    }
    expect(scheduler.countsOf('alpha').requests).toBe(3);
  });

  it("llama.cpp's own endpoints route by model too", async () => {
    const { base } = await startProxy();
    for (const path of ['/completion', '/tokenize', '/infill', '/apply-template']) {
      expect((await call(base, path, post({ model: 'alpha', content: 'x' }))).status, path).toBe(201);
    }
    expect(hits.map((h) => h.url)).toEqual(['/completion', '/tokenize', '/infill', '/apply-template']);
  });

  it('malformed JSON: 400, and the upstream receives nothing', async () => {
    const { base, scheduler } = await startProxy();
    for (const body of ['{"model": "alpha-model",', 'not json', '']) {
      const r = await call(base, '/v1/chat/completions', post(body));
      expect(r.status, body).toBe(400);
      expect(r.json().error?.type).toBe('invalid_request_error');
      expect(r.json().error?.message).toContain('not valid JSON');
    }
    expect(hits).toEqual([]);
    expect(scheduler.snapshot().size).toBe(0);
  });

  it('no model: 400 model_required naming the known models; nothing forwarded', async () => {
    const { base } = await startProxy();
    for (const body of [{}, { model: '' }, { model: 42 }, null, ['alpha']]) {
      const r = await call(base, '/v1/chat/completions', post(JSON.stringify(body)));
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json().error?.code).toBe('model_required');
      expect(r.json().error?.message).toContain('alpha-model, beta, gamma');
    }
    expect(hits).toEqual([]);
  });

  it("unknown model: 404 in OpenAI's error shape, listing the known models", async () => {
    const { base } = await startProxy();
    const r = await call(base, '/v1/chat/completions', post({ model: 'gpt-5', messages: [] }));
    expect(r.status).toBe(404);
    expect(r.headers.get('content-type')).toBe('application/json');
    const body = r.json();
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error).toEqual({
      message: expect.stringContaining('"gpt-5"') as string,
      type: 'invalid_request_error',
      code: 'model_not_found',
    });
    expect(body.error?.message).toContain('known models: alpha-model, beta, gamma');
    expect(hits).toEqual([]);
  });

  it('no instance at all: the message says so', async () => {
    table = buildRoutes([], SettingsSchema.parse({}).proxy);
    const { base } = await startProxy();
    const r = await call(base, '/v1/chat/completions', post({ model: 'x' }));
    expect(r.status).toBe(404);
    expect(r.json().error?.message).toContain('none (no instance config');
  });

  it('an instance whose config is broken: 404 naming the problem', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/v1/chat/completions', post({ model: 'bad' }));
    expect(r.status).toBe(404);
    expect(r.json().error?.message).toContain('invalid');
    expect(r.json().error?.message).toContain('port is missing');
  });

  it('an id two instances claim: 409 model_ambiguous', async () => {
    table = buildRoutes([ok('one', { alias: 'llama' }), ok('two', { alias: 'llama' })], SettingsSchema.parse({}).proxy);
    const { base } = await startProxy();
    const r = await call(base, '/v1/chat/completions', post({ model: 'llama' }));
    expect(r.status).toBe(409);
    expect(r.json().error?.code).toBe('model_ambiguous');
    expect(r.json().error?.message).toContain('one and two');
  });

  it('a GET or HEAD through /upstream is a read: a stopped instance is 503 and not started; a running one keeps its idle clock', async () => {
    const { base, scheduler } = await startProxy();
    for (const method of ['GET', 'HEAD']) {
      const r = await call(base, '/upstream/beta/slots', { method });
      expect(r.status).toBe(503);
    }
    expect((await call(base, '/upstream/beta/slots')).json().error?.code).toBe('not_running');
    expect(starts).toEqual([]);
    expect((await call(base, '/upstream/alpha/slots')).status).toBe(201);
    expect(scheduler.countsOf('alpha').lastEnd).toBe(0);
    // A POST there is a use like any other: it starts the instance.
    expect((await call(base, '/upstream/beta/completion', post({ prompt: 'x' }))).status).toBe(201);
    expect(starts).toEqual(['beta']);
  });

  it('browsers: a local page gets its preflight answered and may read answers; GET /v1/models/ID', async () => {
    const { base } = await startProxy();
    const origin = 'http://localhost:3000';
    const pre = await fetch(`${base}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
    expect(pre.headers.get('access-control-allow-headers')).toBe('content-type');
    const r = await call(base, '/v1/chat/completions', post(CHAT, { origin }));
    expect(r.status).toBe(201);
    expect(r.headers.get('access-control-allow-origin')).toBe(origin);
    const m = await call(base, '/v1/models/gpt-4o-mini');
    expect(m.status).toBe(200);
    expect(m.json()).toMatchObject({ id: 'alpha-model', instance: 'alpha' });
    expect((await call(base, '/v1/models/nope')).json().error?.code).toBe('model_not_found');
  });

  it("an instance's key missing from the daemon's environment is a 503 that says so, not the server's 401", async () => {
    const { base } = await startProxy({ env: {} });
    const r = await call(base, '/v1/chat/completions', post(CHAT));
    expect(r.status).toBe(503);
    expect(r.json().error).toMatchObject({
      code: 'upstream_key_missing',
      message: expect.stringContaining('wants the key in INST_KEY') as unknown,
    });
    expect(hits).toEqual([]);
  });

  it('a stopped on-demand instance is started and then served', async () => {
    const { base, scheduler } = await startProxy();
    const r = await call(base, '/v1/completions', post({ model: 'beta', prompt: 'x' }));
    expect(r.status).toBe(201);
    expect(starts).toEqual(['beta']);
    expect(scheduler.countsOf('beta').starts).toBe(1);
  });

  it('a client that leaves while its instance starts: 499, and the start goes on for the next request', async () => {
    let open!: () => void;
    startGate = new Promise<void>((r) => (open = r));
    const { base, scheduler, proxy } = await startProxy();
    const ac = new AbortController();
    const left = fetch(`${base}/v1/completions`, { ...post({ model: 'beta', prompt: 'x' }), signal: ac.signal }).catch(
      (e: unknown) => e,
    );
    await eventually(() => scheduler.countsOf('beta').queued === 1, 'the request to wait for the start');
    ac.abort();
    await left;
    await eventually(() => proxy.counters.responses.get('beta')?.get(499) === 1, '499 to be counted');
    expect(scheduler.countsOf('beta')).toMatchObject({ queued: 0, inFlight: 0 });
    expect(starts).toEqual(['beta']);
    open();
    const r = await call(base, '/v1/completions', post({ model: 'beta', prompt: 'x' }));
    expect(r.status).toBe(201);
    expect(starts).toEqual(['beta']);
    expect(hits).toHaveLength(1);
  });

  it('a stopped instance with on_demand false: 503 not_running, with the hint', async () => {
    const { base, proxy } = await startProxy();
    const r = await call(base, '/v1/completions', post({ model: 'gamma', prompt: 'x' }));
    expect(r.status).toBe(503);
    expect(r.json().error).toMatchObject({ type: 'server_error', code: 'not_running' });
    expect(r.text).toContain('llama-orch up gamma');
    expect(starts).toEqual([]);
    expect(proxy.counters.responses.get('gamma')?.get(503)).toBe(1);
  });

  it('an upstream that refuses the connection: 502 upstream_error, counted as an error', async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    views.set('alpha', healthyView(deadPort));
    const { base, scheduler } = await startProxy();
    const r = await call(base, '/v1/chat/completions', post(CHAT));
    expect(r.status).toBe(502);
    expect(r.json().error?.code).toBe('upstream_error');
    expect(scheduler.countsOf('alpha')).toMatchObject({ errors: 1, inFlight: 0 });
    // What the engine remembers of alpha is dropped: the next request reads its state afresh.
    expect(forgotten).toEqual(['alpha']);
  });

  it('a connection the upstream closes before answering is retried once, and only once', async () => {
    let n = 0;
    handler = (req, res, body) => {
      if (++n === 1) req.socket.destroy();
      else echo(req, res, body);
    };
    const { base } = await startProxy();
    const r = await call(base, '/v1/chat/completions', post(CHAT));
    expect(r.status).toBe(201);
    expect(hits.map((h) => h.body)).toEqual([JSON.stringify(CHAT), JSON.stringify(CHAT)]);

    hits.length = 0;
    handler = (req) => req.socket.destroy();
    const failed = await call(base, '/v1/chat/completions', post(CHAT));
    expect(failed.status).toBe(502);
    expect(failed.json().error?.code).toBe('upstream_error');
    expect(hits).toHaveLength(2);
  });

  it('an upstream silent past upstream_timeout: 504 upstream_timeout', async () => {
    handler = () => undefined; // never answers
    const { base, scheduler } = await startProxy({ proxy: { upstream_timeout: 1 } });
    const t0 = Date.now();
    const r = await call(base, '/v1/chat/completions', post(CHAT));
    expect(r.status).toBe(504);
    expect(r.json().error?.code).toBe('upstream_timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(scheduler.countsOf('alpha')).toMatchObject({ inFlight: 0, errors: 1 });
  });

  it('GET /v1/models lists every route, running or not, with its state', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/v1/models');
    expect(r.status).toBe(200);
    const body = r.json() as unknown as { object: string; data: Array<Record<string, unknown>> };
    expect(body.object).toBe('list');
    expect(body.data).toEqual([
      {
        id: 'alpha-model',
        object: 'model',
        created: 1_700_000_000,
        owned_by: 'llama-orch',
        instance: 'alpha',
        aliases: ['gpt-4o-mini', 'alpha'],
        state: 'running',
        health: 'ok',
        on_demand: true,
      },
      {
        id: 'beta',
        object: 'model',
        created: 0,
        owned_by: 'llama-orch',
        instance: 'beta',
        aliases: [],
        state: 'stopped',
        health: null,
        on_demand: true,
      },
      {
        id: 'gamma',
        object: 'model',
        created: 0,
        owned_by: 'llama-orch',
        instance: 'gamma',
        aliases: [],
        state: 'stopped',
        health: null,
        on_demand: false,
      },
    ]);
    expect((await call(base, '/models')).json()).toEqual(body);
  });

  it('/upstream/MODEL/PATH forwards anything else to the instance, query included', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/upstream/gpt-4o-mini/props?slot=1');
    expect(r.status).toBe(201);
    expect(hits[0]).toMatchObject({ method: 'GET', url: '/props?slot=1', body: '' });
    expect((await call(base, '/upstream/alpha')).status).toBe(201);
    expect(hits[1]?.url).toBe('/');
    expect((await call(base, '/upstream/nope/props')).status).toBe(404);
  });

  // A malformed percent-escape in /upstream/MODEL is the client's mistake.
  it('a malformed escape in /upstream/MODEL is a 400, not a 500', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/upstream/%E0%A4%A/props');
    expect(r.status).toBe(400);
  });

  it('unknown paths: 404 saying what routes', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/v2/whatever');
    expect(r.status).toBe(404);
    expect(r.json().error?.code).toBe('not_found');
    expect((await call(base, '/v1/models', { method: 'DELETE' })).status).toBe(404);
  });
});

describe('streaming', () => {
  it('server-sent events pass chunk by chunk: the client sees the first before the upstream sends the last', async () => {
    let sentLast = false;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: {"n":1}\n\n');
      void released.then(() => {
        sentLast = true;
        res.write('data: {"n":2}\n\n');
        res.end('data: [DONE]\n\n');
      });
    };
    const { port } = await startProxy();
    let firstSeenBeforeLast: boolean | undefined;
    const r = await within(
      rawRequest(port, '/v1/chat/completions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...CHAT, stream: true }),
        onChunk: (c) => {
          if (firstSeenBeforeLast === undefined) {
            firstSeenBeforeLast = !sentLast && c.includes('"n":1');
            release();
          }
        },
      }),
      5000,
      'the first chunk reaching the client while the upstream holds the rest',
    );
    expect(firstSeenBeforeLast).toBe(true);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/event-stream');
    expect(r.text).toBe('data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n');
  });

  it('an upstream that dies mid-stream: the stream ends with a data: {"error": ...} event', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      setTimeout(() => res.socket?.destroy(), 50);
    };
    const { port, scheduler, proxy } = await startProxy();
    const r = await within(
      rawRequest(port, '/v1/chat/completions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...CHAT, stream: true }),
      }),
      5000,
      'the stream to end',
    );
    expect(r.status).toBe(200);
    expect(r.aborted).toBe(false);
    expect(r.text.startsWith('data: {"n":1}\n\n')).toBe(true);
    const events = r.text.split('\n\n').filter(Boolean);
    const last = events.at(-1) ?? '';
    expect(last.startsWith('data: ')).toBe(true);
    const err = (JSON.parse(last.slice('data: '.length)) as { error: { type: string; code: string } }).error;
    expect(err).toMatchObject({ type: 'server_error', code: 'upstream_error' });
    await eventually(() => scheduler.countsOf('alpha').inFlight === 0, 'the lease to be released');
    expect(scheduler.countsOf('alpha').errors).toBe(1);
    await eventually(() => proxy.counters.responses.get('alpha')?.get(200) === 1, 'the answer to be counted');
  });

  it('a non-streamed body cut mid-way: the client sees the connection broken, not a clean end', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"partial":');
      setTimeout(() => res.socket?.destroy(), 50);
    };
    const { port } = await startProxy();
    const r = await within(
      rawRequest(port, '/v1/chat/completions', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(CHAT),
      }).catch((e: unknown) => ({ error: e })),
      5000,
      'the response to end',
    );
    expect('error' in r || r.aborted).toBe(true);
  });

  it('the client leaving mid-stream closes the upstream request, frees the lease and counts 499', async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"n":1}\n\n');
      res.on('close', () => upstreamClosed());
      // ... and never ends on its own.
    };
    const { port, scheduler, proxy } = await startProxy();
    const client = rawRequest(port, '/v1/chat/completions', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...CHAT, stream: true }),
      onChunk: (_c, req) => req.destroy(),
    }).catch(() => undefined);
    await within(closed, 5000, 'the upstream to see its request closed');
    await client;
    await eventually(() => scheduler.countsOf('alpha').inFlight === 0, 'the lease to be released');
    await eventually(() => proxy.counters.responses.get('alpha')?.get(499) === 1, '499 to be counted');
    expect(scheduler.countsOf('alpha').errors).toBe(1);
  });

  // Regression: forward() once raced once(res, 'drain') with once(res, 'close') per wait, leaving the
  // loser's listeners behind: a slow client piled them up past MaxListenersExceededWarning.
  it('a slow client reading a long stream leaves no listeners behind (no MaxListenersExceededWarning)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const chunk = `data: ${'x'.repeat(64 * 1024)}\n\n`;
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const next = () => {
          while (i < 120) {
            i++;
            if (!res.write(chunk)) {
              res.once('drain', next);
              return;
            }
          }
          res.end();
        };
        next();
      };
      const { port } = await startProxy();
      let bytes = 0;
      await within(
        new Promise<void>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, path: '/upstream/alpha/stream' }, (res) => {
            res.on('data', (c: Buffer) => {
              bytes += c.length;
              res.pause();
              setTimeout(() => res.resume(), 1);
            });
            res.on('end', () => resolve());
          });
          req.on('error', reject);
          req.end();
        }),
        20_000,
        'the slow read',
      );
      await settle(20);
      expect(bytes).toBe(120 * Buffer.byteLength(chunk));
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('request bodies', () => {
  it('a declared body over max_body_bytes: 413, and nothing goes upstream', async () => {
    const { base, scheduler } = await startProxy({ proxy: { max_body_bytes: 1024 } });
    const big = JSON.stringify({ model: 'alpha-model', prompt: 'x'.repeat(2000) });
    const r = await call(base, '/v1/completions', post(big));
    expect(r.status).toBe(413);
    expect(r.json().error?.message).toContain('max_body_bytes');
    expect(hits).toEqual([]);
    expect(scheduler.snapshot().size).toBe(0);
    // Just under the limit passes.
    const small = JSON.stringify({ model: 'alpha-model', prompt: 'x'.repeat(900) });
    expect((await call(base, '/v1/completions', post(small))).status).toBe(201);
  });

  it('a streamed (chunked) body that grows over max_body_bytes: 413, nothing upstream', async () => {
    const { port } = await startProxy({ proxy: { max_body_bytes: 1024 } });
    const r = await within(
      rawRequest(port, '/v1/completions', {
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        body: ['{"model":"alpha-model","prompt":"', 'x'.repeat(600), 'x'.repeat(600), '"}'],
      }).catch((e: unknown) => ({ status: -1, text: String(e) })),
      5000,
      'the answer',
    );
    expect(r.status, r.text).toBe(413);
    expect(hits).toEqual([]);
  });

  it('a body that does not arrive within proxy.body_timeout: 408 saying so, nothing upstream', async () => {
    const { port, proxy } = await startProxy({ proxy: { body_timeout: 1 } });
    const started = Date.now();
    const r = await within(
      new Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = http.request({
          port,
          method: 'POST',
          path: '/v1/completions',
          headers: { 'content-length': '100' },
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
        });
        req.on('error', reject);
        req.write('{"model":"al'); // and never the rest
      }),
      5000,
      'the 408',
    );
    expect(r.status, r.text).toBe(408);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(JSON.parse(r.text).error).toMatchObject({
      code: 'timeout',
      message: 'request body not received within 1 s (proxy.body_timeout): 12 bytes came',
    });
    expect(r.headers.connection).toBe('close');
    expect(hits).toEqual([]);
    expect(proxy.bounds.pressure()).toMatchObject({ bodiesTimedOut: 1, bodiesBytes: 0 });
  });

  it('bodies held at once are bounded (proxy.max_bodies_bytes): the next is 503 with Retry-After; memory is given back', async () => {
    const MiB = 1024 * 1024;
    const { port, base, proxy } = await startProxy({ proxy: { max_body_bytes: MiB, max_bodies_bytes: MiB } });
    // A client sends 700 KiB of a body and stalls: those bytes are held.
    const stalled = http.request({
      port,
      method: 'POST',
      path: '/v1/completions',
      headers: { 'content-length': String(MiB) },
    });
    stalled.on('error', () => undefined);
    stalled.write(Buffer.alloc(700 * 1024, 0x20));
    await eventually(() => proxy.bounds.pressure().bodiesBytes >= 700 * 1024, 'the first body held');
    // A second body of 500 KiB does not fit beside it.
    const r = await call(
      base,
      '/v1/completions',
      post(JSON.stringify({ model: 'alpha-model', prompt: 'x'.repeat(500 * 1024) })),
    );
    expect(r.status, r.text).toBe(503);
    expect(r.headers.get('retry-after')).toBe('2');
    expect(r.json().error).toMatchObject({ code: 'overloaded' });
    expect(r.json().error?.message).toMatch(
      /^the proxy holds \d+ bytes of request bodies, its limit \(proxy.max_bodies_bytes 1048576\)/,
    );
    expect(hits).toEqual([]);
    // The stalled client leaves: its bytes are given back, and the same request now passes.
    stalled.destroy();
    await eventually(() => proxy.bounds.pressure().bodiesBytes === 0, 'the memory given back');
    const again = await call(
      base,
      '/v1/completions',
      post(JSON.stringify({ model: 'alpha-model', prompt: 'x'.repeat(500 * 1024) })),
    );
    expect(again.status).toBe(201);
    await eventually(() => proxy.bounds.pressure().bodiesBytes === 0, 'the answered body given back');
    expect(proxy.bounds.pressure().bodiesRefusedFull).toBe(1);
    expect(logs.filter((l) => l.includes('max_bodies_bytes'))).toEqual([]); // counted, not logged per request
  });

  it('connections over proxy.max_connections are closed at once, counted and said once in the log', async () => {
    const { port, base, proxy } = await startProxy({ proxy: { max_connections: 5 } });
    const net = await import('node:net');
    const open: import('node:net').Socket[] = [];
    const closed: number[] = [];
    for (let i = 0; i < 8; i++) {
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => undefined);
      sock.on('close', () => closed.push(i));
      open.push(sock);
      await new Promise((r) => sock.once('connect', r));
    }
    await eventually(() => closed.length === 3, 'three connections closed');
    expect(closed.every((i) => i >= 5)).toBe(true);
    expect(proxy.bounds.pressure().connectionsDropped).toBe(3);
    expect(logs.filter((l) => l.includes('proxy.max_connections'))).toHaveLength(1);
    for (const s of open) s.destroy();
    await settle(50);
    const metrics = await call(base, '/metrics');
    expect(metrics.text).toContain('llama_orch_proxy_connections_dropped_total 3');
    expect(metrics.text).toContain('llama_orch_proxy_body_bytes 0');
  });

  it('the same limit holds for /upstream/MODEL/PATH bodies', async () => {
    const { base } = await startProxy({ proxy: { max_body_bytes: 1024 } });
    const r = await call(base, '/upstream/alpha/slots/0?action=save', post('x'.repeat(5000)));
    expect(r.status).toBe(413);
    expect(hits).toEqual([]);
  });
});

describe('the management API', () => {
  it('POST /api/instances/NAME/start: a UserError(notFound) is a 404 with its message and hint', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/api/instances/ghost/start', { method: 'POST' });
    expect(r.status).toBe(404);
    expect(r.json().error).toMatchObject({
      type: 'invalid_request_error',
      code: 'not_found',
      message: 'unknown instance "ghost": no such config',
      hint: 'known: alpha, beta',
    });
    const again = await call(base, '/api/instances/beta/start', { method: 'POST' });
    expect(again.status).toBe(409);
    expect(again.json().error?.code).toBe('already_running');
  });

  it('start, stop and restart call the engine, with ?wait passed on', async () => {
    const { base } = await startProxy();
    const started = await call(base, '/api/instances/alpha/start?wait=30', { method: 'POST' });
    expect(started.status).toBe(200);
    expect(started.json()).toEqual({ name: 'alpha', started: true });
    await call(base, '/api/instances/alpha/stop', { method: 'POST' });
    await call(base, '/api/instances/alpha/restart/', { method: 'POST' });
    expect(apiCalls).toEqual([
      ['start', 'alpha', 30],
      ['stop', 'alpha'],
      ['restart', 'alpha', undefined],
    ]);
    expect((await call(base, '/api/instances/alpha/start')).status).toBe(405);
    expect((await call(base, '/api/instances/alpha/start?wait=soon', { method: 'POST' })).status).toBe(400);
    expect((await call(base, '/api/instances/alpha/start?wait=-1', { method: 'POST' })).status).toBe(400);
    expect(apiCalls).toHaveLength(3);
  });

  it('GET /api/events passes since, limit and instance; defaults 0 and 500; bad values are 400', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/api/events?since=7&limit=3&instance=alpha');
    expect(r.status).toBe(200);
    expect(r.json()).toEqual([{ id: 8, instance: 'alpha' }]);
    await call(base, '/api/events');
    expect(apiCalls).toEqual([
      ['events', 7, 3, 'alpha'],
      ['events', 0, 500, undefined],
    ]);
    for (const q of ['limit=10001', 'limit=2.5', 'since=-3', 'since=abc']) {
      const bad = await call(base, `/api/events?${q}`);
      expect(bad.status, q).toBe(400);
      expect(bad.json().error?.message).toMatch(/since|limit/);
    }
    expect(apiCalls).toHaveLength(2);
  });

  it('GET /api/events?n=N: the newest n (the fleet view); n with since, or a bad n, is 400', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/api/events?n=5&instance=beta');
    expect(r.status).toBe(200);
    expect(r.json()).toEqual([{ id: 1, instance: 'beta' }]);
    expect(apiCalls).toEqual([['latestEvents', 5, 'beta']]);
    for (const q of ['n=10001', 'n=-1', 'n=x', 'n=3&since=2']) {
      const bad = await call(base, `/api/events?${q}`);
      expect(bad.status, q).toBe(400);
      expect(bad.json().error?.message).toMatch(/\bn\b/);
    }
    expect(apiCalls).toHaveLength(1);
  });

  it('GET /api/instances adds what the proxy counts; /api/instances/NAME describes', async () => {
    const { base, scheduler } = await startProxy();
    const route = table.routes.find((r) => r.name === 'alpha');
    const lease = await scheduler.acquire(route as NonNullable<typeof route>, table.routes);
    const r = await call(base, '/api/instances');
    lease.release(true);
    expect(r.status).toBe(200);
    expect(r.json()).toEqual([
      { name: 'alpha', state: 'running', health: 'ok', proxy_in_flight: 1, proxy_queued: 0 },
      { name: 'beta', state: 'running', health: 'ok', proxy_in_flight: 0, proxy_queued: 0 },
    ]);
    expect((await call(base, '/api/instances/alpha')).json()).toEqual({ name: 'alpha', described: true });
    expect((await call(base, '/api/instances/ghost')).status).toBe(404);
    expect((await call(base, '/api/instances/Not_A_Name!')).status).toBe(404);
    expect((await call(base, '/api/nothing')).json().error?.code).toBe('not_found');
  });

  it('a POST body to /api over 64 KiB is refused with 413', async () => {
    const { base } = await startProxy();
    const r = await call(base, '/api/instances/alpha/stop', post('x'.repeat(70 * 1024)));
    expect(r.status).toBe(413);
    expect(apiCalls).toEqual([]);
  });
});

describe('/metrics', () => {
  it('serves the exposition format with what the proxy counted', async () => {
    const { base } = await startProxy();
    await call(base, '/v1/chat/completions', post(CHAT));
    const r = await call(base, '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.text).toContain('llama_orch_proxy_requests_total{name="alpha",code="201"} 1\n');
    expect(r.text).toContain('llama_orch_proxy_request_duration_seconds_count{name="alpha"} 1\n');
    expect(r.text).toContain('llama_orch_instance_state{name="alpha",state="running"} 1\n');
  });
});
