import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NO_USABLE_GPU, gpuBufferBytes, type GpuReading, type LoadFacts } from '../../src/domain/gpu.js';
import { nonRetryableReason } from '../../src/keeper/classify.js';
import { emptyLoadFacts, scanLoadLine } from '../../src/keeper/load-facts.js';
import {
  NVIDIA_APP_FIELDS,
  NVIDIA_GPU_FIELDS,
  nvidiaFailure,
  parseAppLines,
  parseGpuLines,
  parseList,
} from '../../src/platform/gpu/nvidia.js';
import { parseRocmGpus } from '../../src/platform/gpu/rocm.js';
import { runTool } from '../../src/platform/gpu/tool.js';

// Real outputs of nvidia-smi, rocm-smi and llama-server, each with its public source in
// tests/fixtures/real/README.md. The expectations say what the real text means, not what the
// parsers happen to return: a failing case here is a parser bug (or a fact the parsers do not read).

const MIB = 1024 * 1024;
const REAL = path.join(import.meta.dirname, '../fixtures/real');
const read = (rel: string) => fs.readFileSync(path.join(REAL, rel), 'utf8');
const mib = (n: number) => Math.round(n * MIB);

interface Meta {
  args: string;
  exit: number | null;
  format?: string;
  /** The queried fields, for outputs printed without a header line. */
  fields?: string[];
}
const meta = (rel: string): Meta => JSON.parse(read(rel.replace(/\.txt$/, '.meta.json'))) as Meta;

// --- nvidia-smi: real outputs of other field lists, re-projected onto the project's query ---------

/** nvidia-smi's names for the same field in --query-gpu / --query-compute-apps. */
const ALIAS: Record<string, string> = { gpu_name: 'name', used_gpu_memory: 'used_memory' };

/**
 * Re-projects a real `--format=csv` (header line) or noheader output onto `want`, the project's field
 * order. Cells are kept verbatim (units and all: "214 MiB" as printed without nounits); a field the
 * source did not query becomes `[Not Queried]` (unknown), except `index`, which becomes the row's
 * position (one GPU per row, as nvidia-smi prints them). Lines that are not rows of the table
 * (warnings, "Unable to determine the device handle ...") pass through unchanged.
 */
function project(rel: string, want: readonly string[]): string {
  const m = meta(rel);
  const lines = read(rel)
    .split('\n')
    .filter((l) => l !== '');
  const header = m.fields ? null : lines[0];
  const fields = (m.fields ?? (header ?? '').split(', ').map((h) => h.replace(/ \[[^\]]*\]$/, ''))).map(
    (f) => ALIAS[f] ?? f,
  );
  let row = 0;
  return (
    lines
      .slice(header === null ? 0 : 1)
      .map((line) => {
        const cells = line.split(', ');
        if (cells.length !== fields.length) return line;
        const n = row++;
        return want
          .map((f) => {
            const i = fields.indexOf(f);
            if (i >= 0) return cells[i];
            return f === 'index' ? String(n) : '[Not Queried]';
          })
          .join(', ');
      })
      .join('\n') + '\n'
  );
}
const gpusOf = (rel: string) => parseGpuLines(project(rel, NVIDIA_GPU_FIELDS));
const appsOf = (rel: string) => parseAppLines(project(rel, NVIDIA_APP_FIELDS));

const MASKED = 'GPU-00000000-0000-0000-0000-000000000000';
const reading = (r: Partial<GpuReading>): GpuReading => ({
  index: 0,
  uuid: null,
  name: null,
  utilization_pct: null,
  memory_used_bytes: null,
  memory_total_bytes: null,
  temperature_c: null,
  power_w: null,
  power_limit_w: null,
  ...r,
});

describe('nvidia-smi --query-gpu, real captures (nvidia_gpu_exporter, every field, --format=csv)', () => {
  const cases: Array<[string, [number | null, number, number, number, number, number]]> = [
    // file: utilization %, memory used MiB, total MiB, temperature C, power W, power limit W (under load)
    ['capture-rtx2080super-linux-595.71.05-query-gpu.txt', [8, 819, 8192, 45, 111.5, 250]],
    ['capture-rtx2080super-linux-610.57.04-query-gpu.txt', [8, 815, 8192, 38, 98.14, 250]],
    ['capture-rtx4080super-linux-595.71.05-query-gpu.txt', [7, 1474, 16376, 46, 84.24, 320]],
    ['capture-h100-590.48.01-query-gpu.txt', [100, 19818, 81559, 59, 631.95, 700]],
    // MIG mode: one row for the physical GPU, utilization [N/A], memory of all its MIG devices.
    ['capture-h100-mig-590.48.01-query-gpu.txt', [null, 11125, 81559, 53, 433.78, 700]],
    ['capture-h200-mig-590.48.01-query-gpu.txt', [null, 16959, 143771, 36, 295.01, 700]],
    ['capture-l40s-595.80-query-gpu.txt', [9, 1235, 46068, 54, 110.23, 350]],
    ['capture-rtx2080super-windows-591.86-query-gpu.txt', [7, 1296, 8192, 45, 97.43, 250]],
    ['capture-rtx2080super-windows-610.62-query-gpu.txt', [7, 1366, 8192, 44, 97.99, 250]],
  ];
  const names: Record<string, string> = {
    rtx2080super: 'NVIDIA GeForce RTX 2080 SUPER',
    rtx4080super: 'NVIDIA GeForce RTX 4080 SUPER',
    h100: 'NVIDIA H100 80GB HBM3',
    h200: 'NVIDIA H200',
    l40s: 'NVIDIA L40S',
  };
  for (const [file, [util, used, total, temp, power, limit]] of cases) {
    it(file, () => {
      const name = names[/^capture-([a-z0-9]+?)(?:-mig)?-/.exec(file)?.[1] ?? ''];
      expect(gpusOf(`nvidia-smi/${file}`)).toEqual([
        reading({
          uuid: MASKED,
          name,
          utilization_pct: util,
          memory_used_bytes: used * MIB,
          memory_total_bytes: total * MIB,
          temperature_c: temp,
          power_w: power,
          power_limit_w: limit,
        }),
      ]);
    });
  }
});

describe('nvidia-smi --query-compute-apps, real captures', () => {
  const app = (pid: number, name: string, memMib: number | null) => ({
    pid,
    name,
    memory_bytes: memMib === null ? null : memMib * MIB,
    gpu_uuid: MASKED,
    gpu_index: null,
  });
  it('consumer cards: ffmpeg and a Wayland compositor', () => {
    expect(appsOf('nvidia-smi/capture-rtx2080super-linux-595.71.05-compute-apps.txt')).toEqual([
      app(5268, 'ffmpeg', 370),
      app(5267, 'ffmpeg', 230),
    ]);
    expect(appsOf('nvidia-smi/capture-rtx4080super-linux-595.71.05-compute-apps.txt')).toEqual([
      app(2165, '/usr/bin/kwin_wayland', 25),
      app(5022, 'ffmpeg', 503),
      app(5021, 'ffmpeg', 360),
    ]);
  });
  it('H100, whole and in MIG mode (processes carry the parent GPU uuid)', () => {
    expect(appsOf('nvidia-smi/capture-h100-590.48.01-compute-apps.txt')).toEqual([
      app(11327, '/root/tools/memhog', 2566),
      app(11328, '/root/tools/memhog', 1542),
      app(11345, './gpu_burn', 15690),
    ]);
    expect(appsOf('nvidia-smi/capture-h100-mig-590.48.01-compute-apps.txt')).toEqual([
      app(21180, '/root/tools/memhog', 2296),
      app(21181, '/root/tools/memhog', 1272),
      app(21198, './gpu_burn', 7484),
    ]);
  });
  it('Windows (WDDM): twelve processes, [N/A] memory for each, paths with spaces kept whole', () => {
    const apps = appsOf('nvidia-smi/capture-rtx2080super-windows-591.86-compute-apps.txt');
    expect(apps).toHaveLength(12);
    expect(apps.every((a) => a.memory_bytes === null && a.gpu_uuid === MASKED)).toBe(true);
    expect(apps.find((a) => a.pid === 20372)?.name).toBe('C:\\Program Files\\NZXT CAM\\NZXT CAM.exe');
    expect(apps.find((a) => a.pid === 4680)?.name).toBe(
      'C:\\Program Files\\NVIDIA Corporation\\NVIDIA GeForce Experience\\NVIDIA Share.exe',
    );
  });
  it('Windows: a process whose name is [Insufficient Permissions] is kept, name unknown', () => {
    const apps = appsOf('nvidia-smi/windows-rtxpro6000-compute-apps-insufficient-permissions.txt');
    expect(apps.map((a) => a.pid)).toEqual([2248, 15840, 17344, 17320]);
    expect(apps[0]).toEqual({ pid: 2248, name: null, memory_bytes: null, gpu_uuid: null, gpu_index: null });
    expect(apps[1]?.name).toBe('C:\\Windows\\explorer.exe');
  });
  it('GB10 (unified memory): per-process used_memory works while memory.* is [N/A]', () => {
    // The reporter elided the uuid as "GPU-..."; the text is what it is.
    expect(appsOf('nvidia-smi/gb10-compute-apps-noheader.txt')).toEqual([
      { pid: 114687, name: '/usr/local/bin/python', memory_bytes: 19135 * MIB, gpu_uuid: 'GPU-...', gpu_index: null },
    ]);
  });
});

describe('nvidia-smi -L with MIG devices (real captures)', () => {
  it('H100 with four MIG devices, H200 with five', () => {
    const h100 = parseList(read('nvidia-smi/capture-h100-mig-590.48.01-list.txt'));
    expect(h100.gpus).toEqual([{ index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: MASKED }]);
    expect(h100.mig.map((m) => m.uuid)).toEqual(
      [0, 1, 2, 3].map((i) => `MIG-0000000${i}-0000-0000-0000-00000000000${i}`),
    );
    expect(h100.mig.every((m) => m.gpu === 0)).toBe(true);
    const h200 = parseList(read('nvidia-smi/capture-h200-mig-590.48.01-list.txt'));
    expect(h200.gpus.map((g) => g.name)).toEqual(['NVIDIA H200']);
    expect(h200.mig).toHaveLength(5);
  });
});

describe('nvidia-smi --query-gpu, real outputs from issue threads (re-projected)', () => {
  it('MIG A100 in an unprivileged container: [N/A] utilization, [Insufficient Permissions] memory', () => {
    // Nothing of its load and memory could be read: the row is there, the GPU unreadable.
    const gpus = gpusOf('nvidia-smi/mig-a100-unprivileged-query-gpu.txt');
    expect(gpus).toHaveLength(1);
    expect(gpus[0]).toMatchObject(reading({ name: 'NVIDIA A100-SXM4-80GB', temperature_c: 47 }));
    expect(gpus[0]?.state).toBe('unreadable');
  });
  it('a MIG vGPU slice (noheader,nounits) and two RTX A6000', () => {
    expect(gpusOf('nvidia-smi/mig-h100l-vgpu-clocks-noheader.txt')).toEqual([
      reading({ name: 'NVIDIA H100L-2-24C', memory_total_bytes: 24576 * MIB }),
    ]);
    const a6000 = gpusOf('nvidia-smi/rtx-a6000-x2-clocks-noheader.txt');
    expect(a6000.map((g) => [g.index, g.name, g.memory_total_bytes])).toEqual([
      [0, 'NVIDIA RTX A6000', 49140 * MIB],
      [1, 'NVIDIA RTX A6000', 49140 * MIB],
    ]);
  });
  it('eight A100-SXM4-80GB', () => {
    const gpus = gpusOf('nvidia-smi/a100-x8-query-gpu.txt');
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(gpus.map((g) => (g.memory_used_bytes ?? -1) / MIB)).toEqual([
      66147, 77105, 50803, 57421, 76651, 0, 6313, 6247,
    ]);
    expect(gpus.map((g) => g.utilization_pct)).toEqual([99, 0, 87, 99, 0, 0, 39, 40]);
    expect(gpus.every((g) => g.memory_total_bytes === 81920 * MIB && g.name === 'NVIDIA A100-SXM4-80GB')).toBe(true);
  });
  it('GB10 / DGX Spark: memory.* is [N/A] (unknown, not 0), power.limit [N/A]', () => {
    expect(gpusOf('nvidia-smi/gb10-query-gpu-memory-na.txt')).toEqual([reading({ name: 'NVIDIA GB10' })]);
    expect(gpusOf('nvidia-smi/gb10-query-gpu-power-limit-na.txt')).toEqual([
      reading({ name: 'NVIDIA GB10', temperature_c: 39, utilization_pct: 0, power_w: 5.04 }),
    ]);
    expect(gpusOf('nvidia-smi/gb10-memory-na-noheader.txt')).toEqual([reading({})]);
    // -l 1: five samples of the one GPU; each sample is a reading of GPU 0.
    const loop = read('nvidia-smi/gb10-query-gpu-loop.txt').split('\n').slice(1).filter(Boolean);
    for (const [i, line] of loop.entries()) {
      const [, util, used, temp] = line.split(', ');
      const [g] = parseGpuLines(
        `0, [Not Queried], [Not Queried], ${util}, ${used}, [Not Queried], ${temp}, [Not Queried], [Not Queried]`,
      );
      expect(g).toEqual(reading({ utilization_pct: i === 1 ? 2 : 0, temperature_c: 38 }));
    }
  });
  it('Windows, RTX PRO 6000 Blackwell: fan and clocks around the fields the project reads', () => {
    expect(gpusOf('nvidia-smi/windows-rtxpro6000-query-gpu.txt')).toEqual([
      reading({
        name: 'NVIDIA RTX PRO 6000 Blackwell Workstation Edition',
        temperature_c: 29,
        utilization_pct: 10,
        power_w: 26.47,
        power_limit_w: 600,
        memory_used_bytes: 2082 * MIB,
        memory_total_bytes: 97887 * MIB,
      }),
    ]);
  });
  it("a GPU off the bus: its error line, then the other GPUs' rows (rebuilt, project field order)", () => {
    const out = read('nvidia-smi/gpu-lost-others-printed-rebuilt.txt');
    const gpus = parseGpuLines(out);
    // GPU1 is the one nvidia-smi could not reach ("... for GPU1: 0000:34:00.0: Unknown Error"): lost, no figure.
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3]);
    expect(gpus[1]).toMatchObject({ ...reading({ index: 1 }), state: 'lost' });
    expect(gpus[0]).toEqual(
      reading({
        uuid: MASKED,
        name: 'NVIDIA RTX PRO 6000 Blackwell Workstation Edition',
        utilization_pct: 100,
        memory_used_bytes: 88450 * MIB,
        memory_total_bytes: 97887 * MIB,
        temperature_c: 87,
        power_w: 299,
        power_limit_w: 300,
      }),
    );
    expect(gpus[3]).toMatchObject({ index: 3, memory_used_bytes: 10 * MIB, temperature_c: 33, power_w: 6 });
    expect(nvidiaFailure(out, '')).toBe('Unable to determine the device handle for GPU1: 0000:34:00.0: Unknown Error');
  });
});

describe('nvidia-smi failures: exit status and its own words', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'real-smi-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cases: Array<[string, string]> = [
    ['exit-9-no-driver.txt', "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
    ['exit-9-no-driver-sandbox.txt', "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
    ['exit-6-no-devices.txt', 'No devices were found'],
    ['exit-4-no-permission.txt', 'Failed to initialize NVML: Insufficient Permissions'],
    ['exit-12-nvml-missing.txt', "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system."],
    ['exit-18-version-mismatch.txt', 'Failed to initialize NVML: Driver/library version mismatch'],
    ['exit-255-nvml-unknown-error.txt', 'Failed to initialize NVML: Unknown Error'],
    ['gpu-fell-off-bus-smi.txt', 'Unable to determine the device handle for GPU 0000:0B:00.0: Unknown Error'],
  ];
  for (const [file, said] of cases) {
    it(`${file}: no reading, and the failure in nvidia-smi's words`, async () => {
      const rel = `nvidia-smi/${file}`;
      const out = read(rel);
      const { exit } = meta(rel);
      // No reading with a figure; a GPU the tool could not reach is listed as lost.
      const gpus = parseGpuLines(out);
      expect(gpus.filter((g) => g.state !== 'lost')).toEqual([]);
      expect(gpus.every((g) => g.memory_used_bytes === null && g.utilization_pct === null)).toBe(true);
      expect(gpus).toHaveLength(file === 'gpu-fell-off-bus-smi.txt' ? 1 : 0);
      expect(parseAppLines(out)).toEqual([]);
      expect(nvidiaFailure(out, '')).toContain(said);
      if (exit === null) return;
      // A stand-in that prints the real text on stdout and exits with the real status.
      const tool = path.join(dir, file.replace(/\.txt$/, ''), 'nvidia-smi');
      fs.mkdirSync(path.dirname(tool), { recursive: true });
      fs.writeFileSync(tool, `#!/bin/sh\ncat '${path.join(REAL, rel)}'\nexit ${exit}\n`, { mode: 0o755 });
      const r = await runTool(tool, ['--query-gpu=index', '--format=csv,noheader,nounits'], 10_000);
      expect(r).toMatchObject({ ok: false, kind: 'failed', message: `nvidia-smi exited with code ${exit}` });
      if (!r.ok) expect(nvidiaFailure(r.stdout, r.stderr)).toContain(said);
    });
  }
});

// --- rocm-smi --------------------------------------------------------------------------------------

describe('rocm-smi --json, real outputs', () => {
  it('ROCm 6.2.4, RX 7800 XT: all the fields the project asks for', () => {
    expect.soft(parseRocmGpus(read('rocm-smi/gpustack-rx7800xt-rocm-6.2.4.json'))).toEqual([
      reading({
        uuid: '0x5c88007d760374f3',
        name: 'Navi 32 [Radeon RX 7700 XT / 7800 XT]',
        utilization_pct: 100,
        memory_used_bytes: 11615076352,
        memory_total_bytes: 17163091968,
        temperature_c: 45,
        power_w: 53,
      }),
    ]);
  });
  it('RX 7900 XT with only --showproductname --showuse --showmeminfo vram', () => {
    expect.soft(parseRocmGpus(read('rocm-smi/marimo-rx7900xt.json'))).toEqual([
      reading({
        name: 'Radeon RX 7900 XT',
        utilization_pct: 0,
        memory_used_bytes: 27856896,
        memory_total_bytes: 21458059264,
      }),
    ]);
  });
  it('ROCm 5 era, two MI250 dies: "Card series" in lower case, power cap, no VRAM keys', () => {
    const gpus = parseRocmGpus(read('rocm-smi/wandb-mi250-rocm5-2cards.json'));
    expect.soft(gpus.map((g) => g.index)).toEqual([0, 1]);
    for (const [i, g] of gpus.entries()) {
      expect.soft(g).toEqual(
        reading({
          index: i,
          uuid: '0x719d230578348e8c',
          name: 'AMD INSTINCT MI250 (MCM) OAM AC MBA',
          utilization_pct: i === 0 ? 10 : 20,
          temperature_c: 32,
          power_w: 89,
          power_limit_w: 560,
        }),
      );
    }
  });
  it('ROCm 6 era, one MI250 die: "Device Name" and "Card Series"', () => {
    expect.soft(parseRocmGpus(read('rocm-smi/wandb-mi250-rocm6.json'))).toEqual([
      reading({
        uuid: '0x1f9de0957d137942',
        name: 'AMD INSTINCT MI250 (MCM) OAM AC MBA',
        utilization_pct: 0,
        temperature_c: 43,
        power_w: 91,
        power_limit_w: 560,
      }),
    ]);
  });
  it('Strix Halo (Radeon 8060S): "Current Socket Graphics Package Power (W)"', () => {
    expect.soft(parseRocmGpus(read('rocm-smi/strix-halo-8060s-socket-power.json'))).toEqual([
      reading({
        name: 'AMD Radeon Graphics',
        memory_used_bytes: 154820608,
        memory_total_bytes: 68719476736,
        temperature_c: 32,
        power_w: 6.03,
      }),
    ]);
  });
  it('Hygon DCU (rocm-smi fork): "DCU use (%)" and "vram Total Memory (MiB)" in MiB', () => {
    expect.soft(parseRocmGpus(read('rocm-smi/gpustack-hygon-dcu-24.04.3.json'))).toEqual([
      reading({
        uuid: '7100fa8866904061',
        name: 'DCU xxxx',
        utilization_pct: 0,
        memory_used_bytes: 2 * MIB,
        memory_total_bytes: 65520 * MIB,
        temperature_c: 41,
        power_w: 80,
      }),
    ]);
  });
  it('text output (no --json) and error lines are refused as "no JSON", not misread', () => {
    expect.soft(() => parseRocmGpus(read('rocm-smi/showmeminfo-vram-text.txt'))).toThrow(/no JSON/);
    expect.soft(() => parseRocmGpus(read('rocm-smi/unable-to-get-memory-use-rocm2.9.txt'))).toThrow(/no JSON/);
  });
});

// --- llama-server ----------------------------------------------------------------------------------

const facts = (rel: string): LoadFacts => {
  const f = emptyLoadFacts();
  for (const line of read(rel).split('\n')) scanLoadLine(f, line);
  return f;
};
const buf = (device: string, kind: LoadFacts['buffers'][number]['kind'], m: number) => ({
  device,
  kind,
  bytes: mib(m),
});
const log = (name: string) => `llama-server/${name}`;

describe('llama-server load facts, real logs', () => {
  it('old CUDA build (llm_load_tensors, "CUDA0 buffer size", llama_new_context_with_model)', () => {
    const f = facts(log('cuda-old-llamafile-1050ti.log'));
    expect.soft(f.offload).toEqual({ layers: 23, total: 23 });
    expect.soft(f.buffers).toEqual([buf('CPU', 'model', 250), buf('CUDA0', 'model', 3946.35)]);
    expect.soft(gpuBufferBytes(f)).toBe(mib(3946.35));
    expect.soft(f.n_ctx).toBe(512);
  });
  it('old CUDA build, nothing offloaded: 0/33, the model in a CPU buffer', () => {
    const f = facts(log('cuda-old-zero-offload-h800.log'));
    expect.soft(f.offload).toEqual({ layers: 0, total: 33 });
    expect.soft(f.buffers).toEqual([buf('CPU', 'model', 5459.93)]);
    expect.soft(gpuBufferBytes(f)).toBeNull();
    expect.soft(f.n_ctx).toBe(512);
  });
  it('a split over eight GPUs (the excerpt stops after CUDA6)', () => {
    const f = facts(log('cuda-8gpu-load-tensors.log'));
    const sizes = [48928.09, 70752.48, 71680.09, 52215.3, 45108.64, 46036.25, 28426.68];
    expect.soft(f.offload).toEqual({ layers: 62, total: 62 });
    expect.soft(f.buffers).toEqual(sizes.map((s, i) => buf(`CUDA${i}`, 'model', s)));
    expect.soft(gpuBufferBytes(f)).toBe(sizes.reduce((a, s) => a + mib(s), 0));
  });
  it("a split over two GPUs (CUDA0, CUDA2) with the wrapper's own lines interleaved", () => {
    const f = facts(log('cuda-2gpu-split-ollama-interleaved.log'));
    expect.soft(f.offload).toEqual({ layers: 81, total: 81 });
    expect
      .soft(f.buffers)
      .toEqual([buf('CUDA0', 'model', 24277.75), buf('CUDA2', 'model', 46151.91), buf('CPU_Mapped', 'model', 1064.62)]);
    expect.soft(gpuBufferBytes(f)).toBe(mib(24277.75) + mib(46151.91));
  });
  it('colours on (--log-colors, rebuilt): the same facts as without', () => {
    const plain = facts(log('cuda-8gpu-load-tensors.log'));
    const coloured = facts(log('ansi-colors-rebuilt.log'));
    expect.soft(coloured.offload).toEqual(plain.offload);
    expect.soft(coloured.buffers).toEqual(plain.buffers);
  });
  it('ROCm, model on the CPU: ROCm0 compute is GPU memory, ROCm_Host is not', () => {
    const f = facts(log('rocm-cpu-mapped-gfx1100.log'));
    expect
      .soft(f.buffers)
      .toEqual([
        buf('CPU_Mapped', 'model', 14965.61),
        buf('CPU', 'output', 0.58),
        buf('CPU', 'kv', 640),
        buf('ROCm0', 'compute', 1094.99),
        buf('ROCm_Host', 'compute', 18.01),
      ]);
    expect.soft(f.n_ctx).toBe(4096);
    expect.soft(gpuBufferBytes(f)).toBe(mib(1094.99));
  });
  it('Metal on an M2 Pro: MTL0_Mapped holds the model in GPU memory; "....srv" after progress dots', () => {
    const f = facts(log('metal-m2pro-mtl0-mapped.log'));
    expect.soft(f.offload).toEqual({ layers: 66, total: 66 });
    expect.soft(f.buffers).toEqual([buf('CPU_Mapped', 'model', 644.14), buf('MTL0_Mapped', 'model', 14803.73)]);
    expect.soft(f.n_ctx).toBe(131072);
    expect.soft(f.n_slots).toBe(1);
    expect.soft(gpuBufferBytes(f)).toBe(mib(14803.73));
  });
  it('old Metal build: a compute buffer, after two messages glued on one line', () => {
    const f = facts(log('metal-old-compute-buffer-over-working-set.log'));
    expect.soft(f.buffers).toEqual([buf('Metal', 'compute', 125.98), buf('CPU', 'compute', 8.8)]);
    expect.soft(gpuBufferBytes(f)).toBe(mib(125.98));
  });
  it('--fit: the projection, with and without a deficit', () => {
    const deficit = facts(log('fit-params-2gpu-deficit.log'));
    expect.soft(deficit.fit_projected_bytes).toBe(410593 * MIB);
    const fine = facts(log('fit-params-mtmd-no-changes.log'));
    expect.soft(fine.fit_projected_bytes).toBe(3287 * MIB);
    expect.soft(fine.warnings).toEqual([]);
  });
  it('RPC devices ("using device RPC[host:port] (...) - N MiB free")', () => {
    const f = facts(log('rpc-using-device-bench.log'));
    const rpc = ['10.0.2.233', '10.0.2.209', '10.0.2.242', '10.0.2.223'].map((h) => ({
      name: `RPC[${h}:50052]`,
      description: `RPC[${h}:50052]`,
      total_bytes: null,
      free_bytes: 108000 * MIB,
    }));
    expect.soft(f.devices).toEqual(expect.arrayContaining(rpc));
  });
  it('the no-usable-GPU warning, and a bad argument that no restart fixes', () => {
    const rel = log('no-usable-gpu-bad-argument.log');
    const f = facts(rel);
    expect.soft(f.warnings).toEqual([NO_USABLE_GPU]);
    expect
      .soft(nonRetryableReason(read(rel).split('\n'), false))
      .toBe(
        'bad arguments: error while handling argument "--spec-type": unknown speculative decoding type without draft model',
      );
  });
  it('OOM at load: cudaMalloc failed -> failed to allocate CUDA0 buffer -> error loading model', () => {
    const rel = log('cuda-oom-at-load.log');
    const f = facts(rel);
    expect.soft(f.buffers).toEqual([]);
    expect.soft(f.loaded).toBe(false);
    // "allocating 144817.04 MiB on device 0: cudaMalloc failed: out of memory" for the CUDA0 model buffer.
    expect
      .soft(nonRetryableReason(read(rel).split('\n'), false))
      .toBe('out of GPU memory on CUDA0 (tried to allocate 144817 MiB for the model)');
  });
  it('OOM at run time ("CUDA error: out of memory"): no load facts invented, not a load failure', () => {
    for (const name of ['cuda-runtime-oom.log', 'cuda-runtime-oom-assert.log']) {
      const f = facts(log(name));
      expect.soft(f).toEqual(emptyLoadFacts());
      expect.soft(nonRetryableReason(read(log(name)).split('\n'), true)).toBeUndefined();
    }
  });
  it('router children ([pid] prefixes), timestamps, docker prefixes: nothing misread', () => {
    for (const name of [
      'router-child-timestamps-rpc-rocm.log',
      'docker-prefixed-router-model-list.log',
      'router-child-rocm-version-fit.log',
    ]) {
      const f = facts(log(name));
      expect.soft(f).toMatchObject({ offload: null, buffers: [], n_ctx: null, loaded: false, warnings: [] });
    }
  });
});

describe('llama-server device lines (ggml_cuda_init / ggml_vulkan): which devices the server saw', () => {
  const device = (name: string, description: string, totalMib: number | null = null) =>
    expect.objectContaining({ name, description, total_bytes: totalMib === null ? null : totalMib * MIB });
  it('"found N CUDA devices:" (old) and "(Total VRAM: ...)" with per-device VRAM (new)', () => {
    expect
      .soft(facts(log('cuda-old-llamafile-1050ti.log')).devices)
      .toEqual([device('CUDA0', 'NVIDIA GeForce GTX 1050 Ti')]);
    expect.soft(facts(log('cuda-old-zero-offload-h800.log')).devices).toEqual([device('CUDA0', 'NVIDIA H800')]);
    expect
      .soft(facts(log('cuda-version-3gpu.log')).devices)
      .toEqual([0, 1, 2].map((i) => device(`CUDA${i}`, 'NVIDIA GeForce RTX 3090')));
    expect.soft(facts(log('fit-params-2gpu-deficit.log')).devices.map((d) => d.name)).toEqual(['CUDA0', 'CUDA1']);
    expect
      .soft(facts(log('cuda-total-vram-load-backend-windows.log')).devices)
      .toEqual([device('CUDA0', 'NVIDIA GeForce RTX 5060 Laptop GPU', 8150)]);
  });
  it('ROCm: "ggml_init_cublas: found 1 ROCm devices" (old) and "found 1 ROCm devices (Total VRAM ...)"', () => {
    expect.soft(facts(log('rocm-old-ggml-init-cublas.log')).devices).toEqual([device('ROCm0', 'Radeon RX 7900 XTX')]);
    expect
      .soft(facts(log('router-child-rocm-version-fit.log')).devices)
      .toEqual([device('ROCm0', 'Radeon 8060S Graphics', 126976)]);
  });
  it('Vulkan: "ggml_vulkan: 0 = <name> | uma: ..."', () => {
    expect
      .soft(facts(log('vulkan-version-freebsd.log')).devices)
      .toEqual([device('Vulkan0', 'NVIDIA GeForce RTX 2060 (NVIDIA)')]);
    expect
      .soft(facts(log('rpc-using-device-bench.log')).devices)
      .toEqual(expect.arrayContaining([device('Vulkan0', 'Radeon 8060S Graphics (RADV GFX1151) (radv)')]));
  });
});

// --- one recorded run on an NVIDIA H200 (tests/fixtures/real/h200, scripts/gpu-verify.sh) -------------
// The CUDA build of llama-server the project sets up, driven by llama-orch and directly; nvidia-smi with
// the project's own queries at each step. The model is the GGUF writer's 1.1 B F16 "rand-small" (17
// layers: 16 blocks and the output layer).

const H200_UUID = 'GPU-75b28ea6-512b-554d-eee8-44979478a66a';
const h200 = (r: Partial<GpuReading>) =>
  reading({ uuid: H200_UUID, name: 'NVIDIA H200', memory_total_bytes: 143771 * MIB, power_limit_w: 700, ...r });
/** The devices every H200 run printed (common_param device_info), with the GPU's free MiB of that moment. */
const h200Devices = (freeMib: number) => [
  { name: 'CUDA0', description: 'NVIDIA H200', total_bytes: 143155 * MIB, free_bytes: freeMib * MIB },
  { name: 'CPU', description: 'Intel(R) Xeon(R) Processor', total_bytes: 128869 * MIB, free_bytes: 128869 * MIB },
];
// eslint-disable-next-line no-control-regex -- the test's own plain rendering of a coloured log
const uncoloured = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, '');
const factsOfText = (text: string): LoadFacts => {
  const f = emptyLoadFacts();
  for (const line of text.split('\n')) scanLoadLine(f, line);
  return f;
};

describe('H200 (recorded): llama-server load facts', () => {
  it('gpu-full: 17/17 layers, the model, KV and compute buffers on CUDA0, the --fit projection', () => {
    const f = facts('h200/logs/gpu-full/stderr.log');
    expect(f).toEqual({
      devices: h200Devices(142629),
      offload: { layers: 17, total: 17 },
      buffers: [
        buf('CPU_Mapped', 'model', 125),
        buf('CUDA0', 'model', 1981.26),
        buf('CUDA_Host', 'output', 0.24),
        buf('CUDA0', 'kv', 256),
        buf('CUDA0', 'compute', 64.01),
        buf('CUDA_Host', 'compute', 12.01),
      ],
      n_ctx: 8192,
      n_ctx_slot: 4096,
      n_slots: 2,
      fit_projected_bytes: 2301 * MIB,
      warnings: [],
      loaded: true,
    });
    expect(gpuBufferBytes(f)).toBe(mib(1981.26) + mib(256) + mib(64.01));
    // `llama-server --list-devices` on the same machine names the same device and total.
    expect(read('h200/server-list-devices.out')).toContain('CUDA0: NVIDIA H200 (143155 MiB, ');
  });
  it('gpu-partial: 8/17 layers, the rest of the model and its KV on the host', () => {
    const f = facts('h200/logs/gpu-partial/stderr.log');
    expect(f).toMatchObject({ devices: h200Devices(139733), offload: { layers: 8, total: 17 } });
    expect(f.buffers).toEqual([
      buf('CPU_Mapped', 'model', 1294.15),
      buf('CUDA0', 'model', 937.12),
      buf('CUDA_Host', 'output', 0.24),
      buf('CPU', 'kv', 72),
      buf('CUDA0', 'kv', 56),
      buf('CUDA0', 'compute', 82),
      buf('CUDA_Host', 'compute', 10.01),
    ]);
    expect(f).toMatchObject({ n_ctx: 4096, n_ctx_slot: 2048, n_slots: 2, fit_projected_bytes: 1075 * MIB });
    expect(f).toMatchObject({ warnings: [], loaded: true });
    expect(gpuBufferBytes(f)).toBe(mib(937.12) + mib(56) + mib(82));
  });
  it('the GPU memory nvidia-smi gave each server holds the buffers it printed (plus the CUDA context)', () => {
    // The keeper's banner names the server's pid; nvidia-smi lists that pid while both were loaded.
    const apps = parseAppLines(read('h200/loaded-query-apps.out'));
    for (const [run, pid] of [
      ['gpu-full', 5514],
      ['gpu-partial', 5563],
    ] as const) {
      const rel = `h200/logs/${run}/stderr.log`;
      expect(read(rel)).toContain(`server pid ${pid} started`);
      const held = apps.find((a) => a.pid === pid)?.memory_bytes ?? 0;
      const buffers = gpuBufferBytes(facts(rel)) ?? Infinity;
      expect(buffers).toBeLessThan(held);
      expect(held - buffers).toBeLessThan(1024 * MIB);
    }
  });
  it('gpu-oom: the model buffer could not be allocated, so no buffer and no load is reported', () => {
    const f = facts('h200/logs/gpu-oom/stderr.log');
    expect(f).toEqual({ ...emptyLoadFacts(), devices: h200Devices(138063) });
  });
  it('kv-oom: the model loaded (17/17), the 262144 MiB KV cache failed: no KV buffer invented', () => {
    const f = facts('h200/kv-oom.err');
    expect(f).toEqual({
      ...emptyLoadFacts(),
      devices: h200Devices(137845),
      offload: { layers: 17, total: 17 },
      buffers: [buf('CPU_Mapped', 'model', 125), buf('CUDA0', 'model', 1981.26), buf('CUDA_Host', 'output', 0.12)],
      n_ctx: 8388608,
    });
  });
  it('fit-on: "context size set by user -> no change", so --fit moved layers (7/17) and left the context', () => {
    const f = facts('h200/fit-on.err');
    // The projection printed is that of the parameters asked for, before --fit changed them.
    expect(f.fit_projected_bytes).toBe(272377 * MIB);
    expect(read('h200/fit-on.err')).toContain('context size set by user to 8388608 -> no change');
    expect(f).toMatchObject({ offload: { layers: 7, total: 17 }, n_ctx: 8388608, warnings: [], loaded: false });
    expect(f.buffers).toEqual([
      buf('CPU_Mapped', 'model', 1410.16),
      buf('CUDA0', 'model', 821.1),
      buf('CUDA_Host', 'output', 0.12),
      buf('CPU', 'kv', 163840),
    ]);
    expect(gpuBufferBytes(f)).toBe(mib(821.1));
  });
  it('colours.err (--log-colors on --log-prefix --log-timestamps): read as its plain text is', () => {
    const text = read('h200/colours.err');
    expect(text).toContain('\x1b[34m0.00.014.715\x1b[0m \x1b[32mI \x1b[0mcmn  common_param:');
    const coloured = facts('h200/colours.err');
    expect(coloured).toEqual(factsOfText(uncoloured(text)));
    expect(coloured).toEqual({
      devices: h200Devices(137845),
      offload: { layers: 17, total: 17 },
      buffers: [
        buf('CPU_Mapped', 'model', 125),
        buf('CUDA0', 'model', 1981.26),
        buf('CUDA_Host', 'output', 0.49),
        buf('CUDA0', 'kv', 64),
        buf('CUDA0', 'compute', 62.01),
        buf('CUDA_Host', 'compute', 10.01),
      ],
      n_ctx: 2048,
      n_ctx_slot: 2048,
      n_slots: 4,
      fit_projected_bytes: 2107 * MIB,
      warnings: [],
      loaded: true,
    });
    // The same model buffers as the uncoloured gpu-full run of the same model.
    expect(coloured.buffers.filter((b) => b.kind === 'model')).toEqual(
      facts('h200/logs/gpu-full/stderr.log').buffers.filter((b) => b.kind === 'model'),
    );
  });
});

describe('H200 (recorded): nvidia-smi with the project queries', () => {
  it('--query-gpu idle, loaded, busy and after, noheader,nounits', () => {
    expect(parseGpuLines(read('h200/idle-query-gpu.out'))).toEqual([
      h200({ utilization_pct: 0, memory_used_bytes: 0, temperature_c: 39, power_w: 80.43 }),
    ]);
    expect(parseGpuLines(read('h200/loaded-query-gpu.out'))).toEqual([
      h200({ utilization_pct: 0, memory_used_bytes: 4569 * MIB, temperature_c: 40, power_w: 121.75 }),
    ]);
    expect(parseGpuLines(read('h200/busy-query-gpu.out'))).toEqual([
      h200({ utilization_pct: 79, memory_used_bytes: 4787 * MIB, temperature_c: 47, power_w: 427.36 }),
    ]);
    expect(parseGpuLines(read('h200/after-query-gpu.out'))).toEqual([
      h200({ utilization_pct: 0, memory_used_bytes: 0, temperature_c: 40, power_w: 127.04 }),
    ]);
  });
  it('--format=csv (header line, units) reads as the nounits form', () => {
    expect(parseGpuLines(read('h200/loaded-query-gpu-header.out'))).toEqual(
      parseGpuLines(read('h200/loaded-query-gpu.out')),
    );
    expect(parseAppLines(read('h200/loaded-query-apps-header.out'))).toEqual(
      parseAppLines(read('h200/loaded-query-apps.out')),
    );
  });
  it('--query-compute-apps: the two llama-servers (pid 5514 2890 MiB, 5563 1664 MiB), none when idle', () => {
    const server = '/tmp/llama-orch-cache/llama.cpp/de3ff815ea7d-cuda-sm90/bin/llama-server';
    const app = (pid: number, m: number) => ({
      pid,
      name: server,
      memory_bytes: m * MIB,
      gpu_uuid: H200_UUID,
      gpu_index: null,
    });
    expect(parseAppLines(read('h200/loaded-query-apps.out'))).toEqual([app(5514, 2890), app(5563, 1664)]);
    expect(parseAppLines(read('h200/busy-query-apps.out'))).toEqual([app(5514, 2994), app(5563, 1778)]);
    expect(parseAppLines(read('h200/idle-query-apps.out'))).toEqual([]);
    expect(parseAppLines(read('h200/after-query-apps.out'))).toEqual([]);
  });
  it('-lms 500 for 3 s (stopped by timeout, exit 124): six readings of GPU 0', () => {
    expect(read('h200/nvidia-smi-loop.rc').trim()).toBe('124');
    const gpus = parseGpuLines(read('h200/nvidia-smi-loop.out'));
    expect(gpus.map((g) => g.power_w)).toEqual([80.42, 80.41, 80.36, 80.37, 80.36, 80.3]);
    expect(gpus.every((g) => g.index === 0 && g.uuid === H200_UUID && g.memory_used_bytes === 0)).toBe(true);
  });
  it('-L: one GPU, no MIG devices', () => {
    const list = parseList(read('h200/nvidia-smi-L.out'));
    expect(list.gpus).toEqual([{ index: 0, name: 'NVIDIA H200', uuid: H200_UUID }]);
    expect(list.mig).toEqual([]);
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'real-h200-smi-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const failures: Array<[string, string, string[]]> = [
    ['nvidia-smi-bad-index', 'No devices were found', ['-i', '7', '--query-gpu=index', '--format=csv']],
    ['nvidia-smi-bad-field', 'Field "no.such.field" is not a valid field to query.', ['--query-gpu=index']],
  ];
  for (const [name, said, args] of failures) {
    it(`${name}: no reading, the exit status recorded, the failure in nvidia-smi's words`, async () => {
      const out = read(`h200/${name}.out`);
      const exit = Number(read(`h200/${name}.rc`).trim());
      expect(exit).toBe(name === 'nvidia-smi-bad-index' ? 6 : 2);
      expect(parseGpuLines(out)).toEqual([]);
      expect(parseAppLines(out)).toEqual([]);
      expect(nvidiaFailure(out, '')).toContain(said);
      const tool = path.join(dir, name, 'nvidia-smi');
      fs.mkdirSync(path.dirname(tool), { recursive: true });
      fs.writeFileSync(tool, `#!/bin/sh\ncat '${path.join(REAL, 'h200', `${name}.out`)}'\nexit ${exit}\n`, {
        mode: 0o755,
      });
      const r = await runTool(tool, args, 10_000);
      expect(r).toMatchObject({ ok: false, kind: 'failed', message: `nvidia-smi exited with code ${exit}` });
      if (!r.ok) expect(nvidiaFailure(r.stdout, r.stderr)).toContain(said);
    });
  }
});

// --- the CPU build here (tests/fixtures/real/cpu) --------------------------------------------------

describe('CPU build (recorded): load facts of the out-of-memory runs', () => {
  const cpu = [{ name: 'CPU', description: 'AMD EPYC', total_bytes: 24105 * MIB, free_bytes: 24105 * MIB }];
  it('model-oom: the model buffer failed; the no-usable-GPU warning, nothing else', () => {
    expect(facts('cpu/model-oom.log')).toEqual({ ...emptyLoadFacts(), devices: cpu, warnings: [NO_USABLE_GPU] });
  });
  it('kv-oom: the model mapped, the KV cache of the 8388608 context failed: no KV buffer invented', () => {
    expect(facts('cpu/kv-oom.err')).toEqual({
      ...emptyLoadFacts(),
      devices: cpu,
      buffers: [buf('CPU_Mapped', 'model', 56.03), buf('CPU', 'output', 0.02)],
      n_ctx: 8388608,
      warnings: [NO_USABLE_GPU],
    });
  });
});

// --- every fixture: no crash, no NaN, and nothing untested or unlisted ----------------------------

function walk(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
const FIXTURES = walk(REAL)
  .map((f) => path.relative(REAL, f))
  .filter((f) => f !== 'README.md' && !f.endsWith('.meta.json'))
  .sort();

/**
 * Recorded runs: folders that hold everything one run recorded, listed once in the README (what
 * recorded it, when), not file by file; the README names each of their files a test here reads.
 */
const RUNS = ['h200/'];
const inRun = (rel: string) => RUNS.some((r) => rel.startsWith(r));

const noNaN = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (Number.isNaN(x) ? 'NaN!' : x));

describe('every real fixture', () => {
  it.each(FIXTURES)('%s: the parsers neither throw nor yield NaN', (rel) => {
    const text = read(rel);
    if (rel.startsWith('nvidia-smi/') || inRun(rel)) {
      for (const out of [parseGpuLines(text), parseAppLines(text), parseList(text), nvidiaFailure(text, '')]) {
        expect(noNaN(out)).not.toContain('NaN!');
      }
    } else if (rel.startsWith('rocm-smi/')) {
      try {
        expect(noNaN(parseRocmGpus(text))).not.toContain('NaN!');
      } catch (e) {
        expect((e as Error).message).toMatch(/JSON/);
      }
    }
    if (!rel.startsWith('nvidia-smi/') && !rel.startsWith('rocm-smi/')) {
      expect(noNaN(facts(rel))).not.toContain('NaN!');
    }
  });

  it('is used by a test in this file and listed in the README', () => {
    const self = fs.readFileSync(import.meta.filename, 'utf8');
    const readme = read('README.md');
    const base = (f: string) => path.basename(f);
    expect(FIXTURES.filter((f) => !inRun(f) && !self.includes(base(f)))).toEqual([]);
    expect(FIXTURES.filter((f) => !inRun(f) && !readme.includes(base(f)))).toEqual([]);
    for (const run of RUNS) {
      expect(readme).toContain(`| ${run} `);
      const named = FIXTURES.filter((f) => f.startsWith(run) && self.includes(`'${f}'`));
      expect(named.length).toBeGreaterThan(0);
      expect(named.filter((f) => !readme.includes(`| ${f} `))).toEqual([]);
    }
    const sidecars = walk(REAL).filter((f) => f.endsWith('.meta.json'));
    expect(sidecars.filter((s) => !fs.existsSync(s.replace(/\.meta\.json$/, '.txt')))).toEqual([]);
  });
});
