import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { InstanceConfigSchema } from './schema.js';
import { SettingsSchema } from './settings.js';

/** JSON Schema for editors, generated from the zod schema (the only source of truth). */
export function instanceJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(InstanceConfigSchema, { io: 'input', unrepresentable: 'any' });
  return { ...schema, title: 'llama-orch instance config' };
}

/** The same for the home's llama-orch.json. */
export function settingsJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(SettingsSchema, { io: 'input', unrepresentable: 'any' });
  return { ...schema, title: 'llama-orch home settings (llama-orch.json)' };
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

export function writeInstanceJsonSchema(file: string): void {
  writeJson(file, instanceJsonSchema());
}

export function writeSettingsJsonSchema(file: string): void {
  writeJson(file, settingsJsonSchema());
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const target = process.argv[2] ?? path.join(process.cwd(), 'instances', 'config.schema.json');
  writeInstanceJsonSchema(target);
  const settings = process.argv[3] ?? path.join(process.cwd(), 'instances', 'llama-orch.schema.json');
  writeSettingsJsonSchema(settings);
  console.log(`wrote ${target} and ${settings}`);
}
