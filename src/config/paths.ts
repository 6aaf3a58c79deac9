import path from 'node:path';
import type { Home } from '../home.js';
import type { InstanceConfig } from './schema.js';

export function resolveModelPath(home: Home, config: InstanceConfig): string {
  return path.resolve(home.root, config.model.path);
}
