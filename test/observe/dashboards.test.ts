// Every panel of every dashboard (manifests/grafana/) against a real Prometheus scraping the real
// local mesh (demo/start.ts, port base 17000) under load. Midway, api-v1 gains dead endpoints in
// the watched config (connect refused → retries, an ejection, a config push and its ACK), so the
// resilience and push panels have something to show. Each query runs with its template variables
// filled as Grafana would and must return series whose values are sane: ratios in [0, 1],
// p99 ≥ p95 ≥ p50, request rates close to what the load generator sent. Template variable queries
// must offer the values used.
import https from 'node:https';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startPrometheus, findPrometheus } from '../../demo/prometheus.ts';
import { exportJson, queriesOf, type Dashboard, type Target, type Variable } from '../../observe/dashboards/grafana.ts';
import { DASHBOARDS } from '../../observe/dashboards/index.ts';

const START = new URL('../../demo/start.ts', import.meta.url).pathname;
const GRAFANA = new URL('../../manifests/grafana/', import.meta.url).pathname;
const PORT_BASE = 17000;
const RPS = 20;
const RATE_WINDOW = '20s';
const FAULT_AT_MS = 16_000;
const QUERY_AT_MS = 34_000;

if (!findPrometheus()) throw new Error('prometheus not found: apt-get install prometheus (scripts/install-deps.sh does it)');

/** The values each dashboard's variables take in the test: the web service and its call to api-v1. */
const FILL: Record<string, Record<string, string>> = {
  'meshlet-overview': { namespace: 'demo' },
  'meshlet-service': { namespace: 'demo', service: 'web' },
  'meshlet-edge': { namespace: 'demo', source: 'web', destination: 'api-v1.demo' },
  'meshlet-proxy': { namespace: 'demo', pod: '.*' },
  'meshlet-control-plane': {},
};

const fill = (expr: string, vars: Record<string, string>): string =>
  expr
    .replaceAll('$__rate_interval', RATE_WINDOW)
    .replaceAll('$__range', '30s')
    .replace(/\$\{?(\w+)\}?/g, (m, name: string) => vars[name] ?? m);

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(prom: string, q: string): Promise<{ status: string; error?: string; data?: { result: Sample[] } }> {
  const r = await fetch(`${prom}/api/v1/query?${new URLSearchParams({ query: q })}`);
  return (await r.json()) as { status: string; error?: string; data?: { result: Sample[] } };
}

async function labelValues(prom: string, v: Variable, vars: Record<string, string>): Promise<string[]> {
  const def = fill(v.definition ?? '', vars);
  const m = /^label_values\((.*), (\w+)\)$/s.exec(def);
  if (!m) throw new Error(`not a label_values query: ${def}`);
  const r = await fetch(`${prom}/api/v1/label/${m[2]}/values?${new URLSearchParams({ 'match[]': m[1]! })}`);
  return ((await r.json()) as { data: string[] }).data;
}

const labelKey = (m: Record<string, string>): string =>
  JSON.stringify(Object.entries(m).filter(([k]) => k !== 'le').toSorted());

/** A Pod as the API server would send it for review. */
const pod = (name: string, extra: Record<string, unknown> = {}, annotations: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }], ...extra } });

/** POSTs three AdmissionReviews to the webhook on `port`: what each answer was (allowed, with a patch, or denied). */
async function admit(port: number): Promise<string[]> {
  const out: string[] = [];
  for (const [i, object] of [pod('web'), pod('host', { hostNetwork: true }), pod('bad', {}, { 'config.meshlet.io/proxy-cpu-request': 'banana' })].entries()) {
    const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: `00000000-0000-4000-8000-00000000000${i}`, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'shop', object } });
    // The webhook's certificate chains to the demo's throwaway CA; this client only needs the answer.
    const r = await new Promise<{ response: { allowed: boolean; patch?: string } }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/inject', method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(JSON.parse(text) as { response: { allowed: boolean; patch?: string } }));
      });
      req.on('error', reject);
      req.end(body);
    });
    out.push(r.response.allowed ? (r.response.patch ? 'allowed patch' : 'allowed') : 'denied');
  }
  return out;
}

t.test('the committed dashboard JSON is what the code generates', async (t) => {
  for (const d of DASHBOARDS) t.equal(readFileSync(join(GRAFANA, d.file), 'utf8'), exportJson(d.dashboard), `${d.file} is current (node scripts/gen-observe.ts)`);
  for (const d of DASHBOARDS) {
    const json = JSON.parse(readFileSync(join(GRAFANA, d.file), 'utf8')) as Dashboard;
    t.notOk(JSON.stringify(json).includes('"expect"'), `${d.file}: test metadata is not exported`);
    for (const { panel } of queriesOf(json)) t.ok(panel.fieldConfig?.defaults.unit, `${d.file} "${panel.title}" has a unit`);
  }
});

/** A services.yaml endpoint line of api-v1 at a port nobody listens on. */
const dead = (port: number) => `\n    - { address: "127.0.0.1:${port}", serviceAccount: api-v1, labels: { version: v1 } }`;

t.test('every panel query returns sane series from a real Prometheus scraping the local mesh', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-dash-'));
  const demo = spawn(process.execPath, [START, '--port-base', String(PORT_BASE), '--rps', String(RPS), '--seconds', '75', '--prometheus'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  demo.stdout.on('data', (d: Buffer) => (out += d.toString()));
  demo.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const demoExited = new Promise((r) => demo.once('exit', r));
  let prom: Awaited<ReturnType<typeof startPrometheus>> | undefined;
  t.teardown(async () => {
    prom?.process.kill('SIGTERM');
    if (demo.exitCode === null) demo.kill('SIGTERM');
    await demoExited;
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 600 && !out.includes('Ctrl-C stops everything'); i++) {
    if (demo.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!out.includes('Ctrl-C stops everything')) throw new Error(`the demo did not start:\n${out}\n${err}`);
  const admins = [...out.matchAll(/^ {4}([\w-]+)\s+http:\/\/(127\.0\.0\.1:\d+)$/gm)].map((m) => ({ workload: m[1]!, namespace: 'demo', admin: m[2]! }));
  const configDir = /config: (\S+)/.exec(out)![1]!;
  t.same(admins.map((a) => a.workload).toSorted(), ['api-v1', 'api-v2', 'load', 'store', 'web'], 'the banner names every proxy admin URL');

  // `npm start -- --prometheus` runs its own Prometheus (5 s scrapes); the test's scrapes every second.
  for (let i = 0; i < 200 && !/prometheus: |prometheus not started/.test(out + err); i++) await new Promise((r) => setTimeout(r, 50));
  const demoProm = /prometheus: (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  t.equal(demoProm, `http://127.0.0.1:${PORT_BASE + 90}`, '--prometheus starts Prometheus and prints its URL');
  prom = await startPrometheus(dir, { controlPlane: `127.0.0.1:${PORT_BASE + 990}`, proxies: admins }, { port: PORT_BASE + 91, scrapeInterval: '1s' });
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, FAULT_AT_MS));
  // Fault: api-v1 gains two endpoints nobody listens on (port base + 1 and + 2). Two, because
  // the balancer (P2C over peak EWMA) starts a new endpoint at a 30 ms estimate: beside one fast
  // live endpoint a single dead one is almost never picked, and the test would hang on chance.
  // With two, a third of the picks are two dead ones: they fail, are retried, then ejected.
  const services = join(configDir, 'services.yaml');
  const yaml = readFileSync(services, 'utf8');
  const live = `- { address: "127.0.0.1:${PORT_BASE + 243}", serviceAccount: api-v1, labels: { version: v1 } }`;
  t.ok(yaml.includes(live), 'the moved config names api-v1 at the port base');
  writeFileSync(services, yaml.replace(live, `${live}${dead(PORT_BASE + 1)}${dead(PORT_BASE + 2)}`));
  // The injector: the local mesh's control plane serves the webhook; send it reviews as the API
  // server would (an injected Pod, a skipped one, a refused one) so its panels have data.
  // Sent 6 s before the queries, well inside their 20 s rate window.
  await new Promise((r) => setTimeout(r, QUERY_AT_MS - 6000 - (Date.now() - t0)));
  const injections = await admit(PORT_BASE + 444);
  t.same(injections, ['allowed patch', 'allowed', 'denied'], 'the webhook injected, skipped and refused as asked');
  await new Promise((r) => setTimeout(r, QUERY_AT_MS - (Date.now() - t0)));

  const targets = (await (await fetch(`${prom.url}/api/v1/targets`)).json()) as { data: { activeTargets: Array<{ health: string; labels: Record<string, string> }> } };
  t.same(targets.data.activeTargets.map((x) => `${x.labels['job']} ${x.health}`).toSorted(), ['meshlet-control-plane up', ...Array(5).fill('meshlet-proxy up')], 'Prometheus scrapes the control plane and five proxies');
  const demoTargets = (await (await fetch(`${demoProm}/api/v1/targets`)).json()) as typeof targets;
  t.same(demoTargets.data.activeTargets.map((x) => `${x.labels['job']} ${x.health}`).toSorted(), ['meshlet-control-plane up', ...Array(5).fill('meshlet-proxy up')], "the demo's Prometheus scrapes the same six targets");
  const cpMetrics = await (await fetch(`http://127.0.0.1:${PORT_BASE + 990}/metrics`)).text();

  const summary: string[] = [];
  for (const { file, dashboard } of DASHBOARDS) {
    const vars = FILL[dashboard.uid]!;
    t.ok(vars, `${file}: the test knows its variables`);
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const values = await labelValues(prom.url, v, vars);
      if (vars[v.name] === '.*') t.ok(values.length > 0, `${file}: $${v.name} offers values (${values.join(', ')})`);
      else t.ok(values.includes(vars[v.name]!), `${file}: $${v.name} offers ${vars[v.name]} (${values.join(', ')})`);
    }
    const byPanel = new Map<string, Array<{ target: Target; result: Sample[] }>>();
    for (const { panel, target } of queriesOf(dashboard)) {
      const q = fill(target.expr, vars);
      const name = `${file} "${panel.title}" ${target.legendFormat ?? target.refId}`;
      t.notMatch(q, /\$\w/, `${name}: every variable filled`);
      const r = await query(prom.url, q);
      t.equal(r.status, 'success', `${name}: Prometheus accepts the query${r.error ? `: ${r.error}` : ''}`);
      const result = r.data?.result ?? [];
      const e = target.expect ?? {};
      if (e.notLocal && !cpMetrics.includes(q.match(/meshlet_\w+?(?=_bucket|\{|\[)/)?.[0] ?? '\u0000')) {
        t.same(result, [], `${name}: not exercised locally (${e.notLocal}); the metric is absent, the query valid`);
        summary.push(`${name}: NOT EXERCISED (${e.notLocal})`);
        continue;
      }
      t.ok(result.length > 0, `${name}: returns series`);
      for (const s of result) {
        const v = Number(s.value[1]);
        // Once the injector's metrics exist but nothing was admitted, its latency quantiles are NaN ("no data yet").
        if (e.notLocal && Number.isNaN(v)) continue;
        t.ok(Number.isFinite(v), `${name} ${labelKey(s.metric)}: a number (${s.value[1]})`);
        if (e.min !== undefined) t.ok(v >= e.min, `${name} ${labelKey(s.metric)}: ${v} ≥ ${e.min}`);
        if (e.max !== undefined) t.ok(v <= e.max, `${name} ${labelKey(s.metric)}: ${v} ≤ ${e.max}`);
      }
      summary.push(`${name}: ${result.map((s) => `${Object.values(s.metric).join('/') || '-'}=${Number(s.value[1]).toPrecision(3)}`).join(' ').slice(0, 160)}`);
      const key = `${file} "${panel.title}"`;
      byPanel.set(key, [...(byPanel.get(key) ?? []), { target, result }]);
    }
    // Latency percentiles: within a panel, for the same series, a higher quantile is not lower.
    for (const [title, list] of byPanel) {
      const qs = list.filter((x) => x.target.expect?.quantile !== undefined).toSorted((a, b) => a.target.expect!.quantile! - b.target.expect!.quantile!);
      for (let i = 1; i < qs.length; i++) {
        for (const s of qs[i]!.result) {
          const lower = qs[i - 1]!.result.find((x) => labelKey(x.metric) === labelKey(s.metric));
          t.ok(lower, `${title}: p${qs[i]!.target.expect!.quantile! * 100} and p${qs[i - 1]!.target.expect!.quantile! * 100} cover the same series`);
          if (lower) t.ok(Number(s.value[1]) >= Number(lower.value[1]), `${title} ${labelKey(s.metric)}: p${qs[i]!.target.expect!.quantile! * 100} ${s.value[1]} ≥ p${qs[i - 1]!.target.expect!.quantile! * 100} ${lower.value[1]}`);
        }
      }
    }
  }
  t.comment(summary.join('\n'));

  // Request rates match the load generator: load → web is RPS, web → api and api → store another RPS each.
  const one = async (expr: string) => Number((await query(prom!.url, fill(expr, FILL['meshlet-service']!))).data?.result[0]?.value[1]);
  const service = DASHBOARDS.find((d) => d.dashboard.uid === 'meshlet-service')!.dashboard;
  const overview = DASHBOARDS.find((d) => d.dashboard.uid === 'meshlet-overview')!.dashboard;
  const webIn = await one(queriesOf(service).find((x) => x.panel.title === 'Request rate (inbound)')!.target.expr);
  const meshIn = await one(queriesOf(overview).find((x) => x.panel.title === 'Request rate')!.target.expr);
  t.ok(Math.abs(webIn - RPS) <= RPS * 0.25, `web's inbound rate ${webIn.toFixed(2)} req/s is within 25 % of the load generator's ${RPS}`);
  t.ok(Math.abs(meshIn - 3 * RPS) <= 3 * RPS * 0.25, `the mesh's inbound rate ${meshIn.toFixed(2)} req/s is within 25 % of 3 × ${RPS} (three hops: web, api, store)`);
  const success = await one(queriesOf(service).find((x) => x.panel.title === 'Success rate (inbound)')!.target.expr);
  t.ok(success >= 0.9, `web's success rate ${success.toFixed(4)} stays high (retries hide the dead endpoints)`);
  const retries = await one(`sum(rate(meshlet_retries_total[${RATE_WINDOW}]))`);
  t.ok(retries > 0, `the dead endpoints caused retries (${retries.toFixed(2)}/s), so the retry panels show real data`);
  // The rules file loaded into the same Prometheus: its recording rules evaluate on real data.
  const ratio = await one('service:meshlet_requests:error_ratio_rate5m{dst_service="web"}');
  t.ok(ratio >= 0 && ratio <= 1, `the SLO recording rule evaluates on the mesh's data (web error ratio ${ratio})`);
  const slow = await one('service:meshlet_requests:slow_ratio_rate5m{dst_service="web"}');
  t.ok(slow >= 0 && slow <= 1, `so does the latency one: the le="0.5" bucket exists (web slow ratio ${slow})`);
});
