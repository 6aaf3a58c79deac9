// The bundle's Ink (scripts/ink-patches.mjs): the patches apply to the Ink installed, it draws the
// very frames the stock Ink draws, and its text caches stay bounded where the stock ones keep every
// text ever shown.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyPatch, inkPatchPlugin, inkPatches, standaloneBundle } from '../../scripts/ink-patches.mjs';
import { TEXT_BUDGET } from '../../components/ink-caches.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const INK = path.join(REPO, 'node_modules/ink');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ink-bundle-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function bundle(name: string, patched: boolean, entry = 'tests/fixtures/ink-frames.tsx'): Promise<string> {
  const outdir = path.join(dir, name);
  await build(standaloneBundle({ root: REPO, entry, outdir, patched }));
  return path.join(outdir, 'main.mjs');
}

interface Run {
  frames: string;
  heap_growth_bytes: number;
  caches: Record<string, { entries: number; chars: number }>;
}

function draw(file: string, frames: number): Run {
  const env = { ...process.env, FRAMES: String(frames) };
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.INK_SCREEN_READER; // Ink draws no frame grid for a screen reader
  // Ink's is-in-ci changes how it writes: these runs are not CI whatever runs them.
  delete env.CI;
  delete env.CONTINUOUS_INTEGRATION;
  const r = spawnSync(process.execPath, ['--expose-gc', file], { env, encoding: 'utf8', maxBuffer: 1 << 30 });
  expect(r.status, r.stderr).toBe(0);
  return { frames: r.stdout, ...JSON.parse(r.stderr.trim().split('\n').at(-1) as string) };
}

describe('the bundled Ink', () => {
  it('takes every patch exactly where it was written for (an Ink upgrade fails the build)', () => {
    const version = JSON.parse(fs.readFileSync(path.join(INK, 'package.json'), 'utf8')).version;
    for (const p of inkPatches) {
      const source = fs.readFileSync(path.join(INK, p.file), 'utf8');
      const out = applyPatch(p, source);
      expect(out, `${p.file} (ink ${version})`).not.toBe(source);
      for (const [, to] of p.edits) expect(out).toContain(to);
      // A piece that is not there names the file and the piece.
      expect(() => applyPatch({ ...p, edits: [['no such text', '']] }, source)).toThrow(
        new RegExp(`ink ${p.file}: not found: "no such text"`),
      );
    }
  });

  it('fails a bundle in which an Ink file it patches was not loaded through it', async () => {
    await expect(
      build({
        absWorkingDir: REPO,
        stdin: {
          contents: "import wrap from './node_modules/ink/build/wrap-text.js'; export { wrap };",
          resolveDir: REPO,
        },
        bundle: true,
        write: false,
        platform: 'node',
        format: 'esm',
        logLevel: 'silent',
        plugins: [inkPatchPlugin()],
      }),
    ).rejects.toThrow(
      /ink patches not applied .*build\/measure-text\.js, build\/render-node-to-output\.js, build\/output\.js/,
    );
  });
});

describe('wrapping in the bundled Ink', () => {
  it("wraps each text as asked where the stock Ink's cache keys collide (ink#998)", async () => {
    const run = async (name: string, patched: boolean) => {
      const env = { ...process.env };
      delete env.NODE_EXTRA_CA_CERTS;
      const r = spawnSync(process.execPath, [await bundle(name, patched, 'tests/fixtures/ink-wrap-key.tsx')], {
        env,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { first: string; second: string };
    };
    const patched = await run('wrap-patched', true);
    // Two columns wide: one CJK character per line, and the 1 on its own line at the end.
    expect(patched.second.split('\n')).toEqual([...'一二三四五六七八九十'.split(''), '1']);
    expect(patched.first.split('\n')).toEqual(['一二三四五六', '七八九十']);
    // The stock Ink gives the second text the first one's wrapping (the defect the key fixes).
    const stock = await run('wrap-stock', false);
    expect(stock.second).toBe(stock.first);
  });
});

describe('frames drawn by the bundled Ink', () => {
  const FRAMES = 400;
  let stock: Run;
  let patched: Run;
  beforeAll(async () => {
    stock = draw(await bundle('stock', false), FRAMES);
    patched = draw(await bundle('patched', true), FRAMES);
  });

  it('are the frames the stock Ink draws, byte for byte', () => {
    const frames = patched.frames.split('\u0000');
    expect(frames.length).toBeGreaterThanOrEqual(FRAMES);
    // Every frame differs from the one before (the caches are exercised, not just filled once).
    expect(new Set(frames).size).toBeGreaterThan(FRAMES * 0.9);
    expect(patched.frames === stock.frames).toBe(true);
  });

  it('keep their text caches bounded while the stock ones grow with every new text', () => {
    // The patched caches: the text ones within two generations of their budget, the frame ones
    // within what two frames of a 120x40 screen hold.
    const c = patched.caches;
    expect(c.measureText!.chars).toBeGreaterThan(0);
    for (const name of ['measureText', 'wrapText']) expect(c[name]!.chars).toBeLessThanOrEqual(2 * TEXT_BUDGET);
    expect(c.styledChars!.entries).toBeLessThanOrEqual(2 * 40 * 3);
    expect(stock.caches).toEqual({});
    // Over 380 frames the stock Ink kept MiBs of texts; the patched one much less.
    console.log(
      `heap growth over ${FRAMES - 20} frames: stock ${(stock.heap_growth_bytes / 2 ** 20).toFixed(2)} MiB, ` +
        `patched ${(patched.heap_growth_bytes / 2 ** 20).toFixed(2)} MiB; caches ${JSON.stringify(c)}`,
    );
    expect(stock.heap_growth_bytes).toBeGreaterThan(2 * 2 ** 20);
    expect(patched.heap_growth_bytes).toBeLessThan(stock.heap_growth_bytes / 2);
  });
});
