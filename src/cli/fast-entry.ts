// Entry of dist/bundle/fast.cjs (see fast-path.ts): bin/llama-orch.cjs calls run() first.
import { matchSnapshotArgs, runSnapshot } from './fast-path.js';
import { fdOut, type Out } from './output.js';

/** The exit code, or undefined when the full CLI must handle this command line. */
export function run(argv: readonly string[]): Promise<number | undefined> | undefined {
  const args = matchSnapshotArgs(argv.slice(2));
  if (!args) return undefined;
  return runMatched(args);
}

async function runMatched(args: NonNullable<ReturnType<typeof matchSnapshotArgs>>): Promise<number | undefined> {
  let wrote = false;
  const out: Out = {
    log: (s) => {
      wrote = true;
      fdOut.log(s);
    },
    error: (s) => {
      wrote = true;
      fdOut.error(s);
    },
  };
  try {
    return await runSnapshot(args, out);
  } catch (e) {
    // Errors (a missing home, a corrupt database) are reported by the full CLI, with its messages
    // and exit codes, unless something was already printed.
    if (wrote) throw e;
    return undefined;
  }
}
