// `meshlet inject -f FILE|-`: the proxy injected into every Pod template of a manifest, written to
// stdout (the webhook's inject(), applied client side). Guarantees: a refused Pod writes nothing and exits 1.
import { readFileSync } from 'node:fs';
import { text as readStream } from 'node:stream/consumers';
import { parseArgs } from 'node:util';
import { CA_BUNDLE_KEY, DEFAULT_CA_SECRET } from '../../store/secret-store.ts';
import { controlPlaneIdentity, CONTROL_PLANE_SERVICE_ACCOUNT, DEFAULT_SYSTEM_NAMESPACE } from '../../certify/serving-cert.ts';
import { DEFAULT_TRUST_DOMAIN } from '../../ca/index.ts';
import { transformManifests } from '../../../injector/manifests.ts';
import { DEFAULT_INIT_IMAGE, DEFAULT_PROXY_IMAGE, DEFAULT_SKIP_OUTBOUND_PORTS, defaultSettings, parseBool, parsePorts } from '../../../injector/settings.ts';
import { parseDefaultInboundPolicy } from '../../../api/default-inbound-policy.ts';
import { CliError, EXIT_FAILURE, EXIT_OK, HELP_FLAG, UsageError, guarded, type Command, type Io } from '../command.ts';

const USAGE = `usage: meshlet inject -f FILE|- --trust-anchors FILE [options] > injected.yaml

Adds the meshlet proxy to every Pod template in a manifest — Pods, Deployments, StatefulSets,
DaemonSets, ReplicaSets, Jobs, CronJobs, Lists, multi-document YAML (or one JSON object) — the
same way the injector webhook does. Other objects, comments and key order are kept; merge keys
(<<: *base) count as Kubernetes counts them (a document whose proxy would go in through an alias
or a merge key is written resolved, without its anchors and comments). Already
injected or opted-out (meshlet.io/inject: disabled) templates and host-network Pods are left as
they are. config.meshlet.io/* annotations on a template apply (README: "The injector").

  -f, --filename FILE        the manifest; - reads stdin
  --trust-anchors FILE       PEM trust bundle the proxies check the control plane against, e.g.
                               kubectl get secret -n ${DEFAULT_SYSTEM_NAMESPACE} ${DEFAULT_CA_SECRET.name} \\
                                 -o jsonpath='{.data.${CA_BUNDLE_KEY.replace('.', '\\.')}}' | base64 -d > anchors.pem
                             (default: env MESHLET_TRUST_ANCHORS_PEM)
  --namespace NS             the control plane's namespace (default ${DEFAULT_SYSTEM_NAMESPACE})
  --trust-domain TD          (default ${DEFAULT_TRUST_DOMAIN})
  --control-plane URL        (default https://${CONTROL_PLANE_SERVICE_ACCOUNT}.<namespace>.svc:8443)
  --proxy-image IMAGE        (default ${DEFAULT_PROXY_IMAGE})
  --init-image IMAGE         (default ${DEFAULT_INIT_IMAGE})
  --sidecar native|regular   native (default): an init container with restartPolicy Always
                             (Kubernetes ≥ 1.29); regular: a first container held until ready
  --cni                      a CNI plugin installs the interception rules: no meshlet-init
  --default-inbound-policy P all-authenticated (default: meshed, mTLS clients only),
                             all-unauthenticated (unmeshed, plaintext clients too) or deny, where
                             no AuthorizationPolicy guards a port; as the cluster's
                             MESHLET_DEFAULT_INBOUND_POLICY: a template's
                             config.meshlet.io/default-inbound-policy replaces it
  --skip-outbound-ports L    destination ports that bypass the proxy in templates without
                             config.meshlet.io/skip-outbound-ports, as the cluster's
                             MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS (default
                             ${DEFAULT_SKIP_OUTBOUND_PORTS.join(',')}; "" for none)
  --outbound-passthrough B   true (default): the app's plain-HTTP requests for hosts outside the
                             mesh go to those hosts; false: a 404 no-route. As the cluster's
                             MESHLET_DEFAULT_OUTBOUND_PASSTHROUGH: a template's
                             config.meshlet.io/outbound-passthrough replaces it
  -q, --quiet                no per-object report on stderr

Exit codes: 0 written, 1 a template was refused (bad annotation; nothing written) or the input
is not YAML, 2 bad usage.
`;

async function readInput(file: string): Promise<string> {
  if (file === '-') return readStream(process.stdin);
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

export const inject: Command = {
  name: 'inject',
  summary: 'add the meshlet proxy to every Pod template of a manifest (file or stdin), to stdout',
  run: (args: string[], io: Io) =>
    guarded('inject', io, async () => {
      let values;
      try {
        ({ values } = parseArgs({
          args,
          options: {
            filename: { type: 'string', short: 'f' },
            'trust-anchors': { type: 'string' },
            namespace: { type: 'string' },
            'trust-domain': { type: 'string' },
            'control-plane': { type: 'string' },
            'proxy-image': { type: 'string' },
            'init-image': { type: 'string' },
            sidecar: { type: 'string' },
            cni: { type: 'boolean' },
            'default-inbound-policy': { type: 'string' },
            'skip-outbound-ports': { type: 'string' },
            'outbound-passthrough': { type: 'string' },
            quiet: { type: 'boolean', short: 'q' },
            help: HELP_FLAG,
          },
          strict: true,
          allowPositionals: false,
        }));
      } catch (e) {
        throw new UsageError('inject', (e as Error).message);
      }
      if (values.help) {
        io.stdout(USAGE);
        return EXIT_OK;
      }
      const file = values.filename;
      if (!file) throw new UsageError('inject', 'which manifest? pass -f FILE, or -f - to read stdin');
      const sidecar = values.sidecar ?? 'native';
      if (sidecar !== 'native' && sidecar !== 'regular') throw new UsageError('inject', `--sidecar ${sidecar}: want native or regular`);
      let defaultInboundPolicy;
      let skipOutboundPorts;
      let outboundPassthrough;
      try {
        defaultInboundPolicy = parseDefaultInboundPolicy(values['default-inbound-policy'], '--default-inbound-policy') ?? 'all-authenticated';
        // Given but empty: no port bypasses the proxy.
        skipOutboundPorts = parsePorts(values['skip-outbound-ports'], '--skip-outbound-ports') ?? DEFAULT_SKIP_OUTBOUND_PORTS;
        outboundPassthrough = parseBool(values['outbound-passthrough'], '--outbound-passthrough') ?? true;
      } catch (e) {
        throw new UsageError('inject', (e as Error).message);
      }
      let anchors = io.env.MESHLET_TRUST_ANCHORS_PEM;
      if (values['trust-anchors']) {
        try {
          anchors = readFileSync(values['trust-anchors'], 'utf8');
        } catch (e) {
          throw new CliError(`cannot read --trust-anchors ${values['trust-anchors']}: ${(e as Error).message}`);
        }
      }
      if (!anchors) throw new UsageError('inject', 'the proxies need the trust anchors: pass --trust-anchors FILE (see --help for the kubectl line that writes it)');
      if (!anchors.includes('-----BEGIN CERTIFICATE-----')) throw new CliError('the trust anchors are not PEM certificates', 'Pass the ca.crt of the CA Secret, decoded (see --help).');
      const namespace = values.namespace ?? DEFAULT_SYSTEM_NAMESPACE;
      const settings = defaultSettings({
        trustAnchorsPem: anchors,
        controlPlane: values['control-plane'] ?? `https://${CONTROL_PLANE_SERVICE_ACCOUNT}.${namespace}.svc:8443`,
        controlPlaneIdentity: controlPlaneIdentity(values['trust-domain'] ?? DEFAULT_TRUST_DOMAIN, namespace).uri,
        proxyImage: values['proxy-image'] ?? DEFAULT_PROXY_IMAGE,
        initImage: values['init-image'] ?? DEFAULT_INIT_IMAGE,
        nativeSidecar: sidecar === 'native',
        cni: values.cni === true,
        defaultInboundPolicy,
        skipOutboundPorts,
        outboundPassthrough,
      });
      const input = await readInput(file);
      const where = file === '-' ? 'stdin' : file;
      const r = transformManifests(input, settings);
      if (r.errors.length > 0) throw new CliError(`${where} is not valid YAML: ${r.errors.join('; ')}`);
      const refused = r.reports.filter((x) => x.result.outcome === 'refused');
      if (refused.length > 0) {
        for (const x of refused) if (x.result.outcome === 'refused') io.stderr(`meshlet inject: ${x.what}: ${x.result.message}\n`);
        io.stderr(`meshlet inject: nothing written: fix the template${refused.length > 1 ? 's' : ''} above\n`);
        return EXIT_FAILURE;
      }
      io.stdout(r.output);
      if (!values.quiet) {
        for (const x of r.reports) {
          const how = x.result.outcome === 'injected' ? `injected (${x.result.mode})` : x.result.outcome === 'skipped' ? `skipped (${x.result.skipped})` : '';
          io.stderr(`${x.what} ${how}\n`);
        }
        if (r.reports.length === 0) io.stderr(`meshlet inject: no Pod templates in ${where}; written unchanged\n`);
      }
      return EXIT_OK;
    }),
};
