/** A download's progress as text: a bar that fits a terminal's width, or a line for plain logs. */

import type { DownloadProgress } from '../domain/download.js';
import { sizeText } from '../domain/units.js';
import { formatUptime } from './text.js';

export type { DownloadProgress };

export function formatSpeed(bytesPerSecond: number): string {
  return `${sizeText(bytesPerSecond)}/s`;
}

function percent(p: DownloadProgress): string | null {
  if (p.total === null || p.total <= 0) return p.total === 0 ? '100%' : null;
  return `${Math.min(100, Math.floor((p.received / p.total) * 100))}%`;
}

function eta(p: DownloadProgress): string | null {
  return p.etaSeconds === null || !Number.isFinite(p.etaSeconds) ? null : formatUptime(Math.ceil(p.etaSeconds));
}

function label(p: DownloadProgress): string {
  return `${p.file}${shardTag(p)}`;
}

function shardTag(p: DownloadProgress): string {
  return p.count > 1 ? ` [${p.index}/${p.count}]` : '';
}

/** Cut in the middle, where a model's name says least (its quant and shard number are at the end). */
function middleCut(s: string, max: number): string {
  if (s.length <= max) return s;
  if (max <= 1) return s.slice(0, Math.max(0, max));
  const head = Math.ceil((max - 1) / 2);
  return `${s.slice(0, head)}…${s.slice(s.length - (max - 1 - head))}`;
}

/** The file name cut to fit `cols` with its `[i/n]` kept whole. */
function fitLabel(p: DownloadProgress, cols: number): string {
  const tag = shardTag(p);
  return `${middleCut(p.file, cols - tag.length)}${tag}`;
}

const MIN_BAR = 10;
const MAX_BAR = 30;
const MIN_NAME = 12;

/**
 * One terminal line, at most `width` columns (ASCII but the `…` of a shortened name):
 * `NAME [1/3] [#########---------]  45%  1.8 GiB / 4.1 GiB  85.3 MiB/s  ETA 30s`. The bar takes
 * 10 to 30 columns, the name what is left (cut in the middle, down to 12 columns); when that does
 * not fit, the bytes, the ETA, the rate and the percentage are left out, in that order. Without a
 * known total there is no bar.
 */
export function progressBar(p: DownloadProgress, width: number): string {
  const w = Math.max(1, Math.floor(width));
  const name = label(p);
  const minName = Math.min(name.length, MIN_NAME + shardTag(p).length);
  const pct = percent(p);
  const bytes = p.total !== null ? `${sizeText(p.received)} / ${sizeText(p.total)}` : sizeText(p.received);
  const left = eta(p);
  const parts: { text: string | null; drop: number }[] = [
    { text: pct, drop: 4 },
    { text: bytes, drop: 1 },
    { text: formatSpeed(p.bytesPerSecond), drop: 3 },
    { text: left === null ? null : `ETA ${left}`, drop: 2 },
  ];
  for (let dropped = 0; dropped <= 4; dropped++) {
    const tail = parts
      .filter((x) => x.text !== null && x.drop > dropped)
      .map((x) => x.text)
      .join('  ');
    const tailCols = tail ? tail.length + 2 : 0;
    if (p.total === null) {
      const room = w - tailCols;
      if (room >= minName) return `${fitLabel(p, room)}${tail ? `  ${tail}` : ''}`;
      continue;
    }
    // NAME + ' [' + BAR + ']' + '  ' + TAIL
    const room = w - tailCols - 3;
    const barCols = Math.max(MIN_BAR, Math.min(MAX_BAR, room - name.length));
    const nameCols = Math.min(name.length, room - barCols);
    if (nameCols < minName) continue;
    const filled = Math.min(barCols, Math.round((p.total > 0 ? p.received / p.total : 1) * barCols));
    const bar = '#'.repeat(filled) + '-'.repeat(barCols - filled);
    return `${fitLabel(p, nameCols)} [${bar}]${tail ? `  ${tail}` : ''}`;
  }
  // Narrower than a name and a bar: the percentage (or the bytes) and as much of the name as fits.
  const short = pct ?? sizeText(p.received);
  if (short.length + 1 >= w) return short.slice(0, w);
  return `${middleCut(p.file, w - short.length - 1)} ${short}`;
}

/**
 * The plain form, one line every few seconds when the output is not a terminal:
 * `NAME [1/3]: 45% (1.8 GiB of 4.1 GiB) at 85.3 MiB/s, ETA 30s`.
 */
export function progressLine(p: DownloadProgress): string {
  const pct = percent(p);
  const have =
    pct !== null && p.total !== null
      ? `${pct} (${sizeText(p.received)} of ${sizeText(p.total)})`
      : sizeText(p.received);
  const resumed = p.resumedFrom > 0 ? `, resumed at ${sizeText(p.resumedFrom)}` : '';
  const left = eta(p);
  return `${label(p)}: ${have} at ${formatSpeed(p.bytesPerSecond)}${left !== null ? `, ETA ${left}` : ''}${resumed}`;
}
