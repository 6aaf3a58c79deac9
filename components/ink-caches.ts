// What the bundled Ink keeps from one frame to the next (scripts/ink-patches.mjs puts it in;
// docs/ARCHITECTURE.md, "The dashboard's Ink"). Ink 8 bounds its text caches itself (ink#986, ink#998:
// a 4096-entry LRU with an unambiguous key), but it still tokenizes every line of every frame into
// styled characters, its line caches living for one frame, though from one frame to the next nearly
// every line is the same: these caches and the unchanged rows below save that work.

const IGNORABLE = /^\p{Default_Ignorable_Code_Point}+$/u;

/**
 * Ink 8's test for a standalone invisible character (it takes no cell), for each character of each
 * line it tokenizes: Ink writes the regular expression inside the loop (the bundle made that a
 * `new RegExp` per character, a quarter of an idle frame's JavaScript). The same test with the
 * expression made once, and no test at all for ASCII, which has no such character.
 */
export function isIgnorable(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return IGNORABLE.test(value);
  return false;
}

/** Entries of two generations: a new one starts at each frame; what the last frame did not use goes. */
export class GenerationCache<V> {
  private current = new Map<string, V>();
  private previous = new Map<string, V>();

  get(key: string): V | undefined {
    const hit = this.current.get(key);
    if (hit !== undefined) return hit;
    const old = this.previous.get(key);
    // Still in use: moved to the current generation, so what is used stays and the rest goes.
    if (old !== undefined) {
      this.previous.delete(key);
      this.current.set(key, old);
    }
    return old;
  }

  set(key: string, value: V): void {
    this.current.set(key, value);
  }

  /** A new frame: a new generation, unless nothing was put in the current one since the last. */
  newFrame(): void {
    if (this.current.size === 0) return;
    this.previous = this.current;
    this.current = new Map();
  }

  get size(): number {
    return this.current.size + this.previous.size;
  }

  /** Characters of key held, both generations. */
  get chars(): number {
    let n = 0;
    for (const m of [this.current, this.previous]) for (const k of m.keys()) n += k.length;
    return n;
  }
}

/**
 * Caches kept from one frame to the next, by name: the line caches of Ink's Output, the lines of each
 * text it writes, and each text's sanitized form. Ink makes an Output for each frame (two when the app
 * has a `<Static>`, both before either draws), and each one calls `newFrame`: every cache starts a new
 * generation unless its current one is still empty, so a cache holds what the last frame and this one
 * used, never more.
 */
const frameCaches = new Map<string, GenerationCache<unknown>>();

export function frameCache<V>(name: string): GenerationCache<V> {
  let c = frameCaches.get(name);
  if (!c) frameCaches.set(name, (c = new GenerationCache<unknown>()));
  return c as GenerationCache<V>;
}

/** A new frame (Ink made an Output): each frame cache starts a new generation. */
export function newFrame(): void {
  for (const c of frameCaches.values()) c.newFrame();
}

/**
 * A text as Ink's sanitizeAnsi leaves it. Ink 8 sanitizes every text node's content at every layout
 * and every draw, tokenizing any text with a colour in it, though from one frame to the next nearly
 * every text is the same.
 */
export function sanitizedText(text: string, sanitize: (t: string) => string): string {
  const c = frameCache<string>('sanitized');
  let out = c.get(text);
  if (out === undefined) c.set(text, (out = sanitize(text)));
  return out;
}

/** What the caches hold now, by name (tests and benchmarks). */
export function inkCacheStats(): Record<string, { entries: number; chars: number }> {
  const out: Record<string, { entries: number; chars: number }> = {};
  for (const [name, c] of frameCaches) out[name] = { entries: c.size, chars: c.chars };
  return out;
}

/**
 * An empty cell of Ink's frame grid. Ink allocated one object per cell per frame (5,600 for 140x40)
 * only to read them; cells are never changed once made, which the line caches above rely on too.
 */
export const BLANK_CELL = Object.freeze({ type: 'char', value: ' ', fullWidth: false, styles: Object.freeze([]) });

/** Each grid row's cells and the text drawn from them, from the last frame. */
let lastRows: Array<{ cells: readonly unknown[]; text: string } | undefined> = [];

/**
 * Row `y` of a frame as text: the last frame's text when the row holds the very same cells (the
 * cells of an unchanged line come from the line cache, so they are the same objects), else drawn.
 */
export function rowText(y: number, cells: readonly unknown[], draw: () => string): string {
  const last = lastRows[y];
  if (last && sameCells(last.cells, cells)) return last.text;
  const text = draw();
  lastRows[y] = { cells, text };
  return text;
}

/** By index, not `every`: a row can have holes (a write past its end), which `every` would skip. */
function sameCells(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Forgets the rows (a test that draws unrelated frames). */
export function resetRows(): void {
  lastRows = [];
}
