import { execFileSync } from 'node:child_process';

/** GPUs of a backend this machine has, or undefined when that cannot be told (no tool, no driver). */
export function gpuCount(backend: string): number | undefined {
  if (backend !== 'cuda') return undefined;
  try {
    const out = execFileSync('nvidia-smi', ['-L'], {
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out.split('\n').filter((l) => l.startsWith('GPU ')).length;
  } catch {
    return undefined;
  }
}
