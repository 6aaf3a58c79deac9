import fs from 'node:fs';
import path from 'node:path';
import { gguf, GGMLFileQuantizationType, GGMLQuantizationType, type GGUFParseOutput } from '@huggingface/gguf';
import { NotRegularFileError, fileKind, openRegular, readRegularFile } from '../platform/regular-file.js';

/**
 * What llama-orch reads from a GGUF header (docs/ARCHITECTURE.md, "Models"): the header only, never
 * the weights, through @huggingface/gguf. A split model (`NAME-00001-of-00003.gguf`) is one model.
 */
export interface GgufInfo {
  /** The first shard (the file llama-server is given). */
  path: string;
  /** Every shard, in order; one entry for a model in one file. */
  files: string[];
  /** Bytes on disk, all shards. */
  size: number;
  name: string | null;
  architecture: string | null;
  parameters: number | null;
  /** The file type llama.cpp's quantize wrote (general.file_type), e.g. Q4_K_M; else the most common tensor type. */
  quantization: string | null;
  context_length: number | null;
  block_count: number | null;
  embedding_length: number | null;
  feed_forward_length: number | null;
  head_count: number | null;
  head_count_kv: number | null;
  key_length: number | null;
  value_length: number | null;
  sliding_window: number | null;
  expert_count: number | null;
  expert_used_count: number | null;
  vocab_size: number | null;
  chat_template: boolean;
  /** Per layer KV heads when the model varies them (0 for layers without attention). */
  head_count_kv_per_layer: number[] | null;
  /** Which layers use the sliding window, when the header or the architecture says. */
  swa_layers: boolean[] | null;
  /** Weight bytes: per repeating block (blk.N.*), the input layer (token embeddings, kept on the CPU) and the output layer. */
  weights: { layers: number[]; input: number; output: number; total: number };
}

/** A file that is not a GGUF llama.cpp can load: what is wrong, in words. */
export class GgufError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = 'GgufError';
  }
}

const SHARD_RE = /^(?<prefix>.*)-(?<shard>\d{5})-of-(?<total>\d{5})\.gguf$/;

/** Bytes per block and elements per block of the ggml tensor types (ggml/src/ggml.c, type_traits). */
const QK_K = 256;
const TYPE_SIZES: Partial<Record<number, [number, number]>> = {
  [GGMLQuantizationType.F32]: [1, 4],
  [GGMLQuantizationType.F16]: [1, 2],
  [GGMLQuantizationType.BF16]: [1, 2],
  [GGMLQuantizationType.F64]: [1, 8],
  [GGMLQuantizationType.I8]: [1, 1],
  [GGMLQuantizationType.I16]: [1, 2],
  [GGMLQuantizationType.I32]: [1, 4],
  [GGMLQuantizationType.I64]: [1, 8],
  [GGMLQuantizationType.Q4_0]: [32, 18],
  [GGMLQuantizationType.Q4_1]: [32, 20],
  [GGMLQuantizationType.Q5_0]: [32, 22],
  [GGMLQuantizationType.Q5_1]: [32, 24],
  [GGMLQuantizationType.Q8_0]: [32, 34],
  [GGMLQuantizationType.Q8_1]: [32, 40],
  [GGMLQuantizationType.Q2_K]: [QK_K, 84],
  [GGMLQuantizationType.Q3_K]: [QK_K, 110],
  [GGMLQuantizationType.Q4_K]: [QK_K, 144],
  [GGMLQuantizationType.Q5_K]: [QK_K, 176],
  [GGMLQuantizationType.Q6_K]: [QK_K, 210],
  [GGMLQuantizationType.Q8_K]: [QK_K, 292],
  [GGMLQuantizationType.IQ2_XXS]: [QK_K, 66],
  [GGMLQuantizationType.IQ2_XS]: [QK_K, 74],
  [GGMLQuantizationType.IQ3_XXS]: [QK_K, 98],
  [GGMLQuantizationType.IQ1_S]: [QK_K, 50],
  [GGMLQuantizationType.IQ4_NL]: [32, 18],
  [GGMLQuantizationType.IQ3_S]: [QK_K, 110],
  [GGMLQuantizationType.IQ2_S]: [QK_K, 82],
  [GGMLQuantizationType.IQ4_XS]: [QK_K, 136],
  [GGMLQuantizationType.IQ1_M]: [QK_K, 56],
  [GGMLQuantizationType.TQ1_0]: [QK_K, 54],
  [GGMLQuantizationType.TQ2_0]: [QK_K, 66],
  [GGMLQuantizationType.MXFP4]: [32, 17],
};

/** Sliding-window layer patterns of architectures whose headers do not carry one (llama.cpp's llama-model.cpp). */
const SWA_PERIOD: Record<string, number> = { gemma2: 2, gemma3: 6, gemma3n: 5, cohere2: 4, 'gpt-oss': 2 };

/** The shards of a split model, in order, given any one of them; the file alone otherwise. */
export function modelFiles(file: string): string[] {
  const m = SHARD_RE.exec(path.basename(file));
  if (!m?.groups) return [file];
  const total = Number(m.groups.total);
  const dir = path.dirname(file);
  return Array.from({ length: total }, (_, i) =>
    path.join(dir, `${m.groups?.prefix}-${String(i + 1).padStart(5, '0')}-of-${m.groups?.total}.gguf`),
  );
}

/** A shard other than the first: listed as part of its model, never on its own. */
export function isLaterShard(file: string): boolean {
  const m = SHARD_RE.exec(path.basename(file));
  return m?.groups !== undefined && m.groups.shard !== '00001';
}

function num(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  return null;
}

/** A number, or the largest of an array of numbers (per-layer values such as head_count_kv). */
function numOrMax(v: unknown): number | null {
  if (Array.isArray(v)) {
    const nums = v.map(num).filter((n): n is number => n !== null);
    return nums.length ? Math.max(...nums) : null;
  }
  return num(v);
}

function tensorBytes(shape: bigint[], dtype: number): number | undefined {
  const size = TYPE_SIZES[dtype];
  if (!size) return undefined;
  const n = shape.reduce((a, b) => a * Number(b), 1);
  return (n / size[0]) * size[1];
}

function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof NotRegularFileError) return `is ${e.kind}, not a regular file`;
  if (/EISDIR/.test(msg)) return 'is a directory';
  if (/ENOENT/.test(msg)) return 'does not exist';
  if (/EACCES|EPERM/.test(msg)) return 'cannot be read (permission denied)';
  if (/magic number/.test(msg)) return 'is not a GGUF file (it does not start with the GGUF magic bytes)';
  const version = /unsupported version "(\d+)"/.exec(msg);
  if (version) {
    return Number(version[1]) > 3
      ? `is not a valid GGUF file: its header is damaged (the version field reads ${version[1]}; GGUF versions are 1 to 3)`
      : `is a GGUF version ${version[1]} file, which llama.cpp no longer loads (it reads versions 2 and 3)`;
  }
  if (/cannot fit in a|malformed|out of bounds|Offset is outside|RangeError/i.test(msg)) {
    return 'is truncated or damaged: its header declares more than the file holds (an interrupted download?)';
  }
  return `cannot be read as GGUF: ${msg}`;
}

/** The version field, read before the library: it parses a v1 file (32-bit lengths) as garbage. */
function checkVersion(file: string): void {
  let head: Buffer;
  try {
    // Non-blocking and checked: a FIFO or device in a model's place is an error, never a wait.
    const fd = openRegular(file);
    try {
      head = Buffer.alloc(8);
      const n = fs.readSync(fd, head, 0, 8, 0);
      head = head.subarray(0, n);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new GgufError(file, `${file} ${describe(e)}`);
  }
  if (head.length < 4 || head.toString('latin1', 0, 4) !== 'GGUF') {
    throw new GgufError(file, `${file} ${describe(new Error('magic number'))}`);
  }
  if (head.length < 8) throw new GgufError(file, `${file} is truncated: it ends inside the GGUF header`);
  const version = head.readUInt32LE(4);
  if (version < 2 || version > 3)
    throw new GgufError(file, `${file} ${describe(new Error(`unsupported version "${version}"`))}`);
}

async function parseShard(file: string): Promise<GGUFParseOutput & { parameterCount: number }> {
  checkVersion(file);
  try {
    return await gguf(file, { allowLocalFile: true, computeParametersCount: true });
  } catch (e) {
    throw new GgufError(file, `${file} ${describe(e)}`);
  }
}

/** A header cache entry: valid while every shard keeps its size, mtime and inode. */
interface CacheEntry {
  stamps: string[];
  info: GgufInfo;
}

const caches = new Map<string, Map<string, CacheEntry>>();

function stampOf(file: string): string | undefined {
  try {
    const st = fs.statSync(file);
    return `${st.size}:${st.mtimeMs}:${st.ino}`;
  } catch {
    return undefined;
  }
}

function loadCache(cacheFile: string): Map<string, CacheEntry> {
  let cache = caches.get(cacheFile);
  if (cache) return cache;
  cache = new Map();
  try {
    const raw = JSON.parse(readRegularFile(cacheFile).toString('utf8')) as {
      version?: number;
      entries?: Record<string, CacheEntry>;
    };
    if (raw.version === CACHE_VERSION && raw.entries) for (const [k, v] of Object.entries(raw.entries)) cache.set(k, v);
  } catch {
    // no cache yet, or an unreadable one: start empty
  }
  caches.set(cacheFile, cache);
  return cache;
}

/** Bumped when GgufInfo changes shape, so old entries are not read as new ones. */
const CACHE_VERSION = 1;
/** Entries kept: a rig has tens of models, a scan of a big directory hundreds. */
const CACHE_MAX = 2000;

function saveCache(cacheFile: string, cache: Map<string, CacheEntry>): void {
  try {
    const entries = [...cache.entries()].slice(-CACHE_MAX);
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
    fs.writeFileSync(tmp, JSON.stringify({ version: CACHE_VERSION, entries: Object.fromEntries(entries) }));
    fs.renameSync(tmp, cacheFile);
  } catch {
    // a cache that cannot be written (full or read-only disk) only costs speed
  }
}

/**
 * readGguf through a cache file (the home's state/gguf-headers.json): a large vocabulary makes a
 * header slow to parse (a Llama 3 header, 128k tokens and 280k merges, takes over a second), and
 * `up`, `config lint` and `models list` read the same files again and again. An entry is used only
 * while every shard has the size, mtime and inode it was read with.
 */
export async function readGgufCached(file: string, cacheFile: string | undefined): Promise<GgufInfo> {
  if (!cacheFile) return readGguf(file);
  const cache = loadCache(cacheFile);
  const key = path.resolve(file);
  const files = modelFiles(key);
  const stamps = files.map(stampOf);
  const hit = cache.get(key);
  if (hit && stamps.every((s, i) => s !== undefined && s === hit.stamps[i])) return hit.info;
  const info = await readGguf(file);
  cache.delete(key);
  cache.set(key, { stamps: stamps as string[], info });
  saveCache(cacheFile, cache);
  return info;
}

/** Each tensor's bytes in one shard; throws GgufError when one ends past the file (a truncated file). */
function tensorSpans(f: string, size: number, parsed: GGUFParseOutput): Array<{ name: string; bytes: number }> {
  const dataOffset = Number(parsed.tensorDataOffset);
  const dataSize = size - dataOffset;
  const sorted = [...parsed.tensorInfos].sort((a, b) => Number(a.offset - b.offset));
  return sorted.map((t, i) => {
    const start = Number(t.offset);
    const next = sorted[i + 1];
    const exact = tensorBytes(t.shape, t.dtype);
    const end = start + (exact ?? (next ? Number(next.offset) - start : dataSize - start));
    if (end > dataSize) {
      throw new GgufError(
        f,
        `${f} is truncated: tensor ${t.name} ends at byte ${dataOffset + end}, but the file has ${size} bytes (an interrupted download?)`,
      );
    }
    return { name: t.name, bytes: end - start };
  });
}

/**
 * One GGUF file is whole (a download before it is put in place): the magic bytes, a known version,
 * a header that parses, and every tensor inside the file. Throws GgufError saying what is wrong.
 */
export async function checkGgufFile(file: string): Promise<void> {
  const size = fs.statSync(file).size;
  tensorSpans(file, size, await parseShard(file));
}

/**
 * Reads a model's header (all shards of a split model). Throws GgufError naming the file and what
 * is wrong: bad magic, an unknown version, a header or data section cut short, a missing shard.
 */
export async function readGguf(file: string): Promise<GgufInfo> {
  const files = modelFiles(file);
  const shards: Array<{ file: string; size: number; parsed: GGUFParseOutput & { parameterCount: number } }> = [];
  for (const f of files) {
    let size: number;
    try {
      const st = fs.statSync(f);
      if (!st.isFile()) throw new GgufError(f, `${f} is ${fileKind(st)}, not a regular file`);
      size = st.size;
    } catch (e) {
      if (e instanceof GgufError) throw e;
      throw new GgufError(
        f,
        f === file
          ? `${f} ${describe(e)}`
          : `${f} is missing: ${file} is shard 1 of a model split in ${files.length} files`,
      );
    }
    shards.push({ file: f, size, parsed: await parseShard(f) });
  }
  const first = shards[0]?.parsed;
  if (!first) throw new GgufError(file, `${file} has no shards`);
  const meta = first.metadata as Record<string, unknown>;
  const str = (k: string): string | null => {
    const v = meta[k];
    return typeof v === 'string' ? v : null;
  };
  const arch = str('general.architecture');
  const key = (k: string): unknown => (arch ? meta[`${arch}.${k}`] : undefined);

  const layers: number[] = [];
  let input = 0;
  let output = 0;
  let total = 0;
  for (const { file: f, size, parsed } of shards) {
    for (const t of tensorSpans(f, size, parsed)) {
      total += t.bytes;
      const blk = /^blk\.(\d+)\./.exec(t.name);
      if (blk) {
        const n = Number(blk[1]);
        while (layers.length <= n) layers.push(0);
        layers[n] = (layers[n] ?? 0) + t.bytes;
      } else if (/^(token_embd|token_types|position_embd|rope_freqs)/.test(t.name)) input += t.bytes;
      else output += t.bytes;
    }
  }

  const headKv = key('attention.head_count_kv');
  const blockCount = num(key('block_count'));
  const window = num(key('attention.sliding_window'));
  let swaLayers: boolean[] | null = null;
  const pattern = key('attention.sliding_window_pattern');
  if (blockCount && window) {
    if (Array.isArray(pattern)) swaLayers = pattern.map(Boolean);
    else {
      const period = num(pattern) ?? (arch ? SWA_PERIOD[arch] : undefined);
      // llama.cpp's set_swa_pattern: every period-th layer is dense, the others slide.
      if (period) swaLayers = Array.from({ length: blockCount }, (_, il) => (il + 1) % period !== 0);
    }
  }
  const fileType = num(meta['general.file_type']);
  const quant = fileType !== null ? GGMLFileQuantizationType[fileType] : undefined;
  const tokens = meta['tokenizer.ggml.tokens'];
  return {
    path: files[0] ?? file,
    files,
    size: shards.reduce((a, s) => a + s.size, 0),
    name: str('general.name') === 'n/a' ? null : str('general.name'),
    architecture: arch,
    parameters: shards.reduce((a, s) => a + s.parsed.parameterCount, 0) || null,
    quantization: quant ?? dominantType(shards.flatMap((s) => s.parsed.tensorInfos)),
    context_length: num(key('context_length')),
    block_count: blockCount,
    embedding_length: num(key('embedding_length')),
    feed_forward_length: numOrMax(key('feed_forward_length')),
    head_count: numOrMax(key('attention.head_count')),
    head_count_kv: numOrMax(headKv),
    key_length: num(key('attention.key_length')),
    value_length: num(key('attention.value_length')),
    sliding_window: window || null,
    expert_count: num(key('expert_count')) || null,
    expert_used_count: num(key('expert_used_count')) || null,
    vocab_size: num(key('vocab_size')) ?? (Array.isArray(tokens) ? tokens.length : null),
    chat_template: Boolean(str('tokenizer.chat_template')),
    head_count_kv_per_layer: Array.isArray(headKv) ? headKv.map((v) => num(v) ?? 0) : null,
    swa_layers: swaLayers,
    weights: { layers, input, output, total },
  };
}

/** The tensor type holding the most weights, as a name (F16, Q8_0, ...), for files without general.file_type. */
function dominantType(tensors: GGUFParseOutput['tensorInfos']): string | null {
  const by = new Map<number, number>();
  for (const t of tensors) by.set(t.dtype, (by.get(t.dtype) ?? 0) + t.shape.reduce((a, b) => a * Number(b), 1));
  let best: [number, number] | undefined;
  for (const e of by) if (!best || e[1] > best[1]) best = e;
  return best ? (GGMLQuantizationType[best[0]] ?? null) : null;
}
