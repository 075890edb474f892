// How every launcher (bench, demo, images, tests) starts a proxy process: the bundled build
// (dist/, made by `npm run build`) with the same Node flags, so memory stays bounded under load.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * V8 heap settings of every proxy process, the image's ENTRYPOINT included (README "Memory"),
 * measured with the bench at saturation:
 * - a 4 MiB young generation: a request's objects die young (1 MiB had them survive scavenges
 *   and fill the old generation: a mark-compact every ~250 ms);
 * - no allocation-site pretenuring: V8 saw request objects survive once and began allocating
 *   them in the old generation directly, where they died (the same mark-compacts).
 */
export const PROXY_NODE_FLAGS = ['--max-semi-space-size=4', '--no-allocation-site-pretenuring'];

/**
 * The old-generation cap of a proxy this machine starts (demo, tests, bench; steady state uses
 * ~12 MB). In a Pod the cap comes from the container's memory limit instead (the injector's
 * NODE_OPTIONS, heapCapMb in injector/inject.ts): a proxy whose view holds thousands of services
 * needs more than 64 MB, and its memory limit is where a user says how much it may have.
 */
export const LOCAL_HEAP_FLAGS = ['--max-old-space-size=64'];

/**
 * The built entry point: one bundle (scripts/build.ts). Type stripping costs ~30 MB of RSS per
 * process (the stripper and the sources) and loading ~370 modules one by one ~14 MB more.
 */
export const PROXY_MAIN = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../dist/proxy/main.js' : './main.js', import.meta.url));

/** argv for spawn(process.execPath, proxyArgv(args)); throws if the build is missing. */
export function proxyArgv(args: string[]): string[] {
  if (!existsSync(PROXY_MAIN)) throw new Error(`${PROXY_MAIN} is missing: run \`npm run build\` first (npm start, npm test and npm run bench do it)`);
  return [...PROXY_NODE_FLAGS, ...LOCAL_HEAP_FLAGS, PROXY_MAIN, ...args];
}
