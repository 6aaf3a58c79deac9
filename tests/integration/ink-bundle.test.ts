// The bundle's Ink (scripts/ink-patches.mjs): the patches apply to the Ink installed, it draws the
// very frames the stock Ink draws, and what it keeps from one frame to the next stays bounded.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyPatch, inkPatchPlugin, inkPatches, standaloneBundle } from '../../scripts/ink-patches.mjs';

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
      const source = fs.readFileSync(path.join(INK, '..', p.pkg ?? 'ink', p.file), 'utf8');
      const out = applyPatch(p, source);
      expect(out, `${p.file} (ink ${version})`).not.toBe(source);
      for (const [, to] of p.edits) expect(out).toContain(to);
      // A piece that is not there names the file and the piece.
      expect(() => applyPatch({ ...p, edits: [['no such text', '']] }, source)).toThrow(
        new RegExp(`${p.pkg ?? 'ink'} ${p.file}: not found: "no such text"`),
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
      /ink patches not applied .*yoga-layout\/dist\/binaries\/yoga-wasm-base64-esm\.js, ink\/build\/render-node-to-output\.js, ink\/build\/squash-text-nodes\.js, ink\/build\/output\.js/,
    );
  });
});

describe('wrapping in the bundled Ink', () => {
  it("wraps each text as asked where an older Ink's cache keys collided (ink#998, fixed in Ink 8)", async () => {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const r = spawnSync(process.execPath, [await bundle('wrap', true, 'tests/fixtures/ink-wrap-key.tsx')], {
      env,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const { first, second } = JSON.parse(r.stdout) as { first: string; second: string };
    // Two columns wide: one CJK character per line, and the 1 on its own line at the end.
    expect(second.split('\n')).toEqual([...'一二三四五六七八九十'.split(''), '1']);
    expect(first.split('\n')).toEqual(['一二三四五六', '七八九十']);
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

  it('keep two frames of lines at most, and grow the heap no more than the stock Ink', () => {
    // The frame caches: within what two frames of a 120x40 screen hold (and a <Static> Output).
    const c = patched.caches;
    expect(c.styledChars!.entries).toBeGreaterThan(0);
    expect(c.styledChars!.entries).toBeLessThanOrEqual(2 * 40 * 3);
    expect(stock.caches).toEqual({});
    console.log(
      `heap growth over ${FRAMES - 20} frames: stock ${(stock.heap_growth_bytes / 2 ** 20).toFixed(2)} MiB, ` +
        `patched ${(patched.heap_growth_bytes / 2 ** 20).toFixed(2)} MiB; caches ${JSON.stringify(c)}`,
    );
    // Ink 8's own text caches (4096 entries each) are in both; ours add two frames of lines.
    expect(patched.heap_growth_bytes).toBeLessThan(stock.heap_growth_bytes + 2 ** 20);
  });
});
