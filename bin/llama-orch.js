#!/usr/bin/env node
// The bundle starts fastest; the plain tsc output works too (e.g. right after `tsc` alone).
import fs from 'node:fs';

const bundle = new URL('../dist/bundle/main.mjs', import.meta.url);
await import(fs.existsSync(bundle) ? bundle.href : new URL('../dist/src/cli/main.js', import.meta.url).href);
