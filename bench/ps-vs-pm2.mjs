// `ps --json`, `--once` and `--once --json` with 10 running fake servers, against `pm2 jlist`
// managing 10 copies of the same fake server, measured in the same run. These commands are answered
// by the snapshot fast path (src/cli/fast-path.ts); `ps --json` through the full CLI (the ESM bundle,
// as any other command loads) is measured too, for comparison.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  CLI,
  FAKE,
  FULL_CLI,
  REPO,
  addInstance,
  cli,
  fakeInstance,
  fmt,
  makeHome,
  sleep,
  stats,
  timeCmd,
} from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 21);
const N = 10;

function ensurePm2() {
  const dir = path.join(REPO, 'bench', '.pm2-7.0.4');
  const bin = path.join(dir, 'node_modules', '.bin', 'pm2');
  if (!fs.existsSync(bin)) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), '{"private":true}');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', 'pm2@7.0.4'], { cwd: dir, stdio: 'inherit' });
  }
  return bin;
}

export async function run() {
  const root = makeHome('bench-ps-');
  const pm2 = ensurePm2();
  const pm2Home = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-pm2-'));
  const env = { ...process.env, PM2_HOME: pm2Home };
  const samples = { psJson: [], once: [], onceJson: [], psFull: [], pm2: [] };
  let running = 0;
  let pm2Online = 0;
  try {
    for (let i = 0; i < N; i++) addInstance(root, `fake-${i}`, fakeInstance(23000 + i));
    cli(root, ['up', '--all', '--wait', '20']);
    for (let i = 0; i < N; i++) {
      execFileSync(pm2, ['start', FAKE, '--name', `fake-${i}`, '--', '--port', String(23100 + i), '-m', 'x'], {
        env,
        stdio: 'ignore',
      });
    }
    await sleep(2000);
    const online = () =>
      JSON.parse(execFileSync(pm2, ['jlist'], { env, encoding: 'utf8' })).filter((p) => p.pm2_env.status === 'online')
        .length;
    // Both sides must supervise N live servers, or the comparison means nothing.
    if (online() !== N) throw new Error(`only ${online()}/${N} pm2 processes online (ports 23100+ taken?)`);

    for (let r = 0; r < RUNS; r++) {
      // Interleaved so that machine noise hits all of them alike.
      samples.psJson.push(timeCmd('node', [CLI, 'ps', '--json', '--home', root]));
      samples.once.push(timeCmd('node', [CLI, '--once', '--home', root]));
      samples.onceJson.push(timeCmd('node', [CLI, '--once', '--json', '--home', root]));
      samples.psFull.push(timeCmd('node', [FULL_CLI, 'ps', '--json', '--home', root]));
      samples.pm2.push(timeCmd(pm2, ['jlist'], env));
    }
    running = JSON.parse(cli(root, ['ps', '--json'])).filter((x) => x.health === 'ok').length;
    pm2Online = online();
  } finally {
    // Always clean up: a leftover pm2 daemon would hold the ports of the next run.
    execFileSync(pm2, ['kill'], { env, stdio: 'ignore' });
    cli(root, ['down', '--all']);
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(pm2Home, { recursive: true, force: true });
  }

  const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v)]));
  const lines = [
    `| command (${N} instances, ${RUNS} runs) | p50 ms | p95 ms | min ms |`,
    '| --- | --- | --- | --- |',
    `| \`llama-orch ps --json\` | ${fmt(s.psJson.p50)} | ${fmt(s.psJson.p95)} | ${fmt(s.psJson.min)} |`,
    `| \`llama-orch --once\` | ${fmt(s.once.p50)} | ${fmt(s.once.p95)} | ${fmt(s.once.min)} |`,
    `| \`llama-orch --once --json\` | ${fmt(s.onceJson.p50)} | ${fmt(s.onceJson.p95)} | ${fmt(s.onceJson.min)} |`,
    `| \`ps --json\` by the full CLI (no fast path) | ${fmt(s.psFull.p50)} | ${fmt(s.psFull.p95)} | ${fmt(s.psFull.min)} |`,
    `| \`pm2 jlist\` (pm2 7.0.4) | ${fmt(s.pm2.p50)} | ${fmt(s.pm2.p95)} | ${fmt(s.pm2.min)} |`,
    '',
    `ps --json p50 / pm2 jlist p50 = ${fmt(s.psJson.p50 / s.pm2.p50, 2)} (target <= 0.5); healthy llama-orch instances: ${running}/${N}, pm2 online: ${pm2Online}/${N}.`,
  ];
  return { name: 'ps / --once vs pm2 jlist', lines, raw: s };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await run();
  console.log(r.lines.join('\n'));
}
