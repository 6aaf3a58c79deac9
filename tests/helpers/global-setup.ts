import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Makes `npm test` self-contained on a fresh machine: builds the real llama-server (once, cached
 * outside the repo; the CPU build) and the tiny model when they are missing, and checks the CLI is compiled.
 */
export default function setup(): void {
  const repo = path.resolve(import.meta.dirname, '../..');
  if (!fs.existsSync(path.join(repo, 'dist/src/entry.js'))) {
    throw new Error('dist/ is missing: run "npm run build" (npm test does it for you)');
  }
  // The CPU build, on any machine: the tests' expectations (no offload, CPU buffers) assume it, and a
  // rig with a GPU would otherwise get its GPU build (the script's default is --backend auto).
  const out = execFileSync('bash', [path.join(repo, 'scripts/setup-llama-server.sh'), '--backend', 'cpu'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    timeout: 40 * 60 * 1000,
  });
  const bin = out.trim().split('\n').pop() ?? '';
  if (!fs.existsSync(bin)) throw new Error(`setup-llama-server.sh did not produce a binary (got "${bin}")`);
  process.env.LLAMA_ORCH_TEST_SERVER = bin;
}
