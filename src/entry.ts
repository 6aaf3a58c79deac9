// Process entry of the full program (dist/bundle/main.mjs): it joins the two adapters of the
// application, the CLI (src/cli) and the dashboard (components/), which never import each other.
import { main, type OpenDashboard } from './cli/main.js';
import { exitQuietlyOnClosedPipe, flushed } from './cli/output.js';

/** The dashboard, loaded only when it opens (most commands never need Ink or React). */
const openDashboard: OpenDashboard = async (home, opts) => {
  // Ink renders only the final frame when CI/CONTINUOUS_INTEGRATION is set (read once, when it
  // loads). Here stdin and stdout are a terminal: someone is watching, so load it live.
  const saved = { CI: process.env.CI, CONTINUOUS_INTEGRATION: process.env.CONTINUOUS_INTEGRATION };
  delete process.env.CI;
  delete process.env.CONTINUOUS_INTEGRATION;
  const { runDashboard } = await import('../components/dashboard.js');
  for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  return runDashboard(home, opts);
};

// `| head -1`: a closed pipe ends the process quietly, exit 141 (README, "Exit codes").
exitQuietlyOnClosedPipe();

main(process.argv, openDashboard).then(
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
