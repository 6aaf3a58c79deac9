import path from 'node:path';
import { ExitCode, UserError } from '../domain/errors.js';

/**
 * What `models pull` accepts (docs/DESIGN.md section 13, "Hugging Face downloads"): a reference
 * parsed, and the .gguf files of a repository it picks, as llama.cpp's `-hf` does. No network here:
 * hf.ts resolves a reference against the hub.
 */

export type PullRef =
  { kind: 'hf'; repo: string; quant?: string; file?: string; revision: string } | { kind: 'url'; url: string };

export const REF_FORMS =
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

export function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
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
export function isModelGguf(p: string): boolean {
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
