import fs from 'node:fs';
import path from 'node:path';
import type { DownloadProgress } from '../domain/download.js';
import { ExitCode, UserError, errnoCode } from '../domain/errors.js';
import { errnoReason } from '../domain/file-faults.js';
import { writeRefusal } from '../platform/writable.js';
import { resolvePullRef, type RemoteFile } from './hf.js';
import { INTERRUPTED, makeDispatcher } from './hf-http.js';
import { parsePullRef } from './hf-ref.js';
import { statfsFree } from './pull-disk.js';
import { FileJob } from './pull-file.js';
import { sizeText } from '../domain/units.js';

/**
 * `models pull`'s download (docs/DESIGN.md section 13, "Hugging Face downloads"): each file goes
 * into DEST.part (resumed with a Range request, retried when the connection is cut), is hashed as
 * it streams and verified against the LFS sha256 the hub reports (or the one given), then renamed
 * into place. DEST.lock serialises two pulls of one file.
 *
 * Here: the options, the result, and the files of a reference (hf.ts) pulled one after the other,
 * each by pull-file.ts (which fetches through pull-transfer.ts and writes through pull-disk.ts).
 */

export type PullProgress = DownloadProgress;

export interface PulledFile {
  path: string;
  bytes: number;
  /** null only for a file found present with no hash to check it against (it was not read). */
  sha256: string | null;
  verified: 'lfs' | 'given' | 'none';
  resumedFrom: number;
  alreadyPresent: boolean;
}

export interface PullOptions {
  ref: string;
  toDir: string;
  /** Expected sha256 (64 hex digits); wins over the hub's. Only for a reference that is one file. */
  sha256?: string;
  env: NodeJS.ProcessEnv;
  /** Ctrl-C: the part is kept and a UserError with exit code 130 says how to resume. */
  signal?: AbortSignal;
  /** At most one per `progressIntervalMs` per file, and a last one when a file is complete. */
  onProgress?: (p: PullProgress) => void;
  onNotice?: (line: string) => void;
  /** Free bytes where dir lives; default statfs. */
  freeBytes?: (dir: string) => number;
  /** Tries after a failure (a cut connection, a 5xx) before giving up; default 5. */
  retries?: number;
  /** The first pause before a retry, doubling each time; default 500 ms. */
  retryDelayMs?: number;
  /** How long a file may go without new bytes (beyond the most it ever had) before the pull gives up; default 10 min. */
  stallMs?: number;
  progressIntervalMs?: number;
}

export async function pullModel(opts: PullOptions): Promise<{ files: PulledFile[]; path: string }> {
  const given = opts.sha256 === undefined ? undefined : opts.sha256.trim().toLowerCase();
  if (given !== undefined && !/^[0-9a-f]{64}$/.test(given)) {
    throw new UserError(`--sha256 expects 64 hex digits, got "${opts.sha256}"`);
  }
  const ref = parsePullRef(opts.ref);
  const dispatcher = makeDispatcher(opts.env);
  try {
    let remote: RemoteFile[];
    try {
      remote = await resolvePullRef(ref, { env: opts.env, signal: opts.signal, dispatcher });
    } catch (e) {
      if (opts.signal?.aborted) throw new UserError('interrupted before the download started', INTERRUPTED);
      throw e;
    }
    if (given !== undefined && remote.length > 1) {
      throw new UserError(
        `--sha256 names one file, and ${opts.ref} is a split model of ${remote.length} files`,
        ExitCode.general,
        'leave --sha256 out (each shard is verified against the hub), or pull one shard by its file name',
      );
    }
    try {
      fs.mkdirSync(opts.toDir, { recursive: true });
    } catch (e) {
      // A recursive mkdir on a read-only mount says ENOENT: the nearest existing directory says why.
      const code = writeRefusal(opts.toDir) ?? errnoCode(e);
      throw new UserError(
        `cannot create ${opts.toDir}: ${code ? errnoReason(code) : (e as Error).message}`,
        ExitCode.download,
        code === 'EROFS' ? 'that file system is mounted read-only: pass --to with a writable directory' : undefined,
      );
    }
    // A split model: all its shards must fit before the first starts (each is checked again as it starts).
    if (remote.length > 1 && remote.every((f) => f.size !== undefined)) {
      const have = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
      const need = remote.reduce((a, f) => {
        const dest = path.join(opts.toDir, path.posix.basename(f.name));
        return (
          a + Math.max(0, (f.size ?? 0) - Math.max(have(dest) === f.size ? (f.size ?? 0) : 0, have(`${dest}.part`)))
        );
      }, 0);
      const free = (opts.freeBytes ?? statfsFree)(opts.toDir);
      if (need > free) {
        throw new UserError(
          `not enough disk space in ${opts.toDir} for the ${remote.length} files of ${opts.ref}: ${sizeText(need)} needed, ${sizeText(free)} free`,
          ExitCode.download,
          'free some space, or pull into another directory with --to DIR',
        );
      }
    }
    const files: PulledFile[] = [];
    for (const [i, file] of remote.entries()) {
      const job = new FileJob(opts, ref, dispatcher, file, i + 1, remote.length, given);
      files.push(await job.run());
    }
    return { files, path: files[0]?.path ?? '' };
  } finally {
    await dispatcher.destroy().catch(() => undefined);
  }
}
