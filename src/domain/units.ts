/** Byte figures as people read them, in messages and tables alike. */

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
export const gib = (n: number) => (n / GiB).toFixed(1);

/** A unit for a group of figures: GiB from 1 GiB up (one decimal), MiB below (whole numbers, one decimal under 10). */
export function unitFor(largest: number): { name: 'GiB' | 'MiB'; fmt: (n: number) => string } {
  if (largest >= GiB) return { name: 'GiB', fmt: gib };
  return { name: 'MiB', fmt: (n) => (n / MiB).toFixed(n < 10 * MiB ? 1 : 0) };
}

/** One figure with its unit: `2.8 GiB`, `589 MiB`. */
export function bytesText(n: number): string {
  const u = unitFor(Math.abs(n));
  return `${u.fmt(n)} ${u.name}`;
}
