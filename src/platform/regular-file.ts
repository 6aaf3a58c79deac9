// Reading files that must be regular files (configs, llama-orch.json, models, logs) without ever
// waiting on one that is not: a FIFO opened for reading blocks until a writer comes, a socket cannot
// be opened at all, a directory or a device is no config. Each is an error that names the file and
// what it is. Symlinks are followed (a symlinked config or model is legitimate); what they lead to
// must be a regular file. Text is strict UTF-8: a BOM is accepted (editors write one), invalid
// bytes are an error with their offset, never a silent U+FFFD.
import fs from 'node:fs';

/** What a non-regular file is, as a phrase: "a FIFO (named pipe)", "a directory"... */
export function fileKind(st: fs.Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** The file exists but is not a regular file. `code` lets callers tell it apart like an errno. */
export class NotRegularFileError extends Error {
  readonly code = 'ENOTREG';
  constructor(
    readonly file: string,
    /** fileKind(): "a FIFO (named pipe)", "a directory", "a socket", "a character device"... */
    readonly kind: string,
  ) {
    super(`${file} is ${kind}, not a regular file`);
    this.name = 'NotRegularFileError';
  }
  /** The message without the file name (for callers that name the file themselves). */
  get reason(): string {
    return `it is ${this.kind}, not a regular file`;
  }
}

/** The bytes are not UTF-8: `offset` is that of the first invalid byte. */
export class InvalidUtf8Error extends Error {
  readonly code = 'EILSEQ';
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly line: number,
    readonly column: number,
    readonly byte: number,
  ) {
    super(`${file}: ${invalidUtf8Reason(offset, line, column, byte)}`);
    this.name = 'InvalidUtf8Error';
  }
  get reason(): string {
    return invalidUtf8Reason(this.offset, this.line, this.column, this.byte);
  }
}

function invalidUtf8Reason(offset: number, line: number, column: number, byte: number): string {
  const hex = byte.toString(16).padStart(2, '0');
  return `invalid UTF-8: byte 0x${hex} at byte offset ${offset} (line ${line}, column ${column}); save the file as UTF-8`;
}

const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

export interface RegularOptions {
  /** Refuse a symlink itself (default: follow it and check what it leads to). */
  noFollow?: boolean;
}

/**
 * Throws NotRegularFileError when `file` exists and is not a regular file (errors of stat, ENOENT
 * included, are thrown as they are). For paths handed to code that opens them itself.
 */
export function assertRegular(file: string, opts: RegularOptions = {}): fs.Stats {
  const st = opts.noFollow ? fs.lstatSync(file) : fs.statSync(file);
  if (!st.isFile()) throw new NotRegularFileError(file, fileKind(st));
  return st;
}

/**
 * Opens a regular file for reading, never blocking: the path is checked first (a device or socket
 * is never opened), then opened non-blocking (a FIFO swapped in meanwhile does not wait) and the
 * descriptor checked again. Errors: NotRegularFileError, or the open's own (ENOENT, EACCES...).
 */
export function openRegular(file: string, opts: RegularOptions = {}): number {
  assertRegular(file, opts);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | O_NONBLOCK | (opts.noFollow ? O_NOFOLLOW : 0));
  } catch (e) {
    // Replaced between the check and the open: a socket (ENXIO) or a symlink (ELOOP).
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENXIO' || code === 'ELOOP') assertRegular(file, opts);
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new NotRegularFileError(file, fileKind(st));
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}

/** The whole content of a regular file (see openRegular). */
export function readRegularFile(file: string, opts: RegularOptions = {}): Buffer {
  const fd = openRegular(file, opts);
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The text of a regular file, strict UTF-8, a leading BOM dropped (see decodeUtf8). */
export function readRegularText(file: string, opts: RegularOptions = {}): string {
  return decodeUtf8(readRegularFile(file, opts), file);
}

/**
 * Strict UTF-8: a leading BOM is dropped; invalid bytes throw InvalidUtf8Error naming `file`, the
 * byte offset, line and column.
 */
export function decodeUtf8(buf: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    const offset = firstInvalidUtf8(buf);
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset; i++) {
      if (buf[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    const column = characterCount(buf, lineStart, offset) + 1;
    throw new InvalidUtf8Error(file, offset, line, column, buf[offset] as number);
  }
}

/** Characters (code points) in buf[from, to), counting lead bytes of valid UTF-8. */
function characterCount(buf: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) if (((buf[i] as number) & 0xc0) !== 0x80) n++;
  return n;
}

/**
 * The offset of the first byte that does not start a valid UTF-8 sequence (a sequence cut by the
 * end of the buffer included; -1 when all is valid). Overlong forms, surrogates and code points
 * above U+10FFFF are invalid, as for TextDecoder.
 */
export function firstInvalidUtf8(buf: Uint8Array): number {
  let i = 0;
  while (i < buf.length) {
    const b = buf[i] as number;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= buf.length) return i;
      const c = buf[i + k] as number;
      const [min, max] = k === 1 ? [lo, hi] : [0x80, 0xbf];
      if (c < min || c > max) return i;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * A one-line reason for a read failure, for messages that already name the file's path (`name`, a
 * short name such as "config.json", then starts the reason of a file that is not a regular file).
 */
export function readFailure(e: unknown, name?: string): string {
  if (e instanceof NotRegularFileError && name) return `${name} is ${e.kind}, not a regular file`;
  if (e instanceof NotRegularFileError || e instanceof InvalidUtf8Error) return e.reason;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'file not found';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return `cannot read: ${e instanceof Error ? e.message : String(e)}`;
}
