import { keeperMain } from './main.js';

/** Process entry of the detached keeper: `node keeper.mjs keeper NAME --home DIR`. */
keeperMain(process.argv.slice(3)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`keeper failed: ${String(e)}\n`);
    process.exit(1);
  },
);
