import type Http from 'node:http';
import type { ProxySettings } from '../config/settings.js';
import { ProxyError } from './errors.js';
import type { ProxyPressure } from './exposition.js';

export interface BodyLimits {
  /** One body's largest size (proxy.max_body_bytes): 413 beyond. */
  maxBytes: number;
  /** All bodies being read or held at once, together (proxy.max_bodies_bytes): 503 beyond. */
  totalBytes: number;
  /** The time one body may take to arrive (proxy.body_timeout): 408 beyond. */
  timeoutMs: number;
}

/** Seconds a client is asked to wait (Retry-After) when the bodies' memory is full. */
export const BODIES_RETRY_AFTER_S = 2;

/**
 * What one client may hold of the daemon (#26), so that no client can starve the daemon's
 * supervision: connections (proxy.max_connections: Node closes the ones over the cap at once) and
 * request bodies (below). Every file descriptor the proxy keeps is one supervision cannot use: a
 * daemon out of descriptors once mistook its failed /proc reads for deaths.
 */
export class ClientBounds {
  readonly bodies: Bodies;
  /** Connections closed at once because proxy.max_connections were open. */
  dropped = 0;

  constructor(server: Http.Server, settings: ProxySettings, log: (line: string) => void) {
    this.bodies = new Bodies(() => ({
      maxBytes: settings.max_body_bytes,
      totalBytes: settings.max_bodies_bytes,
      timeoutMs: settings.body_timeout * 1000,
    }));
    server.maxConnections = settings.max_connections;
    let saidAt = -Infinity;
    server.on('drop', () => {
      this.dropped++;
      if (Date.now() - saidAt < 60_000) return;
      saidAt = Date.now();
      log(
        `proxy: ${settings.max_connections} connections are open (proxy.max_connections): new ones are closed at once`,
      );
    });
  }

  pressure(): ProxyPressure {
    return {
      connectionsDropped: this.dropped,
      bodiesBytes: this.bodies.held,
      bodiesRefusedFull: this.bodies.refusedFull,
      bodiesTimedOut: this.bodies.timedOut,
    };
  }
}

/**
 * Request bodies, read whole before they are forwarded (the model to route by is in the body). The
 * proxy's memory stays bounded whatever clients send (#26: twelve 60 MB bodies at once took a daemon
 * to 824 MB): one body's size, the time it may take to arrive, and the bytes of every body held at
 * once. A body's bytes count until its answer is over (it is forwarded from memory).
 */
export class Bodies {
  /** Bytes of bodies being read or held now. */
  held = 0;
  /** Bodies refused because the memory for bodies was full, and bodies that came too slowly. */
  refusedFull = 0;
  timedOut = 0;

  constructor(private readonly limits: () => BodyLimits) {}

  /**
   * The whole body, or a ProxyError: 413 (too large), 503 with Retry-After (the memory for bodies is
   * full), 408 (too slow). A refused body is left unread and its connection closed after the answer.
   */
  read(req: Http.IncomingMessage, res: Http.ServerResponse, max?: number): Promise<Buffer> {
    const { maxBytes, totalBytes, timeoutMs } = this.limits();
    const limit = max ?? maxBytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit)
      return Promise.reject(
        new ProxyError(413, `request body of ${declared} bytes is over proxy.max_body_bytes (${limit})`),
      );
    let taken = 0;
    res.once('close', () => {
      this.held -= taken;
      taken = 0;
    });
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (e?: Error) => {
        clearTimeout(timer);
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
        if (!e) return resolve(Buffer.concat(chunks));
        if (e instanceof ProxyError) {
          req.pause();
          if (!res.headersSent) res.setHeader('connection', 'close');
        }
        reject(e);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit)
          return finish(new ProxyError(413, `request body is over proxy.max_body_bytes (${limit} bytes)`));
        if (this.held + chunk.length > totalBytes) {
          this.refusedFull++;
          if (!res.headersSent) res.setHeader('retry-after', String(BODIES_RETRY_AFTER_S));
          return finish(
            new ProxyError(
              503,
              `the proxy holds ${this.held} bytes of request bodies, its limit (proxy.max_bodies_bytes ${totalBytes}): try again shortly`,
              'server_error',
              'overloaded',
            ),
          );
        }
        this.held += chunk.length;
        taken += chunk.length;
        chunks.push(chunk);
      };
      const onEnd = () => finish();
      const onError = (e: Error) => finish(e);
      const timer = setTimeout(() => {
        this.timedOut++;
        finish(
          new ProxyError(
            408,
            `request body not received within ${timeoutMs / 1000} s (proxy.body_timeout): ${size} bytes came`,
            'invalid_request_error',
            'timeout',
          ),
        );
      }, timeoutMs);
      req.on('data', onData);
      req.once('end', onEnd);
      req.once('error', onError);
    });
  }
}
