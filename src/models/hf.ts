import type { Dispatcher } from 'undici';
import { ExitCode, UserError } from '../domain/errors.js';
import { hasControl } from '../domain/sanitize.js';
import { asUserError, header, hfEndpoint, httpError, hubRequest, lfsSha256, makeDispatcher } from './hf-http.js';
import { isModelGguf, pickGgufFiles, REF_FORMS, safeDecode, shardNames, shardOf, type PullRef } from './hf-ref.js';

/**
 * How a `models pull` reference (hf-ref.ts) becomes download URLs on the Hugging Face hub
 * (docs/DESIGN.md section 13, "Hugging Face downloads"): a named file directly, a quant through the
 * repository's listing. The requests go through hf-http.ts.
 */

export interface RemoteFile {
  /** The file's path in the repository (or the URL's last segment). */
  name: string;
  url: string;
  size?: number;
  /** The LFS sha256 the listing gave, if any (the download's X-Linked-Etag is preferred). */
  sha256?: string;
}

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

export function resolveUrl(endpoint: string, repo: string, revision: string, file: string): string {
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(file)}`;
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

// ---- the listing ----------------------------------------------------------------------------------

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
