import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import type { Dispatcher } from 'undici';
import { errnoCode, ExitCode, UserError } from '../domain/errors.js';
import { MiB, sizeText } from '../domain/units.js';
import { abortableSleep } from '../platform/sleep.js';
import type { RemoteFile } from './hf.js';
import {
  contentLength,
  header,
  hfEndpoint,
  httpError,
  hubRequest,
  INTERRUPTED,
  networkReason,
  parseContentRange,
  type ErrorContext,
} from './hf-http.js';
import type { PullRef } from './hf-ref.js';
import { hashInto, regularFileSize, statfsFree, writeBody } from './pull-disk.js';
import { Meter } from './pull-progress.js';
import type { PullOptions } from './pull.js';

/**
 * The bytes of one file into DEST.part (pull-file.ts decides what to do with the part): a HEAD for
 * its size and LFS hash, then GETs from the current offset (Range), hashed as they stream, retried
 * when the connection is cut or the server fails, with progress as they come.
 */

export class Transfer {
  hash: Hash = createHash('sha256');
  received = 0;
  resumedFrom = 0;
  total: number | null = null;
  /** The most of the file this pull ever had: only bytes beyond it are progress (a restart from 0 is not). */
  private highWater = 0;
  /** Downloads started over from byte 0 because the server would not resume (416, another range, a 200). */
  private restarts = 0;
  private spaceChecked = false;
  private readonly meter: Meter;
  private readonly endpoint: string;

  constructor(
    readonly opts: PullOptions,
    private readonly ref: PullRef,
    private readonly dispatcher: Dispatcher,
    private readonly file: RemoteFile,
    readonly name: string,
    readonly part: string,
    index: number,
    count: number,
  ) {
    this.endpoint = hfEndpoint(opts.env);
    this.meter = new Meter(opts.progressIntervalMs ?? 100, (p) =>
      opts.onProgress?.({ ...p, file: this.name, index, count, total: this.total, resumedFrom: this.resumedFrom }),
    );
  }

  private notice(line: string): void {
    this.opts.onNotice?.(line);
  }

  /** What the server says of the file before it is fetched (retried like a download). */
  head(): Promise<{ sha256?: string; size?: number }> {
    return this.retrying(() => this.probe());
  }

  /** The part's first `bytes` are already hashed into `hash`: the download goes on from there. */
  resumeAt(bytes: number): void {
    this.received = this.resumedFrom = this.highWater = bytes;
    this.meter.start(this.received);
  }

  /** The rest of the file into the part, retried until it is complete; a last progress report. */
  async download(): Promise<void> {
    await this.retrying(() => this.attempt());
    this.meter.report(this.received, this.total, true);
  }

  private errorContext(tokenSent: boolean): ErrorContext {
    if (this.ref.kind === 'url') return { url: this.file.url, endpoint: this.endpoint, tokenSent };
    return {
      repo: this.ref.repo,
      revision: this.ref.revision,
      file: this.file.name,
      endpoint: this.endpoint,
      tokenSent,
    };
  }

  /** HEAD, without following a redirect to another origin: the hub's 302 carries the LFS hash and size. */
  private async probe(): Promise<{ sha256?: string; size?: number } | Retry> {
    let r;
    try {
      r = await hubRequest({
        url: this.file.url,
        method: 'HEAD',
        env: this.opts.env,
        dispatcher: this.dispatcher,
        signal: this.opts.signal,
        sameOriginOnly: true,
      });
    } catch (e) {
      return this.failed(e);
    }
    await r.res.body.dump();
    const status = r.res.statusCode;
    if (status >= 500 || status === 408 || status === 429) return new Retry(`the server answered ${status}`, false);
    if (status >= 400 && status !== 405 && status !== 501) {
      throw httpError(status, header(r.res.headers, 'x-error-code'), this.errorContext(r.tokenSent));
    }
    const meta: { sha256?: string; size?: number } = {};
    if (r.linkedSha256) meta.sha256 = r.linkedSha256;
    const length = status === 200 ? contentLength(r.res.headers) : undefined;
    const total = r.linkedSize ?? length;
    if (total !== undefined) meta.size = total;
    return meta;
  }

  /** One GET from the current offset: true when the file is complete. */
  private async attempt(): Promise<true | Retry> {
    const offset = this.received;
    let r;
    try {
      r = await hubRequest({
        url: this.file.url,
        method: 'GET',
        headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
        env: this.opts.env,
        dispatcher: this.dispatcher,
        signal: this.opts.signal,
        highWaterMark: 4 * MiB,
      });
    } catch (e) {
      return this.failed(e);
    }
    const { res } = r;
    const status = res.statusCode;
    if (status === 416 && offset > 0) {
      await res.body.dump();
      const range = parseContentRange(header(res.headers, 'content-range'));
      if (range?.total === offset) {
        this.total = offset;
        return true;
      }
      this.notice(`the server refused to resume ${this.name} at ${sizeText(offset)}: downloading it from the start`);
      this.restart();
      return new Retry('', true, 0);
    }
    if (status !== 200 && status !== 206) {
      await res.body.dump().catch(() => undefined);
      if (status >= 500 || status === 408 || status === 429) return new Retry(`the server answered ${status}`, false);
      throw httpError(status, header(res.headers, 'x-error-code'), this.errorContext(r.tokenSent));
    }
    if (status === 206) {
      const range = parseContentRange(header(res.headers, 'content-range'));
      if (range?.start !== offset) {
        res.body.destroy();
        this.notice(`the server sent another range of ${this.name} than asked: downloading it from the start`);
        this.restart();
        return new Retry('', true, 0);
      }
      if (range.total !== null) this.total = range.total;
    } else {
      if (offset > 0) {
        this.notice(
          `the server ignored the request to resume ${this.name} (it answered 200): downloading it from the start`,
        );
        this.restart();
      }
      const length = contentLength(res.headers);
      if (length !== undefined) this.total = length;
    }
    if (!this.spaceChecked) this.checkSpace(this.received);
    return this.stream(res.body, offset);
  }

  /** The body into the part (pull-disk.ts's writeBody), hashed and counted on the way. */
  private async stream(body: Dispatcher.ResponseData['body'], offset: number): Promise<true | Retry> {
    let fd: number;
    try {
      fd = openPart(this.part, this.received > 0);
    } catch (e) {
      body.destroy();
      throw e instanceof UserError ? e : this.diskError(e);
    }
    const { cut, writeError } = await writeBody(body, fd, this.part, (chunk) => {
      this.hash.update(chunk);
      this.received += chunk.length;
      this.meter.report(this.received, this.total, false);
    });
    fs.closeSync(fd);
    if (writeError) throw this.diskError(writeError);
    if (this.opts.signal?.aborted) throw this.interrupted();
    await this.matchDisk();
    const progressed = this.received > Math.max(offset, this.highWater);
    this.highWater = Math.max(this.highWater, this.received);
    if (cut) return new Retry(networkReason(cut), progressed);
    if (this.total !== null && this.received < this.total) {
      return new Retry(`the connection closed after ${sizeText(this.received)} of ${sizeText(this.total)}`, progressed);
    }
    if (this.total !== null && this.received > this.total) {
      fs.rmSync(this.part, { force: true });
      throw new UserError(
        `${this.name}: the server sent ${this.received} bytes, more than the ${this.total} it announced; the download was deleted`,
        ExitCode.download,
      );
    }
    this.total ??= this.received;
    return true;
  }

  /** What is on disk is what was hashed; if not (it should not happen), the disk is the truth. */
  private async matchDisk(): Promise<void> {
    const st = fs.statSync(this.part, { throwIfNoEntry: false });
    if (!st?.isFile() || st.size === this.received) return;
    this.hash = await hashInto(createHash('sha256'), this.part, st.size);
    this.received = st.size;
  }

  /** From byte 0 again: a new hash, nothing received (the most it ever had stays the mark of progress). */
  restart(): void {
    this.hash = createHash('sha256');
    this.received = this.resumedFrom = 0;
    this.meter.start(0);
  }

  private failed(e: unknown): Retry {
    if (e instanceof UserError) throw e;
    if (this.opts.signal?.aborted) throw this.interrupted();
    return new Retry(networkReason(e), false);
  }

  /**
   * Runs fn until it succeeds, pausing (doubling) between failures; new bytes reset the count. Bounded
   * whatever the server does (#26: one that cut every answer after 1 MiB and refused to resume was
   * retried forever): at most MAX_RESTARTS starts from byte 0, and no more than `stallMs` without new bytes.
   */
  private async retrying<T>(fn: () => Promise<T | Retry>): Promise<T> {
    const retries = this.opts.retries ?? 5;
    const delay = this.opts.retryDelayMs ?? 500;
    const stallMs = this.opts.stallMs ?? 10 * 60_000;
    let failures = 0;
    let lastProgress = Date.now();
    for (;;) {
      const r = await fn();
      if (!(r instanceof Retry)) return r;
      if (r.progressed) lastProgress = Date.now();
      if (r.pauseMs === 0) {
        if (++this.restarts <= MAX_RESTARTS) continue;
        throw this.givenUp(`the server would not resume it, and it was started over ${MAX_RESTARTS} times`);
      }
      failures = r.progressed ? 1 : failures + 1;
      if (Date.now() - lastProgress > stallMs) {
        throw this.givenUp(
          `no new bytes for ${Math.round((Date.now() - lastProgress) / 1000)} s (the most it had: ${sizeText(this.highWater)}): ${r.reason}`,
        );
      }
      if (failures > retries) {
        const kept = this.received > 0 ? `; ${this.part} (${sizeText(this.received)}) is kept` : '';
        throw new UserError(
          `${this.name}: the download failed after ${retries + 1} tries: ${r.reason}${kept}`,
          ExitCode.download,
          this.received > 0 ? 'run the same command again to resume' : undefined,
        );
      }
      const pause = Math.min(delay * 2 ** (failures - 1), 30_000);
      this.notice(`${this.name}: ${r.reason}; retrying in ${(pause / 1000).toFixed(1)} s (${failures} of ${retries})`);
      await abortableSleep(pause, this.opts.signal);
      if (this.opts.signal?.aborted) throw this.interrupted();
    }
  }

  private givenUp(reason: string): UserError {
    const kept = this.received > 0 ? `; ${this.part} (${sizeText(this.received)}) is kept` : '';
    return new UserError(
      `${this.name}: the download was given up: ${reason}${kept}`,
      ExitCode.download,
      'try again later, or from another mirror (HF_ENDPOINT)',
    );
  }

  /** The rest of the file (all of it but the part's partSize bytes) must fit in the target's free space. */
  checkSpace(partSize: number): void {
    if (this.total === null) return;
    this.spaceChecked = true;
    const need = this.total - partSize;
    const free = (this.opts.freeBytes ?? statfsFree)(this.opts.toDir);
    if (need > free) {
      throw new UserError(
        `not enough disk space in ${this.opts.toDir} for ${this.name}: ${sizeText(need)} needed, ${sizeText(free)} free`,
        ExitCode.download,
        'free some space, or pull into another directory with --to DIR',
      );
    }
  }

  private diskError(e: unknown): UserError {
    const code = errnoCode(e);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new UserError(
        `the disk is full: ${this.opts.toDir} (writing ${this.name}); ${this.part} is kept`,
        ExitCode.download,
        'free some space and run the same command again: it resumes',
      );
    }
    return new UserError(`cannot write ${this.part}: ${(e as Error).message}`, ExitCode.download);
  }

  interrupted(): UserError {
    const have = regularFileSize(this.part);
    if (have === 0) return new UserError(`interrupted before any of ${this.name} was downloaded`, INTERRUPTED);
    const of = this.total !== null ? ` of ${sizeText(this.total)}` : '';
    return new UserError(
      `interrupted: ${this.part} (${sizeText(have)}${of}) is kept; run the same command again to resume`,
      INTERRUPTED,
    );
  }
}

/** Starts from byte 0 (a server that will not resume) allowed in one pull of a file. */
const MAX_RESTARTS = 3;

/**
 * DEST.part for writing, never through a link (#26: a .part planted as a symlink made the pull write
 * into the file it pointed to): O_NOFOLLOW, and anything there that is not a regular file is refused.
 */
export function openPart(part: string, append: boolean): number {
  const { O_WRONLY, O_CREAT, O_APPEND, O_TRUNC, O_NOFOLLOW } = fs.constants;
  try {
    const fd = fs.openSync(part, O_WRONLY | O_CREAT | O_NOFOLLOW | (append ? O_APPEND : O_TRUNC), 0o644);
    if (!fs.fstatSync(fd).isFile()) {
      fs.closeSync(fd);
      throw new Error('not a regular file');
    }
    return fd;
  } catch (e) {
    if (errnoCode(e) === 'ELOOP' || (e as Error).message === 'not a regular file')
      throw new UserError(
        `refusing to write ${part}: it is ${errnoCode(e) === 'ELOOP' ? 'a symbolic link' : 'not a regular file'}, not a download llama-orch started`,
        ExitCode.download,
        `remove ${part} and run the same command again`,
      );
    throw e;
  }
}

/** A failure worth another try (pauseMs 0: go again at once, it is not a failure). */
class Retry {
  constructor(
    readonly reason: string,
    readonly progressed: boolean,
    readonly pauseMs?: number,
  ) {}
}
