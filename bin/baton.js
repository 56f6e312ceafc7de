#!/usr/bin/env node
// Entry point of the `baton` command: runs the compiled CLI (run `make build` first).
import { main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  process.stderr.write(`baton: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
