// manifests/prometheus/rules.yaml in Prometheus' own rule checker and unit-test runner (promtool).
// Each alert fires on a synthetic series that breaks its condition, with the exact labels and
// annotations, and stays quiet on a healthy one (and on near misses: a burn below the threshold,
// a retiring trust anchor, a one-scrape blip). The PrometheusRule carries the same groups.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { isAlert, ruleGroups, type AlertRule } from '../../observe/alerts/rules.ts';
import { renderPrometheusRule, renderRulesFile } from '../../observe/render.ts';
import { requireBinary } from './fixtures/binaries.ts';

const RULES = new URL('../../manifests/prometheus/rules.yaml', import.meta.url).pathname;
const PROMETHEUS_RULE = new URL('../../manifests/monitoring/prometheusrule.yaml', import.meta.url).pathname;
const promtool = requireBinary('promtool', 'apt-get install prometheus (scripts/install-deps.sh does it)');

const ALERTS = new Map(ruleGroups().flatMap((g) => g.rules.filter(isAlert)).map((r) => [r.alert, r]));

interface Series {
  series: string;
  values: string;
}
interface Case {
  alert: string;
  /** Sample spacing of the input series (default 1m). */
  interval?: string;
  at: string;
  series: Series[];
  /** Labels of each expected alert beyond alertname and severity; [] = must stay quiet. */
  fires: Array<Record<string, string>>;
  why: string;
}

const inbound = (ns: string, svc: string, extra: string) => `{direction="inbound",dst_namespace="${ns}",dst_service="${svc}",${extra}}`;
const requests = (cls: 'success' | 'failure', perStep: number, steps: number, svc = 'api'): Series => ({
  series: `meshlet_requests_total${inbound('shop', svc, `classification="${cls}",status_code="${cls === 'success' ? 200 : 503}"`)}`,
  values: `0+${perStep}x${steps}`,
});
const latency = (fastPerStep: number, totalPerStep: number, steps: number): Series[] => [
  { series: `meshlet_request_duration_seconds_bucket${inbound('shop', 'api', 'classification="success",le="0.5"')}`, values: `0+${fastPerStep}x${steps}` },
  { series: `meshlet_request_duration_seconds_bucket${inbound('shop', 'api', 'classification="success",le="+Inf"')}`, values: `0+${totalPerStep}x${steps}` },
  { series: `meshlet_request_duration_seconds_count${inbound('shop', 'api', 'classification="success"')}`, values: `0+${totalPerStep}x${steps}` },
];
const SHOP_API = { dst_namespace: 'shop', dst_service: 'api' };
const proxy = 'instance="10.0.0.7:4191",job="meshlet-proxy"';
const cp = 'instance="10.0.0.9:9990",job="meshlet-control-plane"';
/** A proxy's heap use (values over time) against its 136 MB cap, as one scrape reports both. */
const heap = (used: string): Series[] => [
  { series: `meshlet_proxy_nodejs_heap_size_used_bytes{namespace="shop",pod="api-7d9f",${proxy}}`, values: used },
  { series: `meshlet_proxy_nodejs_heap_size_limit_bytes{namespace="shop",pod="api-7d9f",${proxy}}`, values: '136e6x12' },
];

const CASES: Case[] = [
  // Error budget: 99.9 % → 0.1 %. Fast: > 1.44 % over 1 h and 5 m.
  { alert: 'MeshletServiceErrorBudgetBurnFast', at: '70m', series: [requests('success', 1000, 80), requests('failure', 20, 80)], fires: [SHOP_API], why: '2 % failing for an hour' },
  { alert: 'MeshletServiceErrorBudgetBurnFast', at: '70m', series: [requests('success', 1000, 80), requests('failure', 1, 80)], fires: [], why: '0.1 % failing: within the objective' },
  { alert: 'MeshletServiceErrorBudgetBurnFast', at: '70m', series: [requests('success', 1000, 80), requests('failure', 5, 80), requests('success', 1000, 80, 'web')], fires: [], why: '0.5 % failing: a slow burn, not a fast one; a healthy neighbour stays quiet' },
  // Slow: > 0.3 % over 1 d and 2 h.
  { alert: 'MeshletServiceErrorBudgetBurnSlow', interval: '5m', at: '26h', series: [requests('success', 1000, 320), requests('failure', 5, 320)], fires: [SHOP_API], why: '0.5 % failing for a day' },
  { alert: 'MeshletServiceErrorBudgetBurnSlow', interval: '5m', at: '26h', series: [requests('success', 1000, 320), requests('failure', 1, 320)], fires: [], why: '0.1 % failing: within the objective' },
  // Latency: 99 % within 0.5 s → 1 % budget. Fast: > 14.4 % slow over 1 h and 5 m.
  { alert: 'MeshletServiceLatencyBudgetBurnFast', at: '70m', series: latency(800, 1000, 80), fires: [SHOP_API], why: '20 % of requests slower than 0.5 s' },
  { alert: 'MeshletServiceLatencyBudgetBurnFast', at: '70m', series: latency(995, 1000, 80), fires: [], why: '0.5 % slower than 0.5 s' },
  // Slow: > 3 % over 1 d and 2 h.
  { alert: 'MeshletServiceLatencyBudgetBurnSlow', interval: '5m', at: '26h', series: latency(960, 1000, 320), fires: [SHOP_API], why: '4 % slower than 0.5 s for a day' },
  { alert: 'MeshletServiceLatencyBudgetBurnSlow', interval: '5m', at: '26h', series: latency(995, 1000, 320), fires: [], why: '0.5 % slower than 0.5 s' },
  // Certificates. promtool's clock starts at 0: time() at 10m is 600.
  { alert: 'MeshletProxyCertificateExpiring', at: '10m', series: [{ series: `meshlet_identity_leaf_expiry_timestamp_seconds{identity="spiffe://cluster.local/ns/shop/sa/api",${proxy}}`, values: `${600 + 3600}x20` }], fires: [{ identity: 'spiffe://cluster.local/ns/shop/sa/api', instance: '10.0.0.7:4191', job: 'meshlet-proxy' }], why: 'a leaf with 1 h left' },
  { alert: 'MeshletProxyCertificateExpiring', at: '10m', series: [{ series: `meshlet_identity_leaf_expiry_timestamp_seconds{identity="spiffe://cluster.local/ns/shop/sa/api",${proxy}}`, values: `${600 + 9 * 3600}x20` }], fires: [], why: 'a healthy leaf, 9 h left of 24 (renewal due)' },
  { alert: 'MeshletIssuerCertificateExpiring', at: '10m', series: [{ series: 'meshlet_ca_issuer_expiry_timestamp_seconds{serial="ab12",job="meshlet-control-plane"}', values: `${3 * 86400}x20` }], fires: [{ serial: 'ab12', job: 'meshlet-control-plane' }], why: 'issuer with 3 days left' },
  { alert: 'MeshletIssuerCertificateExpiring', at: '10m', series: [{ series: 'meshlet_ca_issuer_expiry_timestamp_seconds{serial="ab12",job="meshlet-control-plane"}', values: `${300 * 86400}x20` }], fires: [], why: 'issuer with 300 days left' },
  {
    alert: 'MeshletTrustAnchorExpiring',
    at: '10m',
    series: [
      { series: 'meshlet_ca_anchor_expiry_timestamp_seconds{role="current",serial="01",job="meshlet-control-plane"}', values: `${6 * 86400}x20` },
      { series: 'meshlet_ca_anchor_expiry_timestamp_seconds{role="next",serial="02",job="meshlet-control-plane"}', values: `${3650 * 86400}x20` },
    ],
    fires: [{ role: 'current', serial: '01', job: 'meshlet-control-plane' }],
    why: 'the current anchor has 6 days left (the next one is fine)',
  },
  {
    alert: 'MeshletTrustAnchorExpiring',
    at: '10m',
    series: [
      { series: 'meshlet_ca_anchor_expiry_timestamp_seconds{role="previous",serial="01",job="meshlet-control-plane"}', values: `${86400}x20` },
      { series: 'meshlet_ca_anchor_expiry_timestamp_seconds{role="current",serial="02",job="meshlet-control-plane"}', values: `${3650 * 86400}x20` },
    ],
    fires: [],
    why: 'only the retiring (previous) anchor is near its end',
  },
  // Control.
  { alert: 'MeshletProxyConfigRefused', at: '6m', series: [{ series: `meshlet_config_updates_total{result="refused",${proxy}}`, values: '0 0 0 1 1 1 1 1' }], fires: [{ result: 'refused', instance: '10.0.0.7:4191', job: 'meshlet-proxy' }], why: 'one refused update' },
  { alert: 'MeshletProxyConfigRefused', at: '6m', series: [{ series: `meshlet_config_updates_total{result="refused",${proxy}}`, values: '0x8' }, { series: `meshlet_config_updates_total{result="applied",${proxy}}`, values: '0 1 2 3 4 5 6 7' }], fires: [], why: 'updates applied, none refused' },
  { alert: 'MeshletProxyDisconnected', at: '10m', series: [{ series: `meshlet_control_plane_connected{${proxy}}`, values: '1 1 0x10' }], fires: [{ instance: '10.0.0.7:4191', job: 'meshlet-proxy' }], why: 'disconnected for 8 minutes' },
  { alert: 'MeshletProxyDisconnected', at: '10m', series: [{ series: `meshlet_control_plane_connected{${proxy}}`, values: '1 1 1 1 1 1 0 0 1 1 1 1' }], fires: [], why: 'a 2-minute reconnect' },
  { alert: 'MeshletControlPlaneNotSynced', at: '10m', series: [{ series: `meshlet_cp_kube_synced{${cp}}`, values: '0x12' }], fires: [{ instance: '10.0.0.9:9990', job: 'meshlet-control-plane' }], why: 'never listed in 10 minutes' },
  { alert: 'MeshletControlPlaneNotSynced', at: '10m', series: [{ series: `meshlet_cp_kube_synced{${cp}}`, values: '0 0 1x10' }], fires: [], why: 'listed two minutes after start' },
  { alert: 'MeshletControlPlaneWatchDown', at: '15m', series: [{ series: `meshlet_cp_kube_watch_up{${cp},kind="Service"}`, values: '1 1 0x15' }, { series: `meshlet_cp_kube_watch_up{${cp},kind="Pod"}`, values: '1x17' }], fires: [{ instance: '10.0.0.9:9990', job: 'meshlet-control-plane', kind: 'Service' }], why: 'the Service watch failing for 13 minutes; Pods fine' },
  { alert: 'MeshletControlPlaneWatchDown', at: '15m', series: [{ series: `meshlet_cp_kube_watch_up{${cp},kind="Service"}`, values: '1x5 0x5 1x7' }], fires: [], why: 'a 5-minute API server outage' },
  { alert: 'MeshletControlPlaneDown', at: '10m', series: [{ series: 'up{job="meshlet-control-plane",instance="10.0.0.9:9990"}', values: '0x12' }], fires: [{}], why: 'its target is down' },
  { alert: 'MeshletControlPlaneDown', at: '10m', series: [{ series: 'up{job="meshlet-proxy",instance="10.0.0.7:4191"}', values: '1x12' }], fires: [{}], why: 'no control-plane target at all' },
  { alert: 'MeshletControlPlaneDown', at: '10m', series: [{ series: 'up{job="meshlet-control-plane",instance="10.0.0.9:9990"}', values: '0x12' }, { series: 'up{job="meshlet-control-plane",instance="10.0.0.10:9990"}', values: '1x12' }], fires: [], why: 'one replica of two is up' },
  { alert: 'MeshletInjectorErrors', at: '5m', series: [{ series: 'meshlet_injections_total{outcome="error",reason="patch-failed",job="meshlet-control-plane"}', values: '0 0 1 1 1 1' }], fires: [{ reason: 'patch-failed' }], why: 'a failed injection' },
  { alert: 'MeshletInjectorErrors', at: '5m', series: [{ series: 'meshlet_injections_total{outcome="error",reason="",job="meshlet-control-plane"}', values: '0x6' }, { series: 'meshlet_injections_total{outcome="injected",reason="",job="meshlet-control-plane"}', values: '0 1 2 3 4 5' }], fires: [], why: 'injections succeed, errors stay at 0' },
  // Resources. A 128 MB cap (the default 256Mi limit) and its young generation: 136 MB.
  { alert: 'MeshletProxyHeapNearLimit', at: '10m', series: heap('120e6x12'), fires: [{ namespace: 'shop', pod: 'api-7d9f', instance: '10.0.0.7:4191', job: 'meshlet-proxy' }], why: 'heap at 88 % of its cap for 10 minutes' },
  { alert: 'MeshletProxyHeapNearLimit', at: '10m', series: heap('109e6x5 125e6x3 109e6x4'), fires: [], why: 'at 80 % of its cap, with a peak at 92 % for 3 minutes' },
];

const expand = (text: string, labels: Record<string, string>): string => text.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_m, k: string) => labels[k] ?? '');

function promtoolTest(c: Case, rule: AlertRule): unknown {
  return {
    interval: c.interval ?? '1m',
    input_series: c.series,
    alert_rule_test: [
      {
        eval_time: c.at,
        alertname: c.alert,
        exp_alerts: c.fires.map((extra) => {
          const labels = { severity: rule.labels.severity, ...extra };
          return { exp_labels: labels, exp_annotations: { summary: expand(rule.annotations.summary, labels), description: expand(rule.annotations.description, labels) } };
        }),
      },
    ],
  };
}

const dir = mkdtempSync(join(tmpdir(), 'meshlet-alerts-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('the committed rule files are the generated ones, and promtool accepts them', async (t) => {
  t.equal(readFileSync(RULES, 'utf8'), renderRulesFile(), 'rules.yaml is current (node scripts/gen-observe.ts)');
  t.equal(readFileSync(PROMETHEUS_RULE, 'utf8'), renderPrometheusRule(), 'prometheusrule.yaml is current');
  const check = spawnSync(promtool, ['check', 'rules', RULES], { encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check rules: ${check.stdout}${check.stderr}`);
  const pr = parse(readFileSync(PROMETHEUS_RULE, 'utf8')) as { kind: string; spec: { groups: unknown } };
  t.equal(pr.kind, 'PrometheusRule');
  t.same(pr.spec.groups, (parse(readFileSync(RULES, 'utf8')) as { groups: unknown }).groups, 'the PrometheusRule holds the same groups');
  // The same groups, run by promtool: write spec out as a plain rules file.
  const fromPr = join(dir, 'from-prometheusrule.yaml');
  writeFileSync(fromPr, stringify({ groups: pr.spec.groups }));
  t.equal(spawnSync(promtool, ['check', 'rules', fromPr]).status, 0, "promtool accepts the PrometheusRule's groups");
});

t.test('every alert has a firing and a quiet unit test', async (t) => {
  for (const name of ALERTS.keys()) {
    t.ok(CASES.some((c) => c.alert === name && c.fires.length > 0), `${name} has a case where it fires`);
    t.ok(CASES.some((c) => c.alert === name && c.fires.length === 0), `${name} has a case where it stays quiet`);
  }
  t.same([...new Set(CASES.map((c) => c.alert))].filter((a) => !ALERTS.has(a)), [], 'no case names an alert that does not exist');
});

t.test('promtool test rules: each alert fires on a broken series and stays quiet on a healthy one', async (t) => {
  // One test file per case, so a failure names its case; promtool runs them in one process.
  const files: string[] = [];
  for (const [i, c] of CASES.entries()) {
    const f = join(dir, `case-${String(i).padStart(2, '0')}.yaml`);
    writeFileSync(f, `# ${c.alert}: ${c.fires.length ? 'fires' : 'quiet'}: ${c.why}\n` + stringify({ rule_files: [RULES], evaluation_interval: '1m', tests: [promtoolTest(c, ALERTS.get(c.alert)!)] }));
    files.push(f);
  }
  const r = spawnSync(promtool, ['test', 'rules', ...files], { encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  for (const [i, c] of CASES.entries()) {
    const block = out.split(/Unit Testing:\s+/).find((b) => b.startsWith(files[i]!)) ?? '';
    t.match(block, /SUCCESS/, `${c.alert} ${c.fires.length ? 'fires' : 'stays quiet'}: ${c.why}${/FAILED/.test(block) ? `\n${block}` : ''}`);
  }
  t.equal(r.status, 0, 'promtool test rules exits 0');
});

t.test('promtool notices a wrong expectation (the unit tests can fail)', async (t) => {
  const c = CASES.find((x) => x.alert === 'MeshletServiceErrorBudgetBurnFast' && x.fires.length === 0)!;
  const f = join(dir, 'inverted.yaml');
  writeFileSync(f, stringify({ rule_files: [RULES], evaluation_interval: '1m', tests: [promtoolTest({ ...c, fires: [SHOP_API] }, ALERTS.get(c.alert)!)] }));
  const r = spawnSync(promtool, ['test', 'rules', f], { encoding: 'utf8' });
  t.not(r.status, 0, 'a healthy series expected to fire fails the run');
});

t.test('the error-ratio recording rule: 0 for a service that never failed, the share for one that did', async (t) => {
  const f = join(dir, 'error-ratio.yaml');
  const test = {
    interval: '1m',
    input_series: [requests('success', 100, 20, 'web'), requests('success', 90, 20, 'api'), requests('failure', 10, 20, 'api')],
    promql_expr_test: [
      {
        expr: 'service:meshlet_requests:error_ratio_rate5m',
        eval_time: '10m',
        exp_samples: [
          { labels: 'service:meshlet_requests:error_ratio_rate5m{dst_namespace="shop",dst_service="api"}', value: 0.1 },
          { labels: 'service:meshlet_requests:error_ratio_rate5m{dst_namespace="shop",dst_service="web"}', value: 0 },
        ],
      },
    ],
  };
  writeFileSync(f, stringify({ rule_files: [RULES], evaluation_interval: '1m', tests: [test] }));
  const r = spawnSync(promtool, ['test', 'rules', f], { encoding: 'utf8' });
  t.equal(r.status, 0, `promtool test rules: ${r.stdout}${r.stderr}`);
});
