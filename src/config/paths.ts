import fs from 'node:fs';
import path from 'node:path';
import { errnoCode } from '../domain/errors.js';
import type { Home } from '../domain/home.js';
import type { InstanceConfig } from './schema.js';

export function resolveModelPath(home: Home, config: InstanceConfig): string {
  return path.resolve(home.root, config.model.path);
}

/** Every directory under instances/ that holds (or should hold) a config.json, sorted by name. */
export function discoverInstanceNames(home: Home): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(home.instancesDir, { withFileTypes: true });
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw e;
  }
  // A symbolic link to a directory counts (an operator may keep an instance elsewhere).
  const isDir = (d: fs.Dirent) =>
    d.isDirectory() ||
    (d.isSymbolicLink() &&
      fs.statSync(path.join(home.instancesDir, d.name), { throwIfNoEntry: false })?.isDirectory() === true);
  return entries
    .filter((d) => !d.name.startsWith('.') && isDir(d))
    .map((d) => d.name)
    .sort();
}
