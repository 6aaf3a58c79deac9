import type Http from 'node:http';
import type { LogStream } from '../domain/status.js';
import { followLog } from '../logs/follow.js';
import { lastLines } from '../logs/tail.js';
import { NotRegularFileError } from '../platform/regular-file.js';
import { ProxyError } from './errors.js';

/**
 * GET /api/instances/NAME/logs?stream=stderr&n=100&follow=1 (README, "REST API"): the last `n` lines
 * of one stream, then, with follow=1, every new line as it is written, through any number of
 * rotations (the follower of `logs -f`). JSON lines (`{"name", "stream", "line"}`, as `logs --json`)
 * by default; server-sent events (`data: {...}`) when the client accepts text/event-stream or asks
 * format=sse. A slow client is not read ahead of: the file is not read while the answer waits to be
 * sent, so its lines wait in the file, in order, not in the daemon's memory. Returns, for a
 * following stream, the function that ends it (the daemon stopping).
 */

export const LOGS_PATH = /^\/api\/instances\/([a-z0-9][a-z0-9_-]{0,62})\/logs\/?$/;

/** Bytes written but not yet taken by the client above which the file is not read further. */
const HIGH_WATER = 1024 * 1024;
const KEEPALIVE_MS = 15_000;

function param(url: URL, key: string, allowed: readonly string[], fallback: string): string {
  const v = url.searchParams.get(key);
  if (v === null) return fallback;
  if (!allowed.includes(v)) {
    throw new ProxyError(400, `query parameter ${key} must be ${allowed.join(' or ')} (got "${v}")`);
  }
  return v;
}

export function streamLogs(
  req: Http.IncomingMessage,
  res: Http.ServerResponse,
  url: URL,
  name: string,
  logDir: string,
): (() => void) | undefined {
  const stream = param(url, 'stream', ['stderr', 'stdout'], 'stderr') as LogStream;
  const follow = param(url, 'follow', ['0', '1', 'true', 'false'], '0');
  const rawN = url.searchParams.get('n') ?? '100';
  const n = Number(rawN);
  if (!/^\d+$/.test(rawN) || n > 100_000) {
    throw new ProxyError(400, `query parameter n must be a whole number from 0 to 100000 (got "${rawN}")`);
  }
  const sse =
    url.searchParams.get('format') === 'sse' ||
    (url.searchParams.get('format') === null && (req.headers.accept ?? '').includes('text/event-stream'));
  const encode = sse
    ? (line: string) => `data: ${JSON.stringify({ name, stream, line })}\n\n`
    : (line: string) => `${JSON.stringify({ name, stream, line })}\n`;
  const following = follow === '1' || follow === 'true';
  req.resume();
  if (!following) {
    let lines: string[];
    try {
      lines = lastLines(logDir, stream, n);
    } catch (e) {
      if (!(e instanceof NotRegularFileError)) throw e;
      throw new ProxyError(409, `cannot read the log of ${name}: ${e.message}`);
    }
    res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/x-ndjson' });
    res.end(lines.map(encode).join(''));
    return undefined;
  }
  res.writeHead(200, {
    'content-type': sse ? 'text/event-stream' : 'application/x-ndjson',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    // Its connection ends with it: a kept-alive socket would hold a stopping daemon for its grace period.
    connection: 'close',
  });
  // The headers now, so a client knows the stream is open before the first line.
  res.flushHeaders();
  const stop = followLog(logDir, stream, {
    initial: n,
    onLines: (lines) => {
      if (!res.destroyed) res.write(lines.map(encode).join(''));
    },
    ready: () => !res.destroyed && res.writableLength < HIGH_WATER,
    pollMs: 250,
  });
  // A comment line now and then keeps proxies and load balancers from closing a quiet stream.
  const keepalive = setInterval(() => {
    if (!res.destroyed && res.writableLength < HIGH_WATER) res.write(sse ? ': keepalive\n\n' : '\n');
  }, KEEPALIVE_MS);
  res.on('close', () => {
    clearInterval(keepalive);
    stop();
  });
  // What the daemon calls when it stops: the stream ends cleanly rather than being cut.
  return () => res.end();
}
