import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errnoReason, fileFaultError } from '../../src/domain/file-faults.js';
import { ExitCode } from '../../src/domain/errors.js';

const thrown = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('did not throw');
};

describe('fileFaultError', () => {
  it('a real refusal of a path: the operation, the path and the reason in words, exit 1, no stack', () => {
    const e = thrown(() => fs.writeFileSync('/proc/self/no-such-dir/x', ''));
    const u = fileFaultError(e);
    expect(u?.message).toBe('cannot open /proc/self/no-such-dir/x: no such file or directory (ENOENT)');
    expect(u?.exitCode).toBe(ExitCode.general);
    const r = fileFaultError(thrown(() => fs.renameSync('/nonexistent-a', '/nonexistent-b')));
    expect(r?.message).toBe('cannot rename /nonexistent-a to /nonexistent-b: no such file or directory (ENOENT)');
  });

  it('a read-only file system and a full disk say what to do', () => {
    const rofs = Object.assign(new Error('EROFS'), { code: 'EROFS', syscall: 'open', path: '/h/x.json' });
    expect(fileFaultError(rofs)?.message).toBe('cannot open /h/x.json: read-only file system (EROFS)');
    expect(fileFaultError(rofs)?.hint).toContain('--home');
    const full = Object.assign(new Error('ENOSPC'), { code: 'ENOSPC', syscall: 'write', path: '/h/y' });
    expect(fileFaultError(full)?.hint).toContain('free space');
  });

  it('anything else stays a bug (null): no path, an unknown code, not an errno error', () => {
    expect(fileFaultError(new Error('boom'))).toBeNull();
    expect(fileFaultError(Object.assign(new Error('x'), { code: 'EROFS' }))).toBeNull();
    expect(fileFaultError(Object.assign(new Error('x'), { code: 'EWHAT', path: '/x' }))).toBeNull();
    expect(errnoReason('EWHAT')).toBe('EWHAT');
  });
});
