import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { ExitCode, UserError } from '../domain/errors.js';
import { checkGgufFile, GgufError } from './gguf.js';
import { identify, isLive, readStat } from '../platform/proc.js';
import { abortableSleep } from '../platform/sleep.js';
import { createLockFile, readLockHolder, removeLockIf } from '../platform/lock-file.js';
import type { RemoteFile } from './hf.js';
import { INTERRUPTED } from './hf-http.js';
import type { PullRef } from './hf-ref.js';
import { hashInto, regularFileSize, syncDir, syncFile } from './pull-disk.js';
import { sizeText } from '../domain/units.js';
import { Transfer } from './pull-transfer.js';
import type { PulledFile, PullOptions } from './pull.js';

/**
 * One file of a pull into place: DEST.lock taken, a DEST already there checked (never replaced),
 * DEST.part resumed when it came from the same source, the download (pull-transfer.ts) verified
 * against its sha256, then renamed into place.
 */
export class FileJob {
  readonly name: string;
  readonly dest: string;
  readonly part: string;
  private readonly transfer: Transfer;

  constructor(
    readonly opts: PullOptions,
    ref: PullRef,
    dispatcher: Dispatcher,
    readonly file: RemoteFile,
    index: number,
    count: number,
    readonly given: string | undefined,
  ) {
    this.name = path.posix.basename(file.name);
    if (!this.name || this.name === '.' || this.name === '..') {
      throw new UserError(`cannot pull "${file.name}": not a file name`);
    }
    this.dest = path.join(opts.toDir, this.name);
    this.part = `${this.dest}.part`;
    this.transfer = new Transfer(opts, ref, dispatcher, file, this.name, this.part, index, count);
  }

  /** A file of the same name that is not this download: refused, never replaced (it may be another repo's model). */
  private differs(why: string): UserError {
    return new UserError(
      `${this.dest} already exists and is not the file being pulled (${why}); it was left as it is`,
      ExitCode.download,
      `remove it first ("llama-orch models rm ${this.dest}") if it is a stale copy, or pull into another folder with --to`,
    );
  }

  notice(line: string): void {
    this.opts.onNotice?.(line);
  }

  async run(): Promise<PulledFile> {
    const release = await takeLock(`${this.dest}.lock`, this);
    try {
      return await this.pull();
    } finally {
      release();
    }
  }

  private async pull(): Promise<PulledFile> {
    const t = this.transfer;
    const meta = await t.head();
    const expected = this.given ?? meta.sha256 ?? this.file.sha256;
    const verified = this.given ? 'given' : expected ? 'lfs' : 'none';
    t.total = meta.size ?? this.file.size ?? null;

    const present = await this.present(expected, verified);
    if (present) return present;

    // DEST.part and DEST.part.src are ours: anything else there (a link, a FIFO) is refused, never followed.
    refuseForeign(this.part);
    refuseForeign(`${this.part}.src`);
    let partSize = regularFileSize(this.part);
    // Where the part came from, next to it: a part left by another source (another URL of the same
    // name, or the file since changed on the server) is not resumed into a corrupt model.
    const source = JSON.stringify({ url: this.file.url, size: t.total, sha256: expected ?? null });
    const sourceFile = `${this.part}.src`;
    if (partSize > 0) {
      let recorded: string | undefined;
      try {
        recorded = fs.readFileSync(sourceFile, 'utf8');
      } catch {
        recorded = undefined;
      }
      // No record (a part from an older llama-orch): resumed, and the hash, when known, decides.
      if (recorded !== undefined && recorded !== source) {
        this.notice(`${this.part} was left by a download from another source: starting over`);
        fs.rmSync(this.part, { force: true });
        partSize = 0;
      }
    }
    if (t.total !== null && partSize > t.total) {
      this.notice(`${this.part} is longer than ${this.name} (${sizeText(t.total)}): downloading it again`);
      fs.rmSync(this.part, { force: true });
      partSize = 0;
    }
    t.checkSpace(partSize);
    if (partSize === 0) {
      try {
        writeNoFollow(sourceFile, source);
      } catch {
        // without the record a later run resumes on trust (the hash, when known, still decides)
      }
    }
    if (partSize > 0) {
      this.notice(
        `resuming ${this.name} from ${sizeText(partSize)}${t.total !== null ? ` of ${sizeText(t.total)}` : ''}`,
      );
      await hashInto(t.hash, this.part, partSize, this.opts.signal);
      if (this.opts.signal?.aborted) throw t.interrupted();
    }
    t.resumeAt(partSize);
    try {
      await t.download();
    } catch (e) {
      // Nothing arrived (a refusal, a redirect to file:): no record of a part that does not exist is left behind.
      if (regularFileSize(this.part) === 0) {
        fs.rmSync(this.part, { force: true });
        fs.rmSync(sourceFile, { force: true });
      }
      throw e;
    }

    let sha = t.hash.digest('hex');
    if (expected && sha !== expected && t.resumedFrom > 0) {
      // The part was left by another run: the file may have changed on the server since, or the part
      // was damaged. Once more from nothing before calling the download bad.
      this.notice(`${this.name} resumed from a part that does not match (sha256 ${sha}): downloading it again`);
      fs.rmSync(this.part, { force: true });
      writeNoFollow(sourceFile, source);
      t.restart();
      await t.download();
      sha = t.hash.digest('hex');
    }
    if (expected && sha !== expected) {
      fs.rmSync(this.part, { force: true });
      fs.rmSync(sourceFile, { force: true });
      throw new UserError(
        `${this.name}: sha256 mismatch: expected ${expected}, got ${sha}; the download was deleted`,
        ExitCode.download,
        this.given
          ? 'check the --sha256 value'
          : 'run the command again; if it fails again, the file on the server is damaged',
      );
    }
    if (!expected) {
      // No hash to trust: what arrived must at least be a whole GGUF file (a login page or a cut
      // file would otherwise be put in place as a model).
      if (/\.gguf$/i.test(this.name)) await this.checkArrived();
      this.notice(`${this.name}: no sha256 to verify it against (the server sent none); it is ${sha}`);
    }
    try {
      syncFile(this.part);
      fs.renameSync(this.part, this.dest);
      fs.rmSync(sourceFile, { force: true });
    } catch (e) {
      throw new UserError(`cannot move ${this.part} to ${this.dest}: ${(e as Error).message}`, ExitCode.download);
    }
    syncDir(this.opts.toDir);
    return {
      path: this.dest,
      bytes: t.received,
      sha256: sha,
      verified,
      resumedFrom: t.resumedFrom,
      alreadyPresent: false,
    };
  }

  /** The part is a whole GGUF file, or it is deleted and the pull fails saying what arrived instead. */
  private async checkArrived(): Promise<void> {
    let problem: string | undefined;
    try {
      await checkGgufFile(this.part);
    } catch (e) {
      if (!(e instanceof GgufError)) throw e;
      problem = e.message.replace(`${this.part} `, '');
    }
    if (problem === undefined) return;
    const what = arrivedKind(this.part);
    fs.rmSync(this.part, { force: true });
    fs.rmSync(`${this.part}.src`, { force: true });
    throw new UserError(
      what === 'html'
        ? `${this.name}: an HTML page arrived, not the model (the repository may be gated or need a login); the download was deleted`
        : `${this.name}: what arrived ${problem}; the download was deleted`,
      ExitCode.download,
      what === 'html'
        ? "accept the model's terms on its page and set HF_TOKEN, or check the URL"
        : 'run the command again; if it fails again, the file on the server is not a whole GGUF model',
    );
  }

  /** DEST already there and complete (by its hash when one is known, else by its size). */
  private async present(expected: string | undefined, verified: PulledFile['verified']): Promise<PulledFile | null> {
    const have = fs.statSync(this.dest, { throwIfNoEntry: false });
    if (!have) return null;
    if (!have.isFile()) throw new UserError(`${this.dest} exists and is not a file`, ExitCode.general);
    const done = (sha256: string | null): PulledFile => ({
      path: this.dest,
      bytes: have.size,
      sha256,
      verified: sha256 ? verified : 'none',
      resumedFrom: 0,
      alreadyPresent: true,
    });
    const total = this.transfer.total;
    // Another model may carry the same file name (two repos' Qwen3-8B-Q4_K_M.gguf): never replace it.
    if (total !== null && have.size !== total)
      throw this.differs(`it has ${sizeText(have.size)}, not ${sizeText(total)}`);
    if (expected) {
      this.notice(`${this.name} is already in ${this.opts.toDir}: checking its sha256`);
      const sha = await hashInto(createHash('sha256'), this.dest, have.size, this.opts.signal);
      if (this.opts.signal?.aborted) throw new UserError(`interrupted while checking ${this.dest}`, INTERRUPTED);
      const actual = sha.digest('hex');
      if (actual === expected) return done(expected);
      throw this.differs(`its sha256 is ${actual}, not ${expected}`);
    }
    this.notice(
      total !== null
        ? `${this.name} is already in ${this.opts.toDir} with the expected size (${sizeText(have.size)}); no sha256 is known to check it`
        : `${this.name} is already in ${this.opts.toDir}; the server gives neither its size nor its sha256, so it is kept as it is`,
    );
    return done(null);
  }
}

/**
 * DEST.lock ("pid starttime"; created whole by link(), so no reader sees it empty): one pull of a
 * file at a time. A lock whose process is gone is taken over; a live one is waited for.
 */
async function takeLock(file: string, job: FileJob): Promise<() => void> {
  const me = `${process.pid} ${readStat(process.pid)?.starttime ?? 0}\n`;
  let waiting = false;
  for (;;) {
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    let created: boolean;
    try {
      created = createLockFile(file, me, tmp);
    } catch (e) {
      throw new UserError(`cannot create ${file}: ${(e as Error).message}`, ExitCode.download);
    }
    if (created) return () => removeLockIf(file, me);
    const holder = readLockHolder(file);
    const alive =
      holder !== undefined &&
      (holder.starttime ? identify({ pid: holder.pid, starttime: holder.starttime }) !== 'no' : isLive(holder.pid));
    if (!alive) {
      removeLockIf(file, holder?.text);
      continue;
    }
    if (!waiting) {
      job.notice(`another pull (pid ${holder.pid}) is downloading ${job.name}; waiting for it to finish`);
      waiting = true;
    }
    await abortableSleep(250, job.opts.signal);
    if (job.opts.signal?.aborted) throw new UserError(`interrupted while waiting for pid ${holder.pid}`, INTERRUPTED);
  }
}

/** A download's own file: absent or a regular file; a link or anything else planted there is refused. */
function refuseForeign(file: string): void {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!st || st.isFile()) return;
  throw new UserError(
    `refusing to use ${file}: it is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}, not a download llama-orch started`,
    ExitCode.download,
    `remove ${file} and run the same command again`,
  );
}

function writeNoFollow(file: string, text: string): void {
  const { O_WRONLY, O_CREAT, O_TRUNC, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o644);
  try {
    fs.writeSync(fd, text);
  } finally {
    fs.closeSync(fd);
  }
}

/** What a file that is not a GGUF model begins with: an HTML page (a login or error page), or other bytes. */
function arrivedKind(file: string): 'html' | 'other' {
  let head = '';
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const buf = Buffer.alloc(512);
      head = buf.subarray(0, fs.readSync(fd, buf, 0, 512, 0)).toString('latin1');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return 'other';
  }
  return /^(\xef\xbb\xbf)?\s*<(!doctype\s+html|html|head|body|!--)/i.test(head) ? 'html' : 'other';
}
