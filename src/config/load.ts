import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { ExitCode, UserError } from '../domain/errors.js';
import type { Home } from '../domain/home.js';
import { instanceConfigPath, orchCommand } from '../domain/home.js';
import { readFailure, readRegularText } from '../platform/regular-file.js';
import { INSTANCE_NAME_RE, InstanceConfigSchema, type InstanceConfig } from './schema.js';

/** One problem in one config file: where (file + JSON path) and what is expected. */
export interface ConfigProblem {
  file: string;
  jsonPath: string;
  message: string;
}

export function formatProblem(p: ConfigProblem, cwd = process.cwd()): string {
  const rel = path.relative(cwd, p.file) || p.file;
  const shown = rel.startsWith('..') ? p.file : rel;
  return `${shown}: ${p.jsonPath}: ${p.message}`;
}

export interface LoadedInstance {
  name: string;
  file: string;
  config: InstanceConfig;
}

export type LoadResult =
  { ok: true; instance: LoadedInstance } | { ok: false; name: string; file: string; problems: ConfigProblem[] };

function jsonPathOf(segments: readonly PropertyKey[]): string {
  let out = '$';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (typeof s === 'string' && /^[A-Za-z_$][\w$]*$/.test(s)) out += `.${s}`;
    else out += `[${JSON.stringify(String(s))}]`;
  }
  return out;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** The keys the schema knows at a JSON path, for "did you mean" on a misspelt one. */
function knownKeys(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  let schema: unknown = root;
  for (const seg of path) {
    const shape = (schema as { shape?: Record<string, unknown> }).shape;
    schema = shape?.[String(seg)];
    // Unwrap defaults, optionals and prefaults down to the object.
    for (let i = 0; i < 5 && schema && !(schema as { shape?: unknown }).shape; i++) {
      schema = (schema as { def?: { innerType?: unknown } }).def?.innerType;
    }
  }
  const shape = (schema as { shape?: Record<string, unknown> } | undefined)?.shape;
  return shape ? Object.keys(shape) : [];
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

/** The closest known key, when it is close enough to be a misspelling. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (!best || d < best.d) best = { k, d };
  }
  return best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? best.k : undefined;
}

function describeIssue(root: z.ZodType, issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeys(root, issue.path);
    return issue.keys
      .map((k) => {
        const near = closestKey(k, known);
        return `unknown key "${k}"${near ? ` (did you mean "${near}"?)` : ` (known keys here: ${known.join(', ')})`}`;
      })
      .join('; ');
  }
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return `required ${issue.expected} is missing`;
    return `expected ${issue.expected}, got ${typeName(issue.input)}`;
  }
  if ((issue.code === 'too_big' || issue.code === 'too_small') && typeof issue.input === 'number') {
    const bound = issue.code === 'too_big' ? `at most ${String(issue.maximum)}` : `at least ${String(issue.minimum)}`;
    return `must be ${bound} (got ${issue.input})`;
  }
  return issue.message;
}

function positionToLineCol(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return '';
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const col = pos - before.lastIndexOf('\n');
  return ` (line ${line}, column ${col})`;
}

/** Parses and validates one config file; never throws for bad content, only collects problems. */
export function parseConfigText(text: string, file: string): { config?: InstanceConfig; problems: ConfigProblem[] } {
  const r = parseWithSchema(InstanceConfigSchema, text, file);
  return { ...(r.value ? { config: r.value } : {}), problems: r.problems };
}

/** JSON text against a zod schema: the value, or each problem with its JSON path ("did you mean" on misspelt keys). */
export function parseWithSchema<S extends z.ZodType>(
  schema: S,
  text: string,
  file: string,
): { value?: z.output<S>; problems: ConfigProblem[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return { problems: [{ file, jsonPath: '$', message: `invalid JSON${positionToLineCol(text, msg)}: ${msg}` }] };
  }
  // reportInput: a wrong type is told apart from a missing value ("expected number, got string").
  const parsed = schema.safeParse(raw, { reportInput: true });
  if (parsed.success) return { value: parsed.data, problems: [] };
  return {
    problems: parsed.error.issues.map((issue) => ({
      file,
      jsonPath: jsonPathOf(issue.path),
      message: describeIssue(schema, issue),
    })),
  };
}

export function validateName(name: string): string | undefined {
  if (INSTANCE_NAME_RE.test(name)) return undefined;
  return `invalid instance name "${name}": use 1-63 characters of a-z, 0-9, "_" and "-", starting with a letter or digit`;
}

export function loadConfigFile(file: string, name: string): LoadResult {
  const problems: ConfigProblem[] = [];
  const nameProblem = validateName(name);
  if (nameProblem) problems.push({ file, jsonPath: '(directory name)', message: nameProblem });
  let text: string;
  try {
    // Never waits (a FIFO is an error, not a read that blocks); strict UTF-8, a BOM accepted.
    text = readRegularText(file);
  } catch (e) {
    problems.push({ file, jsonPath: '$', message: readFailure(e, path.basename(file)) });
    return { ok: false, name, file, problems };
  }
  const parsed = parseConfigText(text, file);
  problems.push(...parsed.problems);
  if (problems.length > 0 || !parsed.config) return { ok: false, name, file, problems };
  return { ok: true, instance: { name, file, config: parsed.config } };
}

export function loadAllConfigs(home: Home): LoadResult[] {
  return discoverInstanceNames(home).map((name) => loadConfigFile(instanceConfigPath(home, name), name));
}

/** Loads one instance or throws a UserError naming every problem (exit 2 when it does not exist). */
export function loadInstance(home: Home, name: string): LoadedInstance {
  const nameProblem = validateName(name);
  if (nameProblem) throw new UserError(nameProblem, ExitCode.notFound);
  const file = instanceConfigPath(home, name);
  if (!fs.existsSync(file)) {
    const known = discoverInstanceNames(home);
    throw new UserError(
      `unknown instance "${name}": ${file} does not exist`,
      ExitCode.notFound,
      known.length > 0
        ? `known instances: ${known.join(', ')}`
        : `create one with: ${orchCommand(home, `init ${name} --profile cpu --model PATH --port N`)}`,
    );
  }
  const res = loadConfigFile(file, name);
  if (!res.ok) {
    throw new UserError(
      `invalid config for "${name}":\n` + res.problems.map((p) => '  ' + formatProblem(p)).join('\n'),
      ExitCode.general,
      `fix the file, then check it with: llama-orch config validate ${file}`,
    );
  }
  return res.instance;
}

export { resolveModelPath, discoverInstanceNames } from './paths.js';
import { discoverInstanceNames } from './paths.js';
