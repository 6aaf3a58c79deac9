import { describe, expect, it } from 'vitest';
import {
  AT_TOP,
  FOLLOW,
  findMatch,
  footerText,
  nextSort,
  scrollBy,
  scrollTo,
  sortRows,
  visibleRange,
  wrapLines,
} from '../../components/view.js';
import { cell, layoutColumns } from '../../src/format/columns.js';
import { psTable } from '../../src/format/table.js';
import { cutMiddle } from '../../src/format/text.js';
import { resolveHome } from '../../src/domain/home.js';
import type { InstanceSnapshot } from '../../src/domain/snapshot.js';
import { snapshotFixture } from '../helpers/snapshot.js';

const inst = snapshotFixture;

describe('pane scrolling', () => {
  it('a tailing pane follows the end; paging up stops following, paging back to the end follows again', () => {
    expect(visibleRange(100, 10, FOLLOW)).toEqual({ start: 90, end: 100 });
    const up = scrollBy(FOLLOW, -9, 100, 10, true);
    expect(up).toEqual({ top: 81, follow: false });
    // New lines arrive: the view stays where the operator put it.
    expect(visibleRange(150, 10, up)).toEqual({ start: 81, end: 91 });
    const down = scrollBy(up, 9, 100, 10, true);
    expect(down.follow).toBe(true);
    expect(scrollBy(AT_TOP, -5, 100, 10, true)).toEqual({ top: 0, follow: false });
  });

  it('details start at the top and reach their last line', () => {
    const s = scrollBy(AT_TOP, 1000, 40, 12, false);
    expect(visibleRange(40, 12, s)).toEqual({ start: 28, end: 40 });
    expect(s.follow).toBe(false);
    expect(visibleRange(5, 12, AT_TOP)).toEqual({ start: 0, end: 5 });
  });

  it('search finds the next and previous match case-insensitively, wrapping around', () => {
    const lines = ['load model', 'slot 0: ERROR x', 'ok', 'error again', 'done'];
    expect(findMatch(lines, 'error', -1, 1)).toBe(1);
    expect(findMatch(lines, 'error', 1, 1)).toBe(3);
    expect(findMatch(lines, 'error', 3, 1)).toBe(1);
    expect(findMatch(lines, 'error', lines.length, -1)).toBe(3);
    expect(findMatch(lines, 'nothing', 0, 1)).toBe(-1);
    expect(scrollTo(90, 100, 12)).toEqual({ top: 86, follow: false });
    expect(scrollTo(2, 100, 12)).toEqual({ top: 0, follow: false });
  });

  it('wraps long lines (the describe command whole) with an indent, never past the width', () => {
    const cmd = `Command: /opt/llama-server ${'--flag value '.repeat(20)}`;
    const out = wrapLines(['Name: a', cmd], 60);
    expect(out[0]).toBe('Name: a');
    expect(out.length).toBeGreaterThan(4);
    for (const l of out) expect(l.length).toBeLessThanOrEqual(60);
    expect(out.slice(1).join(' ').replace(/\s+/g, ' ')).toBe(cmd.trim().replace(/\s+/g, ' '));
  });
});

describe('sorting', () => {
  const rows = [
    inst('b', { port: 3, uptime_s: 50, restarts: 1 }),
    inst('a', { state: 'failed', pid: null, health: null, uptime_s: null, port: 2, restarts: 5 }),
    inst('c', { health: 'unhealthy', uptime_s: 500, port: 1 }),
  ];
  it('by name, state (problems first), port, uptime (longest first), restarts; reversible; ties by name', () => {
    const names = (key: 'name' | 'state' | 'port' | 'uptime' | 'restarts' | 'tokens', reverse = false) =>
      sortRows(rows, { key, reverse }).map((r) => r.name);
    expect(names('name')).toEqual(['a', 'b', 'c']);
    expect(names('state')).toEqual(['a', 'c', 'b']);
    expect(names('port')).toEqual(['c', 'a', 'b']);
    expect(names('uptime')).toEqual(['c', 'b', 'a']);
    expect(names('restarts')).toEqual(['a', 'b', 'c']);
    // Busiest first; unknown last.
    expect(
      sortRows([inst('x', { tokens_per_s: null }), inst('y', { tokens_per_s: 3 }), inst('z', { tokens_per_s: 40 })], {
        key: 'tokens',
        reverse: false,
      }).map((r) => r.name),
    ).toEqual(['z', 'y', 'x']);
    expect(names('name', true)).toEqual(['c', 'b', 'a']);
    expect(nextSort({ key: 'restarts', reverse: true })).toEqual({ key: 'tokens', reverse: false });
    expect(nextSort({ key: 'tokens', reverse: true })).toEqual({ key: 'name', reverse: false });
  });
});

describe('footer', () => {
  it('always shows ? help and q quit, at 80 columns and at 30', () => {
    for (const width of [200, 80, 50, 30]) {
      const f = footerText(width, '[f gpu] ');
      expect(f.length, String(width)).toBeLessThanOrEqual(width);
      expect(f).toContain('? help · q quit');
    }
    expect(footerText(200)).toContain('s start');
    expect(footerText(80)).toMatch(/^↑↓ select · s start · x stop · r restart/);
  });
});

describe('stable columns (the dashboard)', () => {
  it('a ticking value (loading 9 s -> 10 s, backoff 9s -> 10s, a long reason) moves no column', () => {
    const tick = (n: number, reason: string) => [
      inst('alpha', { health: 'loading', health_detail: `loading ${n} s` }),
      inst('beta', { state: 'backoff', next_restart_in_s: n, pid: null, health: null }),
      inst('gamma', { health: 'unhealthy', health_detail: reason }),
    ];
    const widths = (rows: InstanceSnapshot[]) => layoutColumns(rows, 80, 'stable').map((c) => `${c.key}:${c.width}`);
    const first = widths(tick(9, 'timed out'));
    for (const [n, reason] of [
      [10, 'timed out'],
      [120, '/health timed out after 3 s (timeout 3 s) 3/3 and more words'],
    ] as const)
      expect(widths(tick(n, reason))).toEqual(first);
    // At 80 columns MODEL and UPTIME stay on screen; the row fits.
    expect(first.map((c) => c.split(':')[0])).toEqual(expect.arrayContaining(['model', 'uptime']));
  });

  it('NAME is not cut at 20 characters on a wide terminal', () => {
    const name = 'qwen2.5-coder-32b-instruct-q4';
    const cols = layoutColumns([inst(name)], 200, 'stable');
    expect(cols.find((c) => c.key === 'name')?.width).toBeGreaterThanOrEqual(name.length);
    const total = cols.reduce((a, c) => a + c.width, 0) + 2 * (cols.length - 1) + 2;
    expect(total).toBeLessThanOrEqual(200);
  });
});

describe('long names stay apart', () => {
  // Two 63-character names that differ only at the end (as quantisations or replicas do).
  const a = `${'meta-llama-3.1-70b-instruct-'.repeat(2)}q4-k-m-a`.slice(0, 60) + '-r1';
  const b = a.slice(0, 60) + '-r2';

  it('cutMiddle keeps both ends and the width', () => {
    expect(cutMiddle('abcdefghij', 5)).toBe('ab…ij');
    expect(cutMiddle('abcdefghij', 6)).toBe('abc…ij');
    expect(cutMiddle('abc', 5)).toBe('abc');
    expect(cutMiddle(a, 20)).toHaveLength(20);
    expect(cutMiddle(a, 20).endsWith('-r1')).toBe(true);
  });

  it('ps prints names whole, whatever their length', () => {
    const out = psTable([inst(a), inst(b)], resolveHome('/tmp/llama-orch-names'));
    expect(out).toContain(a);
    expect(out).toContain(b);
  });

  it('the dashboard cuts names in the middle and widens NAME until they differ', () => {
    // Names that differ only in the middle: at the cap (80 / 4 = 20) both would print alike.
    const c1 = `${'x'.repeat(30)}-alpha-${'y'.repeat(30)}`;
    const c2 = `${'x'.repeat(30)}-omega-${'y'.repeat(30)}`;
    for (const rows of [
      [inst(a), inst(b)],
      [inst(c1), inst(c2)],
    ]) {
      const cols = layoutColumns(rows, 80, 'stable');
      const name = cols.find((c) => c.key === 'name')!;
      const shown = rows.map((r) => cell(name, r));
      expect(new Set(shown).size).toBe(2);
      expect(shown[0]).toHaveLength(name.width);
    }
    // Names that differ in their last characters need no more than the usual width.
    const cols = layoutColumns([inst(a), inst(b)], 80, 'stable');
    expect(cols.find((c) => c.key === 'name')!.width).toBe(20);
  });
});

describe('uptimes and the clock as the dashboard prints them', () => {
  it('seconds for the first 10 minutes, then minutes; the clock to the minute', async () => {
    const { formatUptime, clockText } = await import('../../src/format/text.js');
    expect([5, 65, 599, 600, 3599, 3661, 90_000].map(formatUptime)).toEqual([
      '5s',
      '1m05s',
      '9m59s',
      '10m',
      '59m',
      '1h01m',
      '1d01h',
    ]);
    expect(clockText(Date.UTC(2026, 10, 24, 5, 7, 59))).toMatch(/^\d{2}:\d{2}$/);
    const d = new Date(2026, 10, 24, 5, 7, 59); // local time, as the header shows it
    expect(clockText(d.getTime())).toBe('05:07');
  });

  it('a probe latency: nothing below 10 ms, else one significant digit (jitter moves nothing)', async () => {
    const { latencyText } = await import('../../src/format/text.js');
    expect([null, 0.4, 3, 9.9, 10, 14, 15, 23.4, 96, 149, 150, 999, 1499, 1500, 12_345].map(latencyText)).toEqual([
      '',
      '',
      '',
      '',
      '10ms',
      '10ms',
      '20ms',
      '20ms',
      '100ms',
      '100ms',
      '200ms',
      '1s',
      '1s',
      '2s',
      '10s',
    ]);
  });
});
