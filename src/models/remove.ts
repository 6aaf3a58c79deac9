import fs from 'node:fs';
import path from 'node:path';
import { ExitCode, UserError } from '../domain/errors.js';
import { openRegular } from '../platform/regular-file.js';
import { modelRoots } from './scan.js';

/** Removing a model's files (`models rm`): GGUF files only, and a hub snapshot's blob with its link. */

/** The `models--OWNER--NAME` folder of a hub-cache path, if it is in one. */
function hubRepoOf(file: string, hubRoot: string): string | undefined {
  const rel = path.relative(hubRoot, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  const top = rel.split(path.sep)[0];
  return top?.startsWith('models--') ? path.join(hubRoot, top) : undefined;
}

/** Only a GGUF model file (or a link to one) is ever removed: a name ending in .gguf and the magic bytes. */
export function checkRemovable(file: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new UserError(`${file} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!st.isFile() || !/\.gguf$/i.test(file)) {
    throw new UserError(
      `not removed: ${file} is not a .gguf model file`,
      ExitCode.general,
      'models rm removes GGUF models only',
    );
  }
  const head = Buffer.alloc(4);
  try {
    const fd = openRegular(file);
    try {
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw new UserError(`${file} cannot be read: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (head.toString('latin1') !== 'GGUF') {
    throw new UserError(
      `not removed: ${file} is not a GGUF file (no GGUF magic bytes)`,
      ExitCode.general,
      'models rm removes GGUF models only',
    );
  }
}

/**
 * Removes the files (each one checkRemovable passed). A snapshot link in the Hugging Face cache
 * (found from modelsDir and env, as `models list` finds it) takes its blob along.
 */
export function removeModelFiles(files: readonly string[], modelsDir: string, env: NodeJS.ProcessEnv): void {
  const hubRoot = modelRoots(modelsDir, env).find((r) => r.source === 'hf')?.dir;
  for (const f of files) {
    let real: string;
    try {
      real = fs.realpathSync(f);
    } catch {
      real = path.resolve(f);
    }
    try {
      fs.rmSync(f, { force: true });
      // A hub snapshot entry is a link to its repo's blob: the blob goes too, or the bytes stay.
      // Any other link is removed as a link; what it points to is not ours to delete.
      const repo = hubRoot ? hubRepoOf(path.resolve(f), hubRoot) : undefined;
      if (repo && real !== path.resolve(f) && !path.relative(path.join(repo, 'blobs'), real).startsWith('..')) {
        fs.rmSync(real, { force: true });
      }
    } catch (e) {
      throw new UserError(`could not remove ${f}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
