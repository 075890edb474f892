// Writes the observability files from observe/: Grafana dashboards (manifests/grafana/*.json and
// their ConfigMaps) and Prometheus rules (manifests/prometheus/rules.yaml, a PrometheusRule).
//   node scripts/gen-observe.ts           regenerate the files
//   node scripts/gen-observe.ts --check   exit 1 if a committed file differs from what would be written
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderAll } from '../observe/render.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function main(argv: string[]): Promise<number> {
  const check = argv.includes('--check');
  let stale = 0;
  for (const [rel, text] of renderAll()) {
    const file = join(ROOT, rel);
    const current = await readFile(file, 'utf8').catch(() => undefined);
    if (current === text) continue;
    if (check) {
      console.error(`${rel} is out of date: run \`node scripts/gen-observe.ts\``);
      stale++;
    } else {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, text);
      console.log(`wrote ${rel}`);
    }
  }
  return stale > 0 ? 1 : 0;
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
