// The control plane's process entry (`node control-plane/main.ts`): flags (or the environment
// from manifests/config.env) → startControlPlane; JSON log lines on stderr; SIGTERM/SIGINT stop it cleanly.

import { parseArgs } from 'node:util';
import { systemClock } from '../api/runtime.ts';
import { DEFAULT_TRUST_DOMAIN, systemWallClock } from './ca/index.ts';
import { DEFAULT_AUDIENCE } from './certify/certify.ts';
import { CONTROL_PLANE_SERVICE_ACCOUNT, DEFAULT_SERVING_NAMES, DEFAULT_SYSTEM_NAMESPACE, controlPlaneIdentity } from './certify/serving-cert.ts';
import { InjectorMetrics, ValidationMetrics } from '../injector/metrics.ts';
import { DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE, DEFAULT_SKIP_OUTBOUND_PORTS, defaultSettings, parseBool, parsePorts } from '../injector/settings.ts';
import { parseDefaultInboundPolicy, type DefaultInboundPolicy } from '../api/default-inbound-policy.ts';
import { WEBHOOK_SERVICE, caCredentials, createWebhook, fileCredentials } from '../injector/webhook.ts';
import { Registry } from 'prom-client';
import { trustBundle } from './ca/index.ts';
import { ConfigPushServer } from './config/push-server.ts';
import { MeshViews } from './config/mesh-views.ts';
import { FolderSource } from './config/folder-source.ts';
import { KubernetesSource, type WatchedKind } from './config/kube-source.ts';
import { KubeSourceMetrics, kubeNotReady } from './config/kube-health.ts';
import { objectName } from './config/kube-model.ts';
import { StatusWriter, kubeStatusPatch } from './config/status-writer.ts';
import { modelFromResources } from './config/model.ts';
import type { Resource } from '../api/resources.ts';
import { KubeTokenReviewer } from './certify/kube-token-reviewer.ts';
import type { TokenReviewer } from './certify/token-reviewer.ts';
import { startControlPlane, type ControlPlaneService, type HostPort, type Log } from './control-plane.ts';
import { parseDuration } from './duration.ts';
import { tracingFromEnv } from './tracing.ts';
import { inCluster, kubeClients } from './kube.ts';
import type { CaStore } from './store/ca-store.ts';
import { FileCaStore } from './store/file-store.ts';
import { DEFAULT_CA_SECRET, SecretCaStore, parseSecretRef } from './store/secret-store.ts';

export const USAGE = `usage: node control-plane/main.ts (--ca-file FILE | --ca-secret NS/NAME) [options]

The meshlet control plane: the certificate authority's Certify endpoint (HTTPS) and an admin
server. Each flag falls back to the environment variable in brackets (manifests/config.env).

CA state (one of):
  --ca-file FILE            a JSON file made by \`meshlet identity init\` (local / one machine)
  --ca-secret NS/NAME       a Kubernetes Secret made by \`meshlet install\` [MESHLET_CA_SECRET]
                            (default in a cluster: <namespace>/${DEFAULT_CA_SECRET.name})
Kubernetes:
  --kubeconfig FILE         API credentials (default: KUBECONFIG, ~/.kube/config, in-cluster).
                            With a Kubernetes API, service-account tokens are accepted as proof.
  --audience AUD            audience a workload's token must carry (default ${DEFAULT_AUDIENCE}) [MESHLET_IDENTITY_AUDIENCE]
  --namespace NS            the control plane's namespace: its own identity and Service names
                            (default ${DEFAULT_SYSTEM_NAMESPACE}) [MESHLET_NAMESPACE]
Serving:
  --trust-domain TD         must match the CA state (default ${DEFAULT_TRUST_DOMAIN}) [MESHLET_TRUST_DOMAIN]
  --listen HOST:PORT        Certify, POST /v1/certify (default 0.0.0.0:8443) [MESHLET_CONFIG_LISTEN]
  --admin-listen HOST:PORT  /live /ready /metrics /proxies /config-problems (default 127.0.0.1:9990) [MESHLET_ADMIN_LISTEN]
  --leaf-ttl DURATION       leaf lifetime, at most the CA's leaf TTL (default: that, 24h unless
                            set by \`meshlet identity init --leaf-ttl\`)
  --reload-interval DUR     how often the CA state is re-read to pick up rotations (default 10s)
  --ping-interval DUR       how often idle config streams are pinged; a proxy that hears nothing for
                            three of them reconnects (default 15s)
Proxy injector (the mutating admission webhook, POST /inject) and ServicePolicy validator
(the validating webhook, POST /validate), one HTTPS server (manifests/webhook):
  --webhook-listen H:P|off  HTTPS for the API server [MESHLET_WEBHOOK_LISTEN] (default in a cluster
                            0.0.0.0:9443, elsewhere off)
  --webhook-cert FILE       serving certificate chain (PEM) and key, e.g. from cert-manager; re-read
  --webhook-key FILE        when they change. Default: a certificate from the meshlet CA for
                            meshlet-webhook.<namespace>.svc (the webhook's caBundle is the trust bundle)
  What it injects comes from the environment (manifests/config.env): MESHLET_PROXY_IMAGE,
  MESHLET_PROXY_INIT_IMAGE, MESHLET_PROXY_NATIVE_SIDECAR (default true), MESHLET_CNI (default false:
  the meshlet-init container installs the interception rules), MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS
  (default 25,443,587,3306,4444,5432,6379,9300,11211: HTTPS, database and mail ports that bypass
  the proxy where a Pod does not set config.meshlet.io/skip-outbound-ports; empty for none; the
  link-local 169.254.0.0/16 always bypasses it too),
  MESHLET_DEFAULT_INBOUND_POLICY (default all-authenticated: only meshed, mTLS clients; all-unauthenticated
  lets unmeshed clients in where no AuthorizationPolicy guards the port; deny: only what a policy allows;
  a Pod's config.meshlet.io/default-inbound-policy replaces it), MESHLET_DEFAULT_OUTBOUND_PASSTHROUGH
  (default true: an app's plain-HTTP requests for hosts outside the mesh go to those hosts, as with
  Istio's ALLOW_ANY; false: a 404 no-route; a Pod's config.meshlet.io/outbound-passthrough replaces
  it). Proxies are pointed at
  https://meshlet-control-plane.<namespace>.svc:<--listen port> and the CA's trust bundle.
Mesh config (streamed to proxies on the Certify port, /v1/config/stream; status at admin /proxies):
  --config-dir DIR          a folder of meshlet YAML (MeshService, TrafficSplit, AuthorizationPolicy,
                            ServicePolicy), watched: saving a file applies it. Without it, and with
                            a Kubernetes API, the cluster's Services, EndpointSlices, Pods,
                            TrafficSplits, AuthorizationPolicies, ServicePolicies and HTTPRoutes
                            feed the same push; each TrafficSplit, AuthorizationPolicy and
                            ServicePolicy gets Accepted/ResolvedRefs status conditions, each
                            HTTPRoute an entry in status.parents per Service parent.
  -h, --help                this text
Traces: OTLP/HTTP export (a span per certify request and per config push) when the standard
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER) is set.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when it cannot start, 2 for bad usage.
`;

class UsageError extends Error {}

function hostPort(v: string, flag: string): HostPort {
  const hp = hostPortOrOff(v, flag);
  if (!hp) throw new UsageError(`${flag}: cannot be off`);
  return hp;
}

function hostPortOrOff(v: string, flag: string): HostPort | undefined {
  if (v === 'off') return undefined;
  const i = v.lastIndexOf(':');
  const port = Number(v.slice(i + 1));
  if (i <= 0 || !/^\d+$/.test(v.slice(i + 1)) || port > 65535) throw new UsageError(`${flag}: expected HOST:PORT, got ${JSON.stringify(v)}`);
  return { host: v.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

const log: Log = (level, msg, fields = {}) => {
  process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level, component: 'control-plane', msg, ...fields }) + '\n');
};

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'ca-file': { type: 'string' },
        'ca-secret': { type: 'string' },
        kubeconfig: { type: 'string' },
        audience: { type: 'string' },
        namespace: { type: 'string' },
        'trust-domain': { type: 'string' },
        listen: { type: 'string' },
        'admin-listen': { type: 'string' },
        'leaf-ttl': { type: 'string' },
        'reload-interval': { type: 'string' },
        'ping-interval': { type: 'string' },
        'config-dir': { type: 'string' },
        'webhook-listen': { type: 'string' },
        'webhook-cert': { type: 'string' },
        'webhook-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const namespace = values.namespace ?? env.MESHLET_NAMESPACE ?? DEFAULT_SYSTEM_NAMESPACE;
  const caFile = values['ca-file'];
  let caSecret = values['ca-secret'] ?? (caFile ? undefined : env.MESHLET_CA_SECRET);
  if (caFile && caSecret) throw new UsageError('--ca-file and --ca-secret are alternatives; pass one');
  if (!caFile && !caSecret) {
    if (!inCluster(env)) throw new UsageError('where is the CA? pass --ca-file FILE (create one with: meshlet identity init --ca-file FILE) or --ca-secret NS/NAME');
    caSecret = `${namespace}/${DEFAULT_CA_SECRET.name}`;
  }
  const listen = hostPort(values.listen ?? env.MESHLET_CONFIG_LISTEN ?? '0.0.0.0:8443', '--listen');
  const adminListen = hostPort(values['admin-listen'] ?? env.MESHLET_ADMIN_LISTEN ?? '127.0.0.1:9990', '--admin-listen');
  // Outside a cluster no API server calls the webhook (and a fixed port would clash between local runs).
  const webhookListen = hostPortOrOff(values['webhook-listen'] ?? env.MESHLET_WEBHOOK_LISTEN ?? (inCluster(env) ? '0.0.0.0:9443' : 'off'), '--webhook-listen');
  const [webhookCert, webhookKey] = [values['webhook-cert'], values['webhook-key']];
  if (!webhookCert !== !webhookKey) throw new UsageError('--webhook-cert and --webhook-key go together');
  let injectorModes: { nativeSidecar: boolean; cni: boolean; skipOutboundPorts: readonly number[]; defaultInboundPolicy: DefaultInboundPolicy; outboundPassthrough: boolean };
  try {
    injectorModes = {
      nativeSidecar: parseBool(env.MESHLET_PROXY_NATIVE_SIDECAR, 'MESHLET_PROXY_NATIVE_SIDECAR') ?? true,
      cni: parseBool(env.MESHLET_CNI, 'MESHLET_CNI') ?? false,
      skipOutboundPorts: parsePorts(env.MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS, 'MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS') ?? DEFAULT_SKIP_OUTBOUND_PORTS,
      defaultInboundPolicy: parseDefaultInboundPolicy(env.MESHLET_DEFAULT_INBOUND_POLICY, 'MESHLET_DEFAULT_INBOUND_POLICY') ?? 'all-authenticated',
      outboundPassthrough: parseBool(env.MESHLET_DEFAULT_OUTBOUND_PASSTHROUGH, 'MESHLET_DEFAULT_OUTBOUND_PASSTHROUGH') ?? true,
    };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const leafTtl = values['leaf-ttl'];
  let leafTtlMs: number | undefined;
  let reloadIntervalMs: number;
  try {
    leafTtlMs = leafTtl === undefined ? undefined : parseDuration(leafTtl, '--leaf-ttl');
    reloadIntervalMs = parseDuration(values['reload-interval'] ?? '10s', '--reload-interval');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const secretRef = caSecret ? (() => {
    try {
      return parseSecretRef(caSecret);
    } catch (e) {
      throw new UsageError(`--ca-secret: ${(e as Error).message}`);
    }
  })() : undefined;

  // Kubernetes API: for the Secret store and for TokenReview (proof of service-account identity).
  const kubeconfig = values.kubeconfig;
  let reviewer: TokenReviewer | undefined;
  let store: CaStore;
  let kube: Awaited<ReturnType<typeof kubeClients>> | undefined;
  if (kubeconfig || secretRef || inCluster(env)) {
    kube = await kubeClients(kubeconfig);
    reviewer = new KubeTokenReviewer(kube.authn);
    store = secretRef ? new SecretCaStore(kube.core, secretRef) : new FileCaStore(caFile as string);
    log('info', 'Kubernetes API', { server: kube.server });
  } else {
    store = new FileCaStore(caFile as string);
  }

  // The mesh config: a folder (--config-dir) or, with a Kubernetes API, the cluster's Services,
  // EndpointSlices, Pods and meshlet CRs. Both feed the same model → per-proxy views → push.
  const registry = new Registry();
  const views = new MeshViews();
  const tracing = await tracingFromEnv(env);
  const push = new ConfigPushServer({ views, clock: systemClock, registry, log: (msg, fields) => log('info', msg, fields), tracer: tracing.tracer, pingMs: parseDuration(values['ping-interval'] ?? '15s', '--ping-interval') });
  const trustDomain = values['trust-domain'] ?? env.MESHLET_TRUST_DOMAIN ?? DEFAULT_TRUST_DOMAIN;
  const configDir = values['config-dir'];
  let folder: FolderSource | undefined;
  let kubeSource: KubernetesSource | undefined;
  let statusWriter: StatusWriter | undefined;
  const applyModel = (resources: readonly Resource[], problems: readonly { file: string; object?: string; path: string; message: string }[]) => {
    for (const p of problems) log('warn', 'config problem (the rest applies)', { file: p.file, object: p.object ?? null, path: p.path, message: p.message });
    const translation = views.set(modelFromResources(resources, { trustDomain }));
    for (const p of translation) log('warn', 'config problem (the rest applies)', { object: p.object, path: p.path, message: p.message });
    push.changed();
  };

  // The Kubernetes source (built once the CA is loaded, below): its readiness and metrics.
  const kubeMode = !configDir && kube !== undefined;
  const kubeMetrics = kubeMode ? new KubeSourceMetrics(registry, () => kubeSource?.status()) : undefined;
  const kubeReadiness: ControlPlaneService = { name: 'config', start: async () => {}, notReady: () => kubeNotReady(kubeSource?.status()), close: async () => {} };

  // The proxy injector, served once the CA is loaded (its certificate and the bundle it injects come from it).
  const audience = values.audience ?? env.MESHLET_IDENTITY_AUDIENCE ?? DEFAULT_AUDIENCE;
  const webhook = webhookListen && createWebhook({
    listen: webhookListen,
    credentials: ({ ca }) =>
      webhookCert && webhookKey
        ? fileCredentials({ certFile: webhookCert, keyFile: webhookKey, clock: { now: () => Date.now() } })
        : caCredentials({ ca, names: { ...DEFAULT_SERVING_NAMES, service: WEBHOOK_SERVICE, namespace }, wallClock: systemWallClock }),
    settings: (doc) => defaultSettings({
      proxyImage: env.MESHLET_PROXY_IMAGE || DEFAULT_PROXY_IMAGE,
      initImage: env.MESHLET_PROXY_INIT_IMAGE || DEFAULT_INIT_IMAGE,
      ...injectorModes,
      controlPlane: `https://${CONTROL_PLANE_SERVICE_ACCOUNT}.${namespace}.svc:${listen.port}`,
      controlPlaneIdentity: controlPlaneIdentity(trustDomain, namespace).uri,
      audience,
      trustAnchorsPem: doc ? trustBundle(doc.state).join('') : '',
    }),
    metrics: new InjectorMetrics(registry),
    validationMetrics: new ValidationMetrics(registry),
    log,
    clock: systemClock,
  });
  const cp = await startControlPlane({
    store,
    trustDomain: values['trust-domain'] ?? env.MESHLET_TRUST_DOMAIN ?? DEFAULT_TRUST_DOMAIN,
    listen,
    adminListen,
    leafTtlMs,
    reviewer,
    audience,
    servingNames: { ...DEFAULT_SERVING_NAMES, namespace },
    reloadIntervalMs,
    // A Secret may be created after the control plane starts (meshlet install); a file is typed by hand.
    waitForCa: secretRef !== undefined,
    wallClock: systemWallClock,
    clock: systemClock,
    log,
    // Local (folder) mode: the config stream is another issue. It plugs in here as
    // `routes: { '/v1/config': ... }` on the Certify port and/or `services: [folderConfigServer]`.
    registry,
    tracer: tracing.tracer,
    // The trust bundle joins every view as the CA state is put in force: before Certify (and so
    // the config stream) serves, so a proxy's first config carries it; on a rotation, at once.
    onCa: (doc) => {
      if (views.setTrustBundle(trustBundle(doc.state))) push.changed();
    },
    routes: push.routes(),
    documents: {
      '/proxies': () => push.status(),
      // The Kubernetes source's problems include the translation's, and those of objects it could not use at all (HTTPRoute rules).
      // Object, path and message: a problem's effect is for the objects' status (resource-status.ts).
      '/config-problems': () => [
        ...(folder?.current().problems ?? []),
        ...(kubeSource ? kubeSource.problems.map((p) => ({ object: objectName(p), path: p.field, message: p.message })) : views.problems.map(({ object, path, message }) => ({ object, path, message }))),
      ],
    },
    // With a Kubernetes source: not ready until it has listed (no proxy is sent config before).
    services: [...(webhook ? [webhook] : []), ...(kubeMode ? [kubeReadiness] : [])],
    ...(kubeMode ? { readyStatus: () => ({ kubernetes: kubeSource?.status() ?? null }) } : {}),
  });
  if (configDir) {
    folder = new FolderSource({ dir: configDir, onChange: (snap) => applyModel(snap.resources, snap.problems), log });
    const first = await folder.start();
    applyModel(first.resources, first.problems);
    log('info', 'config folder loaded', { dir: configDir, resources: first.resources.length, problems: first.problems.length });
  } else if (kube) {
    // Each TrafficSplit's, AuthorizationPolicy's and ServicePolicy's Accepted/ResolvedRefs, and our entries of each
    // HTTPRoute's status.parents, from the problems /config-problems lists; written only where the object says something else (every replica
    // writes the same, see status-writer.ts).
    const writer = new StatusWriter({ patch: kubeStatusPatch(kube.kc), wallClock: systemWallClock, clock: systemClock, log });
    statusWriter = writer;
    kubeSource = new KubernetesSource({
      kc: kube.kc,
      model: { trustDomain },
      onChange: (model, problems) => {
        for (const p of problems) log('warn', 'config problem (the rest applies)', { object: objectName(p), path: p.field, message: p.message });
        for (const p of views.set(model)) log('warn', 'config problem (the rest applies)', { object: p.object, path: p.path, message: p.message });
        push.changed();
      },
      onObjects: (objects, problems) => writer.update(objects, problems),
      onError: (e) => {
        log('warn', 'Kubernetes watch failed; restarting it', { source: e.source, error: e.message });
        if (e.restartInMs !== undefined && e.source !== 'discovery') kubeMetrics?.restarted(e.source as WatchedKind);
      },
    });
    // Not awaited: Certify must serve (pods start on it) while the source lists. Until its first
    // model there is no view: the config stream sends nothing, so a proxy that resumes after a
    // restart keeps what it runs and a new one waits (not ready) rather than run an empty mesh.
    void kubeSource.start().then(
      () => log('info', 'Kubernetes config source listed', {}),
      (e: Error) => log('error', 'Kubernetes config source failed', { error: e.message }),
    );
  } else {
    views.set(modelFromResources([], { trustDomain }));
  }
  log('info', 'admin listening', { listen: `${cp.admin.address}:${cp.admin.port}` });

  let stopping: Promise<void> | undefined;
  const stop = (signal: string): Promise<void> =>
    (stopping ??= (async () => {
      log('info', 'stopping', { signal });
      await folder?.close();
      await kubeSource?.stop();
      statusWriter?.stop();
      push.close();
      await cp.close();
      await tracing.shutdown().catch(() => {});
      log('info', 'stopped');
    })());
  const stopped = new Promise<number>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void stop(sig).then(() => resolve(0)));
  });
  const failed = cp.started.then(
    () => new Promise<number>(() => {}),
    async (e: Error) => {
      if (stopping) return 0;
      log('error', 'cannot start', { error: e.message });
      await cp.close();
      return 1;
    },
  );
  return Promise.race([stopped, failed]);
}

main(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (e: Error) => {
    if (e instanceof UsageError) {
      process.stderr.write(`control-plane: ${e.message}\n(see node control-plane/main.ts --help)\n`);
      process.exit(2);
    }
    log('error', 'cannot start', { error: e.message });
    process.exit(1);
  },
);
