import React from 'react';
import { Box, Text } from 'ink';
import { KEY_HELP } from './keymap.js';
import type { Prompt } from './layout.js';
import { clip, footerText, visibleRange, type Scroll } from './view.js';

const SGR: Record<string, [number, number]> = { red: [31, 39], yellow: [33, 39], gray: [90, 39] };

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
  prompt: Prompt;
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
