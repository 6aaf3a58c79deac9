import { ExitCode, UserError } from '../domain/errors.js';
import { isStoreFault, storeFaultError } from '../store/faults.js';

/** An answer in OpenAI's error shape: {"error": {"message", "type", "code"}} with an HTTP status. */
export class ProxyError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'ProxyError';
  }

  body(): string {
    return JSON.stringify({
      error: {
        message: this.message,
        type: this.type,
        code: this.code,
        ...(this.hint ? { hint: this.hint } : {}),
      },
    });
  }
}

/** What each exit code means over HTTP (README, "REST API"). */
const STATUS_OF_EXIT: Record<number, { status: number; code: string }> = {
  [ExitCode.general]: { status: 422, code: 'unprocessable' },
  [ExitCode.notFound]: { status: 404, code: 'not_found' },
  [ExitCode.alreadyRunning]: { status: 409, code: 'already_running' },
  [ExitCode.portCollision]: { status: 409, code: 'port_in_use' },
  [ExitCode.executableNotFound]: { status: 422, code: 'executable_not_found' },
  [ExitCode.stateUnavailable]: { status: 503, code: 'state_unavailable' },
  [ExitCode.notRunning]: { status: 409, code: 'not_running' },
  [ExitCode.doesNotFit]: { status: 409, code: 'does_not_fit' },
  [ExitCode.download]: { status: 502, code: 'download_failed' },
  [ExitCode.daemon]: { status: 503, code: 'daemon' },
  // The reader went away (a CLI's closed pipe); over HTTP, nginx's 499 for a client that closed.
  [ExitCode.closedPipe]: { status: 499, code: 'client_closed' },
};

/** The exit code an API error's `code` stands for (another rig's answer, read by `up --rig`). */
export function exitCodeOfApiCode(code: unknown): number {
  for (const [exit, m] of Object.entries(STATUS_OF_EXIT)) if (m.code === code) return Number(exit);
  return ExitCode.general;
}

/**
 * A UserError as the HTTP answer the CLI's exit code stands for; a fault of the state database as
 * 503 with the operator's explanation; anything else is a 500.
 */
export function asProxyError(e: unknown, status?: number, dbFile = 'the state database'): ProxyError {
  if (e instanceof ProxyError) return e;
  if (isStoreFault(e)) return asProxyError(storeFaultError(e, dbFile), status);
  if (e instanceof UserError) {
    const m = STATUS_OF_EXIT[e.exitCode] ?? { status: 500, code: 'error' };
    return new ProxyError(status ?? m.status, e.message, undefined, m.code, e.hint);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new ProxyError(status ?? 500, msg, 'server_error', 'internal_error');
}
