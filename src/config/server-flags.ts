import fs from 'node:fs';
import path from 'node:path';
import type { Home } from '../domain/home.js';
import { binaryCache, binaryCacheKey } from './binary-cache.js';
import { runServerHelp, type HelpOutput } from '../platform/server-help.js';
import { closestKey, type ConfigProblem, type LoadedInstance } from './load.js';

/**
 * The flags a llama-server binary accepts, each with the number of arguments that follow it
 * (llama.cpp's parser takes exactly that many, whatever they look like: `--seed -1`).
 */
export type ServerFlags = Record<string, number>;

// A usage line: flag names separated by commas, then maybe a value placeholder, then (after two or
// more spaces) the description: `-ngl,  --gpu-layers, --n-gpu-layers N   max. number of layers ...`.
const USAGE_LINE = /^(--?[A-Za-z0-9][^\s,]*(?:,\s*--?[A-Za-z0-9][^\s,]*)*)(?: (\S.*?))?(?:\s{2,}\S.*)?\s*$/;

/** Values a placeholder stands for: `START END` is two; `<tensor name pattern>=<buffer type>,...` one. */
function valueCount(placeholder: string | undefined): number {
  if (!placeholder) return 0;
  return placeholder
    .replace(/<[^>]*>|\[[^\]]*\]|\{[^}]*\}/g, 'X')
    .trim()
    .split(/\s+/).length;
}

/**
 * Parses llama-server's `--help`. Undefined when the text is not such a list: it must name
 * `--port`, which every llama-server has and llama-orch always passes.
 */
export function parseServerHelp(text: string): ServerFlags | undefined {
  // No prototype: an argument such as "constructor" must not look like a known flag.
  const flags = Object.create(null) as ServerFlags;
  for (const line of text.split('\n')) {
    const m = USAGE_LINE.exec(line.trimEnd());
    if (!m?.[1]) continue;
    const values = valueCount(m[2]);
    for (const name of m[1].split(/,\s*/)) flags[name] = values;
  }
  return valuesOf(flags, '--port') === undefined ? undefined : flags;
}

/** Own keys only: flags read back from the cache file are a plain object ("toString" is no flag). */
function valuesOf(flags: ServerFlags, arg: string): number | undefined {
  return Object.hasOwn(flags, arg) ? flags[arg] : undefined;
}

/** One problem of an argument list, by index. */
export interface ArgProblem {
  index: number;
  message: string;
}

/** Looks like a flag: "-x", "--x"; not a negative number. */
const isFlag = (arg: string) => arg.startsWith('-') && !/^-\d/.test(arg) && arg !== '-';

function unknownArg(arg: string, flags: ServerFlags, binary: string): string {
  const eq = arg.indexOf('=');
  if (arg.startsWith('-') && eq > 0 && valuesOf(flags, arg.slice(0, eq)) !== undefined) {
    const flag = arg.slice(0, eq);
    return `llama-server does not read "${arg}": write "${flag}" and "${arg.slice(eq + 1)}" as two elements`;
  }
  if (!isFlag(arg)) {
    return `"${arg}" is not a flag, and the element before it is not a flag that takes a value (llama-server takes no other arguments)`;
  }
  const known = Object.keys(flags);
  // A misspelling, else a flag it is the start of ("--flash" for "--flash-attn").
  const near =
    closestKey(arg, known) ??
    known.filter((k) => k.startsWith(arg) && arg.length >= 4).sort((a, b) => a.length - b.length)[0];
  return `unknown llama-server flag "${arg}"${near ? ` (did you mean "${near}"?)` : ''}: ${binary} --help does not list it`;
}

/** Checks an argument list the way llama-server's parser reads it: flags, each followed by its values. */
export function checkServerArgs(args: readonly string[], flags: ServerFlags, binary: string): ArgProblem[] {
  const problems: ArgProblem[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const values = valuesOf(flags, arg);
    if (values === undefined) {
      problems.push({ index: i, message: unknownArg(arg, flags, binary) });
      // An unknown flag's value is not a second problem.
      const next = args[i + 1];
      if (isFlag(arg) && next !== undefined && !isFlag(next)) i++;
      continue;
    }
    if (i + values >= args.length) {
      problems.push({
        index: i,
        message: `"${arg}" needs ${values === 1 ? 'a value' : `${values} values`} after it (the next element${values === 1 ? '' : 's'} of extra_args)`,
      });
    }
    i += values;
  }
  return problems;
}

interface CacheEntry {
  /** The binary's identity when it was read: device, inode, size, mtime. */
  id: string;
  flags?: ServerFlags;
  failure?: string;
}

/**
 * Bumped when the parser or the keys change, so entries written by an older version are read again
 * (version 1 kept timeouts too, for good, and keyed by the binary alone).
 */
const CACHE_VERSION = 2;

/** The parsed `--help` of each binary, kept in the home's state/ so `up` runs `--help` once per binary version. */
export function serverFlagsCacheFile(home: Home): string {
  return path.join(home.stateDir, 'server-flags.json');
}

export interface FlagsLookup {
  flags?: ServerFlags;
  /** Why the flags are unknown: `--help` could not be run, or printed no flag list. */
  failure?: string;
  /** `--help` was run now (not read from the cache): a failure is news, worth a warning. */
  fresh: boolean;
}

export type HelpRunner = (binary: string, env: NodeJS.ProcessEnv) => HelpOutput;

/** This process's answers, so one command (restart checks, then starts) runs `--help` at most once. */
const memo = new Map<string, FlagsLookup>();

/**
 * The flags `binary` accepts when run with `env` plus `instanceEnv` (an instance's server.env): from
 * the cache while the binary is the same file with the same size and mtime, else by running
 * `binary --help`. What a run that ended says is cached, failures included (an exit code, no flag
 * list), so they are reported once; a run that did not end (a timeout, a spawn error, a signal) is
 * not: it is reported and tried again by the next command.
 */
export function serverFlags(
  home: Home,
  binary: string,
  env: NodeJS.ProcessEnv,
  run: HelpRunner = runServerHelp,
  instanceEnv: Record<string, string> = {},
): FlagsLookup {
  let real: string;
  let id: string;
  try {
    real = fs.realpathSync(binary);
    const st = fs.statSync(real);
    id = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (e) {
    return { failure: `cannot read ${binary}: ${(e as Error).message}`, fresh: true };
  }
  const key = binaryCacheKey(real, instanceEnv);
  const mem = memo.get(`${key}\0${id}`);
  if (mem) return { ...mem, fresh: false };
  const file = serverFlagsCacheFile(home);
  const hit = binaryCache<CacheEntry>(file, CACHE_VERSION).get(key);
  if (hit?.id === id) {
    const found = { flags: hit.flags, failure: hit.failure, fresh: false };
    memo.set(`${key}\0${id}`, found);
    return found;
  }
  const out = run(binary, { ...env, ...instanceEnv });
  const flags = out.failure ? undefined : parseServerHelp(out.text);
  const failure = out.failure
    ? `"${binary} --help" ${out.failure}${out.transient ? ' (not cached: tried again next time)' : ''}`
    : flags
      ? undefined
      : `"${binary} --help" printed no llama-server flag list (no --port in it)`;
  if (!out.transient) binaryCache<CacheEntry>(file, CACHE_VERSION).set(key, flags ? { id, flags } : { id, failure });
  memo.set(`${key}\0${id}`, { flags, failure, fresh: false });
  return { flags, failure, fresh: true };
}

export interface ExtraArgsCheck {
  /** Unknown flags and stray values, each at its `$.server.extra_args[i]`. */
  problems: ConfigProblem[];
  /** Set when the binary's flags could not be read: extra_args were not checked. */
  unchecked?: { message: string; fresh: boolean };
}

/** Checks the instance's `server.extra_args` against the flags its llama-server binary accepts. */
export function checkExtraArgs(
  home: Home,
  inst: LoadedInstance,
  binary: string,
  env: NodeJS.ProcessEnv,
  run?: HelpRunner,
): ExtraArgsCheck {
  const args = inst.config.server.extra_args;
  if (args.length === 0) return { problems: [] };
  // The environment the server would get (a library path in server.env, say).
  const found = serverFlags(home, binary, env, run, inst.config.server.env);
  if (!found.flags) {
    return {
      problems: [],
      unchecked: {
        message: `server.extra_args not checked: ${found.failure ?? 'no flag list'}`,
        fresh: found.fresh,
      },
    };
  }
  return {
    problems: checkServerArgs(args, found.flags, binary).map((p) => ({
      file: inst.file,
      jsonPath: `$.server.extra_args[${p.index}]`,
      message: p.message,
    })),
  };
}
