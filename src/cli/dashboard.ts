/** Placeholder until the Ink dashboard lands: prints the snapshot instead. */
export async function runDashboard(home: string | undefined): Promise<number> {
  const { openContext } = await import('./context.js');
  const { onceCommand } = await import('./commands/inspect.js');
  const { stdOut } = await import('./output.js');
  const ctx = openContext(home);
  try {
    return onceCommand(ctx, false, stdOut);
  } finally {
    ctx.close();
  }
}
