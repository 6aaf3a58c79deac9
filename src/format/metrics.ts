import type { BenchResult } from '../domain/metrics.js';
const BARS = '▁▂▃▄▅▆▇█';

/**
 * A sparkline of `width` cells over [from, to): each cell the mean of the points in its time slice,
 * scaled to the largest cell; a slice without points is a space (the server was not running, or
 * not read). Returns the line and that largest value.
 */
export function sparkline(
  points: ReadonlyArray<{ ts: number; v: number | null }>,
  from: number,
  to: number,
  width: number,
): { line: string; max: number } {
  const sums = new Array<number>(width).fill(0);
  const counts = new Array<number>(width).fill(0);
  const span = Math.max(1, to - from);
  for (const p of points) {
    if (p.v === null || !Number.isFinite(p.v) || p.ts < from || p.ts >= to) continue;
    const i = Math.min(width - 1, Math.floor(((p.ts - from) / span) * width));
    sums[i] = (sums[i] as number) + p.v;
    counts[i] = (counts[i] as number) + 1;
  }
  const cells = sums.map((s, i) => ((counts[i] as number) > 0 ? s / (counts[i] as number) : null));
  const max = Math.max(0, ...cells.filter((c): c is number => c !== null));
  const line = cells
    .map((c) => {
      if (c === null) return ' ';
      if (max === 0) return BARS[0];
      return BARS[Math.min(BARS.length - 1, Math.round((c / max) * (BARS.length - 1)))];
    })
    .join('');
  return { line, max };
}

const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
const rate = (v: number | null) => (v === null ? '-' : `${v} tok/s`);

/** `bench` as text (and the last run in `describe`). */
export function benchLines(r: BenchResult): string[] {
  const lines = [
    `bench ${r.instance}: ${r.completed}/${r.requests} requests completed, ${r.errors} failed, concurrency ${r.concurrency}${r.interrupted ? ' (interrupted: the figures cover what completed)' : ''}`,
    `  asked for       ~${r.prompt_tokens} prompt tokens, ${r.max_tokens} generated tokens per request`,
    `  time to first   p50 ${ms(r.ttft_ms.p50)}, p95 ${ms(r.ttft_ms.p95)}, max ${ms(r.ttft_ms.max)}`,
    `  generation      p50 ${rate(r.tokens_per_s.p50)} per request, ${rate(r.tokens_per_s.aggregate)} aggregate (${r.generated_tokens} tokens in ${r.wall_s} s)`,
    `  prompt          p50 ${rate(r.prompt_tokens_per_s)}`,
    `  server timings  ${rate(r.server.tokens_per_s)} generating (p50 ${rate(r.server.tokens_per_s_p50)}), ${r.server.predicted_n} tokens predicted, ${r.server.prompt_n} prompt tokens`,
  ];
  if (r.token_count_mismatches > 0) {
    lines.push(
      `  note            ${r.token_count_mismatches} stream(s) carried a different token count than the server's predicted_n`,
    );
  }
  for (const e of r.error_samples) lines.push(`  error           ${e}`);
  return lines;
}

/** The one-line summary of the last bench in `describe`. */
export function benchSummary(r: BenchResult): string {
  return `${r.started_at}: ${r.completed}/${r.requests} ok, concurrency ${r.concurrency}, TTFT p50 ${ms(r.ttft_ms.p50)} p95 ${ms(r.ttft_ms.p95)}, ${rate(r.tokens_per_s.p50)} per request, ${rate(r.tokens_per_s.aggregate)} aggregate${r.errors ? `, ${r.errors} errors` : ''}${r.interrupted ? ' (interrupted)' : ''}`;
}
