// How a benchmark script ends: run main, always clean up, exit with main's code (1 if it threw).
export async function runBenchmark(main: () => Promise<number>, cleanup: () => Promise<void>): Promise<never> {
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    console.error(`benchmark aborted: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  } finally {
    await cleanup();
  }
  process.exit(code);
}
