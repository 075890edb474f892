// `npm run build`: bundle the proxy into dist/proxy/main.js (and its launcher's flags into
// dist/proxy/launch.js) with esbuild. tap runs this before the tests, so tests exercise what users run.
//
// One file instead of ~60 of ours and ~300 of the libraries' (TypeBox alone is ~200 ES modules):
// a proxy starts in ~105 ms instead of ~210 and idles at ~64 MB of RSS instead of ~78 (README
// "Memory"). The bundle is not minified (stack traces keep our names); types are checked by
// `tsc --noEmit` (npm test), not here. Left out and loaded from node_modules only when used: the
// YAML parser (a config file in YAML) and the OpenTelemetry SDK (OTEL_* variables set).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Loaded by `await import()` only when needed, so they stay out of the bundle (and of memory). */
export const LAZY_PACKAGES = ['yaml', '@opentelemetry/sdk-node'];

/** Where the bundle starts, by output name (dist/<name>.js). */
export const ENTRY_POINTS = { 'proxy/main': 'proxy/main.ts', 'proxy/launch': 'proxy/launch.ts' };

if (import.meta.main) await bundle();

async function bundle(): Promise<void> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
  try {
    const r = await build({
      absWorkingDir: root,
      entryPoints: ENTRY_POINTS,
      outdir: 'dist',
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node24',
      external: LAZY_PACKAGES,
      // CommonJS dependencies (prom-client) call require(); an ES module has none of its own.
      banner: { js: "import { createRequire as __meshletCreateRequire } from 'node:module';\nconst require = __meshletCreateRequire(import.meta.url);" },
      legalComments: 'none',
      logLevel: 'warning',
      metafile: true,
    });
    const inputs = Object.keys(r.metafile.inputs);
    process.stdout.write(`build: dist/proxy/main.js from ${inputs.length} modules (${inputs.filter((f) => f.includes('node_modules/')).length} from node_modules)\n`);
  } catch (e) {
    process.stderr.write(`build failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
