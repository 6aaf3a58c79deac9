// Process entry of the full CLI (dist/bundle/main.mjs): main.ts only defines the program, so tests
// and other code can import it without running it.
import { main } from './main.js';
import { exitQuietlyOnClosedPipe, flushed } from './output.js';

// `| head -1`: a closed pipe ends the process quietly, exit 141 (README, "Exit codes").
exitQuietlyOnClosedPipe();

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // Exit once stdout and stderr are flushed (a slow pipe holds the rest of a long output); keepers
    // are detached, so nothing of ours keeps the loop alive except followers.
    if (code !== 0 || !process.argv.includes('-f')) void flushed().then(() => process.exit(code));
  },
  (e: unknown) => {
    process.stderr.write(String(e) + '\n');
    void flushed().then(() => process.exit(1));
  },
);
