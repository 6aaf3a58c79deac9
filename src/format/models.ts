import path from 'node:path';
import type { Home } from '../domain/home.js';
import { safeName } from '../domain/sanitize.js';
import { formatBytes, sizeText, unitFor } from '../domain/units.js';
import type { ModelInfo } from '../app/model-info.js';
import type { ListedModel } from '../app/models.js';
import { renderTextTable } from './table.js';

/** The `models` commands' text: `models list`'s table and `models info`'s header and estimate. */

export function formatParams(n: number | null): string {
  if (n === null) return '-';
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e11 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)}M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)}K`;
  return String(n);
}

/** A path inside the home relative to it (as a config's model.path may give it); any other as it is. */
export function displayPath(home: Home, file: string): string {
  const rel = path.relative(home.root, file);
  return rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
}

/** `models list`'s table: one row per model; `*` marks a user that runs. */
export function modelsTable(home: Home, models: readonly ListedModel[]): string {
  const rows = models.map(({ model: m, usedBy }) => {
    const i = m.info;
    const used = usedBy.map((u) => (u.running ? `${u.name}*` : u.name)).join(',');
    const shards = i && i.files.length > 1 ? ` (+${i.files.length - 1} shards)` : '';
    // A file's name and its header's strings are anyone's: no control codes reach the terminal.
    return [
      safeName(displayPath(home, m.path)) + shards,
      i?.architecture ? safeName(i.architecture) : '-',
      formatParams(i?.parameters ?? null),
      i?.quantization ?? '-',
      i ? formatBytes(i.size) : '-',
      i?.context_length ? String(i.context_length) : '-',
      used || '-',
      m.source,
    ];
  });
  return renderTextTable(['MODEL', 'ARCH', 'PARAMS', 'QUANT', 'SIZE', 'CTX', 'USED BY', 'FROM'], rows, 72);
}

const indent = (table: string) =>
  table
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');

/** `models info`'s text, one entry per line printed: the header, the estimate, and llama.cpp's projection when it ran. */
export function modelInfoLines(m: ModelInfo): string[] {
  const { file, info, input, estimate: est, used, projection } = m;
  const out: string[] = [];
  const n = (v: number | null) => (v === null ? '-' : String(v));
  const lines: Array<[string, string]> = [
    ['path', `${file}${info.files.length > 1 ? ` (${info.files.length} shards)` : ''}`],
    ['name', info.name ?? '-'],
    ['architecture', info.architecture ?? '-'],
    ['parameters', info.parameters === null ? '-' : `${formatParams(info.parameters)} (${info.parameters})`],
    ['quantization', info.quantization ?? '-'],
    ['size', `${sizeText(info.size)} (${info.size} bytes)`],
    ['trained context', n(info.context_length)],
    [
      'layers',
      `${n(info.block_count)} (embedding ${n(info.embedding_length)}, feed-forward ${n(info.feed_forward_length)})`,
    ],
    [
      'attention',
      `${n(info.head_count)} heads, ${n(info.head_count_kv)} KV heads, key/value length ${n(info.key_length)}/${n(info.value_length)}${info.sliding_window ? `, sliding window ${info.sliding_window}` : ''}`,
    ],
    ['experts', info.expert_count ? `${info.expert_count} (${n(info.expert_used_count)} used per token)` : '-'],
    ['chat template', info.chat_template ? 'yes' : 'no'],
    ['used by', used.length ? used.map((u) => `${u.name}${u.running ? ' (running)' : ''}`).join(', ') : '-'],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  for (const [k, v] of lines) out.push(`${k.padEnd(w)}  ${v}`);
  out.push('');
  const where =
    est.gpuLayers === 0 ? 'CPU only' : `-ngl ${est.gpuLayers} on ${input.gpus} GPU${input.gpus === 1 ? '' : 's'}`;
  out.push(
    `memory estimate: -c ${est.context} (${est.contextPerSlot} per slot), ${est.parallel} slot${est.parallel === 1 ? '' : 's'}${input.parallel === undefined ? ' (auto, unified KV)' : ''}, ${where}, KV ${est.cacheTypeK}/${est.cacheTypeV}, ubatch ${est.ubatch}`,
  );
  const u = unitFor(est.total);
  const rows = est.devices.map((d) => [
    d.device === 'host' ? 'host' : `gpu ${d.device}`,
    u.fmt(d.weights),
    u.fmt(d.kv),
    u.fmt(d.compute),
    d.device === 'host' ? '-' : u.fmt(d.margin),
    u.fmt(d.total),
  ]);
  if (est.devices.length > 1) {
    rows.push(['total', u.fmt(est.weights), u.fmt(est.kv), u.fmt(est.compute), u.fmt(est.margin), u.fmt(est.total)]);
  }
  out.push(indent(renderTextTable(['DEVICE', 'WEIGHTS', 'KV', 'COMPUTE', 'RUNTIME', `TOTAL ${u.name}`], rows)));
  if (projection?.ok) {
    out.push(
      `\nllama.cpp's projection on this machine (llama-fit-params ${m.sizingArgs.join(' ')}, ${projection.ms} ms):`,
    );
    const pu = unitFor(Math.max(...projection.devices.map((d) => d.model + d.context + d.compute)));
    const prow = projection.devices.map((d) => [
      d.device === 'Host' ? 'host' : d.device,
      pu.fmt(d.model),
      pu.fmt(d.context),
      pu.fmt(d.compute),
      pu.fmt(d.model + d.context + d.compute),
    ]);
    out.push(indent(renderTextTable(['DEVICE', 'MODEL', 'KV', 'COMPUTE', `TOTAL ${pu.name}`], prow)));
  }
  return out;
}
