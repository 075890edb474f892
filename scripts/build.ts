// `npm run build`: compile api/ and proxy/ to dist/ (tsc emits JavaScript; imports are rewritten
// from .ts to .js). tap runs this before the tests, so tests exercise what users run.
import { spawnSync } from 'node:child_process';
import getExePath from '../node_modules/typescript/lib/getExePath.js';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
// The native compiler itself, not its Node wrapper: tap runs this file as its `before` step with
// loader hooks that the wrapper's require cannot pass through.
const tsc = getExePath();
const r = spawnSync(tsc, ['-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write('build failed\n');
  process.exit(r.status ?? 1);
}
