import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/home.js';

// docs/ARCHITECTURE.md, "Layers": no file of src/ or components/ is over 400 lines; one that grows
// past it is split along its real seam.

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.(ts|tsx)$/.test(e.name) ? [p] : [];
  });
}

describe('the layout', () => {
  it('keeps every file of src/ and components/ under 400 lines', () => {
    const long = [...sources(path.join(REPO, 'src')), ...sources(path.join(REPO, 'components'))]
      .map((f) => ({ file: path.relative(REPO, f), lines: fs.readFileSync(f, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > 400);
    expect(long).toEqual([]);
  });

  it('has a line in docs/ARCHITECTURE.md for every folder of src/', () => {
    const doc = fs.readFileSync(path.join(REPO, 'docs/ARCHITECTURE.md'), 'utf8');
    const folders = fs
      .readdirSync(path.join(REPO, 'src'), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    expect(folders.filter((f) => !doc.includes(`| \`src/${f}\``))).toEqual([]);
  });
});
