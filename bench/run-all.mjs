// Runs every benchmark and prints a BENCHMARKS.md section (machine, date, command, figures).
import { machine } from './lib.mjs';

const only = process.argv.slice(2);
const suites = [
  ['ps-vs-pm2', './ps-vs-pm2.mjs'],
  ['crash-latency', './crash-latency.mjs'],
  ['log-throughput', './log-throughput.mjs'],
  ['keeper-rss', './keeper-rss.mjs'],
  ['dashboard-idle', './dashboard-idle.mjs'],
  ['daemon-stop', './daemon-stop.mjs'],
  ['adopt', './adopt.mjs'],
  ['faults', './faults.mjs'],
  ['metrics', './metrics.mjs'],
  ['proxy', './proxy.mjs'],
  ['proxy-paced', './proxy-paced.mjs'],
  // On their own: the 15-minute soak (node bench/soak.mjs), the keeper churn (bench/keeper-churn.mjs),
  // the dashboard's frame A/B (bench/dashboard-frame.mjs) and its memory (bench/dashboard-memory.mjs).
];
console.log(`## Run of ${new Date().toISOString()}\n\nMachine: ${machine()}\n`);
for (const [name, file] of suites) {
  if (only.length && !only.includes(name)) continue;
  const { run } = await import(file);
  const r = await run();
  console.log(`### ${r.name}\n\nCommand: \`node bench/${file.slice(2)}\`\n\n${r.lines.join('\n')}\n`);
}
