import type http from 'node:http';
import { once } from 'node:events';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { ProxyError } from './errors.js';

/**
 * Connections to the instances (docs/ARCHITECTURE.md, "Proxy and REST API"): one undici pool per
 * upstream address, kept alive. llama-server (cpp-httplib) closes an idle keep-alive connection
 * after 5 s: the pool lets go of its idle ones sooner, so a request is not written to a socket the
 * server is closing.
 */
export class Upstreams {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly timeoutMs: number) {}

  pool(host: string, port: number): Pool {
    const key = `${host}:${port}`;
    let p = this.pools.get(key);
    if (!p) {
      p = new Pool(`http://${host.includes(':') ? `[${host}]` : host}:${port}`, {
        connections: 256,
        keepAliveTimeout: 4000,
        keepAliveMaxTimeout: 4000,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      this.pools.set(key, p);
    }
    return p;
  }

  /** Closes the pools of addresses no longer in use (an instance stopped or moved). */
  retain(live: ReadonlySet<string>): void {
    for (const [key, p] of this.pools) {
      if (live.has(key)) continue;
      this.pools.delete(key);
      void p.destroy().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => undefined)));
  }
}

/** Headers that belong to one connection, not to the request (RFC 9110 7.6.1), and those the proxy sets itself. */
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
  'authorization',
  'expect',
]);

export interface ForwardRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer | null;
  /** The instance's own key (its server.api_key_env), sent upstream instead of the client's. */
  apiKey: string | null;
  /** Aborts the upstream request (the client left). */
  signal: AbortSignal;
}

export interface ForwardResult {
  status: number;
  /** Bytes of the response body written to the client. */
  bytes: number;
  /** The response ended early (the upstream failed or the client left). */
  broken: boolean;
}

function isConnectReset(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}

function upstreamMessage(e: unknown, what: string, timeoutMs: number): ProxyError {
  if (e instanceof undiciErrors.HeadersTimeoutError) {
    return new ProxyError(
      504,
      `${what} did not answer within ${timeoutMs / 1000} s`,
      'server_error',
      'upstream_timeout',
    );
  }
  if (e instanceof undiciErrors.BodyTimeoutError) {
    return new ProxyError(504, `${what} went silent for ${timeoutMs / 1000} s`, 'server_error', 'upstream_timeout');
  }
  const code = (e as { code?: string }).code;
  const msg = e instanceof Error ? e.message : String(e);
  if (code === 'ECONNREFUSED') {
    return new ProxyError(
      502,
      `${what} refused the connection (it is not listening)`,
      'server_error',
      'upstream_error',
    );
  }
  return new ProxyError(502, `${what} failed: ${msg}${code ? ` (${code})` : ''}`, 'server_error', 'upstream_error');
}

/**
 * Sends the request to the pool and streams the answer to `res` chunk by chunk, waiting for the
 * client to drain (backpressure). A connection the server closed before answering is retried once.
 * An upstream that fails after the headers went out ends a server-sent-event stream with an error
 * event (OpenAI's shape) and any other body by cutting the connection: the client sees it broken.
 */
export async function forward(
  pool: Dispatcher,
  req: ForwardRequest,
  res: http.ServerResponse,
  what: string,
  timeoutMs: number,
): Promise<ForwardResult> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined || HOP.has(k)) continue;
    headers[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  if (req.apiKey) headers.authorization = `Bearer ${req.apiKey}`;
  if (req.body) headers['content-length'] = String(req.body.length);
  let answer: Dispatcher.ResponseData | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      answer = await pool.request({
        method: req.method,
        path: req.path,
        headers,
        body: req.body,
        signal: req.signal,
      });
      break;
    } catch (e) {
      if (req.signal.aborted) return { status: 499, bytes: 0, broken: true };
      if (attempt === 0 && isConnectReset(e)) continue;
      throw upstreamMessage(e, what, timeoutMs);
    }
  }
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(answer.headers)) {
    if (v === undefined || HOP.has(k)) continue;
    out[k] = v;
  }
  if (answer.headers['content-length'] !== undefined) out['content-length'] = answer.headers['content-length'];
  const sse = String(answer.headers['content-type'] ?? '').includes('text/event-stream');
  res.writeHead(answer.statusCode, out);
  // Headers at once: a streamed answer's first bytes must not wait for its first token.
  res.flushHeaders();
  let bytes = 0;
  try {
    for await (const chunk of answer.body as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (!res.write(chunk)) {
        await Promise.race([once(res, 'drain'), once(res, 'close')]);
        if (res.destroyed) break;
      }
    }
  } catch (e) {
    if (req.signal.aborted || res.destroyed) return { status: answer.statusCode, bytes, broken: true };
    const err = upstreamMessage(e, what, timeoutMs);
    if (sse) {
      res.end(`data: ${err.body()}\n\n`);
    } else {
      res.destroy();
    }
    return { status: answer.statusCode, bytes, broken: true };
  }
  if (res.destroyed) {
    answer.body.destroy();
    return { status: answer.statusCode, bytes, broken: true };
  }
  res.end();
  return { status: answer.statusCode, bytes, broken: false };
}
