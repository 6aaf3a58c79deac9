/** Where commands print; injected so tests can capture it. */
export interface Out {
  log: (s: string) => void;
  error: (s: string) => void;
}

export const stdOut: Out = {
  log: (s) => process.stdout.write(s + '\n'),
  error: (s) => process.stderr.write(s + '\n'),
};
