/**
 * A long-lived part of the daemon (docs/ARCHITECTURE.md, "Daemon services"): supervision today; the
 * GPU sampler, metrics retention and the HTTP server (proxy + API) plug in the same way.
 */
export interface Service {
  readonly name: string;
  /**
   * Does the service's work until `signal` aborts, then resolves. Rejecting is a failure of this
   * service alone: the host reports it and runs it again after a pause.
   */
  run(signal: AbortSignal): Promise<void>;
}

export interface HostDeps {
  log: (msg: string) => void;
  /** Abortable sleep: resolves early (without throwing) when the signal aborts. */
  wait: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Told when a service fails (the daemon records an event). */
  onFailure?: (service: string, error: string) => void;
}

const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 60_000;

/**
 * Starts every service, keeps each one running (a failed service is run again after a pause that
 * doubles up to a minute, and never takes the others down), and on `signal` stops them and waits
 * for each to finish.
 */
export class ServiceHost {
  constructor(
    private readonly services: readonly Service[],
    private readonly deps: HostDeps,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all(this.services.map((s) => this.keep(s, signal)));
  }

  private async keep(service: Service, signal: AbortSignal): Promise<void> {
    let pause = FIRST_PAUSE_MS;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        this.deps.log(`service ${service.name}: started`);
        await service.run(signal);
        if (!signal.aborted) this.deps.log(`service ${service.name}: ended by itself; running it again`);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        this.deps.log(`service ${service.name} failed: ${msg}; again in ${pause / 1000} s`);
        this.deps.onFailure?.(service.name, msg);
      }
      if (signal.aborted) break;
      // A service that ran for a while before failing starts over with a short pause.
      if (Date.now() - started > MAX_PAUSE_MS) pause = FIRST_PAUSE_MS;
      await this.deps.wait(pause, signal);
      pause = Math.min(MAX_PAUSE_MS, pause * 2);
    }
    this.deps.log(`service ${service.name}: stopped`);
  }
}
