import React from 'react';
import { Box, Text } from 'ink';
import type { DashboardState } from './model.js';
import { clockText } from '../src/format/text.js';

export function Header({ state }: { state: DashboardState }) {
  const counts = new Map<string, number>();
  for (const i of state.instances) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
  const warned = state.instances.filter((i) => i.warnings.length > 0).length;
  const summary =
    ([...counts].map(([s, n]) => `${n} ${s}`).join(' · ') || 'no instances') +
    (warned ? ` · ${warned} with warnings (d: details)` : '');
  const time = clockText(state.now);
  return (
    // The daemon part keeps its width; the summary gives way first, then the host name.
    <Box justifyContent="space-between">
      <Box flexShrink={0.05} minWidth={10}>
        <Text wrap="truncate">
          <Text bold color="cyan">
            llama-orch
          </Text>{' '}
          <Text dimColor>{state.host}</Text>
        </Text>
      </Box>
      <Box flexShrink={1} flexGrow={1} justifyContent="center" overflow="hidden" marginX={1}>
        <Text wrap="truncate">{summary}</Text>
      </Box>
      <Box flexShrink={0}>
        <Text>
          daemon: {state.daemon.running ? <Text color="green">running</Text> : <Text dimColor>off</Text>}
          {state.daemon.proxy ? <Text dimColor> proxy {state.daemon.proxy.replace(/^http:\/\//, '')}</Text> : null}{' '}
          <Text dimColor>{time}</Text>
        </Text>
      </Box>
    </Box>
  );
}
