// Fault injection: N faults of each kind against running instances (FAULTS_N, default 5), and the
// request latency of a verbose real llama-server while another process holds the database's write
// lock for 10 s. Reported: faults survived (keeper and server still running, or replaced as
// designed), exits recorded, log lines lost (written by the server but neither in the log nor
// counted as dropped), stack traces printed by any command. Target: all survived, 0 unrecorded
// exits, 0 lines lost, 0 stack traces; latency during the lock within 2x of normal.
// Everything runs on 127.0.0.1; every loop is bounded.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CLI, REPO, addInstance, fakeInstance, fmt, makeHome, makeRealHome, sleep, stats } from './lib.mjs';

const N = Number(process.env.FAULTS_N ?? 5);
const STACK = /\n\s+at /;
let stackTraces = 0;
let commands = 0;

function orch(root, args) {
  commands++;
  const r = spawnSync('node', [CLI, ...args, '--home', root], { encoding: 'utf8' });
  if (STACK.test(r.stderr)) stackTraces++;
  return r;
}

function psJson(root) {
  return JSON.parse(orch(root, ['ps', '--json']).stdout);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

async function until(fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) return undefined;
    await sleep(100);
  }
}

/** Another process holding the write lock for ms; resolves when it is released. */
async function lock(root, ms) {
  const script = `const D=require(${JSON.stringify(path.join(REPO, 'node_modules', 'better-sqlite3'))});
    const db=new D(${JSON.stringify(path.join(root, 'state', 'llama-orch.db'))});db.pragma('busy_timeout=5000');
    db.exec('BEGIN EXCLUSIVE');console.log('locked');setTimeout(()=>{db.exec('COMMIT');process.exit(0)},${ms});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => child.stdout.once('data', r));
  return new Promise((r) => child.once('exit', r));
}

/** The instance once it is healthy with a server (a fault starts from a settled state). */
async function settled(root, name = 'f') {
  let last;
  const r = await until(() => {
    last = psJson(root).find((x) => x.name === name);
    return last && last.health === 'ok' && last.pid ? last : undefined;
  }, 20_000);
  if (!r) throw new Error(`${name} did not settle: ${JSON.stringify(last)}`);
  return r;
}

function exitEvents(root, name) {
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  try {
    return db.prepare(`SELECT ts, message FROM events WHERE instance_name = ? AND event_type = 'exit'`).all(name);
  } finally {
    db.close();
  }
}

/** Lines 0..n-1 of one /flood call that are in the stdout logs. */
function floodLinesFound(logDir, tag) {
  const seen = new Set();
  for (const f of fs.readdirSync(logDir)) {
    if (!f.startsWith('stdout.log')) continue;
    for (const line of fs.readFileSync(path.join(logDir, f), 'utf8').split('\n')) {
      const m = line.match(/^flood (\d+) (\d+)/);
      if (m && m[1] === tag) seen.add(Number(m[2]));
    }
  }
  return seen.size;
}

async function lockFaults(root) {
  let survived = 0;
  let recorded = 0;
  let lost = 0;
  for (let i = 0; i < N; i++) {
    const before = await settled(root);
    const released = lock(root, 3000);
    process.kill(before.pid, 'SIGKILL');
    const port = before.port;
    orch(root, ['ps']);
    await released;
    const after = await until(() => {
      const r = psJson(root).find((x) => x.name === 'f');
      return r.health === 'ok' && r.pid !== before.pid ? r : undefined;
    }, 15_000);
    if (after && after.keeper_pid === before.keeper_pid && alive(after.keeper_pid)) survived++;
    if (exitEvents(root, 'f').some((e) => e.message.includes(`pid ${before.pid} killed by SIGKILL`))) recorded++;
    // Lines written during a lock reach the log: none lost.
    const tag = String(Date.now() % 100000);
    const lock2 = lock(root, 2000);
    await fetch(`http://127.0.0.1:${port}/flood?n=20000&tag=${tag}`).catch(() => undefined);
    await lock2;
    await sleep(500);
    lost += 20000 - floodLinesFound(path.join(root, 'logs', 'f'), tag);
  }
  return { survived, recorded, lost };
}

async function deletedDbFaults(root) {
  let survived = 0;
  let recorded = 0;
  for (let i = 0; i < N; i++) {
    const before = await settled(root);
    for (const f of fs.readdirSync(path.join(root, 'state'))) {
      if (f.startsWith('llama-orch.db')) fs.rmSync(path.join(root, 'state', f));
    }
    const back = await until(() => {
      const r = psJson(root).find((x) => x.name === 'f');
      return r.pid === before.pid && r.state === 'running' ? r : undefined;
    }, 15_000);
    if (back && back.keeper_pid === before.keeper_pid) survived++;
    process.kill(before.pid, 'SIGKILL');
    const restarted = await until(() => {
      const r = psJson(root).find((x) => x.name === 'f');
      return r.health === 'ok' && r.pid !== before.pid ? r : undefined;
    }, 15_000);
    if (restarted && exitEvents(root, 'f').some((e) => e.message.includes(`pid ${before.pid} killed`))) recorded++;
  }
  return { survived, recorded, lost: 0 };
}

async function stalledKeeperFaults(root) {
  orch(root, ['daemon', 'start', '--interval', '0.5']);
  let survived = 0;
  for (let i = 0; i < N; i++) {
    const before = await settled(root);
    process.kill(before.keeper_pid, 'SIGSTOP');
    const replaced = await until(() => {
      const r = psJson(root).find((x) => x.name === 'f');
      return r.keeper_pid && r.keeper_pid !== before.keeper_pid ? r : undefined;
    }, 40_000);
    if (replaced && replaced.pid === before.pid) survived++;
  }
  orch(root, ['daemon', 'stop']);
  return { survived, recorded: null, lost: 0 };
}

function eventTypes(root, name) {
  const db = new Database(path.join(root, 'state', 'llama-orch.db'), { readonly: true });
  try {
    return db
      .prepare(`SELECT event_type FROM events WHERE instance_name = ?`)
      .all(name)
      .map((r) => r.event_type);
  } finally {
    db.close();
  }
}

/**
 * The daemon out of file descriptors (#26): its soft limit lowered by prlimit to what it has open
 * plus 20, then 60 idle connections to its proxy for 3 s. Survived: the instance still running with
 * the same server and keeper, and no keeper-lost, stop or restart recorded on a guess.
 */
async function fdExhaustionFaults(root) {
  const port = 23890;
  fs.writeFileSync(path.join(root, 'llama-orch.json'), JSON.stringify({ proxy: { max_connections: 5000 } }));
  orch(root, ['daemon', 'start', '--interval', '0.5', '--listen', `127.0.0.1:${port}`]);
  const daemonPid = Number(fs.readFileSync(path.join(root, 'state', 'daemon.pid'), 'utf8').split(/\s+/)[0]);
  const soft = /^Max open files\s+(\d+)/m.exec(fs.readFileSync(`/proc/${daemonPid}/limits`, 'utf8'))[1];
  const { connect } = await import('node:net');
  let survived = 0;
  for (let i = 0; i < N; i++) {
    const before = await settled(root);
    const lostBefore = eventTypes(root, 'f').filter((t) => t === 'keeper-lost').length;
    const open = fs.readdirSync(`/proc/${daemonPid}/fd`).length;
    execFileSync('prlimit', ['--pid', String(daemonPid), `--nofile=${open + 20}:`]);
    const socks = Array.from({ length: 60 }, () => connect(port, '127.0.0.1').on('error', () => undefined));
    await sleep(3000);
    const during = psJson(root).find((x) => x.name === 'f');
    for (const s of socks) s.destroy();
    execFileSync('prlimit', ['--pid', String(daemonPid), `--nofile=${soft}:`]);
    await sleep(1500);
    const after = psJson(root).find((x) => x.name === 'f');
    const lost = eventTypes(root, 'f').filter((t) => t === 'keeper-lost').length - lostBefore;
    if (
      during?.state === 'running' &&
      after?.state === 'running' &&
      after.pid === before.pid &&
      after.keeper_pid === before.keeper_pid &&
      lost === 0
    )
      survived++;
  }
  orch(root, ['daemon', 'stop']);
  fs.rmSync(path.join(root, 'llama-orch.json'), { force: true });
  return { survived, recorded: null, lost: 0 };
}

/**
 * server.binary a wrapper script that runs the server as its child (the harder of the two kinds, #26):
 * each round kills the keeper (up must adopt the same server) and then the server (its exit must be
 * recorded, and the keeper restart it).
 */
async function wrapperFaults() {
  const root = makeHome('bench-wrapper-');
  const wrapper = path.join(root, 'wrapper.sh');
  fs.writeFileSync(wrapper, `#!/bin/bash\nexport WRAPPED=1\n"${fakeInstance(0).server.binary}" "$@"\n`, {
    mode: 0o755,
  });
  const inst = fakeInstance(23880);
  addInstance(root, 'w', {
    ...inst,
    server: { ...inst.server, binary: wrapper },
    restart: { initial_delay: 0.2, jitter: 0, max_retries: 1000, min_uptime: 1, reset_after: 1 },
  });
  orch(root, ['up', 'w', '--wait', '10']);
  let survived = 0;
  let recorded = 0;
  for (let i = 0; i < N; i++) {
    const before = await settled(root, 'w');
    process.kill(before.keeper_pid, 'SIGKILL');
    await until(() => !alive(before.keeper_pid), 5000);
    const up = orch(root, ['up', 'w', '--wait', '10']);
    const adopted = psJson(root).find((x) => x.name === 'w');
    if (up.status === 0 && adopted?.pid === before.pid && adopted.keeper_pid !== before.keeper_pid) survived++;
    process.kill(before.pid, 'SIGKILL');
    const again = await until(() => {
      const r = psJson(root).find((x) => x.name === 'w');
      return r.health === 'ok' && r.pid !== before.pid ? r : undefined;
    }, 15_000);
    if (again && exitEvents(root, 'w').some((e) => e.message.includes(`pid ${before.pid}`))) recorded++;
  }
  orch(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  return { survived, recorded, lost: 0 };
}

/**
 * Download servers that never finish or lie (#26), through `models pull` against a local hub: every
 * answer cut after 64 KiB with a resume answered by a bare 416; an HTML page where a model should be
 * (no hash to check); a .part planted as a symbolic link. Survived: exit 9 within 30 s, nothing put in
 * place, the link's target untouched. Recorded: the exit code is the documented one (9).
 */
async function hostileDownloadFaults() {
  const { startFakeHub } = await import('../tests/fixtures/fake-hf-server.mjs');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-pull-faults-'));
  const hub = await startFakeHub({ dir: path.join(tmp, 'hub') });
  const env = { ...process.env, HF_ENDPOINT: hub.url };
  // Not spawnSync: the hub answers from this process's event loop.
  const pullCli = (ref, to) =>
    new Promise((resolve) => {
      commands++;
      const child = spawn('node', [CLI, 'models', 'pull', ref, '--to', to], {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c) => (stderr += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('close', (status) => {
        clearTimeout(timer);
        if (STACK.test(stderr)) stackTraces++;
        resolve({ status, stderr });
      });
    });
  let survived = 0;
  let recorded = 0;
  try {
    for (let i = 0; i < N; i++) {
      const kind = ['cut', 'html', 'link'][i % 3];
      const to = path.join(tmp, `models-${i}`);
      fs.mkdirSync(to, { recursive: true });
      const victim = path.join(tmp, `victim-${i}`);
      fs.writeFileSync(victim, 'precious');
      hub.options.cutAfter = null;
      hub.options.rangeAnswer = null;
      let ref = `acme/f${i}-GGUF/m.gguf`;
      if (kind === 'cut') {
        hub.addFile(`acme/f${i}-GGUF`, 'm.gguf', Buffer.alloc(512 * 1024, 7));
        hub.options.cutAfter = { bytes: 64 * 1024, times: 1000 };
        hub.options.rangeAnswer = 416;
      } else if (kind === 'html') {
        hub.addFile(`acme/f${i}-GGUF`, 'm.gguf', '<!DOCTYPE html><html><body>Sign in</body></html>\n'.repeat(40));
        ref = hub.cdnFileUrl(`acme/f${i}-GGUF`, 'm.gguf'); // a plain URL: no hash to check it against
      } else {
        hub.addFile(`acme/f${i}-GGUF`, 'm.gguf', Buffer.alloc(64 * 1024, 7));
        fs.symlinkSync(victim, path.join(to, 'm.gguf.part'));
      }
      const started = Date.now();
      const r = await pullCli(ref, to);
      if (r.status === 9) recorded++;
      const placed = fs.existsSync(path.join(to, 'm.gguf'));
      if (r.status === 9 && Date.now() - started < 30_000 && !placed && fs.readFileSync(victim, 'utf8') === 'precious')
        survived++;
    }
  } finally {
    await hub.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { survived, recorded, lost: 0 };
}

async function fullDiskFaults() {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  const home = makeHome('bench-faults-disk-');
  fs.rmSync(path.join(home, 'logs'), { recursive: true, force: true });
  fs.symlinkSync(mnt, path.join(home, 'logs'));
  addInstance(home, 'd', fakeInstance(23811));
  orch(home, ['up', 'd', '--wait', '10']);
  let survived = 0;
  let lost = 0;
  let dropped = 0;
  try {
    for (let i = 0; i < N; i++) {
      const before = await settled(home, 'd');
      const tag = String(i + 1);
      await fetch(`http://127.0.0.1:23811/flood?n=60000&tag=${tag}`);
      await sleep(1500);
      const found = floodLinesFound(path.join(mnt, 'd'), tag);
      // Free the space; the next line written ends the trouble and records the final count.
      for (const f of fs.readdirSync(path.join(mnt, 'd'))) {
        if (f.startsWith('stdout.log')) fs.truncateSync(path.join(mnt, 'd', f), 0);
      }
      await fetch(`http://127.0.0.1:23811/flood?n=10&tag=resume${tag}`);
      const total = await until(() => {
        const m = psJson(home)[0]
          .warnings.join(' ')
          .match(/(\d+) line\(s\) were dropped/);
        return m && Number(m[1]) > dropped ? Number(m[1]) : undefined;
      }, 5000);
      const droppedNow = (total ?? dropped) - dropped;
      dropped = total ?? dropped;
      lost += Math.max(0, 60000 - found - droppedNow);
      if (alive(before.keeper_pid) && alive(before.pid)) survived++;
    }
  } finally {
    orch(home, ['down', 'd']);
    execFileSync('umount', ['-l', mnt]);
    fs.rmSync(home, { recursive: true, force: true });
  }
  return { survived, recorded: null, lost, dropped };
}

async function damagedDbFaults() {
  let survived = 0;
  for (let i = 0; i < N; i++) {
    const home = makeHome('bench-faults-bad-');
    fs.mkdirSync(path.join(home, 'state'));
    fs.writeFileSync(path.join(home, 'state', 'llama-orch.db'), 'garbage '.repeat(1000));
    addInstance(home, 'x', fakeInstance(23812));
    const codes = [['ps'], ['up', 'x'], ['down', 'x']].map((a) => orch(home, a).status);
    if (codes.every((c) => c === 6)) survived++;
    fs.rmSync(home, { recursive: true, force: true });
  }
  return { survived, recorded: null, lost: 0 };
}

const dbFiles = (root) => ['', '-wal', '-shm'].map((x) => path.join(root, 'state', `llama-orch.db${x}`));

/**
 * The database files made immutable (chattr +i) for `ms`, the keeper paused meanwhile so that its
 * next transaction comes after `sync` has cleaned SQLite's mapped WAL index (without the guard in
 * store/connection.ts that write is SIGBUS). Resolves when the files are writable again.
 */
async function readOnly(root, keeperPid, ms) {
  const files = dbFiles(root).filter((f) => fs.existsSync(f));
  if (keeperPid) process.kill(keeperPid, 'SIGSTOP');
  execFileSync('chattr', ['+i', ...files]);
  execFileSync('sync');
  if (keeperPid) process.kill(keeperPid, 'SIGCONT');
  await sleep(ms);
  execFileSync('chattr', ['-i', ...files]);
}

async function readOnlyFaults(root) {
  let survived = 0;
  let recorded = 0;
  let lost = 0;
  for (let i = 0; i < N; i++) {
    const before = await settled(root);
    const tag = String(Date.now() % 100000);
    const window = readOnly(root, before.keeper_pid, 3000);
    await sleep(200);
    await fetch(`http://127.0.0.1:${before.port}/flood?n=20000&tag=${tag}`).catch(() => undefined);
    process.kill(before.pid, 'SIGKILL');
    orch(root, ['ps']);
    await window;
    const after = await until(() => {
      const r = psJson(root).find((x) => x.name === 'f');
      return r.health === 'ok' && r.pid !== before.pid ? r : undefined;
    }, 15_000);
    if (after && after.keeper_pid === before.keeper_pid && alive(after.keeper_pid)) survived++;
    // A server re-attached by a replacement keeper is not its child: its exit is recorded without the
    // signal ("exit status unknown").
    if (exitEvents(root, 'f').some((e) => new RegExp(`pid ${before.pid} (killed by SIGKILL|exited)`).test(e.message)))
      recorded++;
    else {
      const evs = exitEvents(root, 'f').slice(-3);
      const klog = fs
        .readFileSync(path.join(root, 'logs', 'f', 'keeper.log'), 'utf8')
        .split('\n')
        .slice(-8);
      console.error(
        `read-only fault ${i}: no exit of pid ${before.pid}; now ${JSON.stringify(after)}; last exits ${JSON.stringify(evs)}; keeper.log:\n${klog.join('\n')}`,
      );
    }
    lost += 20000 - floodLinesFound(path.join(root, 'logs', 'f'), tag);
  }
  return { survived, recorded, lost };
}

async function lockLatency(kind = 'lock') {
  const { root, bin } = await makeRealHome('bench-faults-lat-');
  addInstance(root, 'v', {
    model: { path: 'models/tiny.gguf', context_size: 256 },
    server: { binary: bin, port: 23813, extra_args: ['-v'] },
    healthcheck: { interval: 1 },
  });
  orch(root, ['up', 'v', '--wait', '30']);
  const once = async () => {
    const t0 = performance.now();
    const r = await fetch('http://127.0.0.1:23813/completion', {
      method: 'POST',
      body: JSON.stringify({ prompt: 'latency', n_predict: 8 }),
      signal: AbortSignal.timeout(10_000),
    });
    await r.arrayBuffer();
    return performance.now() - t0;
  };
  for (let i = 0; i < 5; i++) await once();
  const normal = [];
  for (let i = 0; i < 40; i++) normal.push(await once());
  const during = [];
  const keeperPid = psJson(root).find((r) => r.name === 'v')?.keeper_pid;
  const released = kind === 'lock' ? lock(root, 10_000) : readOnly(root, keeperPid, 10_000);
  let done = false;
  void released.then(() => (done = true));
  while (!done && during.length < 400) during.push(await once());
  await released;
  orch(root, ['down', 'v']);
  fs.rmSync(root, { recursive: true, force: true });
  return { normal: stats(normal), during: stats(during) };
}

export async function run() {
  const root = makeHome('bench-faults-');
  // Faults come every few seconds here: min_uptime and reset_after of 1 s keep each restart prompt
  // (the restart policy itself is measured by bench/soak.mjs).
  addInstance(root, 'f', {
    ...fakeInstance(23810),
    restart: { initial_delay: 0.2, jitter: 0, max_retries: 1000, min_uptime: 1, reset_after: 1 },
  });
  orch(root, ['up', 'f', '--wait', '10']);
  if (process.env.FAULTS_ONLY) {
    // A comma-separated sequence of fault kinds, against one instance, in order: to reproduce one.
    const kinds = {
      lock: lockFaults,
      deleted: deletedDbFaults,
      stalled: stalledKeeperFaults,
      readonly: readOnlyFaults,
      fds: fdExhaustionFaults,
      wrapper: () => wrapperFaults(),
      pull: () => hostileDownloadFaults(),
    };
    const out = [];
    for (const k of process.env.FAULTS_ONLY.split(',')) out.push(`${k}: ${JSON.stringify(await kinds[k](root))}`);
    if (!process.env.FAULTS_KEEP) {
      orch(root, ['down', '--all']);
      fs.rmSync(root, { recursive: true, force: true });
    } else out.push(`home kept: ${root}`);
    return { name: 'selected faults', lines: out, raw: out };
  }
  const results = {
    'write lock held 3 s by another process (a server kill -9 and a 20,000-line flood during each)':
      await lockFaults(root),
    'state database deleted while running (then a server kill -9)': await deletedDbFaults(root),
    'keeper stopped with SIGSTOP (the daemon running)': await stalledKeeperFaults(root),
  };
  results['the daemon out of file descriptors (prlimit, 60 idle proxy connections for 3 s)'] =
    await fdExhaustionFaults(root);
  if (process.getuid?.() === 0) {
    results[
      'database files made immutable for 3 s (chattr +i after sync; a server kill -9 and a 20,000-line flood during each)'
    ] = await readOnlyFaults(root);
  }
  orch(root, ['down', '--all']);
  fs.rmSync(root, { recursive: true, force: true });
  if (process.getuid?.() === 0) {
    results['logs on a full 2 MB tmpfs (a 60,000-line flood each)'] = await fullDiskFaults();
  }
  results['damaged database file (ps, up, down each)'] = await damagedDbFaults();
  results['server.binary a wrapper script (the server its child): keeper kill -9 then server kill -9'] =
    await wrapperFaults();
  results['`models pull` from a hostile server: cut + bare 416, an HTML page, a symlinked .part (in turn)'] =
    await hostileDownloadFaults();
  const lat = await lockLatency();
  const ro = process.getuid?.() === 0 ? await lockLatency('readonly') : undefined;
  const lines = [
    `${N} faults of each kind; ${commands} llama-orch commands run meanwhile, stack traces printed: ${stackTraces}.`,
    '',
    '| fault | survived | exits recorded | lines lost |',
    '| --- | --- | --- | --- |',
    ...Object.entries(results).map(
      ([k, r]) =>
        `| ${k} | ${r.survived}/${N} | ${r.recorded === null ? '- (no exit)' : `${r.recorded}/${N}`} | ${r.lost}${r.dropped !== undefined ? ` (${r.dropped} dropped and counted while the disk was full)` : ''} |`,
    ),
    '',
    `Request latency of a real llama-server with -v (completion of 8 tokens): normal p50 ${fmt(lat.normal.p50)} ms (p95 ${fmt(lat.normal.p95)}), during a 10 s write lock p50 ${fmt(lat.during.p50)} ms (p95 ${fmt(lat.during.p95)}, ${lat.during.n} requests): ${fmt(lat.during.p50 / lat.normal.p50, 2)}x (target <= 2x).`,
    ...(ro
      ? [
          `During 10 s of immutable database files: p50 ${fmt(ro.during.p50)} ms (p95 ${fmt(ro.during.p95)}, ${ro.during.n} requests): ${fmt(ro.during.p50 / ro.normal.p50, 2)}x of that run's normal p50 ${fmt(ro.normal.p50)} ms.`,
        ]
      : []),
  ];
  return { name: 'fault injection', lines, raw: { results, lat, ro, stackTraces } };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log((await run()).lines.join('\n'));
