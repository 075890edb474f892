// `meshlet proxy`: the sidecar's process entry. Parses flags, starts the proxy, logs JSON lines
// to stderr, and on SIGTERM/SIGINT drains (stop accepting, finish in-flight, exit).
import { parseArgs } from 'node:util';
import { systemClock, systemRandom } from '../api/runtime.ts';
import { startProxy, type HostPort } from './proxy.ts';
import { tracingFromEnv } from './telemetry/trace.ts';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { HttpsCertifyClient } from './identity/certify-client.ts';
import { systemWallClock } from './identity/identity.ts';
import { parseAppPorts } from './inbound/app-port.ts';
import { parseProbePaths } from '../api/probe-paths.ts';
import { parseOutboundNamespaces } from '../api/outbound-namespaces.ts';
import { parseDefaultInboundPolicy } from '../api/default-inbound-policy.ts';
import { parseDownwardLabels, type PodLabels } from '../api/pod-labels.ts';

export const USAGE = `usage: node proxy/main.ts (--config FILE | --control-plane URL --trust-anchors FILE ...) [options]

  --config FILE            proxy config document (JSON or YAML); reloaded when it changes.
                           Without it, config streams from --control-plane.
  --outbound-listen H:P    the app's outgoing requests (default 127.0.0.1:4140; "off" to disable)
  --inbound-listen H:P     requests for the app (default 0.0.0.0:4143; "off" to disable)
  --app H:P                the local application (default 127.0.0.1:8080); its other ports
                           in MESHLET_APP_PORTS (comma list), and the inbound listeners of those
                           in MESHLET_INBOUND_PORT_MAP (APP_PORT=PROXY_PORT,...: one listener each,
                           on --inbound-listen's host), both set by the injector; the paths
                           the kubelet probes in plaintext in MESHLET_PROBE_PATHS (JSON, e.g.
                           {"8080":["/healthz"]}: a plaintext GET of one passes a strict port);
                           this Pod's default inbound policy in MESHLET_DEFAULT_INBOUND_POLICY
                           (all-unauthenticated: every app port also takes plaintext and any peer
                           is allowed where no AuthorizationPolicy guards the port; all-authenticated;
                           deny), which replaces the config's inbound.defaultPolicy; unset: the config's
  --admin-listen H:P       /live /ready /metrics /config /errors (default 127.0.0.1:4191)
  --workload NAME          this workload's name (metrics labels; default "unknown")
  --namespace NS           this workload's namespace (default "default")
  --service NAME           this workload's service (inbound metrics; default the workload)
  --access-log WHERE       stdout (default), stderr or off
  --drain-grace MS         how long in-flight requests and open WebSocket/upgrade tunnels
                           may finish on SIGTERM (default 30000)
  --max-header-size BYTES  larger request heads get 431 (default 16384)
  --log-level LEVEL        debug, info (default), warn or error [MESHLET_LOG_LEVEL]; the access
                           log is separate (--access-log)

identity (mTLS between proxies; without --control-plane the proxy runs in plaintext mode):
  --control-plane URLS     https://host:port of the control plane (Certify and the config stream);
                           comma-separated replicas are used in turn when one fails
  --trust-anchors FILE     PEM trust anchors the control plane's certificate chains to
                           (default: the PEM in env MESHLET_TRUST_ANCHORS_PEM, set by the injector)
  --identity-token-file F  a projected service-account token (audience meshlet), re-read on renewal
  --bootstrap-token-file F a bootstrap token from \`meshlet identity bootstrap-token\` (one machine)
  --pod NAME               this pod's name (status; default the host name)
  --pod-labels-file F      the Pod's labels as the kubelet writes metadata.labels (downward API),
                           re-read at each connect and every 10 s: the control plane adds the
                           Services whose selector matches them to what this proxy serves
  --outbound-namespaces L  comma list of namespaces whose services this proxy needs besides its
                           own [MESHLET_OUTBOUND_NAMESPACES]: its view holds only those (and the
                           split backends they route to), not the whole mesh; "" its own
                           namespace only; unset: all
  --outbound-passthrough B  true: a request for a host outside the mesh (no service of the config
                           names it) goes to that host, in plaintext, on the Host's port; false
                           (default): a 404 no-route [MESHLET_OUTBOUND_PASSTHROUGH, set by the
                           injector]. Never for loopback hosts, the proxy's own ports, single-label
                           names or names under .svc (those stay a 404 that says why)
  --refuse-config-version RE  test hook: NACK streamed config versions matching RE
  --control-plane-identity ID  the SPIFFE ID the control plane must present
                           (default spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane)

Traces: OTLP/HTTP export (a server span per inbound request, a client span per outbound one) when
the standard OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; the
service name defaults to meshlet-proxy/<workload>.

Exit codes: 0 after SIGTERM/SIGINT and the drain, 1 when it cannot start (a port in use), 2 for
bad usage or a bad value (a flag, MESHLET_* above).
`;

/** "true" or "false"; undefined when unset or empty. */
function parseTrueFalse(v: string | undefined, what: string): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  if (v === 'true' || v === 'false') return v === 'true';
  throw new Error(`${what}: expected true or false, got ${JSON.stringify(v)}`);
}

function hostPort(v: string, flag: string): HostPort | undefined {
  if (v === 'off') return undefined;
  const i = v.lastIndexOf(':');
  const port = Number(v.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${flag}: expected HOST:PORT, got "${v}"`);
  return { host: v.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

/** The Pod's labels from the downward-API file; throws with the file and what is wrong. */
function readPodLabels(file: string): PodLabels {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`--pod-labels-file ${file}: ${(e as Error).message}`, { cause: e });
  }
  const r = parseDownwardLabels(text);
  if (!r.ok) throw new Error(`--pod-labels-file ${file}: ${r.problem} (want the kubelet's downward-API file of metadata.labels)`);
  return r.labels;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type Log = (msg: string, fields?: Record<string, unknown>) => void;

/** The proxy's log: JSON lines on stderr, `fields.level` (default info) at or above `min`. */
function makeLog(min: string, write: (line: string) => void = (l) => process.stderr.write(l)): Log {
  const floor = LOG_LEVELS.indexOf(min as (typeof LOG_LEVELS)[number]);
  if (floor < 0) throw new Error(`--log-level / MESHLET_LOG_LEVEL: "${min}" is not one of ${LOG_LEVELS.join(', ')}`);
  return (msg, fields = {}) => {
    const level = typeof fields['level'] === 'string' ? fields['level'] : 'info';
    if (LOG_LEVELS.indexOf(level as (typeof LOG_LEVELS)[number]) < floor) return;
    write(JSON.stringify({ ts: new Date().toISOString(), level, component: 'proxy', msg, ...fields }) + '\n');
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      'outbound-listen': { type: 'string', default: '127.0.0.1:4140' },
      'inbound-listen': { type: 'string', default: '0.0.0.0:4143' },
      app: { type: 'string', default: '127.0.0.1:8080' },
      'admin-listen': { type: 'string', default: '127.0.0.1:4191' },
      workload: { type: 'string', default: 'unknown' },
      namespace: { type: 'string', default: 'default' },
      service: { type: 'string' },
      'access-log': { type: 'string', default: 'stdout' },
      'drain-grace': { type: 'string', default: '30000' },
      'max-header-size': { type: 'string', default: '16384' },
      'log-level': { type: 'string' },
      'control-plane': { type: 'string' },
      'trust-anchors': { type: 'string' },
      'identity-token-file': { type: 'string' },
      'bootstrap-token-file': { type: 'string' },
      pod: { type: 'string' },
      'pod-labels-file': { type: 'string' },
      'outbound-namespaces': { type: 'string' },
      'outbound-passthrough': { type: 'string' },
      'refuse-config-version': { type: 'string' },
      'control-plane-identity': { type: 'string', default: 'spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const log = makeLog(values['log-level'] ?? process.env['MESHLET_LOG_LEVEL'] ?? 'info');
  if (!values.config && !values['control-plane']) throw new Error('--config FILE or --control-plane URL is required');
  const app = hostPort(values.app, '--app');
  const admin = hostPort(values['admin-listen'], '--admin-listen');
  if (!app || !admin) throw new Error('--app and --admin-listen cannot be off');
  const inbound = hostPort(values['inbound-listen'], '--inbound-listen');
  const outbound = hostPort(values['outbound-listen'], '--outbound-listen');
  const appPorts = parseAppPorts(process.env['MESHLET_APP_PORTS'], app.port, inbound?.port, process.env['MESHLET_INBOUND_PORT_MAP'], { '--outbound-listen': outbound?.port, '--admin-listen': admin.port });
  const probes = parseProbePaths(process.env['MESHLET_PROBE_PATHS'], appPorts.ports);
  const outboundPassthrough = parseTrueFalse(values['outbound-passthrough'] ?? process.env['MESHLET_OUTBOUND_PASSTHROUGH'], '--outbound-passthrough / MESHLET_OUTBOUND_PASSTHROUGH') ?? false;
  const defaultInboundPolicy = parseDefaultInboundPolicy(process.env['MESHLET_DEFAULT_INBOUND_POLICY'], 'MESHLET_DEFAULT_INBOUND_POLICY');
  const self = { workload: values.workload, namespace: values.namespace, service: values.service ?? values.workload };
  const { tracing, shutdown } = await tracingFromEnv(process.env, `meshlet-proxy/${self.workload}`);
  const labelsFile = values['pod-labels-file'];
  if (labelsFile && !values['control-plane']) throw new Error('--pod-labels-file needs --control-plane (the labels go to it)');
  const podLabels = labelsFile ? () => readPodLabels(labelsFile) : undefined;
  const namespacesValue = values['outbound-namespaces'] ?? process.env['MESHLET_OUTBOUND_NAMESPACES'];
  // Set but empty: its own namespace only; unset: the whole mesh.
  const namespaces = namespacesValue === undefined ? undefined : parseOutboundNamespaces(namespacesValue);
  if (namespaces && !namespaces.ok) throw new Error(`--outbound-namespaces / MESHLET_OUTBOUND_NAMESPACES: ${namespaces.problem}`);
  if (namespaces && !values['control-plane']) throw new Error('--outbound-namespaces needs --control-plane (it narrows the view the control plane sends)');
  podLabels?.(); // unreadable or malformed labels stop the proxy here, with the reason
  const where = values['access-log'];
  let certify: HttpsCertifyClient | undefined;
  if (values['control-plane']) {
    // In a Pod the injector passes the bundle inline: a ConfigMap in meshlet-system cannot be mounted elsewhere.
    const anchors = values['trust-anchors'] ? readFileSync(values['trust-anchors'], 'utf8') : process.env.MESHLET_TRUST_ANCHORS_PEM;
    if (!anchors) throw new Error('--control-plane needs --trust-anchors (or env MESHLET_TRUST_ANCHORS_PEM)');
    const tokenFile = values['identity-token-file'];
    const bootstrapFile = values['bootstrap-token-file'];
    if (!tokenFile === !bootstrapFile) throw new Error('--control-plane needs exactly one of --identity-token-file and --bootstrap-token-file');
    certify = new HttpsCertifyClient({
      urls: values['control-plane'].split(','),
      identity: values['control-plane-identity'],
      trustAnchors: anchors,
      proof: tokenFile ? { kind: 'kubernetes', tokenFile } : { kind: 'bootstrap', token: readFileSync(bootstrapFile!, 'utf8').trim() },
    });
  } else log('no --control-plane: plaintext mode (no identity, no mTLS)', { level: 'warn' });
  // From here on a failure is the machine's (a port in use, a file gone), not the command line's: exit 1.
  const proxy = await startProxy({
    self,
    configFile: values.config,
    configStream: values['control-plane']
      ? {
          urls: values['control-plane'].split(','),
          controlPlaneIdentity: values['control-plane-identity'],
          pod: values.pod ?? hostname(),
          ...(values['refuse-config-version'] ? { refuseVersion: new RegExp(values['refuse-config-version']) } : {}),
          ...(podLabels ? { labels: podLabels } : {}),
          ...(namespaces?.ok ? { namespaces: namespaces.namespaces } : {}),
        }
      : undefined,
    outbound,
    inbound,
    app,
    appPorts,
    probes,
    defaultInboundPolicy,
    outboundPassthrough,
    admin,
    clock: systemClock,
    random: systemRandom,
    tracing,
    accessLog: where === 'off' ? undefined : where === 'stderr' ? process.stderr : process.stdout,
    maxHeaderSize: Number(values['max-header-size']),
    log,
    certify,
    wallClock: systemWallClock,
  }).catch((err: Error) => {
    throw new StartFailed(err.message, { cause: err });
  });
  log('proxy started', {
    outbound: proxy.outbound && `${proxy.outbound.address}:${proxy.outbound.port}`,
    inbound: proxy.inbound && `${proxy.inbound.address}:${proxy.inbound.port}`,
    // Which listener serves which app port (iptables sends each app port to its own listener).
    ...(proxy.inboundListeners.length > 1 ? { inboundByAppPort: Object.fromEntries(proxy.inboundListeners.map((l) => [l.appPort, `${l.address.address}:${l.address.port}`])) } : {}),
    admin: `${proxy.admin.address}:${proxy.admin.port}`,
    ...(defaultInboundPolicy ? { defaultInboundPolicy } : {}),
    ...(outboundPassthrough ? { outboundPassthrough } : {}),
    version: proxy.store.current?.version ?? null,
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const grace = Number(values['drain-grace']);
    log('draining', { signal, graceMs: grace });
    void proxy
      .drain(grace)
      .then(() => shutdown())
      .finally(() => {
        log('stopped');
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** The proxy could not start with a valid command line (a listener's port in use...): exit 1, no usage. */
class StartFailed extends Error {}

main().catch((err: Error) => {
  if (err instanceof StartFailed) {
    process.stderr.write(`meshlet proxy: cannot start: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`meshlet proxy: ${err.message}\n\n${USAGE}`);
  process.exit(2);
});
