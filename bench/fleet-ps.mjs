// `ps --fleet --json` over 3 rigs of 10 instances each (this rig and two more, each with its own home
// and daemon, on 127.0.0.2, 127.0.0.3 and 127.0.0.4) against a local `ps --json` of one rig of 10
// (issue #28's target: at most 1.5x). Fake servers; the two commands alternate, RUNS each.
import fs from 'node:fs';
import path from 'node:path';
import { CLI, addInstance, cli, fakeInstance, fmt, makeHome, stats, timeCmd } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 21);

export async function run() {
  const rigs = [];
  let port = 24800;
  for (const [name, ip] of [
    ['rig-a', '127.0.0.2'],
    ['rig-b', '127.0.0.3'],
    ['rig-c', '127.0.0.4'],
  ]) {
    const root = makeHome(`bench-fleet-${name}-`);
    for (let i = 0; i < 10; i++) addInstance(root, `${name.slice(-1)}${i}`, fakeInstance(port++));
    rigs.push({ name, ip, root, listen: `${ip}:${port++}` });
  }
  const [a, b, c] = rigs;
  for (const r of rigs) {
    const fleet = r === a ? { peers: [b, c].map((p) => ({ name: p.name, url: `http://${p.listen}` })) } : { peers: [] };
    fs.writeFileSync(
      path.join(r.root, 'llama-orch.json'),
      JSON.stringify({ proxy: { listen: r.listen }, rig: { name: r.name }, fleet }),
    );
    cli(r.root, ['up', '--all', '--wait', '30']);
    if (r !== a) cli(r.root, ['daemon', 'start']);
  }
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const fleetArgs = [CLI, 'ps', '--fleet', '--json', '--home', a.root];
  const localArgs = [CLI, 'ps', '--json', '--home', a.root];
  const rows = JSON.parse(
    (await import('node:child_process')).execFileSync('node', fleetArgs, { encoding: 'utf8', env }),
  );
  if (rows.length !== 30 || rows.some((r) => r.rig_state !== 'ok')) throw new Error('the fleet view is not whole');
  // Warm-up (compile cache, config cache) of both.
  for (let i = 0; i < 3; i++) {
    timeCmd('node', fleetArgs, env);
    timeCmd('node', localArgs, env);
  }
  const fleet = [];
  const local = [];
  for (let i = 0; i < RUNS; i++) {
    fleet.push(timeCmd('node', fleetArgs, env));
    local.push(timeCmd('node', localArgs, env));
  }
  for (const r of rigs) {
    if (r !== a) cli(r.root, ['daemon', 'stop']);
    cli(r.root, ['down', '--all']);
    fs.rmSync(r.root, { recursive: true, force: true });
  }
  const f = stats(fleet);
  const l = stats(local);
  return {
    name: 'fleet ps',
    lines: [
      `ps --fleet --json, 3 rigs x 10 instances: p50 ${fmt(f.p50)} ms (p95 ${fmt(f.p95)}); local ps --json, 10 instances: p50 ${fmt(l.p50)} ms (p95 ${fmt(l.p95)}); ratio ${fmt(f.p50 / l.p50, 2)} (target <= 1.5), ${RUNS} runs each, alternated.`,
    ],
    raw: { fleet: f, local: l },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
