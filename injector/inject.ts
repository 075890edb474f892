// The injection itself: Pod (as JSON) + settings → an RFC 6902 patch that adds the meshlet proxy.
// Guarantees: pure (no I/O, no clock); the patch only adds (never removes, replaces or reorders what the
// user wrote); an injected Pod gives an empty patch; a bad annotation refuses the Pod with every problem named.

/*
 * What a patch adds (the webhook and `meshlet inject` apply the same one):
 *   initContainers  meshlet-init (iptables, NET_ADMIN/NET_RAW, root), unless settings.cni;
 *                   meshlet-proxy as a native sidecar (restartPolicy Always + startupProbe on /ready),
 *                   both in front of the user's init containers (which then already have the mesh).
 *                   Fallback mode (nativeSidecar false): meshlet-init goes AFTER the user's init
 *                   containers, since no proxy runs yet to take their redirected traffic.
 *   containers      fallback mode only: meshlet-proxy first, its postStart hook waits for /ready;
 *                   the kubelet starts the next container only when that hook returns.
 *   volumes         the projected service-account token (audience meshlet), a small in-memory /tmp and
 *                   the Pod's labels (downward API, read-only: the proxy reports them, and the
 *                   control plane gives it the policies of the Services that select them);
 *                   serviceAccountName "default" when unset (a projected token needs one; Kubernetes' own default).
 *   annotations     the marker meshlet.io/injected, Prometheus scrape annotations for the admin port
 *                   and kubectl's default container, each only when the user has not set it.
 */

import type { Operation } from 'fast-json-patch';
import { PROXY_CONTAINER_NAME } from '../control-plane/config/kube-model.ts';
import { checkLabels } from '../api/pod-labels.ts';
import { formatProbePaths, kubeletProbePath, MAX_PROBE_PATH_LENGTH, MAX_PROBE_PATHS, type ProbePaths } from '../api/probe-paths.ts';
import { CONFIG_PREFIX, INJECTED_ANNOTATION, INJECT_ANNOTATION, effectiveResources, quantityValue, readOverrides } from './annotations.ts';
import { ADMIN_PORT_NAME, INBOUND_PORT_NAME, INIT_COMMAND, INIT_CONTAINER_NAME, PROXY_IMAGE_NODE, type InjectSettings, type ProxyResources } from './settings.ts';

export { PROXY_CONTAINER_NAME };

export const TOKEN_VOLUME = 'meshlet-identity-token';
export const TOKEN_DIR = '/var/run/secrets/meshlet.io/identity';
export const TMP_VOLUME = 'meshlet-tmp';
export const POD_INFO_VOLUME = 'meshlet-pod-info';
export const POD_INFO_DIR = '/var/run/meshlet.io/pod-info';
/** Projected tokens are refreshed by the kubelet at 80 % of this; the proxy re-reads the file on renewal. */
export const TOKEN_EXPIRATION_SECONDS = 86_400;

export type SkipReason = 'already-injected' | 'disabled' | 'host-network';
export const SKIP_REASONS: readonly SkipReason[] = ['already-injected', 'disabled', 'host-network'];
export type RefuseReason = 'bad-annotation' | 'bad-pod';
export const REFUSE_REASONS: readonly RefuseReason[] = ['bad-annotation', 'bad-pod'];
export type Mode = 'native-sidecar' | 'sidecar';
export const MODES: readonly Mode[] = ['native-sidecar', 'sidecar'];

export type InjectResult =
  | { outcome: 'injected'; mode: Mode; patch: Operation[] }
  | { outcome: 'skipped'; skipped: SkipReason; patch: [] }
  | { outcome: 'refused'; refused: RefuseReason; message: string; patch: [] };

/** A Pod, or a Pod template, as parsed JSON: only what inject reads is typed. */
export interface PodLike {
  metadata?: { name?: string; generateName?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean }> } | null;
  spec?: { hostNetwork?: boolean; serviceAccountName?: string; serviceAccount?: string; containers?: unknown[]; initContainers?: unknown[]; volumes?: unknown[] } | null;
}

export interface InjectContext {
  /** The workload name for metrics (default: derived from owner, labels or name). */
  workload?: string;
}

/** JSON pointer token (RFC 6901): `~` → `~0`, `/` → `~1` (annotation keys have slashes). */
export const pointerToken = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

interface ContainerLike {
  name?: unknown;
  ports?: Array<{ containerPort?: unknown; protocol?: unknown }>;
}
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Why the webhook would leave this Pod alone, if it would. */
export function skipReason(pod: PodLike): SkipReason | undefined {
  const meta = pod.metadata ?? {};
  const all = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])] as ContainerLike[];
  if (meta.annotations?.[INJECTED_ANNOTATION] !== undefined || all.some((c) => isRecord(c) && c.name === PROXY_CONTAINER_NAME)) return 'already-injected';
  if (meta.annotations?.[INJECT_ANNOTATION] === 'disabled' || meta.labels?.[INJECT_ANNOTATION] === 'disabled') return 'disabled';
  if (pod.spec?.hostNetwork === true) return 'host-network';
  return undefined;
}

/** The app's inbound TCP ports: every container's containerPorts, in order, once each. */
export function appPorts(pod: PodLike): number[] {
  const out: number[] = [];
  for (const c of (pod.spec?.containers ?? []) as ContainerLike[]) {
    for (const p of (isRecord(c) && Array.isArray(c.ports) ? c.ports : [])) {
      if (!isRecord(p)) continue;
      const proto = p.protocol ?? 'TCP';
      if (proto === 'TCP' && typeof p.containerPort === 'number' && !out.includes(p.containerPort)) out.push(p.containerPort);
    }
  }
  return out;
}

/**
 * The proxy port of each app port after the first, as `APP=PROXY` items (MESHLET_INBOUND_PORT_MAP):
 * iptables REDIRECT hides the port a connection was for, so each app port gets an inbound listener
 * of its own (the first keeps the inbound port). Counted up from the inbound port, past the proxy's
 * own ports and every port in `taken` (the Pod's declared and skipped ports), so the proxy never
 * binds a port the app declares. When no port is left, says so in `problems`. Pure.
 */
export function inboundPortMap(ports: readonly number[], own: InjectSettings['ports'], taken: readonly number[], problems: string[]): string[] {
  const busy = new Set([own.outbound, own.inbound, own.admin, ...ports, ...taken]);
  const map: string[] = [];
  let next = own.inbound + 1;
  for (const app of ports.slice(1)) {
    while (next <= 65535 && busy.has(next)) next++;
    if (next > 65535) {
      problems.push(`no free proxy port above the inbound port ${own.inbound} for app port ${app} (the proxy listens on one port per app port after the first): declare fewer ports or set config.meshlet.io/inbound-ports`);
      break;
    }
    map.push(`${app}=${next++}`);
  }
  return map;
}

/**
 * The paths the kubelet probes over plain HTTP on the ports the proxy takes (`redirected`), by
 * port: every app container's liveness, readiness and startup httpGet probe with scheme HTTP and
 * no host of its own (those go where iptables does not send them), its port a number or one of
 * that container's port names. The proxy lets plaintext GETs of these paths through a port that
 * takes only mTLS (proxy/inbound/probes.ts). HTTPS, gRPC and tcpSocket probes are not in it: see
 * the README (Kubernetes: probes). Over the bounds the proxy would not start with: `problems`. Pure.
 */
export function probePaths(containers: readonly unknown[], redirected: readonly number[], problems: string[]): ProbePaths {
  const out = new Map<number, Set<string>>();
  let count = 0;
  for (const c of containers) {
    if (!isRecord(c)) continue;
    const named = new Map<unknown, unknown>((Array.isArray(c.ports) ? c.ports : []).filter(isRecord).map((p) => [p.name, p.containerPort]));
    for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      const probe = c[kind];
      const get = isRecord(probe) && isRecord(probe.httpGet) ? probe.httpGet : undefined;
      if (!get || (get.scheme ?? 'HTTP') !== 'HTTP' || (typeof get.host === 'string' && get.host !== '')) continue;
      const port = typeof get.port === 'string' ? named.get(get.port) : get.port;
      if (typeof port !== 'number' || !redirected.includes(port)) continue;
      // As the kubelet will ask for it: escaped as Go escapes it (a space as %20), without query or fragment.
      const path = kubeletProbePath(typeof get.path === 'string' ? get.path : '/');
      if (path.length > MAX_PROBE_PATH_LENGTH) {
        problems.push(`container ${String(c.name)}: the ${kind} path is ${path.length} characters; the proxy lets probes through only up to ${MAX_PROBE_PATH_LENGTH}: shorten it`);
        continue;
      }
      const set = out.get(port) ?? new Set<string>();
      if (!set.has(path) && ++count > MAX_PROBE_PATHS) {
        problems.push(`more than ${MAX_PROBE_PATHS} distinct httpGet probe paths; the proxy lets through at most ${MAX_PROBE_PATHS}`);
        return out;
      }
      out.set(port, set.add(path));
    }
  }
  return out;
}

/** The workload's name as meshlet's metrics show it (as control-plane/config/kube-model.ts workloadOf). */
export function workloadName(pod: PodLike): string {
  const meta = pod.metadata ?? {};
  const owners = meta.ownerReferences ?? [];
  const owner = owners.find((o) => o.controller) ?? owners[0];
  const hash = meta.labels?.['pod-template-hash'];
  if (owner?.name) return owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`) ? owner.name.slice(0, -hash.length - 1) : owner.name;
  return meta.labels?.['app.kubernetes.io/name'] ?? meta.labels?.app ?? meta.generateName?.replace(/-+$/, '') ?? meta.name ?? 'unknown';
}

const csv = (xs: readonly (string | number)[]): string => xs.join(',');
const env = (name: string, value: string) => ({ name, value });
const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });

function resourcesOf(r: ProxyResources): Record<string, Record<string, string>> {
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (r.cpuRequest) requests.cpu = r.cpuRequest;
  if (r.memoryRequest) requests.memory = r.memoryRequest;
  if (r.cpuLimit) limits.cpu = r.cpuLimit;
  if (r.memoryLimit) limits.memory = r.memoryLimit;
  return { ...(Object.keys(requests).length ? { requests } : {}), ...(Object.keys(limits).length ? { limits } : {}) };
}

/**
 * The proxy's old-generation cap (MiB) for a container memory limit: half of it, at least 32. The
 * rest is the node binary's pages, the young generation, buffers and sockets (~80 MB at ~1000 rps
 * with a small view); V8 sizing its heap from the limit itself would take more than the whole
 * limit (259 MB of heap for a 256 MiB cgroup, measured), so the kernel would kill the proxy before
 * V8 collected. Undefined: no limit, and no cap (Node's default, from the node's memory). Pure.
 */
export function heapCapMb(memoryLimit: string | undefined): number | undefined {
  const bytes = memoryLimit === undefined ? undefined : quantityValue(memoryLimit);
  if (bytes === undefined || !(bytes > 0)) return undefined;
  return Math.max(32, Math.floor(bytes / 2 ** 20 / 2));
}

/** The fallback mode's postStart hook: node (in the proxy image) polls /ready for up to 2 minutes. */
export function holdUntilReadyCommand(adminPort: number, node = PROXY_IMAGE_NODE): string[] {
  const script =
    `const u='http://127.0.0.1:${adminPort}/ready',end=Date.now()+120e3;` +
    `const f=()=>fetch(u).then(r=>{if(r.ok)process.exit(0);throw 0}).catch(()=>{` +
    `if(Date.now()>end){console.error('meshlet-proxy: not ready after 120 s');process.exit(1)}setTimeout(f,250)});f()`;
  return [node, '-e', script];
}

/** Computes the patch. `pod` is not modified. */
export function inject(pod: PodLike, settings: InjectSettings, ctx: InjectContext = {}): InjectResult {
  if (!isRecord(pod) || !isRecord(pod.spec)) return { outcome: 'refused', refused: 'bad-pod', message: 'the object has no spec: not a Pod or Pod template', patch: [] };
  const spec = pod.spec;
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) {
    return { outcome: 'refused', refused: 'bad-pod', message: 'the Pod has no containers: nothing to put the proxy beside', patch: [] };
  }
  if (!spec.containers.every(isRecord)) return { outcome: 'refused', refused: 'bad-pod', message: 'spec.containers holds something that is not a container', patch: [] };
  const m = isRecord(pod.metadata) ? pod.metadata : {};
  // The metadata read here, typed as the API server types it (hand-written input may not be).
  const owners: unknown = m.ownerReferences;
  if (owners !== undefined && owners !== null && !(Array.isArray(owners) && owners.every(isRecord))) {
    return { outcome: 'refused', refused: 'bad-pod', message: 'metadata.ownerReferences is not a list of objects', patch: [] };
  }
  for (const field of ['name', 'generateName', 'namespace'] as const) {
    const v: unknown = m[field];
    if (v !== undefined && v !== null && typeof v !== 'string') return { outcome: 'refused', refused: 'bad-pod', message: `metadata.${field} is not a string`, patch: [] };
  }
  for (const field of ['labels', 'annotations'] as const) {
    const v: unknown = m[field];
    if (v !== undefined && v !== null && !isRecord(v)) return { outcome: 'refused', refused: 'bad-pod', message: `metadata.${field} is not a map`, patch: [] };
  }
  const skipped = skipReason(pod);
  if (skipped) return { outcome: 'skipped', skipped, patch: [] };
  for (const [field, list] of [['initContainers', spec.initContainers], ['volumes', spec.volumes]] as const) {
    if (list !== undefined && list !== null && !Array.isArray(list)) return { outcome: 'refused', refused: 'bad-pod', message: `spec.${field} is not a list`, patch: [] };
  }
  const meta = m;
  const annotations = isRecord(meta.annotations) ? meta.annotations : {};

  const { overrides, problems } = readOverrides(annotations);
  const resources = effectiveResources(settings.resources, overrides.resources, problems);
  const heap = heapCapMb(resources.memoryLimit);
  const taken = new Set(((spec.volumes ?? []) as unknown[]).map((v) => (isRecord(v) ? v.name : undefined)));
  for (const v of [TOKEN_VOLUME, TMP_VOLUME, POD_INFO_VOLUME]) if (taken.has(v)) problems.push(`spec.volumes already has a volume named ${v}, which the proxy needs`);
  // The proxy reports these labels (--pod-labels-file) and stops at start on labels it cannot
  // report (past 64 or 8 KiB): refused here with the reason, not a sidecar that never starts.
  const labels = isRecord(meta.labels) ? meta.labels : {};
  const notString = Object.keys(labels).find((k) => typeof labels[k] !== 'string');
  const labelsOk = notString === undefined ? checkLabels(labels as Record<string, string>) : { ok: false as const, problem: `label ${notString} is not a string` };
  if (!labelsOk.ok) problems.push(`metadata.labels: ${labelsOk.problem}; the proxy reports the Pod's labels to the control plane (Service selectors, for authorization) and would not start: remove labels`);
  const names = new Set([...spec.containers, ...((spec.initContainers ?? []) as unknown[])].map((c) => (isRecord(c) ? c.name : undefined)));
  if (!settings.cni && names.has(INIT_CONTAINER_NAME)) problems.push(`the Pod already has a container named ${INIT_CONTAINER_NAME}, which the injector adds`);
  // The app's ports must not be the proxy's own: meshlet-init refuses to redirect them (and two listeners cannot share one).
  const ports = overrides.inboundPorts ?? appPorts(pod);
  const own = settings.ports;
  for (const p of ports) {
    if (p === own.outbound || p === own.inbound || p === own.admin) {
      const where = overrides.inboundPorts ? `${CONFIG_PREFIX}inbound-ports` : 'a container port of the Pod';
      problems.push(`${where}: ${p} is one of the proxy's own ports (outbound ${own.outbound}, inbound ${own.inbound}, admin ${own.admin})`);
    }
  }
  // One inbound listener per app port: the proxy ports after the inbound port, around the Pod's own.
  const portMap = inboundPortMap(ports, own, [...appPorts(pod), ...overrides.skipInboundPorts], problems);
  // The kubelet's plaintext probes of the ports redirected to the proxy (skipped ones reach the app directly).
  const probes = formatProbePaths(probePaths(spec.containers, ports.filter((p) => !overrides.skipInboundPorts.includes(p)), problems));
  if (problems.length > 0) {
    const message = `cannot inject the meshlet proxy: ${problems.join('; ')}`;
    const badPod = problems.every((p) => !p.startsWith(CONFIG_PREFIX));
    return { outcome: 'refused', refused: badPod ? 'bad-pod' : 'bad-annotation', message, patch: [] };
  }

  if (!settings.trustAnchorsPem) throw new Error('no trust anchors to give the proxy (is the CA loaded?)');
  const native = overrides.nativeSidecar ?? settings.nativeSidecar;
  const mode: Mode = native ? 'native-sidecar' : 'sidecar';
  const { outbound, inbound, admin } = settings.ports;
  const skipOutboundCidrs = [...new Set([...settings.skipOutboundCidrs, ...overrides.skipOutboundCidrs])];
  const httpGet = (path: string) => ({ httpGet: { path, port: admin } });

  const proxy: Record<string, unknown> = {
    name: PROXY_CONTAINER_NAME,
    image: settings.proxyImage,
    imagePullPolicy: 'IfNotPresent',
    args: [
      '--control-plane', settings.controlPlane,
      '--control-plane-identity', settings.controlPlaneIdentity,
      '--identity-token-file', `${TOKEN_DIR}/token`,
      // $(VAR): the kubelet substitutes the env below (downward API) into args.
      '--pod', '$(MESHLET_POD_NAME)',
      '--pod-labels-file', `${POD_INFO_DIR}/labels`,
      '--namespace', '$(MESHLET_POD_NAMESPACE)',
      '--workload', ctx.workload ?? workloadName(pod),
      '--outbound-listen', `127.0.0.1:${outbound}`,
      '--inbound-listen', `0.0.0.0:${inbound}`,
      // The kubelet probes (and Prometheus scrapes) the Pod IP, not loopback.
      '--admin-listen', `0.0.0.0:${admin}`,
      ...(ports.length > 0 ? ['--app', `127.0.0.1:${ports[0]}`] : []),
    ],
    env: [
      fieldEnv('MESHLET_POD_NAME', 'metadata.name'),
      fieldEnv('MESHLET_POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('MESHLET_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      env('MESHLET_CONTROL_PLANE', settings.controlPlane),
      env('MESHLET_TRUST_ANCHORS_PEM', settings.trustAnchorsPem),
      env('MESHLET_APP_PORTS', csv(ports)),
      env('MESHLET_INBOUND_PORT_MAP', csv(portMap)),
      ...(probes !== '' ? [env('MESHLET_PROBE_PATHS', probes)] : []),
      ...(overrides.outboundNamespaces ? [env('MESHLET_OUTBOUND_NAMESPACES', csv(overrides.outboundNamespaces))] : []),
      env('MESHLET_LOG_LEVEL', overrides.logLevel ?? settings.logLevel),
      // Who may call the app where no AuthorizationPolicy guards the port (replaces the control plane's default for this Pod).
      env('MESHLET_DEFAULT_INBOUND_POLICY', overrides.defaultInboundPolicy ?? settings.defaultInboundPolicy),
      // Requests for hosts outside the mesh: to the host (true), or a 404 no-route (false).
      env('MESHLET_OUTBOUND_PASSTHROUGH', String(overrides.outboundPassthrough ?? settings.outboundPassthrough)),
      // The heap cap follows the memory limit (the image's ENTRYPOINT sets none): a bigger view, a
      // bigger config.meshlet.io/proxy-memory-limit, and the heap may use half of it.
      ...(heap !== undefined ? [env('NODE_OPTIONS', `--max-old-space-size=${heap}`)] : []),
    ],
    ports: [
      { name: INBOUND_PORT_NAME, containerPort: inbound, protocol: 'TCP' },
      { name: ADMIN_PORT_NAME, containerPort: admin, protocol: 'TCP' },
    ],
    ...(native ? { restartPolicy: 'Always', startupProbe: { ...httpGet('/ready'), periodSeconds: 1, failureThreshold: 120 } } : {}),
    readinessProbe: { ...httpGet('/ready'), periodSeconds: 5, failureThreshold: 3 },
    livenessProbe: { ...httpGet('/live'), periodSeconds: 10, failureThreshold: 3 },
    ...(native ? {} : { lifecycle: { postStart: { exec: { command: holdUntilReadyCommand(admin) } } } }),
    resources: resourcesOf(resources),
    securityContext: {
      runAsUser: settings.proxyUid,
      runAsGroup: settings.proxyUid,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: TMP_VOLUME, mountPath: '/tmp' },
      { name: POD_INFO_VOLUME, mountPath: POD_INFO_DIR, readOnly: true },
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };

  // The contract with injector's interception script (Dockerfile.init): keep these names.
  const init = {
    name: INIT_CONTAINER_NAME,
    image: settings.initImage,
    imagePullPolicy: 'IfNotPresent',
    command: INIT_COMMAND,
    env: [
      env('MESHLET_PROXY_UID', String(settings.proxyUid)),
      env('MESHLET_OUTBOUND_PORT', String(outbound)),
      env('MESHLET_INBOUND_PORT', String(inbound)),
      env('MESHLET_ADMIN_PORT', String(admin)),
      // No port declared (a worker that only calls out): inbound is not redirected, since the proxy
      // could not know which port a connection was for; outbound is meshed as for every Pod.
      env('MESHLET_INBOUND_PORTS', ports.length === 0 ? 'none' : csv(ports)),
      // Each app port after the first to its own proxy listener (the proxy reads the same map).
      env('MESHLET_INBOUND_PORT_MAP', csv(portMap)),
      env('MESHLET_SKIP_INBOUND_PORTS', csv(overrides.skipInboundPorts)),
      env('MESHLET_SKIP_OUTBOUND_PORTS', csv(overrides.skipOutboundPorts ?? settings.skipOutboundPorts)),
      env('MESHLET_SKIP_OUTBOUND_CIDRS', csv(skipOutboundCidrs)),
    ],
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '100m', memory: '64Mi' } },
    // Root only for iptables in the Pod's own network namespace; nothing else.
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    // The root filesystem is read-only: the script writes its rules file in /tmp (mktemp) and
    // iptables-legacy its lock in /run. Both on the Pod's small in-memory volume, apart from the proxy's /tmp.
    volumeMounts: [
      { name: TMP_VOLUME, mountPath: '/tmp', subPath: 'init-tmp' },
      { name: TMP_VOLUME, mountPath: '/run', subPath: 'init-run' },
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };

  const patch: Operation[] = [];
  // Init containers: front (native: init, then proxy) or, in fallback mode, init appended last.
  const front = [...(settings.cni ? [] : native ? [init] : []), ...(native ? [proxy] : [])];
  const back = !settings.cni && !native ? [init] : [];
  if (!Array.isArray(spec.initContainers)) {
    if (front.length + back.length > 0) patch.push({ op: 'add', path: '/spec/initContainers', value: [...front, ...back] });
  } else {
    front.forEach((c, i) => patch.push({ op: 'add', path: `/spec/initContainers/${i}`, value: c }));
    for (const c of back) patch.push({ op: 'add', path: '/spec/initContainers/-', value: c });
  }
  if (!native) patch.push({ op: 'add', path: '/spec/containers/0', value: proxy });

  const volumes = [
    { name: TOKEN_VOLUME, projected: { sources: [{ serviceAccountToken: { audience: settings.audience, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: 'token' } }] } },
    { name: TMP_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
    // A file, not env: the kubelet rewrites it when the Pod is relabelled (env is fixed at start).
    { name: POD_INFO_VOLUME, downwardAPI: { items: [{ path: 'labels', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.labels' } }] } },
  ];
  if (!Array.isArray(spec.volumes)) patch.push({ op: 'add', path: '/spec/volumes', value: volumes });
  else for (const v of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value: v });
  // A projected token needs a named ServiceAccount (API validation). In a cluster the ServiceAccount
  // admission plugin has set it before webhooks run; templates (`meshlet inject`) may lack it: name the
  // one Kubernetes would use anyway.
  if (!spec.serviceAccountName && !spec.serviceAccount) patch.push({ op: 'add', path: '/spec/serviceAccountName', value: 'default' });

  const first = spec.containers[0];
  const firstApp = isRecord(first) ? first.name : undefined;
  const add: Record<string, string> = {
    [INJECTED_ANNOTATION]: mode,
    'prometheus.io/scrape': 'true',
    'prometheus.io/port': String(admin),
    'prometheus.io/path': '/metrics',
    // `kubectl logs/exec` without -c picks the app, not the proxy.
    ...(typeof firstApp === 'string' ? { 'kubectl.kubernetes.io/default-container': firstApp } : {}),
  };
  // An app that already asks to be scraped keeps its own prometheus.io/* (a Pod has one set).
  const userScrape = Object.keys(annotations).some((k) => k.startsWith('prometheus.io/'));
  const wanted = Object.entries(add).filter(([k]) => !(k in annotations) && !(userScrape && k.startsWith('prometheus.io/')));
  if (!isRecord(meta.annotations)) {
    if (!isRecord(pod.metadata)) patch.push({ op: 'add', path: '/metadata', value: {} });
    patch.push({ op: 'add', path: '/metadata/annotations', value: Object.fromEntries(wanted) });
  } else {
    for (const [k, v] of wanted) patch.push({ op: 'add', path: `/metadata/annotations/${pointerToken(k)}`, value: v });
  }
  return { outcome: 'injected', mode, patch };
}
