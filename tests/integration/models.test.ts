import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { llamaModel, writeGguf } from '../fixtures/gguf-writer.mjs';
// @ts-expect-error: a plain .mjs fixture without types
import { startFakeHub } from '../fixtures/fake-hf-server.mjs';
import { cli, fakeConfig, freePort, homePerTest, REPO, waitFor, writeFakeModel } from '../helpers/home.js';

// `models list/info/rm`, the GGUF checks of lint and up, and the memory-fit preflight, as an
// operator meets them. Big models are sparse files: a 70B header with no bytes behind its weights.

const homes = homePerTest();
const FAKES = path.join(REPO, 'tests/fixtures/gpu');
const GPU0 = 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77';

/** A home whose caches are its own (HF_HOME, LLAMA_CACHE) and where no GPU tool is found. */
function isolated(root: string): Record<string, string> {
  return {
    HF_HOME: path.join(root, 'hf'),
    LLAMA_CACHE: path.join(root, 'llama-cache'),
    PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
    LLAMA_ORCH_NVIDIA_SMI: 'none',
    LLAMA_ORCH_ROCM_SMI: 'none',
  };
}

/** A 70B-shaped Q4_K model: ~37 GiB of weights that take no disk. */
function huge(file: string) {
  const m = llamaModel({ vocab: 128000, embd: 8192, ff: 28672, layers: 80, heads: 64, headsKv: 8, type: 'Q4_K' });
  writeGguf(file, m.metadata, m.tensors);
}

describe('GGUF checks in lint and up', () => {
  it('a text file named .gguf and a truncated download are refused with the path and what is wrong; nothing starts', async () => {
    const home = homes.make();
    const env = isolated(home.root);
    fs.writeFileSync(path.join(home.root, 'models', 'notes.gguf'), 'these are my notes, not a model\n');
    writeFakeModel(path.join(home.root, 'models', 'full.gguf'), { vocab: 5000, embd: 256 });
    const full = fs.readFileSync(path.join(home.root, 'models', 'full.gguf'));
    fs.writeFileSync(path.join(home.root, 'models', 'cut.gguf'), full.subarray(0, Math.floor(full.length / 2)));
    home.addInstance('text', fakeConfig(freePort(), {}, { model: { path: 'models/notes.gguf' } }));
    home.addInstance('cut', fakeConfig(freePort(), {}, { model: { path: 'models/cut.gguf' } }));

    const lint = await cli(home.root, ['config', 'lint'], env);
    expect(lint.code).toBe(1);
    expect(lint.stderr).toContain(
      `$.model.path: ${home.root}/models/notes.gguf is not a GGUF file (it does not start with the GGUF magic bytes)`,
    );
    expect(lint.stderr).toMatch(
      new RegExp(
        `${home.root}/models/cut.gguf is truncated: tensor \\S+ ends at byte \\d+, but the file has \\d+ bytes`,
      ),
    );

    for (const name of ['text', 'cut']) {
      const up = await cli(home.root, ['up', name], env);
      expect(up.code).toBe(1);
      expect(up.stderr).toMatch(
        new RegExp(`error: ${name}: ${home.root}/models/\\w+\\.gguf (is not a GGUF file|is truncated)`),
      );
      expect(up.stderr).not.toMatch(/\n\s+at /);
    }
    const ps = JSON.parse((await cli(home.root, ['ps', '--json'], env)).stdout) as Array<{ state: string }>;
    expect(ps.map((p) => p.state)).toEqual(['stopped', 'stopped']);
  });
});

describe('models list', () => {
  it('finds the home, instance, hub-cache and llama.cpp-cache models once each; shards as one; who uses each', async () => {
    const home = homes.make();
    const env = isolated(home.root);
    const models = path.join(home.root, 'models');
    // Noise: hundreds of other files are never opened.
    fs.mkdirSync(path.join(models, 'notes'));
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(models, 'notes', `n${i}.txt`), 'x');
    // A split model: three shards, listed once.
    for (let i = 1; i <= 3; i++) {
      writeFakeModel(path.join(models, `big-0000${i}-of-00003.gguf`), { name: 'big' });
    }
    // The hub's layout: snapshots/REV/FILE is a symlink to blobs/HASH.
    const repo = path.join(env.HF_HOME as string, 'hub', 'models--acme--tiny-GGUF');
    fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
    fs.mkdirSync(path.join(repo, 'snapshots', 'abc123'), { recursive: true });
    writeFakeModel(path.join(repo, 'blobs', 'deadbeef'), { name: 'hub-tiny' });
    fs.symlinkSync('../../blobs/deadbeef', path.join(repo, 'snapshots', 'abc123', 'tiny-Q4_K_M.gguf'));
    fs.mkdirSync(env.LLAMA_CACHE as string);
    writeFakeModel(path.join(env.LLAMA_CACHE as string, 'acme_other-Q8_0.gguf'), { name: 'cached' });
    // A folder linked into models/ (a NAS) is followed; a link loop is not.
    const nas = path.join(home.root, 'nas');
    fs.mkdirSync(nas);
    writeFakeModel(path.join(nas, 'on-nas.gguf'), { name: 'on-nas' });
    fs.symlinkSync(nas, path.join(models, 'nas'));
    fs.symlinkSync(models, path.join(nas, 'loop'));
    // An instance whose model lives elsewhere, and one on the home's fake model.
    const outside = path.join(home.root, 'elsewhere');
    fs.mkdirSync(outside);
    writeFakeModel(path.join(outside, 'mine.gguf'), { name: 'mine' });
    home.addInstance('a', fakeConfig(freePort(), {}, { model: { path: path.join(outside, 'mine.gguf') } }));
    home.addInstance('b', fakeConfig(freePort()));
    expect((await cli(home.root, ['up', 'b'], env)).code).toBe(0);

    const r = await cli(home.root, ['models', 'list', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as Array<{
      path: string;
      files: string[];
      source: string;
      name: string;
      used_by: Array<{ name: string; running: boolean }>;
      architecture: string;
      size_bytes: number;
    }>;
    const byName = new Map(list.map((m) => [m.name, m]));
    expect(byName.get('big')?.files).toHaveLength(3);
    expect(byName.get('big')?.source).toBe('home');
    expect(byName.get('hub-tiny')?.source).toBe('hf');
    expect(byName.get('cached')?.source).toBe('llama.cpp');
    expect(byName.get('on-nas')?.source).toBe('home');
    expect(byName.get('mine')).toMatchObject({ source: 'config', used_by: [{ name: 'a', running: false }] });
    expect(byName.get('fake')).toMatchObject({ architecture: 'llama', used_by: [{ name: 'b', running: true }] });
    expect(list.filter((m) => m.path.includes('big-'))).toHaveLength(1);

    const text = await cli(home.root, ['models', 'list'], env);
    expect(text.stdout).toMatch(/^MODEL\s+ARCH\s+PARAMS\s+QUANT\s+SIZE\s+CTX\s+USED BY\s+FROM/);
    expect(text.stdout).toMatch(/models\/big-00001-of-00003\.gguf \(\+2 shards\)/);
    expect(text.stdout).toMatch(/models\/fake\.gguf\s+llama.*\bb\*\s+home/);
  });
});

describe('models info and rm', () => {
  it('info: the header and the estimate for the given context; unknown names exit 2', async () => {
    const home = homes.make();
    const env = isolated(home.root);
    huge(path.join(home.root, 'models', 'llama70.gguf'));
    const r = await cli(home.root, ['models', 'info', 'llama70', '--ctx', '32768', '--parallel', '1', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout) as Record<string, unknown> & { estimate: Record<string, number> };
    expect(info).toMatchObject({ architecture: 'llama', block_count: 80, head_count_kv: 8, quantization: 'Q4_K_M' });
    // 80 layers x 32768 cells x 8 KV heads x 128 x (K + V) x 2 bytes = 10 GiB.
    expect(info.estimate.kv_bytes).toBe(80 * 32768 * 8 * 128 * 2 * 2);
    expect(info.estimate.context).toBe(32768);
    const q8 = JSON.parse(
      (
        await cli(
          home.root,
          ['models', 'info', 'llama70', '--ctx', '32768', '--parallel', '1', '--cache-type', 'q8_0', '--json'],
          env,
        )
      ).stdout,
    ) as typeof info;
    expect(q8.estimate.kv_bytes).toBe((info.estimate.kv_bytes * 34) / 64);
    const text = await cli(
      home.root,
      ['models', 'info', 'llama70', '--ctx', '8192', '--ngl', '81', '--gpus', '2'],
      env,
    );
    expect(text.stdout).toContain(
      'memory estimate: -c 8192 (8192 per slot), 4 slots (auto, unified KV), -ngl 81 on 2 GPUs',
    );
    expect(text.stdout).toMatch(/gpu 0\s+\d+\.\d/);
    expect(text.stdout).toMatch(/gpu 1\s+\d+\.\d/);
    const missing = await cli(home.root, ['models', 'info', 'nope'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('error: no model "nope"');
    const badType = await cli(home.root, ['models', 'info', 'llama70', '--cache-type', 'q3'], env);
    expect(badType.code).toBe(1);
    expect(badType.stderr).toContain('unknown KV cache type "q3"');
  });

  it('rm: refuses the model of a running instance (naming it), asks for --yes without a terminal, removes all shards', async () => {
    const home = homes.make();
    const env = isolated(home.root);
    home.addInstance('busy', fakeConfig(freePort()));
    expect((await cli(home.root, ['up', 'busy'], env)).code).toBe(0);
    const refused = await cli(home.root, ['models', 'rm', 'fake', '--yes'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`error: ${home.root}/models/fake.gguf is in use by running instance busy`);
    expect(fs.existsSync(path.join(home.root, 'models', 'fake.gguf'))).toBe(true);

    for (let i = 1; i <= 2; i++) writeFakeModel(path.join(home.root, 'models', `split-0000${i}-of-00002.gguf`));
    const noTty = await cli(home.root, ['models', 'rm', 'split'], env);
    expect(noTty.code).toBe(1);
    expect(noTty.stderr).toContain('not removed');
    expect(noTty.stderr).toContain('add --yes');
    const rm = await cli(home.root, ['models', 'rm', 'split', '--yes'], env);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain('removed 2 files of');
    expect(fs.readdirSync(path.join(home.root, 'models')).filter((f) => f.startsWith('split'))).toEqual([]);

    // A later shard of a running model names the whole model: refused.
    for (let i = 1; i <= 2; i++) writeFakeModel(path.join(home.root, 'models', `run-0000${i}-of-00002.gguf`));
    home.addInstance('sharded', fakeConfig(freePort(), {}, { model: { path: 'models/run-00001-of-00002.gguf' } }));
    expect((await cli(home.root, ['up', 'sharded'], env)).code).toBe(0);
    const shard = await cli(home.root, ['models', 'rm', 'models/run-00002-of-00002.gguf', '--yes'], env);
    expect(shard.code).toBe(1);
    expect(shard.stderr).toContain('is in use by running instance sharded');
    expect(fs.existsSync(path.join(home.root, 'models', 'run-00002-of-00002.gguf'))).toBe(true);

    // Only GGUF models are removed; a link is removed as a link, its target (a shared disk) stays.
    fs.writeFileSync(path.join(home.root, 'notes.txt'), 'mine');
    const notes = await cli(home.root, ['models', 'rm', 'notes.txt', '--yes'], env);
    expect(notes.code).toBe(1);
    expect(notes.stderr).toContain('is not a .gguf model file');
    expect(fs.existsSync(path.join(home.root, 'notes.txt'))).toBe(true);
    const dirRm = await cli(home.root, ['models', 'rm', 'models', '--yes'], env);
    expect(dirRm.code).toBe(1);
    expect(dirRm.stderr).not.toMatch(/\n\s+at /);
    const shared = path.join(home.root, 'nas');
    fs.mkdirSync(shared);
    writeFakeModel(path.join(shared, 'shared.gguf'));
    fs.symlinkSync(path.join(shared, 'shared.gguf'), path.join(home.root, 'models', 'link.gguf'));
    const link = await cli(home.root, ['models', 'rm', 'models/link.gguf', '--yes'], env);
    expect(link.code, link.stderr).toBe(0);
    expect(fs.existsSync(path.join(home.root, 'models', 'link.gguf'))).toBe(false);
    expect(fs.existsSync(path.join(shared, 'shared.gguf'))).toBe(true);
  });
});

describe('memory fit', () => {
  it('CPU-only: up refuses a model larger than the host (exit 8, the numbers); --force starts it with a warning', async () => {
    const home = homes.make();
    const env = isolated(home.root);
    home.addInstance(
      'big',
      fakeConfig(
        freePort(),
        {},
        { model: { path: 'models/llama70.gguf', context_size: 32768 }, server: { parallel: 1 } },
      ),
    );
    // More than any test machine has: 400 layers of a 70B, ~185 GiB of weights.
    const many = llamaModel({ vocab: 128000, embd: 8192, ff: 28672, layers: 400, heads: 64, headsKv: 8, type: 'Q4_K' });
    writeGguf(path.join(home.root, 'models', 'llama70.gguf'), many.metadata, many.tensors);
    const up = await cli(home.root, ['up', 'big'], env);
    expect(up.code).toBe(8);
    expect(up.stderr).toMatch(
      /^error: big does not fit: host memory: needs \d+\.\d GiB \(\d+\.\d weights \+ \d+\.\d KV \+ \d+\.\d compute\), \d+\.\d GiB available/,
    );
    expect(up.stderr).toContain('add --force to start anyway');
    expect(JSON.parse((await cli(home.root, ['ps', '--json'], env)).stdout)).toMatchObject([{ state: 'stopped' }]);
    const forced = await cli(home.root, ['up', 'big', '--force'], env);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/warning: big: starting anyway \(--force\): host memory: needs/);
  });

  it('one 24 GiB GPU with 9 GiB free: up names the GPU and the numbers; lint counts the autostart instances together', async () => {
    const home = homes.make();
    const scenario = path.join(home.root, 'smi.json');
    fs.writeFileSync(
      scenario,
      JSON.stringify({
        gpus: [['0', GPU0, 'NVIDIA GeForce RTX 4090', '3', '15360', '24564', '40', '30.00', '450.00']],
        apps: [],
      }),
    );
    const env = {
      ...isolated(home.root),
      PATH: `${FAKES}:${path.dirname(process.execPath)}:/usr/bin:/bin`,
      LLAMA_ORCH_NVIDIA_SMI: path.join(FAKES, 'nvidia-smi'),
      FAKE_SMI_SCENARIO: scenario,
    };
    // 8B-shaped Q4_K: ~4 GiB of weights, 1 GiB of KV at 8192 cells.
    const m = llamaModel({ vocab: 128256, embd: 4096, ff: 14336, layers: 32, heads: 32, headsKv: 8, type: 'Q4_K' });
    writeGguf(path.join(home.root, 'models', 'llama8.gguf'), m.metadata, m.tensors);
    const gpuCfg = (ctx: number, autostart: boolean) =>
      fakeConfig(
        freePort(),
        {},
        {
          model: { path: 'models/llama8.gguf', context_size: ctx, n_gpu_layers: 99 },
          server: { parallel: 1 },
          gpu: { backend: 'cuda', devices: [0] },
          autostart,
        },
      );
    home.addInstance('long', gpuCfg(65536, false));
    const up = await cli(home.root, ['up', 'long'], env);
    expect(up.code, up.stderr).toBe(8);
    expect(up.stderr).toMatch(
      /^error: long does not fit: gpu 0: needs \d+\.\d GiB \(\d+\.\d weights \+ 8\.0 KV \+ \d+\.\d compute \+ 0\.3 runtime\), 9\.0 GiB free/,
    );
    // The KV cache is the largest part: the hint says how to shrink it.
    expect(up.stderr).toContain('lower model.context_size or server.parallel, or quantize the KV cache');
    fs.rmSync(path.join(home.root, 'instances', 'long'), { recursive: true });
    home.addInstance('one', gpuCfg(8192, true));
    home.addInstance('two', gpuCfg(8192, true));
    const lint = await cli(home.root, ['config', 'lint'], env);
    expect(lint.code, lint.stderr).toBe(8);
    expect(lint.stderr).toMatch(
      /does not fit: gpu 0: needs \d+\.\d GiB .* for one \d+\.\d, two \d+\.\d, \d+\.\d GiB free; to fit: offload fewer layers \(lower model\.n_gpu_layers\)/,
    );
    const json = JSON.parse((await cli(home.root, ['config', 'lint', '--json'], env)).stdout) as {
      memory_fit: Array<{ device: number; fits: boolean; instances: Array<{ name: string }> }>;
    };
    expect(json.memory_fit.find((d) => d.device === 0)).toMatchObject({
      fits: false,
      instances: [{ name: 'one' }, { name: 'two' }],
    });
    // One alone fits.
    fs.rmSync(path.join(home.root, 'instances', 'two'), { recursive: true });
    const ok = await cli(home.root, ['config', 'lint'], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/memory fit: host memory .*, gpu 0 \d+\.\d of 24\.0 GiB/);
  });
});

describe("llama-server's --fit shrinking an unset context", () => {
  it('is said: an event and a warning in ps (the lines of a real CPU run, replayed by the fake server)', async () => {
    const home = homes.make();
    const env = isolated(home.root);
    // A model trained on 4M tokens: with -c unset and 4 slots llama-server asks for 16M cells.
    writeFakeModel(path.join(home.root, 'models', 'long.gguf'), { ctx: 4194304 });
    // Lines the real llama-server printed for such a model here (LLAMA_ARG_LOG_VERBOSITY=4).
    const lines = [
      '0.02.829.549 I common_params_fit_impl: context size unset -> using 16777216 for 4 sequences:',
      '0.15.899.706 I common_params_fit_impl: projected to use 803329 MiB of host memory vs. 24105 MiB of total host memory',
      '0.15.936.284 I common_params_fit_impl: context size reduced from 16777216 to 471552 -> need 780251 MiB less memory in total',
      '0.15.972.055 I llama_context: n_ctx                 = 471552',
      '0.15.972.055 I llama_context: n_ctx_seq             = 471552',
    ].join('\n');
    home.addInstance('long', fakeConfig(freePort(), { FAKE_STDERR: lines }, { model: { path: 'models/long.gguf' } }));
    expect((await cli(home.root, ['up', 'long', '--wait', '20'], env)).code).toBe(0);
    const warned = await waitFor(
      async () => {
        const ps = JSON.parse((await cli(home.root, ['ps', '--json'], env)).stdout) as Array<{ warnings: string[] }>;
        return ps[0]?.warnings.find((w) => w.startsWith('context '));
      },
      10_000,
      'the context warning in ps',
    );
    expect(warned).toBe('context 471552 in use, not 16777216 (--fit shrank it: set model.context_size)');
    const events = await cli(home.root, ['events', 'long', '--json'], env);
    expect(events.stdout).toContain(
      "llama-server runs with a context of 471552 tokens, not 16777216 (the model's trained context for each slot, as model.context_size is unset): --fit shrank it to fit free memory; set model.context_size to choose",
    );
  });
});

describe('models pull and init --model hf: through the CLI (a local hub)', () => {
  it('pulls REPO:QUANT into the home, verifies it, refuses a wrong --sha256 (exit 9, no file), init pulls first', async () => {
    const home = homes.make();
    const hub = (await startFakeHub()) as {
      url: string;
      addFile: (repo: string, name: string, content: Buffer) => string;
      close: () => Promise<void>;
    };
    try {
      const m = llamaModel({ name: 'hub-tiny' });
      const tmp = path.join(home.root, 'src.gguf');
      writeGguf(tmp, m.metadata, m.tensors, { fill: 'random' });
      const bytes = fs.readFileSync(tmp);
      hub.addFile('acme/tiny-GGUF', 'tiny-Q4_K_M.gguf', bytes);
      hub.addFile('acme/tiny-GGUF', 'tiny-Q8_0.gguf', bytes);
      const env = { ...isolated(home.root), HF_ENDPOINT: hub.url };
      const pull = await cli(home.root, ['models', 'pull', 'acme/tiny-GGUF:q8_0'], env);
      expect(pull.code, pull.stderr).toBe(0);
      expect(pull.stdout).toContain(`${home.root}/models/tiny-Q8_0.gguf: `);
      expect(pull.stdout).toContain('sha256 verified against the hub');
      expect(fs.readFileSync(path.join(home.root, 'models', 'tiny-Q8_0.gguf')).equals(bytes)).toBe(true);
      // Not a terminal: plain progress lines on stderr, no bar.
      expect(pull.stderr).toMatch(/tiny-Q8_0\.gguf: 100% \(/);
      expect(pull.stderr).not.toContain('\r');

      const wrong = await cli(
        home.root,
        ['models', 'pull', 'acme/tiny-GGUF/tiny-Q4_K_M.gguf', '--sha256', '0'.repeat(64)],
        env,
      );
      expect(wrong.code).toBe(9);
      expect(wrong.stderr).toMatch(/sha256/i);
      expect(fs.readdirSync(path.join(home.root, 'models')).filter((f) => f.startsWith('tiny-Q4_K_M'))).toEqual([]);

      const init = await cli(
        home.root,
        ['init', 'hubby', '--profile', 'cpu', '--model', 'hf:acme/tiny-GGUF:Q4_K_M', '--port', String(freePort())],
        env,
      );
      expect(init.code, init.stderr).toBe(0);
      const cfg = JSON.parse(fs.readFileSync(path.join(home.root, 'instances', 'hubby', 'config.json'), 'utf8')) as {
        model: { path: string };
      };
      expect(cfg.model.path).toBe('models/tiny-Q4_K_M.gguf');
      const list = JSON.parse((await cli(home.root, ['models', 'list', '--json'], env)).stdout) as Array<{
        path: string;
        used_by: Array<{ name: string }>;
      }>;
      expect(list.find((x) => x.path.endsWith('tiny-Q4_K_M.gguf'))?.used_by).toEqual([
        { name: 'hubby', running: false },
      ]);
    } finally {
      await hub.close();
    }
  });
});
