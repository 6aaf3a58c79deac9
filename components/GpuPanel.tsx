import React from 'react';
import { Box, Text } from 'ink';
import type { GpuInfo } from '../src/domain/gpu.js';
import { bar, gpuLineParts, gpuUsers, memoryRatio } from '../src/format/gpu.js';
import { formatBytes } from '../src/domain/units.js';
import { paint } from './InstanceTable.js';

export interface GpuPanelProps {
  gpus: GpuInfo[];
  /** Why the GPUs could not be read; null: fine. */
  error: string | null;
  /** No vendor tool: a CPU-only rig. */
  cpuOnly: boolean;
  /** No vendor tool because GPU reading was turned off (LLAMA_ORCH_NVIDIA_SMI=none), in words. */
  off?: string | null;
  width: number;
  /** Lines it may take (layout.ts gpuPanelHeight). */
  height: number;
}

const level = (ratio: number | null) =>
  ratio === null ? undefined : ratio > 0.95 ? 'red' : ratio > 0.8 ? 'yellow' : 'green';

/**
 * The GPU panel above the table: index, utilisation bar, VRAM used/total bar, temperature, power
 * and what holds the memory (instances by name, foreign processes with pid), then the name.
 * Narrow terminals lose the bars first, then the trailing parts.
 */
export function GpuPanel({ gpus, error, cpuOnly, off: turnedOff, width, height }: GpuPanelProps) {
  if (height <= 0) return null;
  if (gpus.length === 0) {
    const off = cpuOnly && !error ? (turnedOff ?? null) : null;
    if (off) {
      return (
        <Text dimColor wrap="truncate">
          GPUs: not read — {off}
        </Text>
      );
    }
    return error || !cpuOnly ? (
      <Text color="red" wrap="truncate">
        GPUs not read: {error ?? 'no reading yet'}
      </Text>
    ) : (
      <Text dimColor wrap="truncate">
        GPUs: none — a CPU-only rig (no nvidia-smi or rocm-smi on PATH)
      </Text>
    );
  }
  const barWidth = width >= 110 ? 10 : width >= 80 ? 6 : 0;
  // Too many for the room: as many as fit with a line saying how many more (none on one line).
  const shown = gpus.length > height ? gpus.slice(0, Math.max(1, height - 1)) : gpus;
  return (
    <Box flexDirection="column">
      {shown.map((g) => (
        <GpuLine key={g.index} g={g} barWidth={barWidth} width={width} />
      ))}
      {shown.length < gpus.length && shown.length < height ? (
        <Text dimColor wrap="truncate">
          +{gpus.length - shown.length} more GPU(s): llama-orch gpus
        </Text>
      ) : null}
    </Box>
  );
}

/**
 * One GPU's line as one Text with its colour codes inline, cut to the width here: nested Text
 * nodes (one per part) cost Ink layout and styling work on every frame (bench/BENCHMARKS.md).
 */
export function gpuLine(g: GpuInfo, barWidth: number, width: number): string {
  // A GPU the tool cannot reach or read: said in red, in place of readings it does not have.
  if (g.state === 'lost' || g.state === 'unreadable') {
    const what = g.state === 'lost' ? 'LOST' : 'UNREADABLE';
    return `${paint(`GPU ${g.index}`, 'bold')}  ${paint(what, 'red')}  ${g.state_detail ?? ''}`.trimEnd();
  }
  const util = g.utilization_pct === null ? null : g.utilization_pct / 100;
  const mem = memoryRatio(g);
  const { optional } = gpuLineParts(g, barWidth);
  const hot = g.temperature_c !== null && g.temperature_c >= 85;
  // What is left after the fixed parts goes to temperature, power, who holds the memory (cut at the
  // edge rather than dropped: it is what an operator looks for) and the name (only whole).
  let room = width - (6 + (barWidth + 6) + (barWidth + 16)) - 2;
  const users = gpuUsers(g.processes);
  const tail: string[] = [];
  for (const part of optional) {
    const whole = part.length + 2 <= room;
    if (!whole && !(part === users && room > 10)) continue;
    tail.push(whole ? part : part.slice(0, Math.max(0, room - 3)) + '…');
    room -= part.length + 2;
  }
  const temp = g.temperature_c !== null ? `${Math.round(g.temperature_c)}C` : null;
  const color = (text: string, c: string | undefined) => (c ? paint(text, c) : text);
  let line = paint(`GPU ${g.index}`, 'bold') + '  ';
  if (barWidth) line += color(bar(util, barWidth), level(util)) + ' ';
  line += (g.utilization_pct === null ? '-' : `${Math.round(g.utilization_pct)}%`).padStart(4) + '  ';
  if (barWidth) line += color(bar(mem, barWidth), level(mem)) + ' ';
  line += color(
    `${formatBytes(g.memory_used_bytes)}/${formatBytes(g.memory_total_bytes)}`,
    mem !== null && mem > 0.95 ? 'red' : undefined,
  );
  for (const t of tail) line += '  ' + (t === temp ? color(t, hot ? 'red' : undefined) : t);
  return line;
}

function GpuLine({ g, barWidth, width }: { g: GpuInfo; barWidth: number; width: number }) {
  return <Text wrap="truncate">{gpuLine(g, barWidth, width)}</Text>;
}
