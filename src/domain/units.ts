/** Byte figures as people read them, in messages and tables alike. */

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
export const gib = (n: number) => (n / GiB).toFixed(1);

/** A unit for a group of figures: GiB from 1 GiB up (one decimal), MiB below (whole numbers, one decimal under 10). */
export function unitFor(largest: number): { name: 'GiB' | 'MiB'; fmt: (n: number) => string } {
  if (largest >= GiB) return { name: 'GiB', fmt: gib };
  return { name: 'MiB', fmt: (n) => (n / MiB).toFixed(n < 10 * MiB ? 1 : 0) };
}

/** Bytes in a table cell, as people read GPU memory: `7.9G`, `512M`, `<1M`, `0` (`-` for unknown). */
export function formatBytes(b: number | null): string {
  if (b === null) return '-';
  const gib = b / 1024 ** 3;
  if (gib >= 100) return `${Math.round(gib)}G`;
  if (gib >= 1) return `${gib.toFixed(1)}G`;
  const mib = b / 1024 ** 2;
  return mib >= 1 ? `${Math.round(mib)}M` : b > 0 ? '<1M' : '0';
}

/** One figure with its unit: `2.8 GiB`, `589 MiB`. */
export function bytesText(n: number): string {
  const u = unitFor(Math.abs(n));
  return `${u.fmt(n)} ${u.name}`;
}

/**
 * A size or a transfer in binary units, one decimal from KiB up: `512 B`, `1.5 KiB`, `85.3 MiB`,
 * `4.1 GiB` (downloads, files on disk).
 */
export function sizeText(b: number): string {
  if (!Number.isFinite(b) || b < 1024) return `${Math.max(0, Math.round(b || 0))} B`;
  let v = b;
  let unit = 'B';
  for (const u of ['KiB', 'MiB', 'GiB', 'TiB']) {
    if (v < 1024) break;
    v /= 1024;
    unit = u;
  }
  return `${v.toFixed(1)} ${unit}`;
}
