import type http from 'node:http';
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
    // `refused`: nothing of the request reached it (the fleet endpoint sends it elsewhere).
    return Object.assign(
      new ProxyError(502, `${what} refused the connection (it is not listening)`, 'server_error', 'upstream_error'),
      { refused: true },
    );
  }
  return new ProxyError(502, `${what} failed: ${msg}${code ? ` (${code})` : ''}`, 'server_error', 'upstream_error');
}

/**
 * Sends the request to the pool and streams the answer to `res` chunk by chunk as undici parses it
 * (a dispatch handler: no stream objects between the two sockets), pausing the upstream while the
 * client is slow (backpressure). A connection the server closed before answering is retried once.
 * An upstream that fails after the headers went out ends a server-sent-event stream with an error
 * event (OpenAI's shape) and any other body by cutting the connection: the client sees it broken.
 * Rejects (with a ProxyError) only when no answer started.
 */
export function forward(
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
  return new Promise<ForwardResult>((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let attempt = 0;
    let status = 0;
    let bytes = 0;
    let sse = false;
    let settled = false;
    const leave = new Error('the client closed the request');
    const onAbort = () => controller?.abort(leave);
    const onDrain = () => controller?.resume();
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      req.signal.removeEventListener('abort', onAbort);
      res.off('drain', onDrain);
      fn();
    };
    req.signal.addEventListener('abort', onAbort, { once: true });
    res.on('drain', onDrain);
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (req.signal.aborted) c.abort(leave);
      },
      onResponseStart(_c, statusCode, h) {
        if (statusCode < 200) return; // 1xx: the real answer follows
        status = statusCode;
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(h)) {
          // The proxy says which origins may read (server.ts): not the upstream's own answer to that.
          if (v === undefined || (HOP.has(k) && k !== 'content-length') || k.startsWith('access-control-')) continue;
          out[k] = v;
        }
        sse = String(h['content-type'] ?? '').includes('text/event-stream');
        res.writeHead(statusCode, out);
        // A stream's headers at once (its first token may be a while); others go out with the body.
        if (sse) res.flushHeaders();
      },
      onResponseData(c, chunk) {
        bytes += chunk.length;
        if (!res.write(chunk)) c.pause();
      },
      onResponseEnd() {
        settle(() => {
          res.end();
          resolve({ status, bytes, broken: false });
        });
      },
      onResponseError(_c, err) {
        if (req.signal.aborted || res.destroyed) {
          settle(() => resolve({ status: status || 499, bytes, broken: true }));
          return;
        }
        if (status === 0) {
          if (attempt === 0 && isConnectReset(err)) {
            attempt++;
            dispatch();
            return;
          }
          settle(() => reject(upstreamMessage(err, what, timeoutMs)));
          return;
        }
        const e = upstreamMessage(err, what, timeoutMs);
        settle(() => {
          if (sse) res.end(`data: ${e.body()}\n\n`);
          else res.destroy();
          resolve({ status, bytes, broken: true });
        });
      },
    };
    const dispatch = () => {
      controller = undefined;
      pool.dispatch({ method: req.method, path: req.path, headers, body: req.body }, handler);
    };
    dispatch();
  });
}
