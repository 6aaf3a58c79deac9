import { http } from '../platform/builtins.js';
import { Agent, EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import { ExitCode, UserError } from '../domain/errors.js';

/**
 * HTTP with the Hugging Face hub, shared by the listing (hf.ts) and the download (pull-transfer.ts):
 * one place decides where the token goes, and how an answer or a network failure reads to the
 * operator.
 */

/** Ctrl-C, as `bench` reports it (128 + SIGINT); not one of ExitCode's named codes. */
export const INTERRUPTED = 130 as number as ExitCode;

export function hfEndpoint(env: NodeJS.ProcessEnv): string {
  const endpoint = (env.HF_ENDPOINT?.trim() || 'https://huggingface.co').replace(/\/+$/, '');
  let ok = false;
  try {
    ok = ['http:', 'https:'].includes(new URL(endpoint).protocol);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new UserError(
      `HF_ENDPOINT is "${env.HF_ENDPOINT}": not an http(s) URL`,
      ExitCode.general,
      'set it to a URL such as https://huggingface.co, or unset it',
    );
  }
  return endpoint;
}

export function hfToken(env: NodeJS.ProcessEnv): string | undefined {
  return (env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN)?.trim() || undefined;
}

/** One agent per pull; HTTP(S)_PROXY and NO_PROXY from the given environment are honoured. */
export function makeDispatcher(env: NodeJS.ProcessEnv): Dispatcher {
  // A minute of silence (no headers, or no body bytes) counts as a cut connection: retried.
  const timeouts = { headersTimeout: 60_000, bodyTimeout: 60_000, connect: { timeout: 30_000 } };
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY;
  const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY;
  if (!httpProxy && !httpsProxy) return new Agent(timeouts);
  return new EnvHttpProxyAgent({ ...timeouts, httpProxy, httpsProxy, noProxy: env.no_proxy ?? env.NO_PROXY ?? '' });
}

// ---- headers --------------------------------------------------------------------------------------

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** An LFS object id is a sha256: 64 hex digits (X-Linked-Etag comes quoted, sometimes weak). */
export function lfsSha256(etag: unknown): string | undefined {
  if (typeof etag !== 'string') return undefined;
  const v = etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(v) ? v : undefined;
}

export function contentLength(headers: Record<string, string | string[] | undefined>): number | undefined {
  const v = header(headers, 'content-length');
  const n = v === undefined ? NaN : Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** `bytes START-END/TOTAL` (TOTAL may be `*`), or `bytes * /TOTAL` on a 416. */
export function parseContentRange(v: string | undefined): { start: number | null; total: number | null } | null {
  const m = v ? /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(v.trim()) : null;
  if (!m) return null;
  return {
    start: m[1] !== undefined ? Number(m[1]) : null,
    total: m[3] !== undefined && m[3] !== '*' ? Number(m[3]) : null,
  };
}

// ---- requests -------------------------------------------------------------------------------------

export interface HubRequest {
  url: string;
  method: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  env: NodeJS.ProcessEnv;
  dispatcher: Dispatcher;
  signal?: AbortSignal | undefined;
  /** HEAD: stop at a redirect to another origin (a signed CDN URL may be signed for GET only). */
  sameOriginOnly?: boolean;
  /** Bytes the response body buffers before the socket is paused (undici's default: 64 KiB). */
  highWaterMark?: number;
}

export interface HubResponse {
  /** The last response (a redirect only when `sameOriginOnly` stopped there); its body is unread. */
  res: Dispatcher.ResponseData;
  /** From the first response of the chain that carried them (the hub puts them on its 302). */
  linkedSha256?: string;
  linkedSize?: number;
  /** Whether HF_TOKEN went with the last request. */
  tokenSent: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;

/**
 * A request that follows redirects itself: HF_TOKEN goes only to the hub's own origin (HF_ENDPOINT),
 * never to the CDN a download is redirected to (its URL is signed) nor to any other host, and never
 * over plain HTTP once the hub is HTTPS.
 */
export async function hubRequest(req: HubRequest): Promise<HubResponse> {
  const token = hfToken(req.env);
  const hubOrigin = new URL(hfEndpoint(req.env)).origin;
  let url = new URL(req.url);
  const out: Omit<HubResponse, 'res'> = { tokenSent: false };
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'llama-orch', ...req.headers };
    out.tokenSent = token !== undefined && url.origin === hubOrigin;
    if (out.tokenSent) headers.authorization = `Bearer ${token}`;
    const res = await request(url, {
      method: req.method,
      headers,
      dispatcher: req.dispatcher,
      signal: req.signal,
      ...(req.highWaterMark ? { highWaterMark: req.highWaterMark } : {}),
    });
    if (out.linkedSha256 === undefined) {
      const sha = lfsSha256(header(res.headers, 'x-linked-etag'));
      if (sha) out.linkedSha256 = sha;
    }
    if (out.linkedSize === undefined) {
      const size = Number(header(res.headers, 'x-linked-size') ?? NaN);
      if (Number.isSafeInteger(size) && size >= 0) out.linkedSize = size;
    }
    const location = header(res.headers, 'location');
    if (!REDIRECTS.has(res.statusCode) || !location) return { ...out, res };
    const next = new URL(location, url);
    // A redirect to file:, data: or any other scheme is a refusal at once, not a network error to retry.
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      await res.body.dump().catch(() => undefined);
      throw new UserError(
        `${req.url}: the server redirected to a ${next.protocol} URL, which is refused (only http and https are followed)`,
        ExitCode.download,
      );
    }
    if (req.sameOriginOnly && next.origin !== url.origin) return { ...out, res };
    await res.body.dump();
    if (hop >= MAX_REDIRECTS) {
      throw new UserError(`${req.url}: more than ${MAX_REDIRECTS} redirects`, ExitCode.download);
    }
    url = next;
  }
}

// ---- errors ---------------------------------------------------------------------------------------

export interface ErrorContext {
  repo?: string;
  revision?: string;
  file?: string;
  url?: string;
  endpoint: string;
  tokenSent: boolean;
}

/** The operator's error for an HTTP status from the hub (X-Error-Code, as the hub sends it, decides first). */
export function httpError(status: number, errorCode: string | undefined, c: ErrorContext): UserError {
  const where = c.repo ? `${c.repo}${c.revision && c.revision !== 'main' ? `@${c.revision}` : ''}` : (c.url ?? '');
  const page = c.repo ? `${c.endpoint}/${c.repo}` : undefined;
  const answered = `the server answered ${status}${http().STATUS_CODES[status] ? ` ${http().STATUS_CODES[status]}` : ''}`;
  if (errorCode === 'RepoNotFound') {
    return new UserError(
      `repository ${c.repo ?? where} not found (${answered})`,
      ExitCode.notFound,
      c.tokenSent ? 'check the name (owner/name)' : 'check the name (owner/name); a private repository needs HF_TOKEN',
    );
  }
  if (errorCode === 'RevisionNotFound') {
    return new UserError(`revision "${c.revision}" not found in ${c.repo} (${answered})`, ExitCode.notFound);
  }
  if (errorCode === 'EntryNotFound' || status === 404 || status === 410) {
    const what = c.file && c.repo ? `${c.file} not found in ${where}` : `${where} not found`;
    return new UserError(`${what} (${answered})`, ExitCode.notFound);
  }
  if (errorCode === 'GatedRepo' || status === 401 || status === 403) {
    const access = page ? ` and accept the model's licence on ${page}` : '';
    if (!c.repo && !c.tokenSent) {
      return new UserError(
        `${where}: ${answered}`,
        ExitCode.download,
        `HF_TOKEN is sent only to ${c.endpoint} (HF_ENDPOINT)`,
      );
    }
    return new UserError(
      `${where} is gated or private: ${answered}`,
      ExitCode.download,
      c.tokenSent
        ? `the HF_TOKEN sent was refused: check it is valid and can read this repository${access}`
        : `set HF_TOKEN to a Hugging Face access token (https://huggingface.co/settings/tokens)${access}`,
    );
  }
  return new UserError(`${c.file ? `${where}: ${c.file}` : where}: ${answered}`, ExitCode.download);
}

/** Network failures as the operator reads them; a UserError passes through. */
export function asUserError(e: unknown, url: string, signal?: AbortSignal): UserError {
  if (e instanceof UserError) return e;
  if (signal?.aborted) return new UserError('interrupted', INTERRUPTED);
  return new UserError(`cannot reach ${new URL(url).origin}: ${networkReason(e)}`, ExitCode.download);
}

export function networkReason(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err?.cause?.code ?? err?.code;
  const msg = err?.cause?.message ?? err?.message ?? String(e);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}
