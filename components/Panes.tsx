import React from 'react';
import { Box, Text } from 'ink';
import type { EventRow } from '../src/store/store.js';
import { KEY_HELP } from './keymap.js';

/** Pre-clipped lines in one Text node: cheaper to lay out than a node per line. */
function clipLines(lines: string[], width: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = (l: string) => l.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '').replace(/\t/g, '  ');
  return lines
    .map((l) => {
      const c = clean(l);
      return c.length > width ? c.slice(0, Math.max(0, width - 1)) + '…' : c;
    })
    .join('\n');
}

export function LogPane({
  name,
  stream,
  lines,
  height,
  width,
}: {
  name: string | undefined;
  stream: string;
  lines: string[];
  height: number;
  width: number;
}) {
  const shown = lines.slice(-height);
  return (
    <Box flexDirection="column">
      <Text bold>
        logs · {name ?? '-'} · {stream} <Text dimColor>(l: switch stream)</Text>
      </Text>
      {shown.length === 0 ? <Text dimColor>(no output yet)</Text> : <Text>{clipLines(shown, width)}</Text>}
    </Box>
  );
}

const levelColor: Record<string, string | undefined> = { error: 'red', warn: 'yellow', info: undefined, debug: 'gray' };

export function EventFeed({ events, height, name }: { events: EventRow[]; height: number; name?: string }) {
  const shown = events.slice(-height);
  return (
    <Box flexDirection="column">
      <Text bold>events{name ? ` · ${name}` : ''}</Text>
      {shown.length === 0 ? <Text dimColor>(no events)</Text> : null}
      {shown.map((e) => (
        <Text key={e.id} wrap="truncate" color={levelColor[e.level]}>
          {new Date(e.ts).toLocaleTimeString('en-GB', { hour12: false })} {(e.instance_name ?? '-').padEnd(10)}{' '}
          {e.event_type.padEnd(13)} {e.message}
        </Text>
      ))}
    </Box>
  );
}

export function DetailsPane({ lines, height }: { lines: string[]; height: number }) {
  return (
    <Box flexDirection="column">
      <Text bold>details</Text>
      {lines.slice(0, height).map((l, i) => (
        <Text key={i} wrap="truncate">
          {l}
        </Text>
      ))}
    </Box>
  );
}

export function Help() {
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>keys</Text>
      {KEY_HELP.map(([k, what]) => (
        <Text key={k}>
          <Text color="cyan">{k.padEnd(12)}</Text> {what}
        </Text>
      ))}
      <Text dimColor>press ? or Esc to close</Text>
    </Box>
  );
}

export function Footer({
  message,
  filter,
  filtering,
  confirm,
}: {
  message: string | null;
  filter: string;
  filtering: boolean;
  confirm: string | null;
}) {
  if (confirm) return <Text color="yellow">{confirm} (y/N)</Text>;
  if (filtering)
    return (
      <Text>
        filter: /{filter}
        <Text inverse> </Text> <Text dimColor>(Enter keeps · Esc clears)</Text>
      </Text>
    );
  return (
    <Box flexDirection="column">
      <Text wrap="truncate" color={message?.startsWith('error') ? 'red' : undefined}>
        {message ?? ' '}
      </Text>
      <Text dimColor wrap="truncate">
        {filter ? `[/${filter}] ` : ''}↑↓ select · s start · x stop · r restart · l logs · e events · d details · /
        filter · ? help · q quit
      </Text>
    </Box>
  );
}
