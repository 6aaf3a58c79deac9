import { http, https } from './builtins.js';

/**
 * One JSON request to another rig's daemon (the fleet, app/fleet.ts): http or https, with a CA of
 * its own when given, a deadline on the whole exchange, and a bound on what is read. The key goes
 * in the Authorization header only; it is never part of an error message.
 */
export interface JsonRequest {
  url: URL;
  method?: 'GET' | 'POST';
  apiKey?: string;
  /** PEM text of the CA that signed the server's certificate (https only). */
  ca?: string;
  timeoutMs: number;
  /** Bytes of answer read at most; more is an error, not a cut document. */
  maxBytes?: number;
  /** Extra request headers (the fleet's loop mark). */
  headers?: Record<string, string>;
}

export interface JsonAnswer {
  status: number;
  /** The parsed body; undefined when it was not JSON. */
  body: unknown;
  text: string;
}

/** A failure to get an answer at all, with a reason an operator reads ("timed out after 2000 ms"). */
export class RequestFailed extends Error {
  constructor(
    message: string,
    readonly kind: 'timeout' | 'refused' | 'network' | 'tls' | 'too_large',
  ) {
    super(message);
    this.name = 'RequestFailed';
  }
}

const TLS_CODES = /^(CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_|ERR_TLS|ERR_SSL|HOSTNAME_MISMATCH)/;

function failure(e: NodeJS.ErrnoException): RequestFailed {
  if (e instanceof RequestFailed) return e;
  const code = e.code ?? '';
  if (code === 'ECONNREFUSED') return new RequestFailed('connection refused', 'refused');
  if (TLS_CODES.test(code)) return new RequestFailed(`TLS: ${e.message}`, 'tls');
  return new RequestFailed(code ? `${code} (${e.message})` : e.message, 'network');
}

export function requestJson(req: JsonRequest): Promise<JsonAnswer> {
  const max = req.maxBytes ?? 64 * 1024 * 1024;
  const secure = req.url.protocol === 'https:';
  const headers: Record<string, string> = { accept: 'application/json', ...req.headers };
  if (req.apiKey) headers.authorization = `Bearer ${req.apiKey}`;
  return new Promise((resolve, reject) => {
    const options = {
      method: req.method ?? 'GET',
      headers,
      agent: false as const,
      ...(secure && req.ca ? { ca: req.ca } : {}),
    };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) {
          r.destroy(new RequestFailed(`answer over ${max} bytes`, 'too_large'));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body, text });
      });
      res.on('error', fail);
    };
    const r = secure ? https().request(req.url, options, onResponse) : http().request(req.url, options, onResponse);
    // A plain timer on the whole exchange: a daemon stopped with SIGSTOP accepts the connection
    // (the kernel does) and then says nothing.
    const timer = setTimeout(() => {
      r.destroy(new RequestFailed(`no answer in ${req.timeoutMs} ms`, 'timeout'));
    }, req.timeoutMs);
    function fail(e: Error) {
      clearTimeout(timer);
      reject(failure(e));
    }
    r.on('error', fail);
    r.end();
  });
}
