// The pure parts behind `meshlet stat`, `split`, `diagnose` and the live view, on made-up inputs:
// Prometheus text parsing, counter increases across resets, histogram quantiles, per-edge golden
// signals, split planning, the 80-column table, the authorization restatement, the error ring.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { goldenSignals, increase, parseMetrics, quantile, splitFor, type ProxyScrape } from '../../control-plane/cli/golden.ts';
import { parseWeight, planSplit } from '../../control-plane/cli/split-plan.ts';
import { edgeLines, liveScreen, VIEW_WIDTH } from '../../control-plane/cli/live-view.ts';
import { authorizeView, diagnose, findService, type ProxyConfigView, type ProxyView } from '../../control-plane/cli/diagnosis.ts';
import { parseShare } from '../../control-plane/cli/commands/fault.ts';
import { exitCodeOf } from '../../control-plane/cli/commands/start.ts';
import { RecentErrors } from '../../proxy/telemetry/recent-errors.ts';
import { defaultMeshPath, meshFlagHelp, meshPath, readMeshFile, writeMeshFile } from '../../control-plane/cli/mesh-file.ts';

const req = (dst: string, cls: string, tls: string, n: number, reason = '') =>
  `meshlet_requests_total{direction="outbound",src_workload="web",dst_service="${dst}",classification="${cls}",error_reason="${reason}",tls="${tls}"} ${n}`;
const inbound = (cls: string, tls: string, n: number, reason = '') => `meshlet_requests_total{direction="inbound",classification="${cls}",error_reason="${reason}",tls="${tls}"} ${n}`;
const bucket = (dst: string, le: string, n: number) => `meshlet_request_duration_seconds_bucket{direction="outbound",src_workload="web",dst_service="${dst}",classification="success",le="${le}"} ${n}`;

/** A ready proxy's view with the given identity and leaf expiry, nothing else. */
const view = (workload: string, identity: string, notAfter: string): ProxyView => ({ workload, unreachable: undefined, ready: true, notReadyReasons: [], identity: { identity, notAfter, renewalError: null }, config: undefined, breakers: new Map(), errors: [] });

t.test('parseMetrics reads samples and labels, escapes included', async (t) => {
  const s = parseMetrics(['# HELP x', 'meshlet_a{x="a\\"b",y="c"} 3', 'meshlet_b 4', 'meshlet_proxy_cpu 9', 'other 1'].join('\n'));
  t.same(s, [{ name: 'meshlet_a', labels: { x: 'a"b', y: 'c' }, value: 3 }, { name: 'meshlet_b', labels: {}, value: 4 }]);
});

t.test('increase: deltas per key; a counter that went down was reset and counts from zero', async (t) => {
  const before = parseMetrics([req('a', 'success', 'true', 10), req('b', 'success', 'true', 50)].join('\n'));
  const after = parseMetrics([req('a', 'success', 'true', 25), req('b', 'success', 'true', 7), req('c', 'success', 'true', 2)].join('\n'));
  t.same([...increase(before, after, 'meshlet_requests_total', (l) => l['dst_service'])], [['a', 15], ['b', 7], ['c', 2]]);
});

t.test('quantile interpolates within the bucket, like histogram_quantile', async (t) => {
  const b = new Map([[0.01, 50], [0.1, 90], [1, 100], [Infinity, 100]]);
  t.equal(quantile(0.5, b), 0.01, 'p50 at the first bound');
  t.ok(Math.abs(quantile(0.7, b)! - 0.055) < 1e-9, 'p70 halfway into the second bucket');
  t.ok(Math.abs(quantile(0.99, b)! - 0.91) < 1e-9, 'p99 in the third bucket');
  t.equal(quantile(0.99, new Map([[0.1, 0], [Infinity, 0]])), null, 'empty: null');
  t.equal(quantile(0.99, new Map([[0.1, 1], [Infinity, 10]])), 0.1, 'in +Inf: the last finite bound');
});

t.test('goldenSignals: a client too slow to send its head (header-timeout) was never sent, so it does not count against mTLS', async (t) => {
  const after = parseMetrics([inbound('success', 'true', 8), inbound('failure', 'false', 2, 'header-timeout'), inbound('failure', 'false', 3, 'unsupported-protocol')].join('\n'));
  const r = goldenSignals([{ workload: 'api-v1', service: 'api-v1', before: [], after, config: undefined }], 1);
  t.same(r.services.map((s) => [s.requests, s.mtls]), [[13, 1]], '8 requests went to the app, all over mTLS');
  const upstream = parseMetrics([inbound('success', 'true', 8), inbound('failure', 'false', 2, 'upstream-reset'), inbound('failure', 'false', 2, 'a-future-code')].join('\n'));
  t.same(goldenSignals([{ workload: 'api-v1', service: 'api-v1', before: [], after: upstream, config: undefined }], 1).services.map((s) => s.mtls), [8 / 12], 'errors after sending, and unknown codes, still count');
});

t.test('goldenSignals: per edge rps, success, latency, mTLS over requests that were sent, split, breaker', async (t) => {
  const before = parseMetrics([req('api-v1.demo', 'success', 'true', 100), bucket('api-v1.demo', '0.01', 100), bucket('api-v1.demo', '+Inf', 100)].join('\n'));
  const after = parseMetrics([
    req('api-v1.demo', 'success', 'true', 190), req('api-v1.demo', 'failure', 'true', 10),
    req('api-v2.demo', 'success', 'true', 8), req('api-v2.demo', 'failure', 'false', 2, 'breaker-open'),
    bucket('api-v1.demo', '0.01', 180), bucket('api-v1.demo', '0.1', 200), bucket('api-v1.demo', '+Inf', 200),
    'meshlet_endpoint_breaker_state{dst_service="api-v2.demo",endpoint="127.0.0.1:2"} 1',
    'meshlet_endpoint_ejections_total{dst_service="api-v2.demo"} 1',
    'meshlet_retries_total{dst_service="api.demo",reason="503"} 4',
  ].join('\n'));
  const web: ProxyScrape = {
    workload: 'web', service: 'web', before, after,
    config: { services: [
      { name: 'api.demo', endpoints: [], routes: [{ name: 'split', backends: [{ service: 'api-v1.demo', weight: 90 }, { service: 'api-v2.demo', weight: 10 }] }] },
      { name: 'api-v1.demo', endpoints: [{ address: '127.0.0.1:1', identity: 'spiffe://cluster.local/ns/demo/sa/api-v1' }] },
    ] },
  };
  const v1in: ProxyScrape = { workload: 'api-v1', service: 'api-v1', before: [], after: parseMetrics('meshlet_requests_total{direction="inbound",src_identity="spiffe://cluster.local/ns/demo/sa/web",classification="success",tls="true"} 5'), config: undefined };
  const r = goldenSignals([web, v1in], 2);
  const [e1, e2] = r.edges;
  t.same([e1!.destination, e1!.requests, e1!.rps, e1!.successRate, e1!.mtls], ['api-v1.demo', 100, 50, 0.9, 1]);
  t.equal(e1!.p50Ms, 10 * (50 / 80), 'p50 from the bucket deltas (80 in the first bucket of 100)');
  t.same(e1!.serverIdentities, ['spiffe://cluster.local/ns/demo/sa/api-v1']);
  t.same(e1!.clientIdentities, ['spiffe://cluster.local/ns/demo/sa/web'], "the callee's inbound peers");
  t.same(e1!.split, { service: 'api.demo', weight: 90, share: 0.9 });
  t.same([e2!.requests, e2!.mtls, e2!.breaker, e2!.ejections], [10, 1, { closed: 0, open: 1, probation: 0 }, 1], 'a breaker-open refusal does not count against mTLS');
  t.same(r.retries, [{ source: 'web', service: 'api.demo', retries: 4, budgetExhausted: 0 }]);
  t.same(r.services.find((s) => s.service === 'api-v1')?.mtls, 1);
  t.equal(splitFor(undefined, 'x'), null);
});

t.test('the stat table and the live view fit 80 columns', async (t) => {
  const edge = { source: 'a-very-long-workload-name', destination: 'another-very-long-service-name.demo', requests: 123456, rps: 99999.9, successRate: 0.123, p50Ms: 12345.6, p99Ms: 99999.9, mtls: 0.5, serverIdentities: [], clientIdentities: [], split: { service: 'x', weight: 1, share: 0.333 }, breaker: { closed: 0, open: 12, probation: 0 }, ejections: 0 };
  const r = { windowSeconds: 1, edges: [edge, { ...edge, source: 'web', destination: 'api-v1.demo', mtls: 1 }], services: [{ workload: 'w', service: 'w', requests: 1, rps: 1, successRate: 1, p50Ms: 1, p99Ms: 1, mtls: 1 }], retries: [{ source: 'web', service: 'api.demo', retries: 5, budgetExhausted: 99 }] };
  const lines = liveScreen(r, { clock: '12:00:00', namespace: 'demo', configDir: `/tmp/${'x'.repeat(100)}`, firstRequestSeconds: 2.5, hint: 'h' });
  t.same(lines.filter((l) => [...l].length > VIEW_WIDTH), [], 'no line wider than 80');
  t.match(lines.join('\n'), /web → api-v1 .* yes +33% 12 open/, 'the edge row: mTLS, split share, breaker');
  t.match(edgeLines(r, 'demo').at(-1), /^retries: web → api 5\.0\/s \(99 over budget\)/);
});

t.test('split planning', async (t) => {
  const cur = [{ service: 'api-v1', weight: 90 }, { service: 'api-v2', weight: 10 }];
  t.same(parseWeight('v2=50'), ['v2', 50]);
  t.same([parseWeight('v2=101'), parseWeight('v2'), parseWeight('=5')], [undefined, undefined, undefined]);
  t.same(planSplit(cur, 'api', [['v2', 50]]), { ok: true, backends: [{ service: 'api-v1', weight: 50 }, { service: 'api-v2', weight: 50 }] }, 'the rest goes to the other');
  t.same(planSplit(cur, 'api', [['api-v1', 0], ['v2', 100]]), { ok: true, backends: [{ service: 'api-v1', weight: 0 }, { service: 'api-v2', weight: 100 }] });
  const three = [{ service: 'a', weight: 2 }, { service: 'b', weight: 1 }, { service: 'c', weight: 1 }];
  t.same(planSplit(three, 'x', [['a', 40]]), { ok: true, backends: [{ service: 'a', weight: 40 }, { service: 'b', weight: 30 }, { service: 'c', weight: 30 }] }, 'unnamed share the rest in their old proportion');
  t.match(planSplit(cur, 'api', [['v3', 5]]), { ok: false, error: /not a backend/ });
  t.match(planSplit(cur, 'api', [['v1', 0], ['v2', 0]]), { ok: false, error: /all weights would be 0/ });
  t.match(planSplit(three, 'x', [['a', 80], ['b', 30]]), { ok: false, error: /> 100/ });
});

t.test('fault shares', async (t) => {
  t.same(['10%', '0.1', '100%', '0'].map(parseShare), [0.1, 0.1, 1, 0]);
  t.same(['110%', '2', 'x', '-1'].map(parseShare), [undefined, undefined, undefined, undefined]);
});

t.test('authorizeView is the proxy decision', async (t) => {
  const inbound: ProxyConfigView['inbound'] = { policies: [{ name: 'p', rules: [{ identities: ['spiffe://td/ns/demo/sa/web'], methods: ['GET'], paths: ['/api/*'] }] }] };
  t.match(authorizeView(inbound, 80, 'spiffe://td/ns/demo/sa/web', 'GET', '/api/x'), { allowed: true, policy: 'p' });
  t.match(authorizeView(inbound, 80, 'spiffe://td/ns/demo/sa/web', 'POST', '/api/x'), { allowed: false, policy: 'p' });
  t.match(authorizeView(inbound, 80, 'spiffe://td/ns/demo/sa/x', 'GET', '/api/x'), { allowed: false });
  t.match(authorizeView({ policies: [{ name: 'q', port: 81, rules: [] }] }, 80, '', 'GET', '/'), { allowed: false, policy: 'default:all-authenticated' }, 'a policy for another port does not guard this one');
  t.match(authorizeView({ defaultPolicy: 'all' }, 80, '', 'GET', '/'), { allowed: true });
  t.match(authorizeView({ policies: [{ name: 'ns', rules: [{ identities: ['spiffe://td/ns/demo/sa/*'] }] }] }, 80, 'spiffe://td/ns/demo/sa/any', 'PUT', '/'), { allowed: true });
  t.match(authorizeView(inbound, 80, 'spiffe://td/ns/demo/sa/web', 'GET', '/api/../admin'), { allowed: false, policy: 'p', reason: /resolved: \/admin/ }, 'a dot segment that leaves /api/ is refused, as the proxy refuses it');
  t.match(authorizeView(inbound, 80, 'spiffe://td/ns/demo/sa/web', 'GET', '/api/x?next=/admin'), { allowed: true }, 'the query is not part of the path');
  // The callee Pod's own default inbound policy (its proxy's /config) replaces the config's, as in the proxy.
  t.match(authorizeView({ defaultPolicy: 'all' }, 80, 'spiffe://td/ns/demo/sa/web', 'GET', '/', 'deny'), { allowed: false, policy: 'default:deny' }, "the Pod's deny over the config's all");
  t.match(authorizeView({}, 80, '', 'GET', '/', 'all-unauthenticated'), { allowed: true, policy: 'default:all-unauthenticated', reason: "no policy guards the port; the Pod's default all-unauthenticated allows it" });
  t.match(authorizeView(inbound, 80, '', 'GET', '/api/x', 'all-unauthenticated'), { allowed: false, policy: 'p' }, 'a guarded port: the policy decides');
});

t.test('diagnose: identity mismatch, expired certificate and old errors, from made-up views', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const src = { ...view('web', 'spiffe://td/ns/d/sa/web', '2025-12-31T00:00:00Z'), config: { services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:1', identity: 'spiffe://td/ns/d/sa/api' }] }] }, breakers: new Map([['127.0.0.1:1', 0]]), errors: [{ at: now - 600_000, direction: 'outbound' as const, reason: 'upstream-reset', message: 'closed', authority: 'api', service: 'api', endpoint: '127.0.0.1:1', peer: '', attempts: 1 }] };
  const callee = { ...view('impostor', 'spiffe://td/ns/d/sa/other', '2026-01-02T00:00:00Z'), app: { port: 8080 } };
  const d = diagnose({ source: src, destination: 'api', method: 'GET', path: '/', callees: new Map([['127.0.0.1:1', callee]]), configProblems: ['canary.yaml: bad weight'], nowMs: now });
  t.equal(d.verdict, 'failing');
  t.ok(d.findings.some((f) => f.topic === 'identity-mismatch' && f.severity === 'error'), 'the proxy at the address is not who the config says');
  t.ok(d.findings.some((f) => f.topic === 'certificate' && /expired/.test(f.message)), "the caller's certificate expired");
  t.ok(d.findings.some((f) => f.topic === 'upstream-reset' && f.severity === 'warning'), 'an error ten minutes old is a warning, not the verdict');
  t.ok(d.findings.some((f) => f.topic === 'config'), 'control plane config problems are shown');
  t.same(d.authorization.map((a) => a.allowed), [true]);
});

t.test('the error ring keeps the last N, newest first, with the clock time', async (t) => {
  let now = 1000;
  const ring = new RecentErrors({ nowMs: () => now }, 3);
  for (let i = 0; i < 5; i++) {
    now += 1;
    ring.record({ direction: 'outbound', reason: `r${i}`, message: '', authority: '', service: '', endpoint: '', peer: '', attempts: 1 });
  }
  t.same(ring.list().map((e) => [e.reason, e.at]), [['r4', 1005], ['r3', 1004], ['r2', 1003]]);
  t.same(ring.lastByReason().map((e) => e.reason), ['r4', 'r3', 'r2', 'r1', 'r0'], 'the last of each reason outlives the ring');
  now += 1;
  ring.record({ direction: 'outbound', reason: 'r0', message: 'again', authority: '', service: '', endpoint: '', peer: '', attempts: 1 });
  t.same(ring.lastByReason().map((e) => [e.reason, e.message]).slice(0, 2), [['r0', 'again'], ['r4', '']], 'one per reason, the newest');
  t.equal(ring.total, 6);
  t.same(new RecentErrors({ nowMs: () => 0 }).list(), []);
});

t.test('meshlet start: the exit code of a mesh killed by a signal is 128 + its number, as a shell reports it', async (t) => {
  t.equal(exitCodeOf(0, null), 0);
  t.equal(exitCodeOf(1, null), 1);
  t.equal(exitCodeOf(null, 'SIGINT'), 130, 'Ctrl-C before the demo set its handlers: 130, not 143');
  t.equal(exitCodeOf(null, 'SIGTERM'), 143);
  t.equal(exitCodeOf(null, 'SIGKILL'), 137);
  t.equal(exitCodeOf(null, null), 1);
});

t.test('diagnose finds a service as the proxy does: by name or host, never by its first label alone', async (t) => {
  const cfg = { version: 'v1', services: [{ name: 'api.other', hosts: ['api.other.svc'], endpoints: [] }] } as unknown as ProxyConfigView;
  t.equal(findService(cfg, 'api.other')?.name, 'api.other', 'by name');
  t.equal(findService(cfg, 'API.Other.SVC')?.name, 'api.other', 'by host, any case');
  t.equal(findService(cfg, 'api'), undefined, 'the first label alone: no service (the proxy answers no-route)');
});

t.test('the mesh file: the default one, else the one running mesh of another --port-base, else a clear choice', async (t) => {
  const env = { XDG_RUNTIME_DIR: '/run/user/7' };
  const dir = '/run/user/7/meshlet';
  const fs = (files: Record<string, number | undefined>) => ({
    exists: (p: string) => p in files,
    list: (d: string) => (d === dir ? Object.keys(files).map((p) => p.slice(dir.length + 1)) : []),
    livePid: (p: string) => files[p],
  });
  t.equal(meshPath('/x.json', env, fs({})), '/x.json', '--mesh first');
  t.equal(meshPath(undefined, { ...env, MESHLET_MESH: '/y.json' }, fs({})), '/y.json', 'then MESHLET_MESH');
  t.equal(meshPath(undefined, env, fs({ [`${dir}/local.json`]: 1, [`${dir}/local-16000.json`]: 2 })), `${dir}/local.json`, 'the default file when it is there (even stale: its error says so)');
  t.equal(meshPath(undefined, env, fs({ [`${dir}/local-16000.json`]: 2, [`${dir}/local-17000.json`]: undefined })), `${dir}/local-16000.json`, 'else the only running mesh of another port base');
  t.equal(meshPath(undefined, env, fs({ [`${dir}/local-17000.json`]: undefined, [`${dir}/notes.json`]: 3 })), `${dir}/local.json`, 'a stale file or another file is no mesh: the default path (its error says no mesh runs)');
  t.throws(() => meshPath(undefined, env, fs({ [`${dir}/local-16000.json`]: 2, [`${dir}/local-17000.json`]: 3 })), { message: /2 meshes started with another --port-base run: .*local-16000\.json, .*local-17000\.json/ }, 'several: a choice to make');
  t.match(meshFlagHelp(env, 20), /here: \/run\/user\/7\/meshlet\/local\.json/, 'the --help line names the file');
});

t.test('the mesh file of a running mesh with another --port-base is found on the real file system', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'meshlet-meshfile-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const env = { XDG_RUNTIME_DIR: root };
  const other = defaultMeshPath(env, 16000);
  t.equal(meshPath(undefined, env), defaultMeshPath(env), 'nothing there: the default path');
  writeMeshFile(other, { version: 1, pid: process.pid, startedAt: '', namespace: 'demo', configDir: '/c', controlPlane: { url: '', admin: '' }, workloads: [] });
  t.equal(meshPath(undefined, env), other, 'local-16000.json of a live process');
  t.equal(readMeshFile(meshPath(undefined, env)).configDir, '/c', 'and read');
});
