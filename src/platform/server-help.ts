import { createRequire } from 'node:module';

export interface HelpOutput {
  /** stdout and stderr together (llama-server prints its usage on stdout, a log line on stderr). */
  text: string;
  /** Why it gave no usable answer: it did not run to the end, or exited with an error. */
  failure?: string;
  /**
   * The failure says nothing lasting about the binary (it timed out on a busy machine, could not be
   * spawned, was killed by a signal): not cached, `--help` is run again next time.
   */
  transient?: boolean;
}

/** A binary that needs longer than this to print its usage is asked again next time. */
export const HELP_TIMEOUT_MS = 5000;

/**
 * Runs `BINARY --help` and collects what it prints. A binary that does not know --help may start
 * serving instead: it is killed after `timeoutMs`.
 */
export function runServerHelp(binary: string, env: NodeJS.ProcessEnv, timeoutMs = HELP_TIMEOUT_MS): HelpOutput {
  // Required here, not at the top: the modules that import this one are loaded by `ps` too.
  const cp = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
  const r = cp.spawnSync(binary, ['--help'], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: 4 * 1024 * 1024,
  });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    const why = code === 'ETIMEDOUT' ? `did not exit within ${timeoutMs / 1000} s` : r.error.message;
    return { text, failure: why, transient: true };
  }
  if (r.signal) return { text, failure: `was killed by ${r.signal}`, transient: true };
  if (r.status !== 0) return { text, failure: `exited with code ${r.status}` };
  return { text };
}
