import { http, https } from './builtins.js';
import { RequestFailed } from './http-json.js';

/**
 * A streamed answer of JSON lines from another rig's daemon (GET .../logs?follow=1): each line parsed
 * and handed on as it arrives, until the answer ends, the signal aborts, or the daemon goes quiet for
 * longer than `idleMs` (it sends a keep-alive line every 15 s). A status other than 200 rejects with
 * the status and the daemon's message.
 */
export interface LinesRequest {
  url: URL;
  apiKey?: string;
  ca?: string;
  /** Until the answer's headers. */
  headersTimeoutMs: number;
  /** Between chunks, once streaming. */
  idleMs: number;
  signal?: AbortSignal;
}

export class StatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'StatusError';
  }
}

export function streamJsonLines(req: LinesRequest, onLine: (value: unknown) => void): Promise<void> {
  const secure = req.url.protocol === 'https:';
  const headers: Record<string, string> = { accept: 'application/x-ndjson' };
  if (req.apiKey) headers.authorization = `Bearer ${req.apiKey}`;
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const finish = (e?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      if (e) reject(e);
      else resolve();
    };
    const arm = (ms: number, why: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => r.destroy(new RequestFailed(why, 'timeout')), ms);
    };
    const onAbort = () => {
      r.destroy();
      finish();
    };
    const options = { method: 'GET', headers, agent: false as const, ...(secure && req.ca ? { ca: req.ca } : {}) };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
        res.on('end', () => {
          let message = `HTTP ${res.statusCode}`;
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { message?: string } };
            if (body.error?.message) message = body.error.message;
          } catch {
            // not JSON: the status says it
          }
          finish(new StatusError(res.statusCode ?? 0, message));
        });
        return;
      }
      arm(req.idleMs, `no line or keep-alive in ${req.idleMs} ms`);
      let partial = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        arm(req.idleMs, `no line or keep-alive in ${req.idleMs} ms`);
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.trim()) continue; // keep-alive
          try {
            onLine(JSON.parse(line));
          } catch {
            r.destroy(new RequestFailed(`not a JSON line: ${line.slice(0, 80)}`, 'network'));
            return;
          }
        }
      });
      res.on('end', () => finish());
      res.on('error', (e) => finish(e));
    };
    const r = secure ? https().request(req.url, options, onResponse) : http().request(req.url, options, onResponse);
    arm(req.headersTimeoutMs, `no answer in ${req.headersTimeoutMs} ms`);
    r.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof RequestFailed) return finish(e);
      finish(new RequestFailed(e.code === 'ECONNREFUSED' ? 'connection refused' : e.message, 'network'));
    });
    if (req.signal?.aborted) return onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    r.end();
  });
}
