import { ExitCode, UserError, isErrnoException } from './errors.js';

/**
 * A file system refusing an operation (a read-only mount, permissions, a full disk) is the
 * environment's fault, not a bug: reported with the path, the reason in words and what to do, never
 * as an internal error with a stack (cli/main.ts).
 */
const REASONS: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is not a directory',
  EISDIR: 'it is a directory',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EIO: 'input/output error',
  ELOOP: 'too many levels of symbolic links',
};

const VERBS: Record<string, string> = {
  open: 'cannot open',
  mkdir: 'cannot create the directory',
  rename: 'cannot rename',
  unlink: 'cannot remove',
  rmdir: 'cannot remove',
  write: 'cannot write',
  read: 'cannot read',
  chmod: 'cannot change the mode of',
  copyfile: 'cannot copy',
  symlink: 'cannot create the link',
  stat: 'cannot read',
  lstat: 'cannot read',
  scandir: 'cannot list',
  access: 'cannot use',
  mkdtemp: 'cannot create a directory in',
};

/** What to do when the home is on a read-only file system (every command that writes state says it). */
export const READ_ONLY_HOME_HINT =
  'the home is on a read-only file system: remount it writable, or pass --home with a writable directory';

/** The reason for an errno code in words (`read-only file system (EROFS)`), or the code alone. */
export function errnoReason(code: string): string {
  return REASONS[code] ? `${REASONS[code]} (${code})` : code;
}

/** What to do about it, by code. */
function hintFor(code: string): string | undefined {
  if (code === 'EROFS')
    return 'that file system is mounted read-only: remount it writable, or pass --home with a writable directory';
  if (code === 'EACCES' || code === 'EPERM') return 'check the owner and permissions of that path (ls -ld)';
  if (code === 'ENOSPC' || code === 'EDQUOT') return 'free space on that file system';
  if (code === 'EMFILE' || code === 'ENFILE') return 'raise the open-file limit (ulimit -n) or close other programs';
  return undefined;
}

/** The error as the CLI reports it, or null when it is not a file system's refusal of a path. */
export function fileFaultError(e: unknown): UserError | null {
  if (!isErrnoException(e) || typeof e.path !== 'string' || !e.code || !(e.code in REASONS)) return null;
  const verb = VERBS[e.syscall ?? ''] ?? 'cannot use';
  const to = (e as { dest?: unknown }).dest;
  const dest = typeof to === 'string' ? ` to ${to}` : '';
  return new UserError(`${verb} ${e.path}${dest}: ${errnoReason(e.code)}`, ExitCode.general, hintFor(e.code));
}
