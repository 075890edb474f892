// `npm run build`: bundle the proxy into dist/proxy/main.js (and its launcher's flags into
// dist/proxy/launch.js) with rolldown. tap runs this before the tests, so tests exercise what users run.
//
// One file instead of ~60 of ours and ~300 of the libraries' (TypeBox alone is ~200 ES modules):
// a proxy is ready ~115 ms after start instead of ~245 and idles at ~64 MB of RSS instead of ~78
// (README "Memory"). rolldown rather than esbuild: esbuild turns every top-level `const` into
// `var`, which V8 cannot treat as constants (the HTTP engine's state tables, limits); in the same
// bench rounds (6 rounds, 2 hops) its bundle was ~4 % slower at saturation, used ~8 % more CPU per
// request at ~1000 rps and had a ~0.4 ms higher p99 there. Not minified (stack traces keep our
// names); types are checked by `tsc --noEmit` (npm test), not here. Left out and loaded from
// node_modules only when used: the YAML parser (a config file in YAML) and the OpenTelemetry SDK
// (OTEL_* variables set).
import { build } from 'rolldown';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Loaded by `await import()` only when needed, so they stay out of the bundle (and of memory). */
export const LAZY_PACKAGES = ['yaml', '@opentelemetry/sdk-node'];

/** Where the bundle starts, by output name (dist/proxy/<name>.js). */
export const ENTRY_POINTS = { main: 'proxy/main.ts', launch: 'proxy/launch.ts' };

if (import.meta.main) await bundle();

async function bundle(): Promise<void> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
  const warnings: string[] = [];
  try {
    await build({
      cwd: root,
      input: ENTRY_POINTS,
      platform: 'node',
      external: [...LAZY_PACKAGES, /^node:/],
      output: { dir: 'dist/proxy', format: 'esm', minify: false },
      onLog(level, log) {
        // @opentelemetry/api is imported lazily by trace.ts but eagerly by prom-client's CPU
        // metric, so it is in the bundle either way: expected, not worth a warning.
        if (log.code === 'INEFFECTIVE_DYNAMIC_IMPORT' && log.message.includes('@opentelemetry/api')) return;
        if (level === 'warn') warnings.push(log.message);
      },
    });
  } catch (e) {
    process.stderr.write(`build failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
  for (const w of warnings) process.stderr.write(`build: warning: ${w}\n`);
  process.stdout.write(`build: dist/proxy/${Object.keys(ENTRY_POINTS).join('.js, dist/proxy/')}.js\n`);
}
