// A/B of `ps --json` between two builds of llama-orch (for a change's before/after in
// bench/BENCHMARKS.md): each build gets its own home with 10 running fake servers, then the two
// builds' `ps --json` run alternately, one call each in turn, so both see the same machine
// conditions. Usage: node bench/ab-ps.mjs OTHER_CHECKOUT [RUNS]
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { FAKE, addInstance, fakeInstance, fmt, makeHome, stats, timeCmd } from './lib.mjs';

const other = path.resolve(process.argv[2] ?? '');
const runs = Number(process.argv[3] ?? 60);
const builds = {
  a: path.join(other, 'bin/llama-orch.cjs'),
  b: path.resolve(import.meta.dirname, '../bin/llama-orch.cjs'),
};
if (!fs.existsSync(builds.a)) throw new Error(`no llama-orch checkout at ${other}`);
const homes = {};
let port = 24500;
for (const k of ['a', 'b']) {
  homes[k] = makeHome(`bench-ab-${k}-`);
  for (let i = 0; i < 10; i++) addInstance(homes[k], `i${i}`, fakeInstance(port++));
  execFileSync('node', [builds[k], 'up', '--all', '--wait', '30', '--home', homes[k]], { stdio: 'ignore' });
}
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const times = { a: [], b: [] };
for (let i = 0; i < 3; i++)
  for (const k of ['a', 'b']) timeCmd('node', [builds[k], 'ps', '--json', '--home', homes[k]], env);
for (let i = 0; i < runs; i++) {
  for (const k of i % 2 ? ['b', 'a'] : ['a', 'b']) {
    times[k].push(timeCmd('node', [builds[k], 'ps', '--json', '--home', homes[k]], env));
  }
}
for (const k of ['a', 'b']) {
  execFileSync('node', [builds[k], 'down', '--all', '--home', homes[k]], { stdio: 'ignore' });
  fs.rmSync(homes[k], { recursive: true, force: true });
}
const sa = stats(times.a);
const sb = stats(times.b);
console.log(`ps --json, 10 running instances, ${runs} alternating runs each (FAKE: ${path.basename(FAKE)})`);
console.log(`A ${other}: p50 ${fmt(sa.p50)} ms, p95 ${fmt(sa.p95)}, min ${fmt(sa.min)}`);
console.log(`B this checkout: p50 ${fmt(sb.p50)} ms, p95 ${fmt(sb.p95)}, min ${fmt(sb.min)}`);
console.log(`B / A (p50): ${fmt(sb.p50 / sa.p50, 3)}`);
