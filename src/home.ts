import path from 'node:path';

/** Where instances/, state/ and logs/ live: --home, then LLAMA_ORCH_HOME, then the cwd. */
export interface Home {
  root: string;
  instancesDir: string;
  stateDir: string;
  logsDir: string;
  dbPath: string;
}

export function resolveHome(explicit?: string, env: NodeJS.ProcessEnv = process.env): Home {
  const root = path.resolve(explicit ?? env.LLAMA_ORCH_HOME ?? process.cwd());
  return homeAt(root);
}

export function homeAt(root: string): Home {
  return {
    root,
    instancesDir: path.join(root, 'instances'),
    stateDir: path.join(root, 'state'),
    logsDir: path.join(root, 'logs'),
    dbPath: path.join(root, 'state', 'llama-orch.db'),
  };
}

export function instanceConfigPath(home: Home, name: string): string {
  return path.join(home.instancesDir, name, 'config.json');
}

export function instanceLogDir(home: Home, name: string): string {
  return path.join(home.logsDir, name);
}
