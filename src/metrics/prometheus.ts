/**
 * Prometheus text exposition format, as much of it as llama-server writes: `name value` and
 * `name{labels} value [timestamp]` lines, `#` comments. Returns each series (the name with its label
 * set, as written) and its value; a line that does not parse is skipped.
 */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const close = line.lastIndexOf('}');
    const nameEnd = close >= 0 ? close + 1 : line.search(/\s/);
    if (nameEnd <= 0) continue;
    const series = line.slice(0, nameEnd);
    const [valueText] = line.slice(nameEnd).trim().split(/\s+/);
    const value = parseValue(valueText ?? '');
    if (value !== undefined) out.set(series, value);
  }
  return out;
}

function parseValue(text: string): number | undefined {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}
