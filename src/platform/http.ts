import { http } from './builtins.js';

/**
 * The keeper's HTTP client (health probes, the metrics scrape): node:http rather than undici/fetch,
 * to keep the keeper's memory small (bench/BENCHMARKS.md). Bodies are read up to `maxBody` bytes.
 */

export interface HttpTarget {
  host: string;
  port: number;
  apiKey?: string;
}

export interface HttpResult {
  status: number;
  body: string;
  latencyMs: number;
}

export function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.replace(/^\[|\]$/g, '');
}

export function httpRequest(
  target: HttpTarget,
  method: 'GET' | 'POST',
  path: string,
  timeoutMs: number,
  body?: string,
  maxBody = 8192,
): Promise<HttpResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const req = http().request(
      {
        host: connectHost(target.host),
        port: target.port,
        method,
        path,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < maxBody) chunks.push(c);
          size += c.length;
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            latencyMs: performance.now() - started,
          });
        });
        res.on('error', fail);
      },
    );
    // The deadline is a plain timer, not `signal: AbortSignal.timeout()`: on Node 20 every request
    // given such a signal stayed in memory (~5 KB a probe, a keeper grew ~9 MiB in a 30-minute soak;
    // bench/BENCHMARKS.md). The error is named like the signal's, for errorOutcome.
    const timer = setTimeout(() => {
      const e = new Error(`timed out after ${timeoutMs} ms`);
      e.name = 'TimeoutError';
      req.destroy(e);
    }, timeoutMs);
    function fail(e: Error) {
      clearTimeout(timer);
      reject(e);
    }
    req.on('error', fail);
    req.end(body);
  });
}
