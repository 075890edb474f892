// How every launcher (bench, demo, images, tests) starts a proxy process: the same Node flags,
// so memory stays bounded under load (young generation capped; see README "Memory").
import { fileURLToPath } from 'node:url';

/** V8 heap caps measured to keep RSS low without losing throughput (npm run bench). */
export const PROXY_NODE_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=64'];

export const PROXY_MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

/** argv for spawn(process.execPath, proxyArgv(flags)). */
export function proxyArgv(args: string[]): string[] {
  return [...PROXY_NODE_FLAGS, PROXY_MAIN, ...args];
}
