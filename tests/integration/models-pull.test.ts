import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../../src/domain/errors.js';
import { pullModel, type PullOptions, type PullProgress } from '../../src/models/pull.js';
// @ts-expect-error: a plain .mjs fixture without types
import { startFakeHub } from '../fixtures/fake-hf-server.mjs';
import { writeFakeModel } from '../helpers/home.js';

// `models pull`'s download against a local hub (tests/fixtures/fake-hf-server.mjs): real HTTP on
// 127.0.0.1, the hub and its CDN on two origins, files of KiB to a MiB.

interface HubRequestLog {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}
interface FakeHub {
  url: string;
  cdnUrl: string;
  options: Record<string, unknown>;
  requests: HubRequestLog[];
  addFile(repo: string, name: string, content: Buffer | string): string;
  sha256(repo: string, name: string): Promise<string>;
  cdnFileUrl(repo: string, name: string): string;
  close(): Promise<void>;
}

let hub: FakeHub;
let tmp: string;
let dir: string;

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pull-test-'));
  hub = (await startFakeHub({ dir: path.join(tmp, 'hub') })) as FakeHub;
  dir = path.join(tmp, 'models', 'nested'); // created by the pull
});

afterEach(async () => {
  await hub.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The bytes of a small but whole GGUF model (what a pull with no hash to check must receive). */
function ggufBytes(name: string): Buffer {
  const file = path.join(tmp, `${name}-${Math.random().toString(36).slice(2)}.gguf`);
  writeFakeModel(file, { name, embd: 256, ff: 512 });
  const bytes = fs.readFileSync(file);
  fs.rmSync(file);
  return bytes;
}

function pull(ref: string, extra: Partial<PullOptions> = {}) {
  const progress: PullProgress[] = [];
  const notices: string[] = [];
  const run = pullModel({
    ref,
    toDir: dir,
    env: { HF_ENDPOINT: hub.url },
    retryDelayMs: 10,
    onProgress: (p) => progress.push(p),
    onNotice: (l) => notices.push(l),
    ...extra,
  });
  return { run, progress, notices };
}

async function failure(p: Promise<unknown>): Promise<UserError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof UserError) return e;
    throw e;
  }
  throw new Error('expected the pull to fail');
}

const cdnGets = () => hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET');
const leftovers = () => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.(part|lock|tmp)$/.test(f)) : []);

describe('models pull: downloads', () => {
  it('pulls a named file through the 302, verifies the LFS sha256 and renames it into place', async () => {
    const data = randomBytes(300 * 1024 + 7);
    hub.addFile('acme/tiny-GGUF', 'tiny-Q4_K_M.gguf', data);
    const { run, progress } = pull('hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf');
    const r = await run;
    expect(r.path).toBe(path.join(dir, 'tiny-Q4_K_M.gguf'));
    expect(r.files).toEqual([
      {
        path: r.path,
        bytes: data.length,
        sha256: sha(data),
        verified: 'lfs',
        resumedFrom: 0,
        alreadyPresent: false,
      },
    ]);
    expect(fs.readFileSync(r.path).equals(data)).toBe(true);
    expect(leftovers()).toEqual([]);
    const last = progress.at(-1);
    expect(last).toMatchObject({
      file: 'tiny-Q4_K_M.gguf',
      index: 1,
      count: 1,
      received: data.length,
      total: data.length,
    });
    // The hub answered the HEAD and the GET with a 302; the CDN served the bytes.
    expect(hub.requests.map((q) => `${q.server} ${q.method}`)).toEqual(['hub HEAD', 'hub GET', 'cdn GET']);
  });

  it('a second pull finds the file present, checks its hash and downloads nothing', async () => {
    hub.addFile('acme/tiny-GGUF', 'tiny.gguf', randomBytes(50_000));
    await pull('acme/tiny-GGUF/tiny.gguf').run;
    const again = pull('acme/tiny-GGUF/tiny.gguf');
    const r = await again.run;
    expect(r.files[0]).toMatchObject({ alreadyPresent: true, verified: 'lfs' });
    expect(cdnGets()).toHaveLength(1);
    expect(again.notices.join('\n')).toMatch(/already in .*checking its sha256/);
  });

  it('a present file of the same name but another size is refused and left as it is (exit 9): another model may bear its name', async () => {
    const data = randomBytes(40_000);
    hub.addFile('acme/tiny-GGUF', 'tiny.gguf', data);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'tiny.gguf'), 'old');
    const { run } = pull('acme/tiny-GGUF/tiny.gguf');
    const e = await run.then(
      () => undefined,
      (err: unknown) => err as UserError,
    );
    expect(e).toBeInstanceOf(UserError);
    expect(e?.exitCode).toBe(9);
    expect(e?.message).toMatch(
      /tiny\.gguf already exists and is not the file being pulled \(it has 3 B, not 39\.1 KiB\); it was left as it is/,
    );
    expect(fs.readFileSync(path.join(dir, 'tiny.gguf'), 'utf8')).toBe('old');
  });

  it('a plain URL (no hub headers) is pulled unverified, with a notice, and gets no token', async () => {
    const data = ggufBytes('plain');
    hub.addFile('acme/tiny-GGUF', 'plain.gguf', data);
    const { run, notices } = pull(hub.cdnFileUrl('acme/tiny-GGUF', 'plain.gguf'), {
      env: { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_secret' },
    });
    const r = await run;
    expect(r.files[0]).toMatchObject({ verified: 'none', sha256: sha(data), bytes: data.length });
    expect(notices.join('\n')).toMatch(/no sha256 to verify it against/);
    expect(hub.requests.every((q) => q.headers.authorization === undefined)).toBe(true);
  });
});

describe('models pull: choosing files', () => {
  const repo = 'acme/multi-GGUF';
  beforeEach(() => {
    hub.options.treePageSize = 2; // the listing comes in pages (Link: rel="next")
    for (const f of [
      'README.md',
      'mmproj-model-Q4_K_M.gguf',
      'model-Q4_K_M.gguf',
      'model-Q8_0.gguf',
      'model-q4_k_s.gguf',
      'big/model-Q6_K-00002-of-00003.gguf',
      'big/model-Q6_K-00001-of-00003.gguf',
      'big/model-Q6_K-00003-of-00003.gguf',
    ]) {
      hub.addFile(repo, f, `${f} ${randomBytes(2000).toString('hex')}`);
    }
  });

  it('REPO:QUANT picks the file of that quant, case-insensitive; no quant is Q4_K_M, never the mmproj', async () => {
    expect((await pull(`${repo}:q8_0`).run).path).toBe(path.join(dir, 'model-Q8_0.gguf'));
    expect((await pull(`${repo}:Q4_K_S`).run).path).toBe(path.join(dir, 'model-q4_k_s.gguf'));
    const def = await pull(`hf:${repo}`).run;
    expect(def.files.map((f) => path.basename(f.path))).toEqual(['model-Q4_K_M.gguf']);
    expect(fs.existsSync(path.join(dir, 'mmproj-model-Q4_K_M.gguf'))).toBe(false);
    // The listing's LFS hashes and sizes are there; the 302's X-Linked-Etag is what verified it.
    expect(def.files[0]?.verified).toBe('lfs');
  });

  it('a remote file name with a control character is refused: never created, never printed (#26)', async () => {
    const evil = 'evil\u001b]0;TITLE\u0007-Q5_K_M.gguf';
    hub.addFile(repo, evil, 'x'.repeat(100));
    const e = await pull(`${repo}:Q5_K_M`).run.then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(e?.message).toBeDefined();
    expect(e?.message).not.toContain('\u001b');
    expect(fs.existsSync(path.join(dir, evil))).toBe(false);
  });

  it('a split model gives all its shards, in order, each verified', async () => {
    const { run, progress } = pull(`${repo}:Q6_K`);
    const r = await run;
    expect(r.files.map((f) => path.basename(f.path))).toEqual([
      'model-Q6_K-00001-of-00003.gguf',
      'model-Q6_K-00002-of-00003.gguf',
      'model-Q6_K-00003-of-00003.gguf',
    ]);
    expect(r.path).toBe(path.join(dir, 'model-Q6_K-00001-of-00003.gguf'));
    for (const f of r.files) {
      expect(f.verified).toBe('lfs');
      expect(f.sha256).toBe(await hub.sha256(repo, `big/${path.basename(f.path)}`));
    }
    expect(new Set(progress.map((p) => `${p.index}/${p.count}`))).toEqual(new Set(['1/3', '2/3', '3/3']));
  });

  it('a split model must fit whole before its first shard starts (sizes from the listing)', async () => {
    const e = await failure(pull(`${repo}:Q6_K`, { freeBytes: () => 1 }).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(/^not enough disk space in .* for the 3 files of .*:Q6_K: .* needed, 1 B free$/);
    expect(cdnGets()).toHaveLength(0);
  });

  it('a part left by a download from another source is not resumed (plain URLs, no hash to catch it)', async () => {
    const a = ggufBytes('one');
    const b = ggufBytes('two');
    hub.addFile('acme/one', 'same.gguf', a);
    hub.addFile('acme/two', 'same.gguf', b);
    const urlA = hub.cdnFileUrl('acme/one', 'same.gguf');
    const urlB = hub.cdnFileUrl('acme/two', 'same.gguf');
    hub.options.cutAfter = { bytes: 100_000, times: 100 };
    const first = await failure(pull(urlA, { retries: 0 }).run);
    expect(first.exitCode).toBe(9);
    expect(fs.existsSync(path.join(dir, 'same.gguf.part'))).toBe(true);
    hub.options.cutAfter = null;
    const { run, notices } = pull(urlB);
    const r = await run;
    expect(fs.readFileSync(r.path).equals(b)).toBe(true);
    expect(notices.join('\n')).toContain('was left by a download from another source: starting over');
  });

  it('naming one shard pulls all of them without a listing', async () => {
    const r = await pull(`${repo}/big/model-Q6_K-00002-of-00003.gguf`).run;
    expect(r.files).toHaveLength(3);
    expect(hub.requests.some((q) => q.url.startsWith('/api/'))).toBe(false);
  });

  it('a quant the repo does not have: exit 2 naming the files it has (not the mmproj)', async () => {
    const e = await failure(pull(`${repo}:F16`).run);
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain('no .gguf file for the quant "F16"');
    expect(e.hint).toContain('model-Q8_0.gguf');
    expect(e.hint).toContain('big/model-Q6_K-00001-of-00003.gguf');
    expect(e.hint).not.toContain('mmproj');
  });

  it('a hub without the tree API: the model info lists the files', async () => {
    hub.options.noTreeApi = true;
    const r = await pull(`${repo}:Q8_0`).run;
    expect(path.basename(r.path)).toBe('model-Q8_0.gguf');
    expect(hub.requests.some((q) => q.url === `/api/models/${repo}`)).toBe(true);
  });
});

describe('models pull: resume, retries, interruption', () => {
  const repo = 'acme/resume-GGUF';

  it('a connection cut mid-file is retried with a Range request; the hash covers the whole file', async () => {
    const data = randomBytes(1024 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    hub.options.cutAfter = { bytes: 200 * 1024, times: 2 };
    const { run, notices } = pull(`${repo}/m.gguf`);
    const r = await run;
    expect(r.files[0]).toMatchObject({ sha256: sha(data), verified: 'lfs', bytes: data.length });
    const ranges = cdnGets().map((q) => q.headers.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges.length).toBe(3);
    for (const rg of ranges.slice(1)) expect(rg).toMatch(/^bytes=[1-9]\d*-$/);
    expect(notices.filter((n) => /retrying in/.test(n))).toHaveLength(2);
  });

  it('cuts beyond the retries: exit 9, the part kept and named', async () => {
    hub.addFile(repo, 'm.gguf', randomBytes(512 * 1024));
    hub.options.cutAfter = { bytes: 100 * 1024, times: 100 };
    // Each try makes progress, which restarts the count: a cut before any byte is what exhausts it.
    hub.options.cutAfter = { bytes: 0, times: 100 };
    const e = await failure(pull(`${repo}/m.gguf`, { retries: 2 }).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(/failed after 3 tries/);
    expect(fs.existsSync(path.join(dir, 'm.gguf'))).toBe(false);
  });

  it('Ctrl-C (abort) keeps the part and says how to resume; the next pull resumes from it', async () => {
    const data = randomBytes(1024 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    hub.options.pauseAfter = { bytes: 300 * 1024, ms: 30_000 };
    const ac = new AbortController();
    const first = pull(`${repo}/m.gguf`, {
      signal: ac.signal,
      progressIntervalMs: 0,
      onProgress: (p) => {
        if (p.received >= 300 * 1024) ac.abort();
      },
    });
    const e = await failure(first.run);
    const part = path.join(dir, 'm.gguf.part');
    expect(e.exitCode).toBe(130);
    expect(e.message).toContain(part);
    expect(e.message).toMatch(/run the same command again to resume/);
    const kept = fs.statSync(part).size;
    expect(kept).toBeGreaterThanOrEqual(300 * 1024);
    expect(kept).toBeLessThan(data.length);
    expect(fs.existsSync(path.join(dir, 'm.gguf.lock'))).toBe(false);

    hub.options.pauseAfter = null;
    const second = pull(`${repo}/m.gguf`);
    const r = await second.run;
    expect(r.files[0]).toMatchObject({ resumedFrom: kept, sha256: sha(data), verified: 'lfs' });
    expect(cdnGets().at(-1)?.headers.range).toBe(`bytes=${kept}-`);
    expect(second.notices.join('\n')).toMatch(/resuming m\.gguf from/);
    expect(second.progress.every((p) => p.resumedFrom === kept)).toBe(true);
    expect(leftovers()).toEqual([]);
  });

  it('a server that ignores Range (200): the part is discarded and the file downloaded whole', async () => {
    const data = randomBytes(256 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    hub.options.ignoreRange = true;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'm.gguf.part'), Buffer.alloc(1000, 0xff)); // not even the right bytes
    const { run, notices } = pull(`${repo}/m.gguf`);
    const r = await run;
    expect(r.files[0]).toMatchObject({ resumedFrom: 0, sha256: sha(data), bytes: data.length });
    expect(cdnGets()[0]?.headers.range).toBe('bytes=1000-');
    expect(notices.join('\n')).toMatch(/ignored the request to resume m\.gguf \(it answered 200\)/);
  });

  it('a part that does not match (the file changed on the server since) is downloaded again whole', async () => {
    const data = randomBytes(128 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'm.gguf.part'), randomBytes(50_000)); // the old version's start
    const { run, notices } = pull(`${repo}/m.gguf`);
    const r = await run;
    expect(r.files[0]).toMatchObject({ resumedFrom: 0, sha256: sha(data), verified: 'lfs' });
    expect(cdnGets().map((q) => q.headers.range)).toEqual(['bytes=50000-', undefined]);
    expect(notices.join('\n')).toMatch(/resumed from a part that does not match .*: downloading it again/);
  });

  it('a complete part left by an earlier run is verified and renamed (the server answers 416)', async () => {
    const data = randomBytes(64 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'm.gguf.part'), data);
    const r = await pull(`${repo}/m.gguf`).run;
    expect(r.files[0]).toMatchObject({ resumedFrom: data.length, sha256: sha(data), alreadyPresent: false });
    expect(fs.readFileSync(r.path).equals(data)).toBe(true);
  });

  it('a server error that persists: exit 9 with the status', async () => {
    hub.addFile(repo, 'm.gguf', randomBytes(1000));
    hub.options.cdnStatus = { status: 503, times: 100 };
    const e = await failure(pull(`${repo}/m.gguf`, { retries: 1 }).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toContain('the server answered 503');
  });
});

describe('models pull: servers that never finish, and answers that lie (#26)', () => {
  const repo = 'acme/hostile-GGUF';

  for (const answer of [416, 'other'] as const) {
    it(`every answer cut after 100 KiB and a resume answered ${answer === 416 ? 'with a bare 416' : 'with another range'}: bounded, exit 9 saying why`, async () => {
      hub.addFile(repo, 'm.gguf', randomBytes(512 * 1024));
      hub.options.cutAfter = { bytes: 100 * 1024, times: 1000 };
      hub.options.rangeAnswer = answer;
      const started = Date.now();
      const e = await failure(pull(`${repo}/m.gguf`, { retries: 3 }).run);
      expect(e.exitCode).toBe(9);
      expect(e.message).toMatch(
        /^m\.gguf: the download (was given up: the server would not resume it|failed after 4 tries)/,
      );
      expect(cdnGets().length).toBeLessThan(20);
      expect(Date.now() - started).toBeLessThan(20_000);
    });
  }

  it('no new bytes for longer than the stall bound: exit 9 naming the most it had', async () => {
    hub.addFile(repo, 'm.gguf', randomBytes(256 * 1024));
    hub.options.cdnStatus = { status: 503, times: 1000 };
    const e = await failure(pull(`${repo}/m.gguf`, { retries: 1000, stallMs: 300 }).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(
      /^m\.gguf: the download was given up: no new bytes for \d+ s \(the most it had: 0 B\): the server answered 503/,
    );
  });

  it('a .part planted as a symlink is refused: the file it points to is left untouched', async () => {
    const data = randomBytes(64 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    fs.mkdirSync(dir, { recursive: true });
    const victim = path.join(tmp, 'victim.txt');
    fs.writeFileSync(victim, 'precious');
    fs.symlinkSync(victim, path.join(dir, 'm.gguf.part'));
    const e = await failure(pull(`${repo}/m.gguf`).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toBe(
      `refusing to use ${path.join(dir, 'm.gguf.part')}: it is a symbolic link, not a download llama-orch started`,
    );
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
    expect(cdnGets()).toEqual([]);
    // Its side file too.
    fs.rmSync(path.join(dir, 'm.gguf.part'));
    fs.symlinkSync(victim, path.join(dir, 'm.gguf.part.src'));
    const e2 = await failure(pull(`${repo}/m.gguf`).run);
    expect(e2.message).toContain('m.gguf.part.src: it is a symbolic link');
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('with no hash to check, an HTML page is not saved as a model: exit 9 saying what arrived', async () => {
    hub.addFile(
      'acme/gated',
      'login.gguf',
      '<!DOCTYPE html><html><body>Sign in to continue</body></html>\n'.repeat(50),
    );
    const e = await failure(pull(hub.cdnFileUrl('acme/gated', 'login.gguf')).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toBe(
      'login.gguf: an HTML page arrived, not the model (the repository may be gated or need a login); the download was deleted',
    );
    expect(e.hint).toMatch(/HF_TOKEN/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('with no hash to check, a truncated GGUF is not saved as a model: exit 9 naming the tensor cut short', async () => {
    const whole = ggufBytes('cut');
    hub.addFile('acme/cut', 'cut.gguf', whole.subarray(0, whole.length - 1000));
    const e = await failure(pull(hub.cdnFileUrl('acme/cut', 'cut.gguf')).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(
      /^cut\.gguf: what arrived is truncated: tensor \S+ ends at byte \d+, but the file has \d+ bytes/,
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('a redirect to file: is refused at once, not retried, and leaves nothing behind', async () => {
    hub.addFile(repo, 'm.gguf', randomBytes(1000));
    hub.options.redirectTo = 'file:///etc/passwd';
    const e = await failure(pull(`${repo}/m.gguf`).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(/the server redirected to a file: URL, which is refused/);
    expect(hub.requests.filter((q) => q.server === 'hub').length).toBeLessThanOrEqual(2);
    expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
  });
});

describe('models pull: verification', () => {
  const repo = 'acme/verify-GGUF';

  it('a wrong --sha256: exit 9 naming both hashes, no model file, no part', async () => {
    const data = randomBytes(100_000);
    hub.addFile(repo, 'm.gguf', data);
    const wrong = 'ab'.repeat(32);
    const e = await failure(pull(`${repo}/m.gguf`, { sha256: wrong }).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toContain(`expected ${wrong}`);
    expect(e.message).toContain(`got ${sha(data)}`);
    expect(e.hint).toMatch(/--sha256/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('--sha256 wins over the hub: right given hash, wrong LFS etag -> verified "given"', async () => {
    const data = randomBytes(10_000);
    hub.addFile(repo, 'm.gguf', data);
    hub.options.etagOverride = { 'm.gguf': 'cd'.repeat(32) };
    const r = await pull(`${repo}/m.gguf`, { sha256: sha(data).toUpperCase() }).run;
    expect(r.files[0]).toMatchObject({ verified: 'given', sha256: sha(data) });
  });

  it('a file that does not match the hub LFS hash: exit 9, nothing left', async () => {
    hub.addFile(repo, 'm.gguf', randomBytes(10_000));
    hub.options.etagOverride = { 'm.gguf': 'cd'.repeat(32) };
    const e = await failure(pull(`${repo}/m.gguf`).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(/sha256 mismatch: expected (cd){32}, got [0-9a-f]{64}; the download was deleted/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('--sha256 with a split model: exit 1 (one hash cannot name several files)', async () => {
    hub.addFile(repo, 'm-00001-of-00002.gguf', 'a');
    hub.addFile(repo, 'm-00002-of-00002.gguf', 'b');
    const e = await failure(pull(`${repo}/m-00001-of-00002.gguf`, { sha256: 'ab'.repeat(32) }).run);
    expect(e.exitCode).toBe(1);
    expect(e.message).toContain('split model of 2 files');
  });

  it('--sha256 that is not 64 hex digits: exit 1 before any request', async () => {
    const e = await failure(pull(`${repo}/m.gguf`, { sha256: 'xyz' }).run);
    expect(e.exitCode).toBe(1);
    expect(hub.requests).toEqual([]);
  });
});

describe('models pull: access', () => {
  const repo = 'acme/gated-GGUF';
  const token = 'hf_TestToken123';
  beforeEach(() => {
    hub.options.gated = { [repo]: token };
    hub.addFile(repo, 'm.gguf', randomBytes(30_000));
  });

  it('a gated repo without HF_TOKEN: exit 9, the hint says to set it and accept the licence', async () => {
    const e = await failure(pull(`${repo}/m.gguf`).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toMatch(/acme\/gated-GGUF is gated or private: the server answered 401/);
    expect(e.hint).toMatch(/set HF_TOKEN/);
    expect(e.hint).toContain(`${hub.url}/${repo}`);
  });

  it('a refused token: exit 9, the token itself never printed', async () => {
    const e = await failure(pull(`${repo}/m.gguf`, { env: { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_wrongSecret' } }).run);
    expect(e.exitCode).toBe(9);
    expect(e.hint).toMatch(/HF_TOKEN sent was refused/);
    expect(`${e.message} ${e.hint}`).not.toContain('hf_wrongSecret');
  });

  it('with HF_TOKEN: pulled; the token goes to the hub only, never to the CDN it redirects to', async () => {
    const notices: string[] = [];
    const r = await pull(`${repo}/m.gguf`, {
      env: { HF_ENDPOINT: hub.url, HF_TOKEN: token },
      onNotice: (l) => notices.push(l),
    }).run;
    expect(r.files[0]?.verified).toBe('lfs');
    const hubReqs = hub.requests.filter((q) => q.server === 'hub');
    expect(hubReqs.length).toBeGreaterThan(0);
    for (const q of hubReqs) expect(q.headers.authorization).toBe(`Bearer ${token}`);
    expect(cdnGets().length).toBe(1);
    for (const q of hub.requests.filter((x) => x.server === 'cdn')) expect(q.headers.authorization).toBeUndefined();
    expect(notices.join('\n')).not.toContain(token);
  });
});

describe('models pull: not found', () => {
  it('an unknown repository: exit 2 naming it (404, or the 401 the hub gives anonymous callers)', async () => {
    let e = await failure(pull('nobody/nothing-GGUF:Q4_K_M').run);
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain('repository nobody/nothing-GGUF not found');
    hub.options.repoNotFoundStatus = 401;
    e = await failure(pull('nobody/nothing-GGUF/x.gguf').run);
    expect(e.exitCode).toBe(2);
    expect(e.hint).toMatch(/private repository needs HF_TOKEN/);
  });

  it('a missing file in a known repository: exit 2 naming the file and the repo', async () => {
    hub.addFile('acme/here-GGUF', 'a.gguf', 'x');
    const e = await failure(pull('acme/here-GGUF/b.gguf').run);
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/b\.gguf not found in acme\/here-GGUF \(the server answered 404/);
  });

  it('a bad reference: exit 1 naming the accepted forms', async () => {
    const e = await failure(pull('not a ref').run);
    expect(e.exitCode).toBe(1);
    expect(e.hint).toMatch(/owner\/name:QUANT/);
  });
});

describe('models pull: the lock and the disk', () => {
  const repo = 'acme/lock-GGUF';

  it('two pulls of one file: the second waits for the first, then finds it present; one download', async () => {
    const data = randomBytes(256 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    hub.options.pauseAfter = { bytes: 64 * 1024, ms: 400 };
    const a = pull(`${repo}/m.gguf`);
    await new Promise((r) => setTimeout(r, 50));
    const b = pull(`${repo}/m.gguf`);
    const [ra, rb] = await Promise.all([a.run, b.run]);
    expect(ra.files[0]).toMatchObject({ alreadyPresent: false, sha256: sha(data) });
    expect(rb.files[0]).toMatchObject({ alreadyPresent: true, sha256: sha(data) });
    expect(b.notices[0]).toBe(`another pull (pid ${process.pid}) is downloading m.gguf; waiting for it to finish`);
    expect(cdnGets()).toHaveLength(1);
    expect(leftovers()).toEqual([]);
  });

  it('a lock left by a dead process is taken over', async () => {
    const data = randomBytes(10_000);
    hub.addFile(repo, 'm.gguf', data);
    const dead = spawnSync('true').pid;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'm.gguf.lock'), `${dead}\n`);
    const { run, notices } = pull(`${repo}/m.gguf`);
    const r = await run;
    expect(r.files[0]?.sha256).toBe(sha(data));
    expect(notices.some((n) => n.includes('waiting'))).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('not enough free space: exit 9 naming the space needed and free, before any byte is written', async () => {
    hub.addFile(repo, 'm.gguf', randomBytes(3 * 1024 * 1024));
    const e = await failure(pull(`${repo}/m.gguf`, { freeBytes: () => 1024 * 1024 }).run);
    expect(e.exitCode).toBe(9);
    expect(e.message).toBe(`not enough disk space in ${dir} for m.gguf: 3.0 MiB needed, 1.0 MiB free`);
    expect(cdnGets()).toHaveLength(0);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('the space needed counts only what the part lacks', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    hub.addFile(repo, 'm.gguf', data);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'm.gguf.part'), data.subarray(0, 2 * 1024 * 1024 + 1));
    const r = await pull(`${repo}/m.gguf`, { freeBytes: () => 1024 * 1024 }).run;
    expect(r.files[0]).toMatchObject({ resumedFrom: 2 * 1024 * 1024 + 1, sha256: sha(data) });
  });

  // A real small file system (tmpfs needs root, as in CI's container): the free-space check is told
  // there is room, so the disk fills while the body is written.
  it.runIf(process.platform === 'linux' && process.getuid?.() === 0)(
    'a full disk while writing: exit 9 naming the directory, the part kept',
    async (ctx) => {
      hub.addFile(repo, 'm.gguf', randomBytes(400_000));
      fs.mkdirSync(dir, { recursive: true });
      if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', dir]).status !== 0) return ctx.skip();
      try {
        const e = await failure(pull(`${repo}/m.gguf`, { freeBytes: () => 1e12 }).run);
        expect(e.exitCode).toBe(9);
        expect(e.message).toContain(`the disk is full: ${dir}`);
        expect(e.message).toContain('m.gguf.part is kept');
        expect(fs.existsSync(path.join(dir, 'm.gguf'))).toBe(false);
        expect(fs.existsSync(path.join(dir, 'm.gguf.lock'))).toBe(false);
      } finally {
        spawnSync('umount', [dir]);
      }
    },
  );
});
