// How every launcher (bench, demo, images, tests) starts a proxy process: the compiled build
// (dist/, made by `npm run build`) with the same Node flags, so memory stays bounded under load.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * V8 heap caps (README "Memory"): a 1 MiB young generation keeps RSS low at a small GC cost;
 * the old-generation cap bounds the heap (steady state uses ~20 MB).
 */
export const PROXY_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=64'];

/**
 * The compiled entry point. Type stripping costs ~30 MB of RSS per process (the stripper and the
 * sources), so proxies run the JavaScript `tsc -p tsconfig.build.json` emits into dist/.
 */
export const PROXY_MAIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../dist/proxy/main.js' : './main.js', import.meta.url));

/** argv for spawn(process.execPath, proxyArgv(args)); throws if the build is missing. */
export function proxyArgv(args: string[]): string[] {
  if (!existsSync(PROXY_MAIN)) throw new Error(`${PROXY_MAIN} is missing: run \`npm run build\` first (npm start, npm test and npm run bench do it)`);
  return [...PROXY_NODE_FLAGS, PROXY_MAIN, ...args];
}
