// Keeper log pipeline: a generator writes ~216 MB of numbered lines as fast as it can through the
// keeper into rotating files (10 MB each); reports MB/s and checks every line arrived once, in order.
// Reference from the same run: the same generator piped into `cat > file`.
import fs from 'node:fs';
import path from 'node:path';
import { execSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { addInstance, cli, fmt, makeHome, rssMiB, sleep, stats } from './lib.mjs';

const LINES = Number(process.env.GEN_LINES ?? 2_000_000);
const RUNS = Number(process.env.RUNS ?? 3);
const GEN = path.join(import.meta.dirname, 'line-gen.py');
const LINE_BYTES = 'line 0000000001 '.length + 90 + 1;
const TOTAL = LINES * LINE_BYTES;

function verify(dir) {
  const files = fs.readdirSync(dir).filter((f) => /^stdout\.log(\.\d+)?$/.test(f));
  files.sort((a, b) =>
    b === 'stdout.log' ? -1 : a === 'stdout.log' ? 1 : Number(b.split('.').pop()) - Number(a.split('.').pop()),
  );
  let expect = 1;
  let maxSize = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(dir, f), 'latin1');
    maxSize = Math.max(maxSize, text.length);
    let pos = 0;
    for (;;) {
      const nl = text.indexOf('\n', pos);
      if (nl < 0) break;
      if (text.startsWith('line ', pos)) {
        const n = Number(text.slice(pos + 5, pos + 15));
        if (n !== expect) throw new Error(`line ${expect} expected, got ${n} in ${f}`);
        expect++;
      }
      pos = nl + 1;
    }
  }
  return { lines: expect - 1, files: files.length, maxSize };
}

async function keeperRun() {
  const root = makeHome('bench-logs-');
  addInstance(root, 'gen', {
    model: { path: 'models/fake.gguf' },
    server: { binary: GEN, port: 23400, env: { GEN_LINES: String(LINES) } },
    healthcheck: { type: 'tcp', interval: 60, start_period: 600 },
    logs: { max_bytes: 10 * 1024 * 1024, backups: 40 },
  });
  cli(root, ['up', 'gen']);
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  const spawnTs = () => db.prepare(`SELECT ts FROM events WHERE event_type = 'spawn'`).get()?.ts;
  while (!spawnTs()) await sleep(5);
  const t0 = spawnTs();
  const dir = path.join(root, 'logs', 'gen');
  const size = () =>
    fs
      .readdirSync(dir)
      .filter((f) => f.startsWith('stdout.log'))
      // A rotation may rename a file between the listing and the stat.
      .reduce((a, f) => a + (fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.size ?? 0), 0);
  let keeperPeak = 0;
  const keeperPid = db.prepare(`SELECT keeper_pid FROM runtime`).get().keeper_pid;
  while (size() < TOTAL) {
    keeperPeak = Math.max(keeperPeak, rssMiB(keeperPid));
    await sleep(2);
  }
  const ms = Date.now() - t0;
  const v = verify(dir);
  db.close();
  cli(root, ['down', 'gen']);
  fs.rmSync(root, { recursive: true, force: true });
  return { ms, ...v, keeperPeak };
}

function catRun() {
  const dir = fs.mkdtempSync('/tmp/bench-cat-');
  const t0 = Date.now();
  execSync(`GEN_EXIT=1 GEN_LINES=${LINES} python3 ${GEN} | cat > ${dir}/out.log`);
  const ms = Date.now() - t0;
  fs.rmSync(dir, { recursive: true, force: true });
  return ms;
}

export async function run() {
  const keeper = [];
  const cat = [];
  let check;
  for (let r = 0; r < RUNS; r++) {
    const k = await keeperRun();
    if (k.lines !== LINES) throw new Error(`lost lines: ${k.lines}/${LINES}`);
    keeper.push(k.ms);
    check = k;
    cat.push(catRun());
  }
  const mb = TOTAL / 1e6;
  const ks = stats(keeper);
  const cs = stats(cat);
  return {
    name: 'keeper log throughput',
    lines: [
      `${fmt(mb, 0)} MB (${LINES} lines of ${LINE_BYTES} bytes), max_bytes 10 MB, ${RUNS} runs each, medians:`,
      '',
      '| pipeline | p50 time | MB/s (p50) | lines lost |',
      '| --- | --- | --- | --- |',
      `| generator -> keeper -> rotating files | ${fmt(ks.p50 / 1000, 2)} s | ${fmt(mb / (ks.p50 / 1000), 0)} | 0 of ${LINES} (${check.files} files, largest ${check.maxSize} bytes) |`,
      `| generator \\| cat > file (reference) | ${fmt(cs.p50 / 1000, 2)} s | ${fmt(mb / (cs.p50 / 1000), 0)} | - |`,
      '',
      `Keeper RSS peak during the flood: ${fmt(check.keeperPeak, 1)} MiB. The generator itself (python) bounds both figures.`,
    ],
    raw: { keeper: ks, cat: cs },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
