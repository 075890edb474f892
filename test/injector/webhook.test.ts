// The injector webhook on real sockets: HTTPS with a certificate from the meshlet CA (checked the way
// the API server checks it: against the trust bundle, for meshlet-webhook.meshlet-system.svc), real
// AdmissionReviews, malformed ones (the server keeps serving), metrics, certificate rotation, files,
// and the control-plane process serving it on --webhook-listen.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import jsonpatch from 'fast-json-patch';
import { Registry } from 'prom-client';
import t from 'tap';
import { systemClock } from '../../api/runtime.ts';
import { initCa, rotateIssuer, trustBundle, systemWallClock } from '../../control-plane/ca/index.ts';
import { DEFAULT_SERVING_NAMES, makeServingCredentials } from '../../control-plane/certify/serving-cert.ts';
import type { CaDocument } from '../../control-plane/store/ca-document.ts';
import { encodeCaDocument } from '../../control-plane/store/ca-document.ts';
import { InjectorMetrics, ValidationMetrics } from '../../injector/metrics.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { WEBHOOK_SERVICE, caCredentials, createWebhook, fileCredentials, type CredentialSource } from '../../injector/webhook.ts';
import { closedAfter, freePort } from '../fixtures/mesh.ts';

const NAMES = { ...DEFAULT_SERVING_NAMES, service: WEBHOOK_SERVICE, namespace: 'meshlet-system' };
const SNI = 'meshlet-webhook.meshlet-system.svc';

interface Reply {
  status: number;
  body: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  serial: string;
}

function post(port: number, ca: string, body: string | Buffer, o: { method?: string; path?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method: o.method ?? 'POST', path: o.path ?? '/inject', ca, servername: SNI, agent: false, headers: { 'content-type': 'application/json', ...o.headers } }, (res) => {
      const serial = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber?.toLowerCase() ?? '';
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: text, json, serial });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pod = (annotations: Record<string, string> = {}, containers: unknown[] = [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }]) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'shop', annotations }, spec: { containers },
});
const reviewOf = (object: unknown, o: { uid?: string; operation?: string; resource?: string } = {}) => JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: o.uid ?? 'b7a0c2b4-0000-4000-8000-000000000001',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: o.resource ?? 'pods' },
    operation: o.operation ?? 'CREATE',
    namespace: 'shop',
    object,
  },
});

function start(t: { teardown(fn: () => unknown): void }, o: { credentials?: () => CredentialSource; maxBodyBytes?: number; anchors?: string } = {}) {
  let doc: CaDocument = { state: initCa({ now: Date.now() }) };
  const registry = new Registry();
  const logs: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const webhook = createWebhook({
    listen: { host: '127.0.0.1', port: 0 },
    credentials: o.credentials ?? (({ ca }) => caCredentials({ ca, names: NAMES, wallClock: systemWallClock })),
    settings: (d) => defaultSettings({ trustAnchorsPem: o.anchors ?? (d ? trustBundle(d.state).join('') : '') }),
    metrics: new InjectorMetrics(registry),
    validationMetrics: new ValidationMetrics(registry),
    log: (level, msg, fields = {}) => logs.push({ level, msg, fields }),
    clock: systemClock,
    ...(o.maxBodyBytes ? { maxBodyBytes: o.maxBodyBytes } : {}),
  });
  t.teardown(() => webhook.close());
  return {
    webhook, registry, logs,
    get doc() { return doc; },
    setDoc(d: CaDocument) { doc = d; },
    bundle: () => trustBundle(doc.state).join(''),
    async listen() {
      await webhook.start({ ca: () => doc });
      return (webhook.address() as AddressInfo).port;
    },
  };
}

const metric = async (registry: Registry, outcome: string, reason: string): Promise<number> => {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'meshlet_injections_total');
  const v = (m?.values as Array<{ labels: Record<string, string>; value: number }> | undefined)?.find((x) => x.labels.outcome === outcome && x.labels.reason === reason);
  if (!v) throw new Error(`no series meshlet_injections_total{outcome="${outcome}",reason="${reason}"}`);
  return v.value;
};

t.test('a Pod review: same uid, base64 JSONPatch that injects the proxy; TLS checked against the trust bundle', async (t) => {
  const w = start(t);
  const port = await w.listen();
  const object = pod();
  const r = await post(port, w.bundle(), reviewOf(object, { uid: 'uid-1' }));
  t.equal(r.status, 200);
  t.equal(r.json.apiVersion, 'admission.k8s.io/v1');
  t.equal(r.json.kind, 'AdmissionReview');
  t.equal(r.json.response.uid, 'uid-1');
  t.equal(r.json.response.allowed, true);
  t.equal(r.json.response.patchType, 'JSONPatch');
  const patch = JSON.parse(Buffer.from(r.json.response.patch, 'base64').toString('utf8'));
  const out = jsonpatch.applyPatch(structuredClone(object), patch, true, false).newDocument as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  t.same(out.spec.initContainers.map((c: { name: string }) => c.name), ['meshlet-init', 'meshlet-proxy']);
  const anchors = out.spec.initContainers[1].env.find((e: { name: string }) => e.name === 'MESHLET_TRUST_ANCHORS_PEM').value;
  t.equal(anchors, w.bundle(), 'the trust bundle of the CA in force');
  t.match(w.logs.at(-1), { level: 'info', msg: 'proxy injected', fields: { uid: 'uid-1', mode: 'native-sidecar', outcome: 'injected', namespace: 'shop', name: 'web' } });
  // The certificate: for the webhook Service's DNS names, from the meshlet CA.
  const leaf = makeServingCredentials(w.doc.state, NAMES, { now: Date.now() });
  t.match(new X509Certificate(leaf.certChainPem).subjectAltName, /DNS:meshlet-webhook\.meshlet-system\.svc\b/);
  await t.rejects(post(port, initCa({ now: Date.now() }).anchor.certPem, reviewOf(object)), 'a client trusting another CA refuses the certificate');
});

t.test('skips and refusals are answered with the uid; a bad annotation is refused with a clear message', async (t) => {
  const w = start(t);
  const port = await w.listen();
  const disabled = await post(port, w.bundle(), reviewOf(pod({ 'meshlet.io/inject': 'disabled' })));
  t.same(disabled.json.response, { uid: 'b7a0c2b4-0000-4000-8000-000000000001', allowed: true }, 'allowed, no patch');
  const banana = await post(port, w.bundle(), reviewOf(pod({ 'config.meshlet.io/proxy-cpu-request': 'banana' }), { uid: 'u2' }));
  t.equal(banana.status, 200);
  t.equal(banana.json.response.uid, 'u2');
  t.equal(banana.json.response.allowed, false);
  t.equal(banana.json.response.status.code, 400);
  t.match(banana.json.response.status.message, 'config.meshlet.io/proxy-cpu-request: "banana" is not a CPU quantity');
  const noContainers = await post(port, w.bundle(), reviewOf(pod({}, [])));
  t.equal(noContainers.json.response.allowed, false);
  t.match(noContainers.json.response.status.message, 'the Pod has no containers');
  const update = await post(port, w.bundle(), reviewOf(pod(), { operation: 'UPDATE' }));
  t.same(update.json.response, { uid: 'b7a0c2b4-0000-4000-8000-000000000001', allowed: true }, 'only Pod CREATEs are mutated');
  const deployment = await post(port, w.bundle(), reviewOf({ spec: { template: {} } }, { resource: 'deployments' }));
  t.equal(deployment.json.response.patch, undefined);
  t.equal(await metric(w.registry, 'skipped', 'disabled'), 1);
  t.equal(await metric(w.registry, 'skipped', 'not-a-pod-create'), 2);
  t.equal(await metric(w.registry, 'error', 'bad-annotation'), 1);
  t.equal(await metric(w.registry, 'error', 'bad-pod'), 1);
  t.match(w.logs.find((l) => l.msg === 'Pod refused' && /banana/.test(String(l.fields.error))), { level: 'warn', fields: { uid: 'u2', reason: 'bad-annotation' } });
});

t.test('malformed requests get a clear 4xx and a log line; the server keeps serving', async (t) => {
  const w = start(t, { maxBodyBytes: 64 * 1024 });
  const port = await w.listen();
  const ca = w.bundle();
  const cases: Array<[string, string | Buffer, number, RegExp, { method?: string; path?: string }?]> = [
    ['empty body', '', 400, /empty body: expected an AdmissionReview/],
    ['not JSON', '{"apiVersion": ', 400, /body is not JSON .*expected an AdmissionReview/],
    ['a JSON array', '[]', 400, /not a JSON object/],
    ['admission.k8s.io/v1beta1', JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } }), 400, /apiVersion "admission.k8s.io\/v1beta1".*admissionReviewVersions: \[v1\]/],
    ['another kind', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod' }), 400, /expected kind AdmissionReview.*got kind "Pod"/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), 400, /has no request/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { operation: 'CREATE' } }), 400, /request has no uid/],
    ['oversized', Buffer.alloc(200 * 1024, 'a'), 413, /body larger than 65536 bytes/],
    ['GET', '', 405, /method GET not allowed/, { method: 'GET' }],
    ['another path', reviewOf(pod()), 404, /no such path "\/mutate"/, { path: '/mutate' }],
  ];
  for (const [what, body, status, message, opts] of cases) {
    const r = await post(port, ca, body, opts ?? {});
    t.equal(r.status, status, `${what}: HTTP ${status}`);
    t.match(r.json?.error, message, `${what}: ${r.body}`);
  }
  // Oversized with no content-length (chunked): cut off while reading.
  const chunked = await new Promise<number>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method: 'POST', path: '/inject', ca, servername: SNI, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    for (let i = 0; i < 20; i++) req.write(Buffer.alloc(8 * 1024, 'b'));
    req.end();
  });
  t.equal(chunked, 413, 'a chunked body past the limit is refused while it streams');
  const noObject = await post(port, ca, JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u9', operation: 'CREATE', resource: { group: '', version: 'v1', resource: 'pods' } } }));
  t.equal(noObject.status, 200, 'with a uid, the answer is a review (the API server shows its message)');
  t.same(noObject.json.response, { uid: 'u9', allowed: false, status: { code: 400, reason: 'BadRequest', message: 'the AdmissionReview request has no object (the Pod)' } });
  const ok = await post(port, ca, reviewOf(pod()));
  t.equal(ok.json.response.patchType, 'JSONPatch', 'still serving after all of that');
  t.equal(await metric(w.registry, 'error', 'bad-review'), cases.length + 2);
  t.ok(w.logs.filter((l) => l.level === 'warn').length >= cases.length + 2, 'one log line per refusal');
  t.match(w.logs.find((l) => l.msg === 'malformed AdmissionReview'), { fields: { error: /empty body/ } });
});

const servicePolicyReview = (spec: unknown) => JSON.stringify({
  apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
  request: {
    uid: 'v1', operation: 'CREATE', namespace: 'shop',
    kind: { group: 'meshlet.io', version: 'v1alpha1', kind: 'ServicePolicy' }, resource: { group: 'meshlet.io', version: 'v1alpha1', resource: 'servicepolicies' },
    object: { apiVersion: 'meshlet.io/v1alpha1', kind: 'ServicePolicy', metadata: { name: 'api', namespace: 'shop' }, spec },
  },
});

t.test('POST /validate on the same server: a ServicePolicy review answered over TLS; malformed ones a clear 4xx, counted as the validator\'s', async (t) => {
  const w = start(t, { maxBodyBytes: 64 * 1024 });
  const port = await w.listen();
  const ca = w.bundle();
  const denied = await post(port, ca, servicePolicyReview({ targetRef: { service: 'api' }, retry: { backoff: { base: 500 } } }), { path: '/validate' });
  t.equal(denied.status, 200);
  t.same(denied.json.response, { uid: 'v1', allowed: false, status: { code: 422, reason: 'Invalid', message: 'ServicePolicy "api" in shop is invalid (the meshlet control plane would not apply it): /spec/retry/backoff/base: backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default)' } });
  const allowed = await post(port, ca, servicePolicyReview({ targetRef: { service: 'api' } }), { path: '/validate' });
  t.same(allowed.json.response, { uid: 'v1', allowed: true });
  const cases: Array<[string, string | Buffer, number, RegExp, { method?: string }?]> = [
    ['not JSON', '{"apiVersion": ', 400, /body is not JSON .*expected an AdmissionReview/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), 400, /request has no uid/],
    ['oversized', Buffer.alloc(200 * 1024, 'a'), 413, /body larger than 65536 bytes/],
    ['GET', '', 405, /method GET not allowed: POST an AdmissionReview to \/validate/, { method: 'GET' }],
  ];
  for (const [what, body, status, message, opts] of cases) {
    const r = await post(port, ca, body, { path: '/validate', ...opts });
    t.equal(r.status, status, `${what}: HTTP ${status}`);
    t.match(r.json?.error, message, `${what}: ${r.body}`);
  }
  const text = await w.registry.metrics();
  t.match(text, /^meshlet_validations_total\{kind="ServicePolicy",outcome="denied"\} 1$/m);
  t.match(text, /^meshlet_validations_total\{kind="ServicePolicy",outcome="allowed"\} 1$/m);
  t.match(text, new RegExp(`^meshlet_validations_total\\{kind="other",outcome="error"\\} ${cases.length}$`, 'm'), 'every malformed one counted as the validator\'s');
  t.equal(await metric(w.registry, 'error', 'bad-review'), 0, 'not as the injector\'s');
  t.match(w.logs.find((l) => l.msg === 'ServicePolicy refused'), { level: 'warn', fields: { uid: 'v1', kind: 'ServicePolicy', outcome: 'denied', problems: [/^\/spec\/retry\/backoff\/base: /] } });
  const again = await post(port, ca, reviewOf(pod()));
  t.equal(again.json.response.patchType, 'JSONPatch', '/inject still serving');
});

t.test('an internal error (no trust anchors to inject) refuses the Pod in the review, never a crash', async (t) => {
  const w = start(t, { anchors: '' });
  const port = await w.listen();
  const r = await post(port, w.bundle(), reviewOf(pod(), { uid: 'u-int' }));
  t.equal(r.status, 200);
  t.same(r.json.response, { uid: 'u-int', allowed: false, status: { code: 500, message: 'meshlet proxy injector: internal error: no trust anchors to give the proxy (is the CA loaded?)' } });
  t.equal(await metric(w.registry, 'error', 'internal'), 1);
  t.equal((await post(port, w.bundle(), reviewOf(pod({ 'meshlet.io/inject': 'disabled' })))).json.response.allowed, true, 'still serving');
});

t.test('a connection that never finishes its handshake, or never sends a request, is closed after 10 s; one that made a request is kept', async (t) => {
  const w = start(t);
  const port = await w.listen();
  const silentTcp = net.connect(port, '127.0.0.1');
  const silentTls = tls.connect({ host: '127.0.0.1', port, ca: w.bundle(), servername: SNI });
  // The API server keeps its connection for the next review: after one request it is the server's
  // keepAliveTimeout (30 s) that applies, not the deadline for a first request.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const first = await new Promise<{ status: number; socket: net.Socket }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method: 'POST', path: '/inject', ca: w.bundle(), servername: SNI, agent, headers: { 'content-type': 'application/json' } }, (res) => {
      const socket = res.socket; // detached from the response once it ends
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, socket }));
    });
    req.on('error', reject);
    req.end(reviewOf(pod()));
  });
  t.equal(first.status, 200, 'a review on a kept-alive connection');
  const [tcpMs, tlsMs, keptMs] = await Promise.all([closedAfter(silentTcp), closedAfter(silentTls), closedAfter(first.socket, 15_000)]);
  t.ok(tcpMs >= 9_000 && tcpMs < 13_000, `no ClientHello: closed after ~10 s (${tcpMs} ms)`);
  t.ok(tlsMs >= 9_000 && tlsMs < 13_000, `a TLS connection that sends no request: closed after ~10 s (${tlsMs} ms)`);
  t.equal(keptMs, -1, 'the connection that made a request is still open after 15 s');
  // One line per closed connection, saying why; none for the client that made its request.
  t.same(w.logs.filter((l) => l.level !== 'info').map((l) => [l.level, l.msg, l.fields]), [
    ['warn', 'webhook connection closed: no TLS handshake within 10 s', { remote: '127.0.0.1' }],
    ['warn', 'webhook connection closed: no request within 10 s', { remote: '127.0.0.1' }],
  ], 'the deadline is logged as what it is, not as a failed handshake ("socket hang up")');
  t.equal((await post(port, w.bundle(), reviewOf(pod()))).json.response.allowed, true, 'and the webhook still answers');
});

t.test('metrics: every outcome exists at 0 before the first review; the histogram counts reviews', async (t) => {
  const w = start(t);
  const text = await w.registry.metrics();
  for (const outcome of ['injected', 'skipped', 'error']) t.match(text, new RegExp(`^meshlet_injections_total\\{outcome="${outcome}",reason="[a-z-]+"\\} 0$`, 'm'), `${outcome} at 0`);
  const port = await w.listen();
  for (let i = 0; i < 3; i++) await post(port, w.bundle(), reviewOf(pod()));
  t.equal(await metric(w.registry, 'injected', 'native-sidecar'), 3);
  t.equal(await metric(w.registry, 'injected', 'sidecar'), 0);
  t.match(await w.registry.metrics(), /^meshlet_injection_duration_seconds_count\{outcome="injected"\} 3$/m);
});

t.test('certificate: re-issued for new connections when the CA rotates its issuer', async (t) => {
  const w = start(t);
  const port = await w.listen();
  const first = await post(port, w.bundle(), reviewOf(pod()));
  const again = await post(port, w.bundle(), reviewOf(pod()));
  t.equal(again.serial, first.serial, 'unchanged CA: the same certificate');
  w.setDoc({ state: rotateIssuer(w.doc.state, { now: Date.now() }) });
  const rotated = await post(port, w.bundle(), reviewOf(pod()));
  t.not(rotated.serial, first.serial, 'a new leaf from the new issuer');
  t.equal(rotated.json.response.allowed, true);
});

t.test('certificate from files (--webhook-cert/--webhook-key), re-read when they change', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-webhook-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = initCa({ now: Date.now() });
  const write = () => {
    const c = makeServingCredentials(state, NAMES, { now: Date.now() });
    writeFileSync(join(dir, 'tls.crt'), c.certChainPem);
    writeFileSync(join(dir, 'tls.key'), c.keyPem);
    return c.serialHex;
  };
  const serial1 = write();
  let now = 0;
  const w = start(t, { credentials: () => fileCredentials({ certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), clock: { now: () => now }, checkEveryMs: 1000 }) });
  const port = await w.listen();
  const ca = trustBundle(state).join('');
  t.equal((await post(port, ca, reviewOf(pod()))).serial.replace(/^0+/, ''), serial1.replace(/^0+/, ''));
  await new Promise((r) => setTimeout(r, 20)); // a later mtime
  const serial2 = write();
  now += 1500;
  t.equal((await post(port, ca, reviewOf(pod()))).serial.replace(/^0+/, ''), serial2.replace(/^0+/, ''), 'the new pair serves new connections');
});

t.test('the control-plane process serves the webhook on --webhook-listen and counts on its /metrics', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-cp-webhook-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = initCa({ now: Date.now() });
  writeFileSync(join(dir, 'ca.json'), encodeCaDocument({ state }));
  const [listen, admin, webhook] = [await freePort(), await freePort(), await freePort()];
  const main = fileURLToPath(new URL('../../control-plane/main.ts', import.meta.url));
  const proc = spawn(process.execPath, [main, '--ca-file', join(dir, 'ca.json'), '--listen', `127.0.0.1:${listen}`, '--admin-listen', `127.0.0.1:${admin}`, '--webhook-listen', `127.0.0.1:${webhook}`], {
    stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHLET_PROXY_IMAGE: 'registry.example/proxy:9', MESHLET_PROXY_NATIVE_SIDECAR: 'false', MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS: '443,8443', MESHLET_DEFAULT_INBOUND_POLICY: 'all-unauthenticated' },
  });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  t.teardown(() => {
    proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`control plane exited ${proc.exitCode}: ${stderr}`);
    const ready = await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.status, () => 0);
    if (ready === 200) break;
    if (Date.now() > deadline) throw new Error(`control plane not ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const r = await post(webhook, trustBundle(state).join(''), reviewOf(pod()));
  const patch = JSON.parse(Buffer.from(r.json.response.patch, 'base64').toString('utf8')) as Array<{ path: string; value: { name?: string; image?: string; args?: string[]; env?: Array<{ name: string; value?: string }> } }>;
  const proxy = patch.find((op) => op.path === '/spec/containers/0')?.value;
  t.equal(proxy?.name, 'meshlet-proxy', 'MESHLET_PROXY_NATIVE_SIDECAR=false: the regular-sidecar mode');
  t.equal(proxy?.image, 'registry.example/proxy:9', 'MESHLET_PROXY_IMAGE');
  t.match(proxy?.args?.join(' '), `--control-plane https://meshlet-control-plane.meshlet-system.svc:${listen} --control-plane-identity spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane`);
  const init = JSON.stringify(patch.filter((op) => JSON.stringify(op.value).includes('"meshlet-init"')));
  t.match(init, '{"name":"MESHLET_SKIP_OUTBOUND_PORTS","value":"443,8443"}', 'MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS reaches meshlet-init');
  t.equal(proxy?.env?.find((e) => e.name === 'MESHLET_DEFAULT_INBOUND_POLICY')?.value, 'all-unauthenticated', 'MESHLET_DEFAULT_INBOUND_POLICY reaches the proxy of a Pod that sets none');
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  t.match(metrics, /^meshlet_injections_total\{outcome="injected",reason="sidecar"\} 1$/m);
  t.match(metrics, /^meshlet_injections_total\{outcome="error",reason="bad-review"\} 0$/m);
  t.match(stderr, /"msg":"injector webhook serving"/);
  const stopped = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  t.equal(await stopped, 0, 'stops cleanly with the webhook');
  // A bad cluster-wide value is a usage error at start, not a Pod refused later.
  const bad = spawnSync(process.execPath, [main, '--ca-file', join(dir, 'ca.json'), '--listen', `127.0.0.1:${listen}`, '--admin-listen', `127.0.0.1:${admin}`, '--webhook-listen', `127.0.0.1:${webhook}`], {
    encoding: 'utf8', timeout: 20_000, env: { ...process.env, MESHLET_DEFAULT_INBOUND_POLICY: 'permissive' },
  });
  t.equal(bad.status, 2, 'exit 2');
  t.match(bad.stderr, /MESHLET_DEFAULT_INBOUND_POLICY: "permissive" is not a default inbound policy; want one of all-unauthenticated, all-authenticated, deny/);
});
