import type { InstanceConfig } from '../config/schema.js';
import type { Health } from '../domain/status.js';

/** What one probe saw, classified with llama.cpp semantics. */
export type ProbeOutcome =
  | { kind: 'ok'; latencyMs: number }
  | { kind: 'loading'; latencyMs: number }
  | { kind: 'unreachable'; detail: string }
  | { kind: 'unauthorized'; detail: string }
  | { kind: 'failure'; detail: string; latencyMs?: number };

export interface HealthState {
  health: Health;
  detail: string | null;
  failures: number;
  /** When the server process started (ms). */
  startedAt: number;
  /** Whether the server has answered at all (ok or loading) during this run. */
  answered: boolean;
  loadingSince: number | null;
  okSince: number | null;
  lastOkAt: number | null;
}

export function initialHealth(startedAt: number): HealthState {
  return {
    health: 'starting',
    detail: null,
    failures: 0,
    startedAt,
    answered: false,
    loadingSince: null,
    okSince: null,
    lastOkAt: null,
  };
}

export interface HealthStep {
  state: HealthState;
  /** Set when the server must be restarted, with the reason. */
  restart?: string;
}

const secs = (ms: number) => Math.round(ms / 100) / 10;

/**
 * Pure health state machine (docs/ARCHITECTURE.md, "Health"): start_period tolerates an unreachable server, loading is
 * tolerated until startup_timeout, `retries` consecutive failures make it unhealthy and restart it.
 */
export function stepHealth(
  prev: HealthState,
  outcome: ProbeOutcome,
  now: number,
  hc: InstanceConfig['healthcheck'],
): HealthStep {
  const sinceStart = now - prev.startedAt;
  switch (outcome.kind) {
    case 'ok':
      return {
        state: {
          ...prev,
          health: 'ok',
          detail: null,
          failures: 0,
          answered: true,
          loadingSince: null,
          okSince: prev.okSince ?? now,
          lastOkAt: now,
        },
      };
    case 'loading': {
      const loadingSince = prev.loadingSince ?? now;
      const state: HealthState = {
        ...prev,
        health: 'loading',
        detail: `loading ${Math.round(secs(sinceStart))} s`,
        failures: 0,
        answered: true,
        loadingSince,
        okSince: null,
      };
      if (sinceStart > hc.startup_timeout * 1000) {
        return {
          state,
          restart: `still loading after ${Math.round(secs(sinceStart))} s (startup_timeout ${hc.startup_timeout} s)`,
        };
      }
      return { state };
    }
    case 'unauthorized':
      return {
        state: {
          ...prev,
          health: 'unauthorized',
          detail: `API key rejected: ${outcome.detail}`,
          failures: 0,
          okSince: null,
        },
      };
    case 'unreachable':
    case 'failure': {
      if (outcome.kind === 'unreachable' && !prev.answered && sinceStart < hc.start_period * 1000) {
        return { state: { ...prev, health: 'starting', detail: `waiting for the server (${outcome.detail})` } };
      }
      const failures = prev.failures + 1;
      const detail = `${outcome.detail} ${failures}/${hc.retries}`;
      if (failures >= hc.retries) {
        return {
          state: { ...prev, health: 'unhealthy', detail, failures, okSince: null },
          restart: `unhealthy: ${detail}`,
        };
      }
      return { state: { ...prev, detail, failures } };
    }
  }
}

/** Continuous healthy time at `now`, for the restart policy's reset_after. */
export function stableMs(state: HealthState, now: number): number {
  return state.okSince === null ? 0 : now - state.okSince;
}
