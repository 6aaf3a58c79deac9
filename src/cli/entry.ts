// Process entry of the full CLI (dist/bundle/main.mjs): main.ts only defines the program, so tests
// and other code can import it without running it.
import { main } from './main.js';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // Let pending stdout flush; keepers are detached, so nothing of ours keeps the loop alive except followers.
    if (code !== 0 || !process.argv.includes('-f')) setImmediate(() => process.exit(code));
  },
  (e: unknown) => {
    process.stderr.write(String(e) + '\n');
    process.exit(1);
  },
);
