import { STATUS_CODES } from 'node:http';
import path from 'node:path';
import { Agent, EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import { ExitCode, UserError } from '../domain/errors.js';
import { hasControl } from '../domain/sanitize.js';

/**
 * What `models pull` accepts, and how a reference becomes download URLs on the Hugging Face hub
 * (docs/DESIGN.md section 13, "Hugging Face downloads"). The HTTP helpers here are shared with
 * pull.ts: one place decides where the token goes.
 */

export type PullRef =
  { kind: 'hf'; repo: string; quant?: string; file?: string; revision: string } | { kind: 'url'; url: string };

export interface RemoteFile {
  /** The file's path in the repository (or the URL's last segment). */
  name: string;
  url: string;
  size?: number;
  /** The LFS sha256 the listing gave, if any (the download's X-Linked-Etag is preferred). */
  sha256?: string;
}

/** Ctrl-C, as `bench` reports it (128 + SIGINT); not one of ExitCode's named codes. */
export const INTERRUPTED = 130 as number as ExitCode;

const REF_FORMS =
  'use owner/name, owner/name:QUANT (e.g. Q4_K_M), owner/name/FILE.gguf (each may start with "hf:" and take @REVISION after the name), or an http(s) URL';
const NAME = '[A-Za-z0-9][A-Za-z0-9._-]*';
const REF_RE = new RegExp(`^(${NAME}/${NAME})(?:@([^:/\\s]+))?(?::([A-Za-z0-9][A-Za-z0-9._-]*)|/(\\S+))?$`);
/** A hub page or download URL: /OWNER/NAME/(resolve|blob)/REV/FILE. */
const HUB_HOSTS = new Set(['huggingface.co', 'www.huggingface.co', 'hf.co']);
const HUB_PATH_RE = new RegExp(`^/(${NAME}/${NAME})/(?:resolve|blob)/([^/]+)/(.+)$`);

export function parsePullRef(ref: string): PullRef {
  const s = ref.trim();
  const bad = () => new UserError(`not a model reference: "${ref}"`, ExitCode.general, REF_FORMS);
  if (/^https?:\/\//i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw bad();
    }
    const hub = HUB_HOSTS.has(url.hostname) ? HUB_PATH_RE.exec(url.pathname) : null;
    if (hub?.[1] && hub[2] && hub[3]) {
      const file = safeDecode(hub[3]);
      if (file === undefined || !validFilePath(file)) throw bad();
      return { kind: 'hf', repo: hub[1], revision: safeDecode(hub[2]) ?? hub[2], file };
    }
    return { kind: 'url', url: url.href };
  }
  const m = REF_RE.exec(s.replace(/^hf:/i, ''));
  if (!m?.[1]) throw bad();
  const [, repo, revision = 'main', quant, file] = m;
  if (file !== undefined && !validFilePath(file)) throw bad();
  const out: PullRef = { kind: 'hf', repo, revision };
  if (quant !== undefined) out.quant = quant;
  if (file !== undefined) out.file = file;
  return out;
}

function validFilePath(p: string): boolean {
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..' && !seg.includes('\0'));
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

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

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

export function resolveUrl(endpoint: string, repo: string, revision: string, file: string): string {
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`;
}

// ---- choosing files -------------------------------------------------------------------------------

const SHARD_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/i;

/** `model-00002-of-00003.gguf` -> { prefix: 'model', index: 2, count: 3 }. */
export function shardOf(file: string): { prefix: string; index: number; count: number } | null {
  const m = SHARD_RE.exec(file);
  if (!m?.[1]) return null;
  return { prefix: m[1], index: Number(m[2]), count: Number(m[3]) };
}

/** Every shard's name, in order, from the name of any one of them. */
export function shardNames(file: string): string[] {
  const s = shardOf(file);
  if (!s || s.count < 1) return [file];
  const pad = (n: number) => String(n).padStart(5, '0');
  return Array.from({ length: s.count }, (_, i) => `${s.prefix}-${pad(i + 1)}-of-${pad(s.count)}.gguf`);
}

/** Model weights only: not the vision projector (`mmproj-*`) nor an importance matrix. */
function isModelGguf(p: string): boolean {
  const base = path.posix.basename(p).toLowerCase();
  return base.endsWith('.gguf') && !base.includes('mmproj') && !base.includes('imatrix');
}

/**
 * The quant as a whole word of the path, case-insensitive: Q4_K matches `x-Q4_K.gguf`, not
 * `x-Q4_K_M.gguf` (an underscore may come before a quant, never after: it is part of the name).
 */
function hasQuant(p: string, quant: string): boolean {
  const l = p.toLowerCase();
  const q = quant.toLowerCase();
  for (let i = l.indexOf(q); i >= 0; i = l.indexOf(q, i + 1)) {
    const before = i === 0 ? '/' : (l[i - 1] ?? '');
    const after = l[i + q.length] ?? '';
    if (/[-._/]/.test(before) && /[-./]/.test(after)) return true;
  }
  return false;
}

/**
 * The files of the repository to pull for a quant, as llama.cpp's `-hf owner/name[:quant]` picks
 * them: .gguf files whose name carries the quant (case-insensitive); without a quant Q4_K_M, else
 * the first .gguf; never a vision projector. A split model gives all its shards in order. Empty
 * when nothing matches.
 */
export function pickGgufFiles(paths: readonly string[], quant?: string): string[] {
  const ggufs = paths.filter(isModelGguf).sort();
  let candidates = ggufs.filter((p) => hasQuant(p, quant ?? 'Q4_K_M'));
  if (!quant && candidates.length === 0) candidates = ggufs;
  // A single file before a split one, then the first shard of a split one.
  const first = candidates.find((p) => !shardOf(p)) ?? candidates.find((p) => shardOf(p)?.index === 1) ?? candidates[0];
  if (first === undefined) return [];
  const shard = shardOf(first);
  if (!shard) return [first];
  return ggufs
    .filter((p) => {
      const s = shardOf(p);
      return s?.prefix === shard.prefix && s.count === shard.count;
    })
    .sort((a, b) => (shardOf(a)?.index ?? 0) - (shardOf(b)?.index ?? 0));
}

// ---- resolving ------------------------------------------------------------------------------------

export interface ResolveOptions {
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  dispatcher?: Dispatcher;
}

/**
 * The concrete files of a reference. A named file needs no listing (a shard's name gives its
 * siblings'); a quant, or nothing, lists the repository through the hub's API.
 */
export async function resolvePullRef(ref: PullRef, opts: ResolveOptions): Promise<RemoteFile[]> {
  if (ref.kind === 'url') {
    const last = new URL(ref.url).pathname.split('/').pop() ?? '';
    const name = safeDecode(last) ?? last;
    if (!name || name === '.' || name === '..') {
      throw new UserError(`${ref.url} does not end with a file name`, ExitCode.general, REF_FORMS);
    }
    return [{ name, url: ref.url }];
  }
  const endpoint = hfEndpoint(opts.env);
  const remote = (name: string, size?: number, sha256?: string): RemoteFile => {
    const f: RemoteFile = { name, url: resolveUrl(endpoint, ref.repo, ref.revision, name) };
    if (size !== undefined) f.size = size;
    if (sha256 !== undefined) f.sha256 = sha256;
    return f;
  };
  if (ref.file !== undefined) return shardNames(ref.file).map((n) => remote(n));

  const listing = await listRepo(ref, opts);
  const picked = pickGgufFiles(
    listing.map((e) => e.path),
    ref.quant,
  );
  if (picked.length === 0) {
    const models = listing.map((e) => e.path).filter((p) => isModelGguf(p) && (shardOf(p)?.index ?? 1) === 1);
    const available = models.length
      ? `its .gguf files: ${models.slice(0, 12).join(', ')}${models.length > 12 ? ', ...' : ''}`
      : undefined;
    throw new UserError(
      models.length
        ? `${ref.repo} has no .gguf file for the quant "${ref.quant ?? 'Q4_K_M'}"`
        : `${ref.repo} (revision ${ref.revision}) has no .gguf model file`,
      ExitCode.notFound,
      available ? `${available}; name one as ${ref.repo}:QUANT or ${ref.repo}/FILE.gguf` : undefined,
    );
  }
  const shard = shardOf(picked[0] ?? '');
  if (shard && picked.length !== shard.count) {
    throw new UserError(
      `${ref.repo}: the split model ${picked[0]} has ${picked.length} of its ${shard.count} shards`,
      ExitCode.notFound,
    );
  }
  const byPath = new Map(listing.map((e) => [e.path, e]));
  return picked.map((p) => remote(p, byPath.get(p)?.size, byPath.get(p)?.sha256));
}

interface ListingEntry {
  path: string;
  size?: number;
  sha256?: string;
}

/** The repository's files: the tree API (sizes and LFS hashes, paginated), else the model info's siblings. */
async function listRepo(ref: PullRef & { kind: 'hf' }, opts: ResolveOptions): Promise<ListingEntry[]> {
  const endpoint = hfEndpoint(opts.env);
  const base = `${endpoint}/api/models/${ref.repo}`;
  const what = { repo: ref.repo, revision: ref.revision, endpoint };
  let next: string | null = `${base}/tree/${encodeURIComponent(ref.revision)}?recursive=true`;
  const entries: ListingEntry[] = [];
  for (let page = 0; next && page < 100; page++) {
    const res = await hubGetJson(next, opts);
    // A 404 without the hub's error code: a mirror without the tree API; the model info may do.
    if (res.status === 404 && page === 0 && !res.errorCode) break;
    if (res.status !== 200) throw httpError(res.status, res.errorCode, { ...what, tokenSent: res.tokenSent });
    if (!Array.isArray(res.body)) throw unexpected(next);
    for (const e of res.body as unknown[]) {
      const entry = treeEntry(e);
      if (entry) entries.push(entry);
    }
    next = res.next;
    if (!next) return entries;
  }
  if (entries.length > 0) return entries; // more than 100 pages: what was listed
  const infoUrl = ref.revision === 'main' ? base : `${base}/revision/${encodeURIComponent(ref.revision)}`;
  const res = await hubGetJson(infoUrl, opts);
  if (res.status !== 200) throw httpError(res.status, res.errorCode, { ...what, tokenSent: res.tokenSent });
  const siblings = (res.body as { siblings?: unknown } | null)?.siblings;
  if (!Array.isArray(siblings)) throw unexpected(infoUrl);
  return siblings
    .map((s) => (s as { rfilename?: unknown }).rfilename)
    .filter((p): p is string => typeof p === 'string' && !hasControl(p))
    .map((p) => ({ path: p }));
}

function treeEntry(e: unknown): ListingEntry | null {
  const o = e as { type?: unknown; path?: unknown; size?: unknown; lfs?: { oid?: unknown; size?: unknown } };
  // A remote name with a control character is refused: it would be created as a file and printed.
  if (o?.type !== 'file' || typeof o.path !== 'string' || hasControl(o.path)) return null;
  const entry: ListingEntry = { path: o.path };
  const size = typeof o.lfs?.size === 'number' ? o.lfs.size : o.size;
  if (typeof size === 'number' && Number.isSafeInteger(size) && size >= 0) entry.size = size;
  const sha = lfsSha256(o.lfs?.oid);
  if (sha) entry.sha256 = sha;
  return entry;
}

const unexpected = (url: string) =>
  new UserError(`unexpected answer from ${url} (not the hub's file listing)`, ExitCode.download);

async function hubGetJson(
  url: string,
  opts: ResolveOptions,
): Promise<{ status: number; errorCode?: string; body: unknown; next: string | null; tokenSent: boolean }> {
  const dispatcher = opts.dispatcher ?? makeDispatcher(opts.env);
  try {
    const r = await hubRequest({
      url,
      method: 'GET',
      headers: { accept: 'application/json' },
      env: opts.env,
      dispatcher,
      signal: opts.signal,
    });
    const text = await r.res.body.text();
    let body: unknown = null;
    if (r.res.statusCode === 200) {
      try {
        body = JSON.parse(text);
      } catch {
        throw unexpected(url);
      }
    }
    const out = { status: r.res.statusCode, body, next: nextLink(r.res.headers.link, url), tokenSent: r.tokenSent };
    const errorCode = header(r.res.headers, 'x-error-code');
    return errorCode ? { ...out, errorCode } : out;
  } catch (e) {
    throw asUserError(e, url, opts.signal);
  } finally {
    if (!opts.dispatcher) await dispatcher.close().catch(() => undefined);
  }
}

/** `Link: <URL>; rel="next"` (the tree API's pagination). */
function nextLink(link: string | string[] | undefined, base: string): string | null {
  const value = Array.isArray(link) ? link.join(',') : link;
  const m = value ? /<([^>]+)>\s*;\s*rel="?next"?/i.exec(value) : null;
  return m?.[1] ? new URL(m[1], base).href : null;
}

// ---- HTTP -----------------------------------------------------------------------------------------

/** One agent per pull; HTTP(S)_PROXY and NO_PROXY from the given environment are honoured. */
export function makeDispatcher(env: NodeJS.ProcessEnv): Dispatcher {
  // A minute of silence (no headers, or no body bytes) counts as a cut connection: retried.
  const timeouts = { headersTimeout: 60_000, bodyTimeout: 60_000, connect: { timeout: 30_000 } };
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY;
  const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY;
  if (!httpProxy && !httpsProxy) return new Agent(timeouts);
  return new EnvHttpProxyAgent({ ...timeouts, httpProxy, httpsProxy, noProxy: env.no_proxy ?? env.NO_PROXY ?? '' });
}

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
    if (req.sameOriginOnly && next.origin !== url.origin) return { ...out, res };
    await res.body.dump();
    if (hop >= MAX_REDIRECTS) {
      throw new UserError(`${req.url}: more than ${MAX_REDIRECTS} redirects`, ExitCode.download);
    }
    url = next;
  }
}

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
  const answered = `the server answered ${status}${STATUS_CODES[status] ? ` ${STATUS_CODES[status]}` : ''}`;
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
