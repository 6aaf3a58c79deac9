import fs from 'node:fs';
import path from 'node:path';
import { errnoCode } from '../domain/errors.js';

/** Why `dir` (or its nearest existing ancestor) cannot be written to, or undefined when it can. */
export function writeRefusal(dir: string): string | undefined {
  let d = path.resolve(dir);
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  try {
    fs.accessSync(d, fs.constants.W_OK);
    return undefined;
  } catch (e) {
    return errnoCode(e);
  }
}
