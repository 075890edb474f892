// `npm start -- --prometheus`: a real Prometheus (Debian's package) scraping the local mesh, with
// meshlet's alert rules loaded. The same config serves test/observe/dashboards.test.ts.
// Targets carry the labels the Kubernetes scrape config gives them (job, namespace, pod), so the
// dashboards' queries work unchanged on the local mesh.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const RULES_FILE = fileURLToPath(new URL('../manifests/prometheus/rules.yaml', import.meta.url));

export interface MeshTargets {
  /** host:port of the control plane's admin server. */
  controlPlane: string;
  proxies: Array<{ workload: string; namespace: string; admin: string }>;
}

export function prometheusConfig(t: MeshTargets, o: { scrapeInterval: string; ruleFiles: string[] }): string {
  return stringify({
    global: { scrape_interval: o.scrapeInterval, evaluation_interval: o.scrapeInterval },
    rule_files: o.ruleFiles,
    scrape_configs: [
      {
        job_name: 'meshlet-proxy',
        static_configs: t.proxies.map((p) => ({ targets: [p.admin], labels: { namespace: p.namespace, pod: `${p.workload}-0` } })),
      },
      { job_name: 'meshlet-control-plane', static_configs: [{ targets: [t.controlPlane], labels: { namespace: 'meshlet-system', pod: 'control-plane-0' } }] },
    ],
  });
}

export function findPrometheus(): string | undefined {
  for (const p of ['/usr/bin/prometheus', '/usr/local/bin/prometheus']) {
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export interface RunningPrometheus {
  url: string;
  process: ChildProcess;
}

/** Starts Prometheus on 127.0.0.1:port with its data under dir; resolves once /-/ready answers. */
export async function startPrometheus(dir: string, t: MeshTargets, o: { port: number; scrapeInterval?: string; bin?: string }): Promise<RunningPrometheus> {
  const bin = o.bin ?? findPrometheus();
  if (!bin) throw new Error('prometheus is not installed: apt-get install prometheus (scripts/install-deps.sh does it)');
  mkdirSync(join(dir, 'prometheus-data'), { recursive: true });
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, prometheusConfig(t, { scrapeInterval: o.scrapeInterval ?? '5s', ruleFiles: [RULES_FILE] }));
  const url = `http://127.0.0.1:${o.port}`;
  const child = spawn(bin, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'prometheus-data')}`, `--web.listen-address=127.0.0.1:${o.port}`, '--log.level=warn', '--storage.tsdb.retention.time=1d'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${log}`);
    try {
      if ((await fetch(`${url}/-/ready`)).status === 200) return { url, process: child };
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`prometheus at ${url} not ready: ${log}`);
}
