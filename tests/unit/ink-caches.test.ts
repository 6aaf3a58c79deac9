import { describe, expect, it } from 'vitest';
import {
  GenerationCache,
  frameCache,
  inkCacheStats,
  resetRows,
  rowText,
  textCache,
} from '../../components/ink-caches.js';

describe('GenerationCache', () => {
  it('keeps what is used and drops what is not, within two generations of its budget', () => {
    const c = new GenerationCache<number>(10);
    c.set('aaaa', 1);
    c.set('bbbb', 2);
    // Full: a new generation starts; 'aaaa' and 'bbbb' are now the previous one.
    c.set('cccc', 3);
    expect(c.get('aaaa')).toBe(1); // used again: moved to the current generation
    c.set('dddd', 4); // the current one is full again: 'bbbb', never used since, goes
    expect(c.get('bbbb')).toBeUndefined();
    expect(c.get('aaaa')).toBe(1);
    expect(c.get('dddd')).toBe(4);
    expect(c.chars).toBeLessThanOrEqual(2 * 10 + 4);
  });

  it('holds at most two budgets of key whatever is put in', () => {
    const c = new GenerationCache<string>(1000);
    for (let i = 0; i < 10_000; i++) c.set(`text ${i} ${'x'.repeat(i % 50)}`, 'v');
    expect(c.chars).toBeLessThanOrEqual(2 * 1000 + 60);
  });

  it('counts a key set twice once', () => {
    const c = new GenerationCache<number>(8);
    c.set('abcd', 1);
    c.set('abcd', 2);
    c.set('efgh', 3);
    expect(c.get('abcd')).toBe(2);
    expect(c.size).toBe(2);
    // Setting a key it holds never starts a generation.
    c.set('efgh', 4);
    expect(c.get('abcd')).toBe(2);
  });

  it('a key larger than the budget gets a generation of its own', () => {
    const c = new GenerationCache<number>(8);
    c.set('ab', 1);
    c.set('x'.repeat(20), 2);
    expect(c.get('x'.repeat(20))).toBe(2);
    expect(c.get('ab')).toBe(1);
  });
});

describe('Ink caches', () => {
  it('a frame cache keeps what the last frame used, and nothing older', () => {
    const f = frameCache<number>('test-frame');
    f.set('row 1', 1);
    f.set('row 2', 2);
    const next = frameCache<number>('test-frame'); // the next frame
    expect(next).toBe(f);
    expect(next.get('row 1')).toBe(1); // drawn again
    frameCache('test-frame'); // and the next: 'row 2' was not drawn in the frame before
    expect(next.get('row 2')).toBeUndefined();
    expect(next.get('row 1')).toBe(1);
    expect(inkCacheStats()['test-frame']).toEqual({ entries: 1, chars: 5 });
  });

  it('a second Output made for the same frame (an app with <Static>) keeps the last frame', () => {
    const f = frameCache<number>('test-static');
    f.set('line', 1);
    frameCache('test-static'); // the next frame's main Output
    frameCache('test-static'); // and its static Output, made before either draws
    expect(f.get('line')).toBe(1);
  });

  it('text caches are shared by name and bounded', () => {
    expect(textCache('test-text')).toBe(textCache('test-text'));
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
