import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/** The llama-orch package root, found from wherever this code was loaded (tsc output or the bundle). */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'llama-orch') {
      cachedRoot = dir;
      return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the llama-orch package root');
    dir = up;
  }
}

export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** The keeper's entry: the bundle when built, else the tsc output. */
export function keeperEntry(): string {
  const bundled = path.join(packageRoot(), 'dist', 'bundle', 'keeper.mjs');
  return fs.existsSync(bundled) ? bundled : path.join(packageRoot(), 'dist', 'src', 'keeper', 'entry.js');
}
