// How every launcher (bench, demo, images, tests) starts a proxy process: the bundled build
// (dist/, made by `npm run build`) with the same Node flags, so memory stays bounded under load.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * V8 heap settings (README "Memory"), measured with the bench at saturation:
 * - a 4 MiB young generation: a request's objects die young (1 MiB had them survive scavenges
 *   and fill the old generation: a mark-compact every ~250 ms);
 * - no allocation-site pretenuring: V8 saw request objects survive once and began allocating
 *   them in the old generation directly, where they died (the same mark-compacts);
 * - the old-generation cap bounds the heap (steady state uses ~12 MB).
 */
export const PROXY_NODE_FLAGS = ['--max-semi-space-size=4', '--max-old-space-size=64', '--no-allocation-site-pretenuring'];

/**
 * The built entry point: one bundle (scripts/build.ts). Type stripping costs ~30 MB of RSS per
 * process (the stripper and the sources) and loading ~370 modules one by one ~14 MB more.
 */
export const PROXY_MAIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../dist/proxy/main.js' : './main.js', import.meta.url));

/** argv for spawn(process.execPath, proxyArgv(args)); throws if the build is missing. */
export function proxyArgv(args: string[]): string[] {
  if (!existsSync(PROXY_MAIN)) throw new Error(`${PROXY_MAIN} is missing: run \`npm run build\` first (npm start, npm test and npm run bench do it)`);
  return [...PROXY_NODE_FLAGS, PROXY_MAIN, ...args];
}
