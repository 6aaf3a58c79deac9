import { describe, expect, it } from 'vitest';
import { reduce } from '../../components/reduce.js';
import { layout, paneContent } from '../../components/layout.js';
import { initialView, logTarget, detailsTarget, scrollOf, type Msg, type ViewState } from '../../components/state.js';
import type { DashboardState } from '../../components/model.js';
import type { InstanceSnapshot } from '../../src/domain/snapshot.js';
import { snapshotFixture } from '../helpers/snapshot.js';

// components/reduce.ts: the dashboard as data, reduce(view, msg) -> view, without React or Ink.

const NOW = Date.parse('2026-11-22T12:00:00Z');

function data(instances: InstanceSnapshot[], over: Partial<DashboardState> = {}): DashboardState {
  return {
    now: NOW,
    host: 'rig',
    home: '/h',
    daemon: { running: false, pid: null, proxy: null },
    instances,
    events: [],
    error: null,
    gpus: [],
    gpuError: null,
    cpuOnly: false,
    ...over,
  };
}

const view = (names: string[], over: Partial<InstanceSnapshot> = {}) =>
  initialView(data(names.map((n) => snapshotFixture(n, over))), { columns: 100, rows: 30 });

/** Key presses: single characters, or Ink's named keys as { name: true }. */
function keys(s: ViewState, ...ks: Array<string | Record<string, boolean>>): ViewState {
  for (const k of ks) {
    const msg: Msg = typeof k === 'string' ? { type: 'key', input: k, key: {} } : { type: 'key', input: '', key: k };
    const before = JSON.stringify(s);
    const next = reduce(s, msg);
    // Pure: the state it was given is as it was.
    expect(JSON.stringify(s)).toBe(before);
    s = next;
  }
  return s;
}
const type = (s: ViewState, text: string) => keys(s, ...text.split(''));

describe('reduce', () => {
  it('moves the selection with j/k; a filter typed keeps what is shown selected; Esc clears the filter', () => {
    let s = view(['alpha', 'beta', 'gamma']);
    expect(s.selected).toBe('alpha');
    s = keys(s, 'j', 'j', 'j');
    expect(s.selected).toBe('gamma');
    s = keys(s, 'k');
    expect(s.selected).toBe('beta');
    s = type(keys(s, 'f'), 'gam');
    expect(s.rows.map((r) => r.name)).toEqual(['gamma']);
    expect(s.selected).toBe('gamma');
    s = keys(s, { return: true });
    expect(s.input).toBeNull();
    expect(s.filter).toBe('gam');
    s = keys(s, 'f', { escape: true });
    expect(s.filter).toBe('');
    expect(s.rows).toHaveLength(3);
    expect(s.selected).toBe('gamma');
  });

  it('a model update re-sorts only when the instances changed; the selection stays on its name', () => {
    let s = keys(view(['alpha', 'beta']), 'j');
    const rows = s.rows;
    s = reduce(s, { type: 'data', data: { ...s.data, now: NOW + 1000 } });
    expect(s.rows).toBe(rows);
    s = reduce(s, { type: 'data', data: data([snapshotFixture('aaa'), ...s.data.instances]) });
    expect(s.rows.map((r) => r.name)).toEqual(['aaa', 'alpha', 'beta']);
    expect(s.selected).toBe('beta');
    const same = reduce(s, { type: 'data', data: s.data });
    expect(same).toBe(s);
  });

  it('x on a running instance asks; y runs it once (busy), and its result is the message and history', () => {
    let s = keys(view(['alpha']), 'x');
    expect(s.confirm?.text).toMatch(/^stop alpha \(running, pid 4242, port 18181, model tiny, up 5s\)\?$/);
    expect(s.effects).toEqual([]);
    s = keys(s, 'n');
    expect(s.message).toBe('stop: cancelled');
    s = keys(s, 'x', 'y');
    expect(s.effects).toEqual([{ kind: 'run', action: 'stop', name: 'alpha', batch: null }]);
    expect(s.message).toBe('stop alpha…');
    expect(s.busy).toEqual(['alpha']);
    // Busy: a second stop asks, and then starts nothing.
    s = keys({ ...s, effects: [] }, 'x', 'y');
    expect(s.effects).toEqual([]);
    s = reduce(s, { type: 'result', name: 'alpha', text: 'alpha stopped', error: false, at: NOW, batch: null });
    expect(s.busy).toEqual([]);
    expect(s.message).toBe('alpha stopped');
    expect(s.history).toEqual([{ at: NOW, text: 'alpha stopped', error: false }]);
    // With --yes (confirmSingle false) it acts at once.
    const yes = keys({ ...view(['alpha']), confirmSingle: false }, 'r');
    expect(yes.effects).toEqual([{ kind: 'run', action: 'restart', name: 'alpha', batch: null }]);
  });

  it('S asks for every row shown, runs them as one batch and reports once, with the failures', () => {
    let s = keys(view(['alpha', 'beta'], { state: 'stopped' }), 'S');
    expect(s.confirm?.text).toBe('start all 2 shown: alpha, beta');
    s = keys(s, 'y');
    expect(s.effects.map((e) => (e.kind === 'run' ? `${e.action}:${e.name}:${e.batch}` : e.kind))).toEqual([
      'start:alpha:1',
      'start:beta:1',
    ]);
    expect(s.message).toBe('start all 2 instances…');
    s = reduce(s, { type: 'result', name: 'alpha', text: 'alpha started', error: false, at: NOW, batch: 1 });
    expect(s.message).toBe('start all 2 instances…');
    s = reduce(s, { type: 'result', name: 'beta', text: 'error: port\nheld', error: true, at: NOW, batch: 1 });
    expect(s.message).toBe('error: start all: 1 of 2 done, failed: beta (a: results)');
    expect(s.history.map((h) => h.text)).toEqual(['alpha started', 'error: port · held']);
    expect(s.batches).toEqual({});
  });

  it('l opens the log pane, and pressed again (or in the full-screen log) switches the stream', () => {
    let s = view(['alpha']);
    expect(logTarget(s)).toBe('alpha');
    s = keys(s, 'l');
    expect(s.stream).toBe('stdout');
    s = keys(s, 'e');
    expect(logTarget(s)).toBeUndefined();
    s = keys(s, 'l');
    expect([s.pane, s.stream]).toEqual(['logs', 'stdout']);
    s = keys(s, 'c');
    expect(s.paneOpen).toBe(false);
    s = keys(s, 'l');
    expect([s.paneOpen, s.stream]).toEqual([true, 'stdout']);
    s = keys(s, 'L', 'l');
    expect([s.fullLog, s.stream]).toEqual([true, 'stderr']);
    s = keys(s, { escape: true });
    expect(s.fullLog).toBe(false);
  });

  it('the details pane asks the model for the selected instance, and shows its lines only for it', () => {
    let s = keys(view(['alpha', 'beta']), 'd');
    expect(detailsTarget(s)).toBe('alpha');
    s = reduce(s, { type: 'data', data: { ...s.data, details: { name: 'alpha', lines: ['Name: alpha'] } } });
    expect(paneContent(s, 99).lines).toEqual(['Name: alpha']);
    s = keys(s, 'j');
    expect(detailsTarget(s)).toBe('beta');
    expect(paneContent(s, 99).lines).toEqual([]);
    expect(detailsTarget(keys(s, 'c'))).toBeUndefined();
  });

  it('searches the pane from its newest line, n / N step, Esc clears the term; no match says so', () => {
    let s = view(['alpha']);
    const lines = Array.from({ length: 100 }, (_, i) => (i % 30 === 5 ? `needle ${i}` : `line ${i}`));
    s = reduce(s, { type: 'log', lines, trimmed: 0 });
    s = keys(type(keys(s, '/'), 'needle'), { return: true });
    expect(s.term).toBe('needle');
    expect(s.match?.value).toBe(95);
    expect(scrollOf(s).follow).toBe(false);
    s = keys(s, 'N');
    expect(s.match?.value).toBe(65);
    s = keys(s, 'n');
    expect(s.match?.value).toBe(95);
    // Lines dropped from the front of the buffer move the match back by as many.
    s = reduce(s, { type: 'log', lines: lines.slice(10), trimmed: 10 });
    s = keys(s, 'N');
    expect(s.match?.value).toBe(55);
    s = keys(s, { escape: true });
    expect([s.term, s.match]).toEqual(['', null]);
    s = keys(type(keys(s, '/'), 'zzz'), { return: true });
    expect(s.message).toBe('no match for "zzz" in logs');
  });

  it('pages by the pane height; End follows again; help blocks everything but ?, Esc and q', () => {
    let s = view(['alpha']);
    s = reduce(s, { type: 'log', lines: Array.from({ length: 200 }, (_, i) => `l${i}`), trimmed: 0 });
    const h = layout(s).contentHeight;
    s = keys(s, { pageUp: true });
    expect(scrollOf(s)).toEqual({ top: 200 - h - (h - 1), follow: false });
    s = keys(s, { end: true });
    expect(scrollOf(s).follow).toBe(true);
    s = keys(s, '?', 's', 'j', 'o');
    expect([s.help, s.effects, s.sort.key]).toEqual([true, [], 'name']);
    s = keys(s, 'q');
    expect(s.effects).toEqual([{ kind: 'quit' }]);
  });

  it('a message expires only if it is still the one shown', () => {
    let s = { ...view(['alpha']), message: 'alpha started' };
    expect(reduce(s, { type: 'expire', message: 'older' })).toBe(s);
    s = reduce(s, { type: 'expire', message: 'alpha started' });
    expect(s.message).toBeNull();
  });
});
