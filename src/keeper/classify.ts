/** Start failures that restarting cannot fix, recognised from the server's stderr (docs/ARCHITECTURE.md, "Lifecycle"). */
const NON_RETRYABLE: ReadonlyArray<{ re: RegExp; reason: (m: RegExpMatchArray) => string }> = [
  { re: /couldn't bind HTTP server socket/i, reason: () => "couldn't bind HTTP server socket (port taken?)" },
  {
    re: /(failed to load model|error loading model|unable to load model|failed to open GGUF file|gguf_init_from_file[^\n]*failed)/i,
    reason: (m) => `model failed to load (${m[1] ?? 'load error'})`,
  },
  {
    re: /(error: invalid argument[^\n]*|error: unknown argument[^\n]*|error while handling argument[^\n]*|invalid value for[^\n]*)/i,
    reason: (m) => `bad arguments: ${(m[1] ?? '').trim()}`,
  },
];

export function nonRetryableReason(stderrTail: readonly string[], becameHealthy: boolean): string | undefined {
  if (becameHealthy) return undefined;
  const text = stderrTail.join('\n');
  for (const { re, reason } of NON_RETRYABLE) {
    const m = text.match(re);
    if (m) return reason(m);
  }
  return undefined;
}

/** `statusUnknown`: the process was not our child (a re-attached server), so no code was seen. */
export function describeExit(
  code: number | null,
  signal: NodeJS.Signals | null,
  runMs: number,
  statusUnknown = false,
): string {
  const after = runMs < 10_000 ? `${(runMs / 1000).toFixed(1)} s` : `${Math.round(runMs / 1000)} s`;
  if (signal) return `killed by ${signal} after ${after}`;
  if (code === null && statusUnknown) return `exited after ${after} (exit status unknown: a re-attached server)`;
  return `exited with code ${code ?? '?'} after ${after}`;
}
