// `meshlet diagnose`'s reasoning, pure: from what the caller's and the callees' proxies report
// (config, breaker states, identity, recent proxy errors), one answer: the route a request would
// take, the split, the endpoints and their breakers, the authorization decision, the certificates,
// and the last proxy errors with what each reason means and what to do. The authorization decision
// and the route a request takes and its split are the proxy's own pure functions (proxy/policy/
// authorize.ts, route-match.ts, split.ts), so the two cannot disagree. test/demo/diagnose.test.ts
// checks both against real proxies.
import type { RecentError } from '../../api/proxy-admin.ts';
import type { AuthorizationPolicyConfig, Route } from '../../api/proxy-config.ts';
import type { DefaultInboundPolicy } from '../../api/default-inbound-policy.ts';
import { authorize } from '../../proxy/policy/authorize.ts';
import { matchRoute, pathOf, routesOf, type HeaderLookup } from '../../proxy/policy/route-match.ts';
import { backendsOf, sharesOf } from '../../proxy/policy/split.ts';

/** A proxy's recent error as its admin /errors reports it. */
export type RecentErrorView = RecentError;

export interface ServiceView {
  name: string;
  hosts?: readonly string[];
  endpoints: ReadonlyArray<{ address: string; identity?: string; ready?: boolean; labels?: Readonly<Record<string, string>> }>;
  routes?: readonly Route[];
}
export interface ProxyConfigView {
  services: readonly ServiceView[];
  inbound?: { ports?: ReadonlyArray<{ port: number; permissive?: boolean }>; defaultPolicy?: 'all-authenticated' | 'all' | 'deny'; policies?: readonly AuthorizationPolicyConfig[] };
}
export interface IdentityView {
  identity: string | null;
  notAfter: string | null;
  renewalError: string | null;
}

export interface ProxyView {
  workload: string;
  /** Why the proxy could not be read, if it could not. */
  unreachable: string | undefined;
  ready: boolean;
  notReadyReasons: string[];
  /** null in plaintext mode (no identity). */
  identity: IdentityView | null;
  config: ProxyConfigView | undefined;
  /** The Pod's own default inbound policy (proxy admin /config), which replaces the config's. */
  podDefaultInboundPolicy?: DefaultInboundPolicy | undefined;
  /** endpoint address → 0 closed, 1 open, 2 probation (meshlet_endpoint_breaker_state). */
  breakers: ReadonlyMap<string, number>;
  errors: readonly RecentErrorView[];
}

export interface DiagnoseInput {
  source: ProxyView;
  /** As the user named it: a host the caller uses (`api`, `api.demo`). */
  destination: string;
  method: string;
  /** The request target as the app sends it (a query string included). */
  path: string;
  /** Header fields the request carries besides Host (which is the destination): [name, value] pairs. */
  headers?: ReadonlyArray<readonly [string, string]>;
  /** The callee proxies, by their inbound address (host:port), where known. */
  callees: ReadonlyMap<string, ProxyView & { app: { port: number } | undefined }>;
  /** Problems the control plane found in the config it reads (admin /config-problems). */
  configProblems: readonly string[];
  nowMs: number;
}

export type Severity = 'error' | 'warning' | 'ok';

export interface Finding {
  severity: Severity;
  /** A proxy error reason (proxy/errors.ts) when the finding is one, else a short topic. */
  topic: string;
  message: string;
  fix?: string;
}

export interface EndpointDiagnosis {
  service: string;
  address: string;
  expectedIdentity: string | null;
  ready: boolean;
  breaker: 'closed' | 'open' | 'probation' | 'unknown';
  workload: string | null;
  /** The identity the proxy at that address holds, when it could be read. */
  actualIdentity: string | null;
}

export interface Diagnosis {
  source: string;
  destination: string;
  request: { method: string; path: string };
  verdict: 'ok' | 'degraded' | 'failing';
  findings: Finding[];
  route: { service: string; route: string; match: unknown } | null;
  split: Array<{ service: string; weight: number; share: number }>;
  endpoints: EndpointDiagnosis[];
  authorization: Array<{ workload: string; allowed: boolean; policy: string; reason: string }>;
  certificates: Array<{ workload: string; identity: string | null; notAfter: string | null; expiresInSeconds: number | null; renewalError: string | null }>;
  errors: { counts: Record<string, number>; recent: RecentErrorView[] };
}

/** Every reason a proxy answers with (proxy/errors.ts): what it means, what to do. */
export const REASONS: Readonly<Record<string, { means: string; fix: string }>> = {
  'bad-request': { means: 'the request was malformed (no Host, ambiguous framing); the proxy refused it before routing', fix: 'Fix the client: send a Host header (or an absolute-form URL) and one framing (Content-Length or chunked).' },
  'header-too-large': { means: "the request head was larger than the proxy's --max-header-size", fix: 'Send smaller headers (cookies!), or raise --max-header-size on the proxy.' },
  'no-route': { means: "the caller's config has no service for this host, or no route of it matches the request", fix: 'Check the host name the app calls and the MeshService/route match (meshlet proxy-config); is the service in the config folder?' },
  forbidden: { means: "the callee's authorization policy refused the caller's identity, method or path", fix: "Add a rule to the callee's AuthorizationPolicy allowing the caller's service account (and method/path)." },
  'no-endpoints': { means: 'the service (or the split backend picked) has no ready endpoint, or every backend weight is 0', fix: 'Start an instance, mark an endpoint ready, or give a backend a weight > 0.' },
  'breaker-open': { means: 'every endpoint of the backend is ejected by the circuit breaker after consecutive failures', fix: 'Fix the failing endpoint; it is probed again after the ejection time. meshlet stat shows the breaker.' },
  'concurrency-limit': { means: "the service's in-flight and pending limits (breaker.maxInFlight/maxPending) were full: load shed", fix: 'Add capacity or raise breaker.maxInFlight / maxPending; look at the callee latency.' },
  'budget-exhausted': { means: 'an attempt failed and the retry budget allowed no more retries', fix: 'Fix the failing backend; a larger retry.budget only hides it longer.' },
  'connect-refused': { means: 'nothing listens at the endpoint address (the callee proxy is down or the address is wrong)', fix: "Start the callee's proxy, or correct the endpoint address in the MeshService." },
  'connect-timeout': { means: 'the TCP/TLS connection to the endpoint did not complete within the connect timeout', fix: 'Check that the endpoint is reachable; raise timeouts.connect if the network is slow.' },
  'connect-failed': { means: 'the endpoint host could not be resolved or reached', fix: 'Correct the endpoint address.' },
  'identity-mismatch': { means: 'the endpoint presented a certificate for another identity than its config names', fix: 'Fix the endpoint\'s serviceAccount in the MeshService, or the identity the callee runs as.' },
  'tls-failed': { means: 'the mTLS handshake failed (untrusted certificate, no identity on this proxy, expired certificate)', fix: 'Check both proxies have a current certificate from the same trust anchors (meshlet identity status).' },
  'upstream-reset': { means: 'the callee closed the connection before answering', fix: 'Look at the callee app (did it crash or close idle connections early?).' },
  'upstream-error': { means: 'the exchange with the callee failed after it started (broken response, client gone)', fix: 'Look at the callee app and its proxy logs.' },
  'per-try-timeout': { means: 'one attempt got no response headers within timeouts.perTry', fix: 'Find why the callee is slow (meshlet stat p99), or raise timeouts.perTry.' },
  'request-timeout': { means: "the whole request (all attempts) got no response within timeouts.request, or within a gRPC caller's shorter grpc-timeout", fix: "Find why the callee is slow, or raise timeouts.request (a gRPC caller's own deadline is the caller's to raise)." },
  'header-timeout': { means: 'a client did not send its whole request head within 30 s (a slow or stalled client, or a slow-loris attack)', fix: 'Look at the calling client and the network between it and its proxy; the callee is not involved.' },
  'no-config': { means: 'the proxy has no config yet: its --config file was not read, or the control plane has not sent it a first view', fix: 'Wait for the proxy to be ready (its /ready; meshlet proxy-status); check its --config file or its connection to the control plane.' },
  'unsupported-protocol': { means: "a connection's first bytes were neither HTTP/1 nor HTTP/2 (which the proxy carries): TLS (an app calling https:// through interception; the message names the server) or another protocol; the proxy refused it at once", fix: 'Let that traffic bypass the proxy (config.meshlet.io/skip-outbound-ports or skip-outbound-cidrs; skip-inbound-ports for an app that serves it), or make the client speak plaintext HTTP (HTTP/1.1 or HTTP/2).' },
};

/**
 * The callee's authorization decision for the caller: the proxy's own, on the path as the proxy
 * reads it from the target, with the Pod's own default (`podDefault`) over the config's, as the proxy does.
 */
export function authorizeView(inbound: ProxyConfigView['inbound'], port: number, identity: string, method: string, target: string, podDefault?: DefaultInboundPolicy): { allowed: boolean; policy: string; reason: string } {
  const d = podDefault ?? inbound?.defaultPolicy ?? 'all-authenticated';
  const path = pathOf(target);
  const decision = authorize(inbound?.policies ?? [], d, { port, identity, method, path });
  if (!decision.allowed) return decision;
  const reason = decision.policy.startsWith('default:') ? `no policy guards the port; ${podDefault ? "the Pod's" : 'the mesh'} default ${d} allows it` : `rule of ${decision.policy} allows ${identity} to ${method} ${path}`;
  return { ...decision, reason };
}

/** The request's fields as the proxy looks them up: lower-case names, repeated fields joined with ", ". */
function headerLookup(host: string, headers: ReadonlyArray<readonly [string, string]>): HeaderLookup {
  const fields = new Map<string, string>([['host', host]]);
  for (const [name, value] of headers) {
    const n = name.toLowerCase();
    const had = fields.get(n);
    fields.set(n, had === undefined ? value : `${had}, ${value}`);
  }
  return fields;
}

export function findService(cfg: ProxyConfigView | undefined, name: string): ServiceView | undefined {
  // As the proxy's destination stage: the service's name or one of its hosts, nothing looser
  // (the first label alone, `api` for `api.other`, is no-route there).
  const n = name.toLowerCase();
  return cfg?.services.find((s) => s.name.toLowerCase() === n || (s.hosts ?? []).some((h) => h.toLowerCase() === n));
}

const BREAKER = ['closed', 'open', 'probation'] as const;

export function diagnose(i: DiagnoseInput): Diagnosis {
  const findings: Finding[] = [];
  const src = i.source;
  const srcId = src.identity?.identity ?? '';
  const out: Diagnosis = {
    source: src.workload,
    destination: i.destination,
    request: { method: i.method, path: i.path },
    verdict: 'ok',
    findings,
    route: null,
    split: [],
    endpoints: [],
    authorization: [],
    certificates: [],
    errors: { counts: {}, recent: [] },
  };
  for (const p of i.configProblems) findings.push({ severity: 'warning', topic: 'config', message: `the control plane reports a config problem: ${p}`, fix: 'Fix the YAML it names; the proxies keep the last good config meanwhile.' });
  if (src.unreachable) {
    findings.push({ severity: 'error', topic: 'source-proxy', message: `cannot read ${src.workload}'s proxy: ${src.unreachable}`, fix: 'Is the mesh running (meshlet stat)? Is the workload name right?' });
    return finish(out);
  }
  if (!src.ready) findings.push({ severity: 'error', topic: 'source-proxy', message: `${src.workload}'s proxy is not ready: ${src.notReadyReasons.join('; ')}`, fix: 'meshlet proxy-status shows whether it has config and a certificate.' });

  // Certificates: the caller's, then each callee's below.
  const cert = (workload: string, id: IdentityView | null) => {
    const exp = id?.notAfter ? Math.round((Date.parse(id.notAfter) - i.nowMs) / 1000) : null;
    out.certificates.push({ workload, identity: id?.identity ?? null, notAfter: id?.notAfter ?? null, expiresInSeconds: exp, renewalError: id?.renewalError ?? null });
    if (id === null) findings.push({ severity: 'warning', topic: 'certificate', message: `${workload}'s proxy runs without identity (plaintext mode): no mTLS to or from it` });
    else if (!id.identity) findings.push({ severity: 'error', topic: 'certificate', message: `${workload}'s proxy has no certificate yet${id.renewalError ? `: ${id.renewalError}` : ''}`, fix: 'Check its bootstrap token and that the control plane is reachable.' });
    else if (exp !== null && exp <= 0) findings.push({ severity: 'error', topic: 'certificate', message: `${workload}'s certificate expired at ${id.notAfter}`, fix: 'Check that the control plane is reachable; the proxy renews on its own.' });
    else if (id.renewalError) findings.push({ severity: 'warning', topic: 'certificate', message: `${workload}'s last renewal failed: ${id.renewalError} (the current certificate is valid until ${id.notAfter})` });
  };
  cert(src.workload, src.identity);

  // Route, split, endpoints.
  const svc = findService(src.config, i.destination);
  if (!svc) {
    findings.push({ severity: 'error', topic: 'no-route', message: `${src.workload}'s config has no service for host "${i.destination}" (known: ${(src.config?.services ?? []).map((s) => s.name).join(', ') || 'none'})`, fix: REASONS['no-route']!.fix });
  } else {
    const routes = routesOf(svc);
    const route = matchRoute(routes, { method: i.method, path: pathOf(i.path), headers: headerLookup(i.destination, i.headers ?? []) });
    if (!route) {
      findings.push({ severity: 'error', topic: 'no-route', message: `no route of ${svc.name} matches ${i.method} ${i.path} (routes: ${routes.map((r) => r.name).join(', ')})`, fix: REASONS['no-route']!.fix });
    } else {
      out.route = { service: svc.name, route: route.name, match: route.match ?? 'everything' };
      const backends = backendsOf(svc.name, route);
      const shares = sharesOf(backends);
      out.split = backends.map((b, k) => ({ service: b.service, weight: b.weight, share: shares[k]! }));
      if (shares.every((share) => share === 0)) findings.push({ severity: 'error', topic: 'no-endpoints', message: `route ${route.name} gives every backend weight 0`, fix: REASONS['no-endpoints']!.fix });
      // A backend that cannot take requests (no ready endpoint, every one ejected) gives its share
      // to the others (proxy/policy/split.ts pickAdmitting): an error only when none can serve.
      const down = new Map<string, 'no-endpoints' | 'breaker-open'>();
      for (const b of backends) {
        const bs = src.config?.services.find((s) => s.name === b.service);
        const eps = bs?.endpoints ?? [];
        for (const e of eps) {
          const callee = i.callees.get(e.address);
          const st = src.breakers.get(e.address);
          out.endpoints.push({ service: b.service, address: e.address, expectedIdentity: e.identity ?? null, ready: e.ready !== false, breaker: st === undefined ? 'unknown' : (BREAKER[st] ?? 'unknown'), workload: callee?.workload ?? e.labels?.['workload'] ?? null, actualIdentity: callee?.identity?.identity ?? null });
        }
        const mine = out.endpoints.filter((e) => e.service === b.service);
        if (b.weight === 0) continue;
        if (mine.filter((e) => e.ready).length === 0) down.set(b.service, 'no-endpoints');
        else if (mine.filter((e) => e.ready).every((e) => e.breaker === 'open')) down.set(b.service, 'breaker-open');
        else if (mine.some((e) => e.breaker === 'open' || e.breaker === 'probation')) findings.push({ severity: 'warning', topic: 'breaker-open', message: `${mine.filter((e) => e.breaker !== 'closed').map((e) => `${e.address} ${e.breaker}`).join(', ')} of ${b.service}: the balancer avoids it`, fix: REASONS['breaker-open']!.fix });
      }
      const serving = backends.filter((b) => b.weight > 0 && !down.has(b.service)).map((b) => b.service);
      for (const [service, why] of down) {
        const mine = out.endpoints.filter((e) => e.service === service);
        const what = why === 'no-endpoints' ? `backend ${service} has no ready endpoint` : `every endpoint of ${service} is ejected by the breaker (${mine.map((e) => e.address).join(', ')})`;
        const where = serving.length > 0 ? `; the split sends its share to ${serving.join(', ')}` : '; no other backend can take its share';
        findings.push({ severity: serving.length > 0 ? 'warning' : 'error', topic: why, message: what + where, fix: REASONS[why]!.fix });
      }
      for (const e of out.endpoints) {
        if (e.expectedIdentity && !srcId && src.identity === null) findings.push({ severity: 'error', topic: 'tls-failed', message: `endpoint ${e.address} expects identity ${e.expectedIdentity}, but ${src.workload}'s proxy has no identity (plaintext mode)`, fix: 'Run the caller\'s proxy with --control-plane so it gets a certificate.' });
        if (!e.expectedIdentity) findings.push({ severity: 'warning', topic: 'mtls', message: `endpoint ${e.address} of ${e.service} names no identity: traffic to it is plaintext` });
        if (e.expectedIdentity && e.actualIdentity && e.expectedIdentity !== e.actualIdentity) findings.push({ severity: 'error', topic: 'identity-mismatch', message: `endpoint ${e.address} of ${e.service} must prove ${e.expectedIdentity}, but the proxy there is ${e.actualIdentity}`, fix: REASONS['identity-mismatch']!.fix });
        const callee = i.callees.get(e.address);
        if (!callee) continue;
        if (callee.unreachable) {
          findings.push({ severity: 'warning', topic: 'callee-proxy', message: `cannot read the proxy at ${e.address} (${callee.workload}): ${callee.unreachable}` });
          continue;
        }
        if (!out.certificates.some((c) => c.workload === callee.workload)) cert(callee.workload, callee.identity);
        if (!callee.ready) findings.push({ severity: 'error', topic: 'callee-proxy', message: `${callee.workload}'s proxy is not ready: ${callee.notReadyReasons.join('; ')}` });
        if (callee.app && !out.authorization.some((a) => a.workload === callee.workload)) {
          const d = authorizeView(callee.config?.inbound, callee.app.port, srcId, i.method, i.path, callee.podDefaultInboundPolicy);
          out.authorization.push({ workload: callee.workload, ...d });
          if (!d.allowed) findings.push({ severity: 'error', topic: 'forbidden', message: `${callee.workload} refuses ${srcId || 'a plaintext caller'}: ${d.reason}`, fix: REASONS['forbidden']!.fix });
        }
      }
    }
  }

  // Recent proxy errors on this path: the caller's outbound ones for this service or its backends,
  // the callees' inbound ones from this caller.
  const names = new Set<string>([i.destination, ...(svc ? [svc.name, ...(svc.hosts ?? [])] : []), ...out.split.map((s) => s.service)]);
  const recent: RecentErrorView[] = src.errors.filter((e) => e.direction === 'outbound' && (names.has(e.service) || names.has(e.authority) || e.service === '' || e.authority === ''));
  const onPath = new Set(out.endpoints.map((e) => e.address));
  for (const [address, c] of i.callees) {
    if (!onPath.has(address)) continue;
    for (const e of c.errors) if (e.direction === 'inbound' && (srcId === '' || e.peer === srcId || e.peer === '')) recent.push(e);
  }
  recent.sort((a, b) => b.at - a.at);
  for (const e of recent) out.errors.counts[e.reason] = (out.errors.counts[e.reason] ?? 0) + 1;
  out.errors.recent = recent.slice(0, 10);
  for (const [reason, n] of Object.entries(out.errors.counts)) {
    const last = recent.find((e) => e.reason === reason)!;
    const ago = Math.max(0, Math.round((i.nowMs - last.at) / 1000));
    const help = REASONS[reason];
    // Errors within the last minute mean the path fails now; older ones are history.
    findings.push({ severity: ago <= 60 ? 'error' : 'warning', topic: reason, message: `${n} recent ${reason} error${n > 1 ? 's' : ''} (${last.direction}, last ${ago} s ago: ${last.message})${help ? `: ${help.means}` : ''}`, ...(help ? { fix: help.fix } : {}) });
  }
  return finish(out);
}

function finish(d: Diagnosis): Diagnosis {
  const errors = d.findings.filter((f) => f.severity === 'error').length;
  const warnings = d.findings.filter((f) => f.severity === 'warning').length;
  d.verdict = errors > 0 ? 'failing' : warnings > 0 ? 'degraded' : 'ok';
  if (d.findings.length === 0) d.findings.push({ severity: 'ok', topic: 'path', message: `${d.source} → ${d.destination}: route, endpoints, authorization and certificates are fine, no recent proxy errors` });
  return d;
}

/** The human answer: one block, findings first. */
export function diagnosisText(d: Diagnosis): string {
  const L: string[] = [];
  L.push(`${d.source} → ${d.destination} (${d.request.method} ${d.request.path}): ${d.verdict.toUpperCase()}`);
  for (const f of d.findings) {
    L.push(`  ${f.severity === 'error' ? '✗' : f.severity === 'warning' ? '!' : '✓'} [${f.topic}] ${f.message}`);
    if (f.fix) L.push(`      → ${f.fix}`);
  }
  L.push('', `route:  ${d.route ? `${d.route.service} / ${d.route.route}` : '-'}`);
  L.push(`split:  ${d.split.map((s) => `${s.service} ${s.weight} (${Math.round(s.share * 100)} %)`).join(', ') || '-'}`);
  L.push('endpoints:');
  for (const e of d.endpoints) L.push(`  ${e.service.padEnd(14)} ${e.address.padEnd(21)} ${e.ready ? 'ready' : 'NOT READY'}  breaker ${e.breaker}  ${e.expectedIdentity ?? 'plaintext'}${e.actualIdentity && e.actualIdentity !== e.expectedIdentity ? ` (proxy there: ${e.actualIdentity})` : ''}`);
  L.push('authorization:');
  for (const a of d.authorization) L.push(`  ${a.workload}: ${a.allowed ? 'allowed' : 'DENIED'} by ${a.policy} (${a.reason})`);
  L.push('certificates:');
  for (const c of d.certificates) L.push(`  ${c.workload}: ${c.identity ?? 'none'}${c.expiresInSeconds !== null ? `, expires in ${Math.round(c.expiresInSeconds / 60)} min` : ''}${c.renewalError ? `, last renewal failed: ${c.renewalError}` : ''}`);
  L.push(`recent proxy errors: ${Object.entries(d.errors.counts).map(([r, n]) => `${r} ×${n}`).join(', ') || 'none'}`);
  for (const e of d.errors.recent.slice(0, 5)) L.push(`  ${new Date(e.at).toISOString().slice(11, 23)} ${e.direction} ${e.reason}: ${e.message}`);
  return L.join('\n') + '\n';
}
