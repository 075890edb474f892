// manifests/prometheus/scrape-config.yaml in a real Prometheus, scraping a real proxy.
//
// Debian's Prometheus is built without Kubernetes service discovery, so the test stands in for
// it: each job's kubernetes_sd_configs (role: pod) becomes a file_sd file holding exactly the
// targets and __meta_kubernetes_* labels that role documents (one target per declared container
// port), made from a meshed Pod, the control plane's Pod as manifests/ renders it, and decoys.
// The relabel rules run unchanged. Proven: the proxy job keeps only the proxy's admin port (and
// scrapes a live proxy: up == 1, its metrics stored with namespace/pod labels), the control-plane
// job keeps only the control plane's admin port, and decoys (an app port named like the proxy's,
// a finished Pod, other containers' ports) are dropped.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { freePort, startProxyProcess, type ProxyProcess } from '../fixtures/mesh.ts';

const MANIFESTS = new URL('../../manifests/', import.meta.url).pathname;
const SCRAPE = `${MANIFESTS}prometheus/scrape-config.yaml`;

interface Port {
  name?: string;
  containerPort: number;
}
interface Pod {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { nodeName?: string; containers: Array<{ name: string; ports?: Port[] }> };
  status: { phase: string; podIP: string };
}

const env = new Map(
  readFileSync(`${MANIFESTS}config.env`, 'utf8')
    .split('\n')
    .map((l) => /^([A-Z0-9_]+)=(.*)$/.exec(l.trim()))
    .filter((m) => m !== null)
    .map((m) => [m[1]!, m[2]!]),
);
const PROXY = env.get('MESHLET_PROXY_CONTAINER_NAME')!;
const PROXY_ADMIN = env.get('MESHLET_PROXY_ADMIN_PORT_NAME')!;

const sanitize = (name: string): string => name.replace(/[^a-zA-Z0-9_]/g, '_');

/** What Prometheus' kubernetes_sd role "pod" makes of a Pod: one target per container port. */
function podTargets(pod: Pod): Array<{ targets: string[]; labels: Record<string, string> }> {
  const podLabels: Record<string, string> = {
    __meta_kubernetes_namespace: pod.metadata.namespace,
    __meta_kubernetes_pod_name: pod.metadata.name,
    __meta_kubernetes_pod_ip: pod.status.podIP,
    __meta_kubernetes_pod_phase: pod.status.phase,
    __meta_kubernetes_pod_node_name: pod.spec.nodeName ?? '',
    __meta_kubernetes_pod_ready: pod.status.phase === 'Running' ? 'true' : 'false',
  };
  for (const [k, v] of Object.entries(pod.metadata.labels ?? {})) {
    podLabels[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
    podLabels[`__meta_kubernetes_pod_labelpresent_${sanitize(k)}`] = 'true';
  }
  for (const [k, v] of Object.entries(pod.metadata.annotations ?? {})) {
    podLabels[`__meta_kubernetes_pod_annotation_${sanitize(k)}`] = v;
    podLabels[`__meta_kubernetes_pod_annotationpresent_${sanitize(k)}`] = 'true';
  }
  return pod.spec.containers.flatMap((c) =>
    (c.ports ?? []).map((p) => ({
      targets: [`${pod.status.podIP}:${p.containerPort}`],
      labels: {
        ...podLabels,
        __meta_kubernetes_pod_container_name: c.name,
        __meta_kubernetes_pod_container_port_name: p.name ?? '',
        __meta_kubernetes_pod_container_port_number: String(p.containerPort),
        __meta_kubernetes_pod_container_port_protocol: 'TCP',
      },
    })),
  );
}

let proxy: ProxyProcess | undefined;
let prometheus: ChildProcess | undefined;
let dir = '';
let promUrl = '';
let promLog = '';

interface Target {
  labels: Record<string, string>;
  discoveredLabels: Record<string, string>;
  scrapePool: string;
  health: string;
  lastError: string;
}
async function targets(): Promise<{ active: Target[]; dropped: Target[] }> {
  const body = (await (await fetch(`${promUrl}/api/v1/targets?state=any`)).json()) as { data: { activeTargets: Target[]; droppedTargets: Target[] } };
  return { active: body.data.activeTargets, dropped: body.data.droppedTargets };
}

/** A discovered (pre-relabelling) pod label: `meta(d, 'name')` is __meta_kubernetes_pod_name. */
const meta = (d: Target, name: string): string => d.discoveredLabels[`__meta_kubernetes_pod_${name}`] ?? '';

async function query(q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
  return ((await r.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }).data.result;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen in time (${String(last ?? '')}); prometheus log:\n${promLog.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-prom-'));
  proxy = await startProxyProcess({ config: { version: 'scrape-1', services: [] }, workload: 'web' });

  // The Pods Kubernetes would list. The meshed Pod's proxy admin port is the live proxy's.
  const meshed: Pod = {
    metadata: { name: 'web-7d9f', namespace: 'shop', labels: { app: 'web' }, annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080' } },
    spec: {
      nodeName: 'node-a',
      containers: [
        { name: 'app', ports: [{ name: 'http', containerPort: 8080 }] },
        { name: PROXY, ports: [{ name: 'meshlet-inbound', containerPort: Number(env.get('MESHLET_PROXY_INBOUND_PORT')) }, { name: PROXY_ADMIN, containerPort: proxy.adminPort }] },
      ],
    },
    status: { phase: 'Running', podIP: '127.0.0.1' },
  };
  const rendered = await new Promise<string>((resolve, reject) => {
    const c = spawn('kubectl', ['kustomize', MANIFESTS], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl kustomize exited ${code}`))));
  });
  const deployment = parseAllDocuments(rendered)
    .map((d) => d.toJS() as { kind: string; spec: { template: { metadata: Pod['metadata']; spec: Pod['spec'] } } })
    .find((o) => o.kind === 'Deployment')!;
  const controlPlane: Pod = {
    metadata: { ...deployment.spec.template.metadata, name: 'meshlet-control-plane-5c8b', namespace: 'meshlet-system' },
    spec: { ...deployment.spec.template.spec, nodeName: 'node-b' },
    status: { phase: 'Running', podIP: '127.0.0.2' },
  };
  const decoys: Pod[] = [
    // An application that happens to name its own port like the proxy's.
    { metadata: { name: 'impostor', namespace: 'shop' }, spec: { containers: [{ name: 'app', ports: [{ name: PROXY_ADMIN, containerPort: 9000 }] }] }, status: { phase: 'Running', podIP: '127.0.0.3' } },
    // A finished Job's Pod that was meshed.
    { metadata: { name: 'migrate-x1', namespace: 'shop' }, spec: { containers: [{ name: PROXY, ports: [{ name: PROXY_ADMIN, containerPort: 4191 }] }] }, status: { phase: 'Succeeded', podIP: '127.0.0.4' } },
    // Something else in meshlet-system with an "admin" port.
    { metadata: { name: 'other-admin', namespace: 'meshlet-system', labels: { 'app.kubernetes.io/name': 'other' } }, spec: { containers: [{ name: 'x', ports: [{ name: 'admin', containerPort: 9990 }] }] }, status: { phase: 'Running', podIP: '127.0.0.5' } },
  ];
  const pods = [meshed, controlPlane, ...decoys];

  // The scrape config as shipped, with each kubernetes_sd_configs replaced by a file of the
  // targets that SD config would see (honouring its namespaces filter), and a 1 s interval.
  const config = parse(readFileSync(SCRAPE, 'utf8')) as { scrape_configs: Array<Record<string, unknown>> };
  for (const job of config.scrape_configs) {
    const sds = job.kubernetes_sd_configs as Array<{ role: string; namespaces?: { names: string[] } }>;
    const file = join(dir, `${String(job.job_name)}.json`);
    const groups = sds.flatMap((sd) => {
      if (sd.role !== 'pod') throw new Error(`${String(job.job_name)}: role ${sd.role} is not modelled here`);
      return pods.filter((p) => !sd.namespaces || sd.namespaces.names.includes(p.metadata.namespace)).flatMap(podTargets);
    });
    writeFileSync(file, JSON.stringify(groups));
    delete job.kubernetes_sd_configs;
    job.file_sd_configs = [{ files: [file], refresh_interval: '1s' }];
    job.scrape_interval = '1s';
    job.scrape_timeout = '1s';
  }
  const configPath = join(dir, 'prometheus.yml');
  writeFileSync(configPath, stringify(config));

  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prometheus = spawn('prometheus', [`--config.file=${configPath}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  prometheus.on('error', (err) => (promLog += `\ncannot start prometheus (${err.message}): scripts/install-deps.sh installs it`));
  prometheus.stdout!.on('data', (d: Buffer) => (promLog += d.toString()));
  prometheus.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
  await until('prometheus ready', async () => ((await fetch(`${promUrl}/-/ready`)).status === 200 ? true : undefined));
});

t.teardown(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus!.once('exit', r));
    prometheus.kill('SIGKILL');
    await exited;
  }
  await proxy?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

t.test('the relabelled scrape config is valid (promtool)', async (t) => {
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', (err) => resolve({ code: -1, out: err.message }));
    c.on('close', (code) => resolve({ code, out }));
  });
  t.equal(r.code, 0, r.out);
});

t.test('meshlet-proxy: exactly the proxy admin port of running meshed Pods, scraped live', async (t) => {
  const { active, dropped } = await until('the proxy target to be scraped', async () => {
    const all = await targets();
    return all.active.some((a) => a.scrapePool === 'meshlet-proxy' && a.health === 'up') ? all : undefined;
  });
  const mine = active.filter((a) => a.scrapePool === 'meshlet-proxy');
  t.same(
    mine.map((a) => a.labels),
    [{ instance: `127.0.0.1:${proxy!.adminPort}`, job: 'meshlet-proxy', namespace: 'shop', pod: 'web-7d9f', node: 'node-a' }],
    'one target, labelled with namespace, pod and node',
  );
  const droppedHere = dropped.filter((d) => d.discoveredLabels.job === 'meshlet-proxy').map((d) => `${meta(d, 'name')}/${meta(d, 'container_port_name')}`);
  t.same(droppedHere.toSorted(), ['impostor/meshlet-admin', 'meshlet-control-plane-5c8b/admin', 'meshlet-control-plane-5c8b/config', 'meshlet-control-plane-5c8b/webhook', 'migrate-x1/meshlet-admin', 'other-admin/admin', 'web-7d9f/http', 'web-7d9f/meshlet-inbound']);

  const up = await query('up{job="meshlet-proxy"}');
  t.same(up.map((r) => r.value[1]), ['1']);
  const info = await until('the proxy config metric', async () => {
    const r = await query('meshlet_config_info');
    return r.length > 0 ? r : undefined;
  });
  t.match(info[0]?.metric, { version: 'scrape-1', namespace: 'shop', pod: 'web-7d9f', job: 'meshlet-proxy' }, "the proxy's own metrics are stored with the target labels");
});

t.test("meshlet-control-plane: exactly the control plane's admin port", async (t) => {
  const { active } = await until('the control plane target', async () => {
    const all = await targets();
    return all.active.some((a) => a.scrapePool === 'meshlet-control-plane') ? all : undefined;
  });
  t.same(
    active.filter((a) => a.scrapePool === 'meshlet-control-plane').map((a) => a.labels),
    [{ instance: `127.0.0.2:${env.get('MESHLET_ADMIN_LISTEN')!.split(':')[1]}`, job: 'meshlet-control-plane', namespace: 'meshlet-system', pod: 'meshlet-control-plane-5c8b' }],
  );
});
