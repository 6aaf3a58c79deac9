import { describe, expect, it } from 'vitest';
import {
  GenerationCache,
  frameCache,
  inkCacheStats,
  isIgnorable,
  newFrame,
  sanitizedText,
  resetRows,
  rowText,
} from '../../components/ink-caches.js';

describe('GenerationCache', () => {
  it('keeps what the frame before used and drops what it did not', () => {
    const c = new GenerationCache<number>();
    c.set('aaaa', 1);
    c.set('bbbb', 2);
    c.newFrame(); // 'aaaa' and 'bbbb' are now the previous generation
    c.set('cccc', 3);
    expect(c.get('aaaa')).toBe(1); // used again: moved to the current generation
    c.newFrame(); // 'bbbb', not used in the last frame, goes
    expect(c.get('bbbb')).toBeUndefined();
    expect(c.get('aaaa')).toBe(1);
    expect(c.get('cccc')).toBe(3);
    expect(c.size).toBe(2);
    expect(c.chars).toBe(8);
  });

  it('holds two frames of keys, whatever was put in before', () => {
    const c = new GenerationCache<string>();
    for (let f = 0; f < 100; f++) {
      for (let i = 0; i < 50; i++) c.set(`frame ${f} line ${i}`, 'v');
      c.newFrame();
    }
    expect(c.size).toBe(50);
  });

  it('counts a key set twice once', () => {
    const c = new GenerationCache<number>();
    c.set('abcd', 1);
    c.set('abcd', 2);
    c.set('efgh', 3);
    expect(c.get('abcd')).toBe(2);
    expect(c.size).toBe(2);
  });

  it('an empty frame starts no generation (the frame before is kept)', () => {
    const c = new GenerationCache<number>();
    c.set('ab', 1);
    c.newFrame();
    c.newFrame();
    expect(c.get('ab')).toBe(1);
  });
});

describe('Ink caches', () => {
  it('a frame cache keeps what the last frame used, and nothing older', () => {
    const f = frameCache<number>('test-frame');
    f.set('row 1', 1);
    f.set('row 2', 2);
    newFrame(); // the next frame
    const next = frameCache<number>('test-frame');
    expect(next).toBe(f);
    expect(next.get('row 1')).toBe(1); // drawn again
    newFrame(); // and the next: 'row 2' was not drawn in the frame before
    expect(next.get('row 2')).toBeUndefined();
    expect(next.get('row 1')).toBe(1);
    expect(inkCacheStats()['test-frame']).toEqual({ entries: 1, chars: 5 });
  });

  it('a second Output made for the same frame (an app with <Static>) keeps the last frame', () => {
    const f = frameCache<number>('test-static');
    f.set('line', 1);
    newFrame(); // the next frame's main Output
    newFrame(); // and its static Output, made before either draws
    expect(f.get('line')).toBe(1);
  });

  it('a row whose cells are the same objects is not drawn again; any other cell draws it', () => {
    resetRows();
    const a = { value: 'a' };
    const b = { value: 'b' };
    let draws = 0;
    const draw = (s: string) => () => (draws++, s);
    expect(rowText(0, [a, b], draw('ab'))).toBe('ab');
    expect(rowText(0, [a, b], draw('xx'))).toBe('ab');
    expect(draws).toBe(1);
    // Equal values in new objects, one cell more, or another row: drawn.
    expect(rowText(0, [a, { value: 'b' }], draw('ab2'))).toBe('ab2');
    expect(rowText(0, [a, { value: 'b' }, b], draw('abb'))).toBe('abb');
    expect(rowText(1, [a, b], draw('row1'))).toBe('row1');
    expect(draws).toBe(4);
  });

  it('a row with holes (a write past its end) is compared cell by cell, holes included', () => {
    resetRows();
    const a = { value: 'a' };
    const b = { value: 'b' };
    const sparse: unknown[] = [a];
    sparse[2] = b; // index 1 is a hole
    expect(rowText(0, sparse, () => 'a b')).toBe('a b');
    // The same length and the same cells where the last row had cells, but one where it had a hole.
    expect(rowText(0, [a, { value: 'x' }, b], () => 'axb')).toBe('axb');
  });
});

describe('the Ink the tests render through', () => {
  it('is the patched Ink the bundle ships (its frame caches fill as it draws)', async () => {
    const { render } = await import('ink-testing-library');
    const { Text } = await import('ink');
    const React = await import('react');
    const { lastFrame, unmount } = render(React.createElement(Text, null, 'drawn through the patched Ink'));
    expect(lastFrame()).toBe('drawn through the patched Ink');
    unmount();
    // Only the patched Output keeps its styled characters in frameCache('styledChars').
    expect(inkCacheStats().styledChars?.entries).toBeGreaterThan(0);
  });
});

describe('sanitizedText', () => {
  it('sanitizes a text once while frames keep using it, and forgets it two frames after', () => {
    let calls = 0;
    const sanitize = (t: string) => (calls++, t.toUpperCase());
    expect(sanitizedText('\u001b[31mred', sanitize)).toBe('\u001b[31MRED');
    newFrame();
    expect(sanitizedText('\u001b[31mred', sanitize)).toBe('\u001b[31MRED');
    expect(calls).toBe(1);
    newFrame();
    newFrame();
    sanitizedText('other', sanitize);
    newFrame();
    sanitizedText('other', sanitize);
    newFrame();
    expect(sanitizedText('\u001b[31mred', sanitize)).toBe('\u001b[31MRED');
    expect(calls).toBe(3);
  });
});

describe('isIgnorable', () => {
  it("answers as Ink 8's expression does, for ASCII, invisible and visible characters", () => {
    const ink = (v: string) => /^\p{Default_Ignorable_Code_Point}+$/u.test(v);
    const samples = [
      '',
      'a',
      ' ',
      '\u007f',
      '\u00ad',
      '\u200b',
      '\u200d',
      '\ufeff',
      '\u2060\u2061',
      'é',
      '第',
      '🚀',
      '\u{e0001}',
    ];
    for (let c = 0; c < 0x80; c++) samples.push(String.fromCharCode(c));
    for (const v of samples) expect(isIgnorable(v), JSON.stringify(v)).toBe(ink(v));
    expect(isIgnorable('\u200b')).toBe(true);
  });
});
