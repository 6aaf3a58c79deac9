import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { InstanceConfigSchema } from './schema.js';

/** JSON Schema for editors, generated from the zod schema (the only source of truth). */
export function instanceJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(InstanceConfigSchema, { io: 'input', unrepresentable: 'any' });
  return { ...schema, title: 'llama-orch instance config' };
}

export function writeInstanceJsonSchema(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(instanceJsonSchema(), null, 2) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const target = process.argv[2] ?? path.join(process.cwd(), 'instances', 'config.schema.json');
  writeInstanceJsonSchema(target);
  console.log(`wrote ${target}`);
}
