import React from 'react';
import { Box, Text } from 'ink';
import type { EventRow } from '../src/store/store.js';
import { KEY_HELP } from './keymap.js';
import { clip, footerText, visibleRange, type Scroll } from './view.js';

const SGR: Record<string, [number, number]> = { red: [31, 39], yellow: [33, 39], gray: [90, 39] };
const levelColor: Record<string, string | undefined> = { error: 'red', warn: 'yellow', info: undefined, debug: 'gray' };

function paintLine(text: string, color: string | undefined): string {
  const code = color && !process.env.NO_COLOR ? SGR[color] : undefined;
  return code ? `\u001b[${code[0]}m${text}\u001b[${code[1]}m` : text;
}

export interface PaneProps {
  title: string;
  lines: readonly string[];
  /** Lines of content (the title line not counted). */
  height: number;
  width: number;
  scroll: Scroll;
  /** The search term, shown in reverse video. */
  term?: string;
  /** A colour per line (events by level). */
  colors?: ReadonlyArray<string | undefined>;
  empty?: string;
}

/**
 * One scrollable pane (logs, events, details, action results): the title says where the view is
 * (`120-140/500`, or `follow` at the end of a tailing pane); the lines are pre-clipped into one Text
 * node, which is far cheaper to lay out than a node per line.
 */
export function ScrollPane({ title, lines, height, width, scroll, term, colors, empty }: PaneProps) {
  const { start, end } = visibleRange(lines.length, height, scroll);
  const where =
    lines.length <= height
      ? ''
      : scroll.follow
        ? ` · end of ${lines.length} (following)`
        : ` · ${start + 1}-${end} of ${lines.length}`;
  const body = lines
    .slice(start, end)
    .map((l, i) => paintLine(clip(l, width, term), colors?.[start + i]))
    .join('\n');
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {title}
        <Text dimColor>
          {where}
          {term ? ` · /${term}` : ''}
        </Text>
      </Text>
      {lines.length === 0 ? <Text dimColor>{empty ?? '(nothing yet)'}</Text> : <Text>{body}</Text>}
    </Box>
  );
}

const time = (ts: number) => new Date(ts).toLocaleTimeString('en-GB', { hour12: false });

/** Events as pane lines, with their colours. */
export function eventLines(events: readonly EventRow[]): { lines: string[]; colors: Array<string | undefined> } {
  // The name column is as wide as the longest name listed (at most 32): the other columns stay put.
  const nameWidth = Math.min(32, Math.max(10, ...events.map((e) => (e.instance_name ?? '-').length)));
  return {
    lines: events.map(
      (e) => `${time(e.ts)} ${(e.instance_name ?? '-').padEnd(nameWidth)} ${e.event_type.padEnd(13)} ${e.message}`,
    ),
    colors: events.map((e) => levelColor[e.level]),
  };
}

export interface ActionResult {
  at: number;
  text: string;
  error: boolean;
}

/** The results of the last actions, newest last. */
export function historyLines(results: readonly ActionResult[]): {
  lines: string[];
  colors: Array<string | undefined>;
} {
  return {
    lines: results.map((r) => `${time(r.at)} ${r.text}`),
    colors: results.map((r) => (r.error ? 'red' : undefined)),
  };
}

export function Help() {
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>keys</Text>
      {KEY_HELP.map(([k, what]) => (
        <Text key={k} wrap="truncate">
          <Text color="cyan">{k.padEnd(12)}</Text> {what}
        </Text>
      ))}
      <Text dimColor>press ? or Esc to close</Text>
    </Box>
  );
}

export function Footer({
  message,
  prefix,
  prompt,
  width,
}: {
  message: string | null;
  /** Filter and sort in effect, shown before the keys. */
  prefix: string;
  /** A question (y/N) or a line being typed (filter, search): replaces the key line. */
  prompt: { kind: 'confirm' | 'input'; text: string } | null;
  width: number;
}) {
  return (
    <Box flexDirection="column">
      <Text wrap="truncate" color={message?.startsWith('error') ? 'red' : undefined}>
        {message ?? ' '}
      </Text>
      {prompt?.kind === 'confirm' ? (
        // The answer keys stay visible however long the question: it is cut before them.
        <Text color="yellow" wrap="truncate">
          {clip(prompt.text, Math.max(10, width - 7))} (y/N)
        </Text>
      ) : prompt ? (
        <Text wrap="truncate">
          {prompt.text}
          <Text inverse> </Text> <Text dimColor>(Enter keeps · Esc clears)</Text>
        </Text>
      ) : (
        <Text dimColor wrap="truncate">
          {footerText(width, prefix)}
        </Text>
      )}
    </Box>
  );
}
