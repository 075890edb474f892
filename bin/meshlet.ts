#!/usr/bin/env node
// The `meshlet` command line (package.json "bin"). Runs with `node bin/meshlet.ts ...` on Node 24.
// Guarantees: nothing here but wiring: the dispatcher and commands live in control-plane/cli/.

import { systemWallClock } from '../control-plane/ca/wall-clock.ts';
import { run } from '../control-plane/cli/run.ts';

process.exitCode = await run(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  wallClock: systemWallClock,
});
