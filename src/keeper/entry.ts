import { keeperMain, writeKeeperLog } from './main.js';

/** Process entry of the detached keeper: `node keeper.mjs keeper NAME --home DIR`. */
keeperMain(process.argv.slice(3)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    writeKeeperLog(`keeper failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);
