import type { InstanceSnapshot } from '../../src/domain/snapshot.js';

/**
 * An `InstanceSnapshot` (src/domain/snapshot.ts) for unit tests: a healthy instance running on the
 * CPU with serving metrics, nothing else known; `over` replaces any field. The one builder, so a
 * field added to the type is added here once; a test file passes its own defaults as `over`.
 */
export function snapshotFixture(name: string, over: Partial<InstanceSnapshot> = {}): InstanceSnapshot {
  return {
    name,
    state: 'running',
    health: 'ok',
    health_detail: null,
    health_latency_ms: 3,
    pid: 4242,
    keeper_pid: 4241,
    port: 18181,
    host: '127.0.0.1',
    backend: 'cpu',
    gpus: [],
    model: 'tiny',
    model_path: '/m/t.gguf',
    started_at: null,
    uptime_s: 5,
    restarts: 0,
    restart_attempts: 0,
    next_restart_in_s: null,
    last_exit: null,
    last_error: null,
    config_error: null,
    autostart: false,
    warnings: [],
    vram_bytes: null,
    offload: null,
    on_gpus: [],
    tokens_per_s: 12.5,
    prompt_tokens_per_s: 80,
    slots_busy: 1,
    slots_total: 4,
    requests_processing: 1,
    requests_deferred: 0,
    ctx_size: 4096,
    kv_cache_usage: null,
    metrics_at: null,
    proxy_in_flight: null,
    proxy_queued: null,
    ...over,
  };
}
