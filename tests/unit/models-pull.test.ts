import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/domain/errors.js';
import { progressBar, progressLine, type DownloadProgress } from '../../src/format/progress.js';
import { sizeText } from '../../src/domain/units.js';
import { resolvePullRef, resolveUrl } from '../../src/models/hf.js';
import { hfEndpoint, hfToken, httpError, lfsSha256, parseContentRange } from '../../src/models/hf-http.js';
import { parsePullRef, pickGgufFiles, shardNames, shardOf } from '../../src/models/hf-ref.js';

// The pure parts of `models pull`; the download itself is tested against a local hub in
// tests/integration/models-pull.test.ts.

describe('parsePullRef', () => {
  it('accepts owner/name, :QUANT, /FILE, the hf: prefix and @REVISION', () => {
    expect(parsePullRef('bartowski/Qwen2.5-0.5B-Instruct-GGUF')).toEqual({
      kind: 'hf',
      repo: 'bartowski/Qwen2.5-0.5B-Instruct-GGUF',
      revision: 'main',
    });
    expect(parsePullRef('hf:owner/name:Q4_K_M')).toEqual({
      kind: 'hf',
      repo: 'owner/name',
      revision: 'main',
      quant: 'Q4_K_M',
    });
    expect(parsePullRef('HF:owner/name@v1.0:iq2_xs')).toEqual({
      kind: 'hf',
      repo: 'owner/name',
      revision: 'v1.0',
      quant: 'iq2_xs',
    });
    expect(parsePullRef('owner/name/sub/dir/model-Q8_0.gguf')).toEqual({
      kind: 'hf',
      repo: 'owner/name',
      revision: 'main',
      file: 'sub/dir/model-Q8_0.gguf',
    });
    expect(parsePullRef('  owner/name@abc123/model.gguf ')).toMatchObject({ revision: 'abc123', file: 'model.gguf' });
  });

  it('a hub page or download URL is a hub reference (so the token and the LFS hash apply)', () => {
    expect(parsePullRef('https://huggingface.co/owner/name/blob/main/model%20x.gguf')).toEqual({
      kind: 'hf',
      repo: 'owner/name',
      revision: 'main',
      file: 'model x.gguf',
    });
    expect(parsePullRef('https://hf.co/owner/name/resolve/dev/a/b.gguf?download=true')).toMatchObject({
      repo: 'owner/name',
      revision: 'dev',
      file: 'a/b.gguf',
    });
    expect(parsePullRef('https://example.com/models/x.gguf')).toEqual({
      kind: 'url',
      url: 'https://example.com/models/x.gguf',
    });
  });

  it('refuses anything else with exit 1 and the accepted forms', () => {
    for (const bad of [
      '',
      'name-only',
      'a/b/c/../d.gguf',
      'owner/name:',
      'owner/name:Q4 K',
      'a/b:Q4/x.gguf',
      '/abs/path',
    ]) {
      let err: unknown;
      try {
        parsePullRef(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(UserError);
      expect((err as UserError).exitCode).toBe(1);
      expect((err as UserError).hint).toMatch(/owner\/name:QUANT/);
    }
  });
});

describe('choosing files', () => {
  const repo = [
    'README.md',
    'mmproj-F16.gguf',
    'Model-7B-mmproj-Q4_K_M.gguf',
    'Model-7B-Q4_K_S.gguf',
    'Model-7B-Q4_K_M.gguf',
    'Model-7B-IQ4_XS.gguf',
    'Model-7B-Q8_0.gguf',
    'Model-7B.imatrix.gguf',
    'UD-Q4_K_XL/Model-7B-UD-Q4_K_XL-00002-of-00002.gguf',
    'UD-Q4_K_XL/Model-7B-UD-Q4_K_XL-00001-of-00002.gguf',
  ];

  it('the quant is a whole word of the name, case-insensitive; mmproj and imatrix files never count', () => {
    expect(pickGgufFiles(repo, 'q8_0')).toEqual(['Model-7B-Q8_0.gguf']);
    expect(pickGgufFiles(repo, 'Q4_K')).toEqual([]); // not Q4_K_M nor Q4_K_S
    expect(pickGgufFiles(repo, 'Q4_K_M')).toEqual(['Model-7B-Q4_K_M.gguf']);
    expect(pickGgufFiles(repo, 'f16')).toEqual([]);
    expect(pickGgufFiles(repo, 'ud-q4_k_xl')).toEqual([
      'UD-Q4_K_XL/Model-7B-UD-Q4_K_XL-00001-of-00002.gguf',
      'UD-Q4_K_XL/Model-7B-UD-Q4_K_XL-00002-of-00002.gguf',
    ]);
  });

  it('no quant: Q4_K_M, else the first model file', () => {
    expect(pickGgufFiles(repo)).toEqual(['Model-7B-Q4_K_M.gguf']);
    expect(pickGgufFiles(['b-Q8_0.gguf', 'a-Q5_K_M.gguf', 'mmproj-a.gguf'])).toEqual(['a-Q5_K_M.gguf']);
    expect(pickGgufFiles(['README.md', 'mmproj-a.gguf'])).toEqual([]);
  });

  it('shard names', () => {
    expect(shardOf('dir/m-Q6_K-00002-of-00003.gguf')).toEqual({ prefix: 'dir/m-Q6_K', index: 2, count: 3 });
    expect(shardOf('m.gguf')).toBeNull();
    expect(shardNames('d/m-00003-of-00003.gguf')).toEqual([
      'd/m-00001-of-00003.gguf',
      'd/m-00002-of-00003.gguf',
      'd/m-00003-of-00003.gguf',
    ]);
    expect(shardNames('m.gguf')).toEqual(['m.gguf']);
  });

  it('a named file resolves without the network; shards to all of them', async () => {
    const env = { HF_ENDPOINT: 'http://hub.invalid/' };
    const files = await resolvePullRef(parsePullRef('o/n@dev/x/m-00001-of-00002.gguf'), { env });
    expect(files.map((f) => f.url)).toEqual([
      'http://hub.invalid/o/n/resolve/dev/x/m-00001-of-00002.gguf',
      'http://hub.invalid/o/n/resolve/dev/x/m-00002-of-00002.gguf',
    ]);
    expect(await resolvePullRef(parsePullRef('https://example.com/a/b%20c.gguf?x=1'), { env })).toEqual([
      { name: 'b c.gguf', url: 'https://example.com/a/b%20c.gguf?x=1' },
    ]);
  });
});

describe('hub details', () => {
  it('endpoint, token, resolve URL', () => {
    expect(hfEndpoint({})).toBe('https://huggingface.co');
    expect(hfEndpoint({ HF_ENDPOINT: 'https://mirror.example/ ' })).toBe('https://mirror.example');
    expect(hfToken({ HF_TOKEN: ' hf_x ' })).toBe('hf_x');
    expect(hfToken({ HUGGING_FACE_HUB_TOKEN: 'hf_old' })).toBe('hf_old');
    expect(hfToken({ HF_TOKEN: '' })).toBeUndefined();
    expect(resolveUrl('https://h', 'o/n', 'refs/pr/1', 'a b/c#.gguf')).toBe(
      'https://h/o/n/resolve/refs%2Fpr%2F1/a%20b/c%23.gguf',
    );
  });

  it('X-Linked-Etag: quotes (and W/) stripped, only a sha256 counts', () => {
    const hex = 'A'.repeat(64);
    expect(lfsSha256(`"${hex}"`)).toBe('a'.repeat(64));
    expect(lfsSha256(`W/"${hex}"`)).toBe('a'.repeat(64));
    expect(lfsSha256('"d41d8cd98f00b204e9800998ecf8427e"')).toBeUndefined(); // a git oid or md5
    expect(lfsSha256(undefined)).toBeUndefined();
  });

  it('Content-Range', () => {
    expect(parseContentRange('bytes 100-199/1000')).toEqual({ start: 100, total: 1000 });
    expect(parseContentRange('bytes 0-9/*')).toEqual({ start: 0, total: null });
    expect(parseContentRange('bytes */1000')).toEqual({ start: null, total: 1000 });
    expect(parseContentRange('items 1-2/3')).toBeNull();
    expect(parseContentRange(undefined)).toBeNull();
  });

  it('HTTP errors: what exit code and hint the operator gets', () => {
    const c = { repo: 'o/n', revision: 'main', file: 'm.gguf', endpoint: 'https://hf', tokenSent: false };
    expect(httpError(404, 'EntryNotFound', c)).toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/^m\.gguf not found in o\/n/),
    });
    expect(httpError(401, 'RepoNotFound', c)).toMatchObject({ exitCode: 2 });
    expect(httpError(404, 'RevisionNotFound', { ...c, revision: 'x' })).toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('revision "x" not found in o/n'),
    });
    const gated = httpError(401, 'GatedRepo', c);
    expect(gated.exitCode).toBe(9);
    expect(gated.hint).toContain('set HF_TOKEN');
    expect(gated.hint).toContain('https://hf/o/n');
    expect(httpError(403, undefined, { ...c, tokenSent: true }).hint).toMatch(/HF_TOKEN sent was refused/);
    expect(httpError(500, undefined, c)).toMatchObject({
      exitCode: 9,
      message: 'o/n: m.gguf: the server answered 500 Internal Server Error',
    });
    expect(
      httpError(401, undefined, { url: 'https://x.example/m.gguf', endpoint: 'https://hf', tokenSent: false }),
    ).toMatchObject({
      exitCode: 9,
      hint: 'HF_TOKEN is sent only to https://hf (HF_ENDPOINT)',
    });
  });
});

describe('progress text', () => {
  const base: DownloadProgress = {
    file: 'Qwen2.5-Coder-32B-Instruct-Q4_K_M-00001-of-00005.gguf',
    index: 1,
    count: 5,
    received: 1.8 * 1024 ** 3,
    total: 4.1 * 1024 ** 3,
    resumedFrom: 0,
    bytesPerSecond: 85.3 * 1024 ** 2,
    etaSeconds: 27.6,
  };

  it('sizes', () => {
    expect(sizeText(0)).toBe('0 B');
    expect(sizeText(1023)).toBe('1023 B');
    expect(sizeText(1536)).toBe('1.5 KiB');
    expect(sizeText(5 * 1024 ** 3)).toBe('5.0 GiB');
  });

  it('a wide terminal gets everything', () => {
    const line = progressBar({ ...base, file: 'm-Q4_K_M.gguf', count: 1 }, 120);
    expect(line).toBe('m-Q4_K_M.gguf [#############-----------------]  43%  1.8 GiB / 4.1 GiB  85.3 MiB/s  ETA 28s');
  });

  it('never wider than the terminal; the name is cut in the middle first', () => {
    for (let w = 1; w <= 160; w++) {
      for (const p of [base, { ...base, total: null, etaSeconds: null }, { ...base, received: 0, bytesPerSecond: 0 }]) {
        expect(progressBar(p, w).length, `width ${w}`).toBeLessThanOrEqual(w);
      }
    }
    expect(progressBar(base, 80)).toBe(
      'Qwen2.5-…05.gguf [1/5] [####------]  43%  1.8 GiB / 4.1 GiB  85.3 MiB/s  ETA 28s',
    );
    expect(progressBar(base, 117)).toBe(
      'Qwen2.5-Coder-32B-Instruct-Q4_K_M-00001-of-00005.gguf [1/5] [####------]  43%  1.8 GiB / 4.1 GiB  85.3 MiB/s  ETA 28s',
    );
    expect(progressBar(base, 50)).toMatch(/\[#+-+\] {2}43% {2}85\.3 MiB\/s$/); // bytes and ETA left out
    expect(progressBar(base, 8)).toBe('Qw…f 43%');
    expect(progressBar(base, 3)).toBe('43%');
  });

  it('no known total: no bar, the bytes and the rate', () => {
    expect(progressBar({ ...base, file: 'x.gguf', count: 1, total: null, etaSeconds: null }, 80)).toBe(
      'x.gguf  1.8 GiB  85.3 MiB/s',
    );
  });

  it('the plain line for logs', () => {
    expect(progressLine({ ...base, resumedFrom: 1024 ** 3 })).toBe(
      'Qwen2.5-Coder-32B-Instruct-Q4_K_M-00001-of-00005.gguf [1/5]: 43% (1.8 GiB of 4.1 GiB) at 85.3 MiB/s, ETA 28s, resumed at 1.0 GiB',
    );
    expect(progressLine({ ...base, count: 1, file: 'x.gguf', total: null, etaSeconds: null })).toBe(
      'x.gguf: 1.8 GiB at 85.3 MiB/s',
    );
    expect(progressLine({ ...base, count: 1, file: 'x.gguf', received: base.total ?? 0, etaSeconds: 0 })).toBe(
      'x.gguf: 100% (4.1 GiB of 4.1 GiB) at 85.3 MiB/s, ETA 0s',
    );
  });
});
