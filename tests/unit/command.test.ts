import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { buildServerCommand, maskedCommand } from '../../src/engine/command.js';

function cfg(obj: unknown) {
  const r = parseConfigText(JSON.stringify(obj), '/x/config.json');
  if (!r.config) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

describe('command builder', () => {
  it('maps every config field to argv, port always explicit', () => {
    const c = cfg({
      model: { path: 'm.gguf', context_size: 32768, batch_size: 512, threads: 8, n_gpu_layers: 99 },
      server: { port: 8081, parallel: 4, extra_args: ['--flash-attn', 'on'] },
      gpu: { backend: 'cuda', devices: [1] },
    });
    const cmd = buildServerCommand({
      name: 'big',
      config: c,
      binary: '/bin/llama-server',
      modelPath: '/m/m.gguf',
      env: {},
    });
    expect(cmd.file).toBe('/bin/llama-server');
    expect(cmd.args).toEqual([
      '-m',
      '/m/m.gguf',
      '--alias',
      'big',
      '--host',
      '127.0.0.1',
      '--port',
      '8081',
      '-c',
      '32768',
      '-b',
      '512',
      '-t',
      '8',
      '-np',
      '4',
      '-ngl',
      '99',
      '--metrics',
      '--flash-attn',
      'on',
    ]);
    expect(cmd.env).toEqual({
      CUDA_VISIBLE_DEVICES: '1',
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      LLAMA_ARG_LOG_VERBOSITY: '4',
      LLAMA_ARG_LOG_COLORS: 'off',
    });
  });

  it('--metrics once: not with "metrics": false, not twice when extra_args has it (older configs)', () => {
    const args = (c: object) =>
      buildServerCommand({ name: 'x', config: cfg(c), binary: 'b', modelPath: 'm', env: {} }).args;
    expect(args({ model: { path: 'm' }, server: { port: 1 }, metrics: false })).not.toContain('--metrics');
    expect(
      args({ model: { path: 'm' }, server: { port: 1, extra_args: ['--metrics'] } }).filter((a) => a === '--metrics'),
    ).toHaveLength(1);
  });

  it('uses the per-backend device variable', () => {
    const vk = buildServerCommand({
      name: 'v',
      config: cfg({ model: { path: 'm' }, server: { port: 1 }, gpu: { backend: 'vulkan', devices: [0, 2] } }),
      binary: 'b',
      modelPath: 'm',
      env: {},
    });
    expect(vk.env).toEqual({
      GGML_VK_VISIBLE_DEVICES: '0,2',
      LLAMA_ARG_LOG_VERBOSITY: '4',
      LLAMA_ARG_LOG_COLORS: 'off',
    });
    const rocm = buildServerCommand({
      name: 'r',
      config: cfg({ model: { path: 'm' }, server: { port: 1 }, gpu: { backend: 'rocm', devices: [3] } }),
      binary: 'b',
      modelPath: 'm',
      env: {},
    });
    expect(rocm.env).toEqual({ HIP_VISIBLE_DEVICES: '3', LLAMA_ARG_LOG_VERBOSITY: '4', LLAMA_ARG_LOG_COLORS: 'off' });
  });

  it('passes the API key only as LLAMA_API_KEY, never in argv', () => {
    const c = cfg({ model: { path: 'm' }, server: { port: 1, api_key_env: 'MY_KEY' } });
    const cmd = buildServerCommand({
      name: 'k',
      config: c,
      binary: 'b',
      modelPath: 'm',
      env: { MY_KEY: 'canary-123' },
    });
    expect(cmd.args.join(' ')).not.toContain('canary-123');
    expect(cmd.env.LLAMA_API_KEY).toBe('canary-123');
    expect(JSON.stringify(maskedCommand(cmd))).not.toContain('canary-123');
  });

  it('masks secrets a user put in extra_args (the API key flags themselves are config errors)', () => {
    const c = cfg({
      model: { path: 'm' },
      server: { port: 1, extra_args: ['--hf-token', 'sekrit', '-hft', 'sekrit2'] },
    });
    const shown = maskedCommand(buildServerCommand({ name: 'k', config: c, binary: 'b', modelPath: 'm', env: {} }));
    expect(shown.argv.join(' ')).not.toContain('sekrit');
    expect(shown.argv).toEqual(expect.arrayContaining(['--hf-token', '***', '-hft']));
  });
});
