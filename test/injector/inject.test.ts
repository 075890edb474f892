// inject(pod, settings): every rule of the patch, checked by applying it (RFC 6902, fast-json-patch)
// to realistic Pods: what is added, what is never touched, idempotence, escaping, overrides and refusals.
import { readFileSync } from 'node:fs';
import jsonpatch from 'fast-json-patch';
import t from 'tap';
import { isMeshedPod } from '../../control-plane/config/kube-model.ts';
import { parseDownwardLabels } from '../../api/pod-labels.ts';
import { OVERRIDES, quantityValue } from '../../injector/annotations.ts';
import { POD_INFO_DIR, POD_INFO_VOLUME, TOKEN_DIR, TOKEN_VOLUME, TMP_VOLUME, appPorts, heapCapMb, inboundPortMap, inject, pointerToken, workloadName, type InjectResult, type PodLike } from '../../injector/inject.ts';
import { ADMIN_PORT, ADMIN_PORT_NAME, DEFAULT_SKIP_OUTBOUND_PORTS, INBOUND_PORT, OUTBOUND_PORT, PROXY_UID, defaultSettings, parsePorts, type InjectSettings } from '../../injector/settings.ts';

const ANCHORS = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const settings = (o: Partial<InjectSettings> = {}): InjectSettings => defaultSettings({ trustAnchorsPem: ANCHORS, ...o });

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function basePod(): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-abc', namespace: 'shop', labels: { app: 'web' }, annotations: { 'team.example/owner': 'payments' } },
    spec: {
      initContainers: [{ name: 'migrate', image: 'app:1' }],
      containers: [
        { name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }, { containerPort: 9000, protocol: 'UDP' }, { containerPort: 8443, protocol: 'TCP' }] },
        { name: 'worker', image: 'app:1', ports: [{ containerPort: 8080 }] },
      ],
      volumes: [{ name: 'data', emptyDir: {} }],
    },
  };
}

function apply(pod: Json, r: InjectResult): Json {
  const invalid = jsonpatch.validate(r.patch, structuredClone(pod));
  if (invalid) throw new Error(`the patch is not valid RFC 6902 for this document: ${invalid.message}`);
  return jsonpatch.applyPatch(structuredClone(pod), r.patch, true, false).newDocument as Json;
}
const injected = (r: InjectResult): InjectResult & { outcome: 'injected' } => {
  if (r.outcome !== 'injected') throw new Error(`expected injected, got ${JSON.stringify(r)}`);
  return r;
};
const refused = (r: InjectResult): InjectResult & { outcome: 'refused' } => {
  if (r.outcome !== 'refused') throw new Error(`expected refused, got ${JSON.stringify(r).slice(0, 300)}`);
  return r;
};
const envOf = (c: Json): Record<string, unknown> => Object.fromEntries((c.env as Json[]).map((e) => [e.name, e.value ?? e.valueFrom]));
const argOf = (c: Json, flag: string): string | undefined => {
  const i = (c.args as string[]).indexOf(flag);
  return i < 0 ? undefined : (c.args as string[])[i + 1];
};

t.test('default (native sidecar): meshlet-init then meshlet-proxy in front of the user init containers', async (t) => {
  const pod = basePod();
  const r = injected(inject(pod, settings()));
  t.equal(r.mode, 'native-sidecar');
  t.ok(r.patch.every((op) => op.op === 'add'), 'only add operations');
  const out = apply(pod, r);
  t.same(out.spec.initContainers.map((c: Json) => c.name), ['meshlet-init', 'meshlet-proxy', 'migrate']);
  t.same(out.spec.containers.map((c: Json) => c.name), ['app', 'worker'], 'regular containers untouched');
  const proxy = out.spec.initContainers[1];
  t.equal(proxy.restartPolicy, 'Always', 'a native sidecar');
  t.same(proxy.startupProbe.httpGet, { path: '/ready', port: ADMIN_PORT }, 'the app starts once /ready answers');
  t.same(proxy.readinessProbe.httpGet, { path: '/ready', port: ADMIN_PORT });
  t.same(proxy.livenessProbe.httpGet, { path: '/live', port: ADMIN_PORT });
  t.equal(proxy.lifecycle, undefined, 'no postStart hold in native mode');
  t.same(proxy.securityContext, {
    runAsUser: PROXY_UID, runAsGroup: PROXY_UID, runAsNonRoot: true, readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
  });
  t.same(proxy.resources, { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } }, 'defaults: no CPU limit');
  t.equal(envOf(proxy).NODE_OPTIONS, '--max-old-space-size=128', 'the heap cap: half the memory limit');
  t.same(proxy.ports, [{ name: 'meshlet-inbound', containerPort: INBOUND_PORT, protocol: 'TCP' }, { name: ADMIN_PORT_NAME, containerPort: ADMIN_PORT, protocol: 'TCP' }]);
  t.equal(isMeshedPod(out), true, "the control plane's rule sees a meshed Pod");
});

t.test('proxy args and env: identity inputs, control plane, trust anchors, app ports', async (t) => {
  const out = apply(basePod(), inject(basePod(), settings({ controlPlane: 'https://cp.example:8443', controlPlaneIdentity: 'spiffe://td/ns/x/sa/cp' })));
  const proxy = out.spec.initContainers[1];
  const env = envOf(proxy);
  t.same(env.MESHLET_POD_NAME, { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } });
  t.same(env.MESHLET_POD_NAMESPACE, { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } });
  t.same(env.MESHLET_SERVICE_ACCOUNT, { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.serviceAccountName' } });
  t.equal(env.MESHLET_CONTROL_PLANE, 'https://cp.example:8443');
  t.equal(env.MESHLET_TRUST_ANCHORS_PEM, ANCHORS);
  t.equal(env.MESHLET_APP_PORTS, '8080,8443', 'TCP containerPorts of every container, once each, in order (UDP left out)');
  t.equal(env.MESHLET_LOG_LEVEL, 'info');
  t.equal(argOf(proxy, '--app'), '127.0.0.1:8080', 'the first app port');
  t.equal(argOf(proxy, '--control-plane'), 'https://cp.example:8443');
  t.equal(argOf(proxy, '--control-plane-identity'), 'spiffe://td/ns/x/sa/cp');
  t.equal(argOf(proxy, '--identity-token-file'), `${TOKEN_DIR}/token`);
  t.equal(argOf(proxy, '--pod'), '$(MESHLET_POD_NAME)', 'the kubelet substitutes env into args');
  t.equal(argOf(proxy, '--namespace'), '$(MESHLET_POD_NAMESPACE)');
  t.equal(argOf(proxy, '--admin-listen'), `0.0.0.0:${ADMIN_PORT}`, 'probes come from the kubelet over the Pod IP');
  t.equal(argOf(proxy, '--inbound-listen'), `0.0.0.0:${INBOUND_PORT}`);
  t.equal(argOf(proxy, '--outbound-listen'), `127.0.0.1:${OUTBOUND_PORT}`);
  t.equal(argOf(proxy, '--workload'), 'web', 'workload from the app label');
  // Every $(VAR) in args names an env var defined in the container (else the kubelet leaves it literal).
  for (const a of proxy.args as string[]) for (const m of a.matchAll(/\$\((\w+)\)/g)) t.ok((m[1] ?? '') in env, `$(${m[1]}) is defined`);
  const mounts = proxy.volumeMounts as Json[];
  t.same(mounts.find((m) => m.name === TOKEN_VOLUME), { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true });
  t.same(mounts.find((m) => m.name === TMP_VOLUME)?.mountPath, '/tmp');
  // The labels file, read-only, named by the flag: the control plane matches Service selectors against it.
  t.same(mounts.find((m) => m.name === POD_INFO_VOLUME), { name: POD_INFO_VOLUME, mountPath: POD_INFO_DIR, readOnly: true });
  t.equal(argOf(proxy, '--pod-labels-file'), `${POD_INFO_DIR}/labels`);
  t.notOk(out.spec.initContainers[0].volumeMounts.some((m: Json) => m.name === POD_INFO_VOLUME), 'meshlet-init does not get the labels');
});

t.test('a Pod without containerPorts (a worker that only calls out): inbound is not redirected, outbound is', async (t) => {
  const pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: 'x' }] } };
  const out = apply(pod, inject(pod, settings()));
  const proxy = out.spec.initContainers[1];
  t.equal(argOf(proxy, '--app'), undefined);
  t.equal(envOf(proxy).MESHLET_APP_PORTS, '');
  // Redirecting every port would send each connection to the proxy, which could not know the port it was for.
  t.equal(envOf(out.spec.initContainers[0]).MESHLET_INBOUND_PORTS, 'none');
  t.equal(envOf(out.spec.initContainers[0]).MESHLET_INBOUND_PORT_MAP, '');
  t.equal(envOf(proxy).MESHLET_INBOUND_PORT_MAP, '');
});

t.test('inboundPortMap: each app port after the first gets its own proxy port, above the inbound port', async (t) => {
  const own = { outbound: 4140, inbound: 4143, admin: 4191 };
  const map = (ports: number[], taken: number[] = []) => {
    const problems: string[] = [];
    return { map: inboundPortMap(ports, own, taken, problems), problems };
  };
  t.same(map([8080]), { map: [], problems: [] }, 'one port: the inbound port alone, no map');
  t.same(map([]), { map: [], problems: [] });
  t.same(map([8080, 9090, 9091]).map, ['9090=4144', '9091=4145'], 'in order, counting up from the inbound port');
  t.same(map([8080, 4144, 9090]).map, ['4144=4145', '9090=4146'], "never an app port (4144 is the app's)");
  t.same(map([8080, 9090], [4144, 4145]).map, ['9090=4146'], 'never a port the Pod declares or skips elsewhere');
  const many = map([8080, ...Array.from({ length: 50 }, (_, i) => 10_000 + i)]).map;
  t.notOk(many.some((m) => m.endsWith('=4191')), "past the admin port (the proxy's own)");
  t.equal(new Set(many.map((m) => m.split('=')[1])).size, 50, 'every app port its own proxy port');
  const top = { outbound: 4140, inbound: 65534, admin: 4191 };
  const problems: string[] = [];
  t.same(inboundPortMap([8080, 9090, 9091], top, [], problems), ['9090=65535']);
  t.match(problems, [/no free proxy port above the inbound port 65534 for app port 9091/], 'out of ports: a problem, not a wrapped-around port');
  const r = refused(inject(basePod(), settings({ ports: { outbound: 4140, inbound: 65535, admin: 4191 } })));
  t.equal(r.refused, 'bad-pod');
  t.match(r.message, /cannot inject the meshlet proxy: no free proxy port above the inbound port 65535 for app port 8443/, 'the Pod is refused at admission, with the reason');
});

t.test('a Pod with several ports: one listener per app port, the same map for the proxy and meshlet-init', async (t) => {
  const pod = basePod();
  pod.spec.containers[1].ports.push({ containerPort: 4144 }, { containerPort: 9090 });
  pod.metadata.annotations['config.meshlet.io/skip-inbound-ports'] = '4145';
  const out = apply(pod, inject(pod, settings()));
  const [init, proxy] = out.spec.initContainers;
  t.equal(envOf(proxy).MESHLET_APP_PORTS, '8080,8443,4144,9090');
  t.equal(envOf(proxy).MESHLET_INBOUND_PORT_MAP, '8443=4146,4144=4147,9090=4148', 'around the app port 4144 and the skipped 4145');
  t.equal(envOf(init).MESHLET_INBOUND_PORT_MAP, envOf(proxy).MESHLET_INBOUND_PORT_MAP);
  t.equal(argOf(proxy, '--inbound-listen'), `0.0.0.0:${INBOUND_PORT}`, 'the first app port keeps the inbound port');
  t.equal(argOf(proxy, '--app'), '127.0.0.1:8080');
  // The override chooses the redirected ports; containerPorts left out of it are still the app's.
  const chosen = basePod();
  chosen.metadata.annotations['config.meshlet.io/inbound-ports'] = '8080,4145';
  chosen.spec.containers[0].ports.push({ containerPort: 4144 });
  t.equal(envOf(apply(chosen, inject(chosen, settings())).spec.initContainers[0]).MESHLET_INBOUND_PORT_MAP, '4145=4146', 'not 4144, a containerPort of the Pod');
});

t.test('settings meshlet-init would refuse are refused at admission, with the reason', async (t) => {
  const cases: Array<[string, (pod: Json) => void, RegExp]> = [
    ['a container port that is the proxy admin port', (pod) => pod.spec.containers[0].ports.push({ containerPort: 4191 }), /a container port of the Pod: 4191 is one of the proxy's own ports/],
    ['inbound-ports naming the proxy inbound port', (pod) => (pod.metadata.annotations['config.meshlet.io/inbound-ports'] = '8080,4143'), /config\.meshlet\.io\/inbound-ports: 4143 is one of the proxy's own ports/],
    ['an IPv6 skip CIDR', (pod) => (pod.metadata.annotations['config.meshlet.io/skip-outbound-cidrs'] = '10.0.0.0/8,fd00::/8'), /"fd00::\/8": IPv6 is not supported/],
  ];
  for (const [name, change, message] of cases) {
    const pod = basePod();
    change(pod);
    const r = refused(inject(pod, settings()));
    t.match(r.message, message, name);
  }
});

t.test('meshlet-init: the contract with the interception script', async (t) => {
  const pod = basePod();
  pod.metadata.annotations['config.meshlet.io/skip-inbound-ports'] = '9090, 9091';
  pod.metadata.annotations['config.meshlet.io/skip-outbound-ports'] = '5432';
  pod.metadata.annotations['config.meshlet.io/skip-outbound-cidrs'] = '10.0.0.0/8,169.254.169.254';
  const out = apply(pod, inject(pod, settings({ initImage: 'registry/init:2', skipOutboundCidrs: ['192.168.0.1/32'] })));
  const init = out.spec.initContainers[0];
  t.equal(init.name, 'meshlet-init');
  t.equal(init.image, 'registry/init:2');
  t.same(init.command, ['/meshlet/intercept.sh']);
  t.same(envOf(init), {
    MESHLET_PROXY_UID: '2102',
    MESHLET_OUTBOUND_PORT: '4140',
    MESHLET_INBOUND_PORT: '4143',
    MESHLET_ADMIN_PORT: '4191',
    MESHLET_INBOUND_PORTS: '8080,8443',
    MESHLET_INBOUND_PORT_MAP: '8443=4144',
    MESHLET_SKIP_INBOUND_PORTS: '9090,9091',
    MESHLET_SKIP_OUTBOUND_PORTS: '5432',
    MESHLET_SKIP_OUTBOUND_CIDRS: '192.168.0.1/32,10.0.0.0/8,169.254.169.254',
  });
  t.equal(envOf(out.spec.initContainers[1]).MESHLET_APP_PORTS, envOf(init).MESHLET_INBOUND_PORTS, 'proxy and script see the same app ports');
  t.equal(envOf(out.spec.initContainers[1]).MESHLET_INBOUND_PORT_MAP, envOf(init).MESHLET_INBOUND_PORT_MAP, 'and the same listener per app port');
  t.same(init.securityContext.capabilities, { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
  t.equal(init.securityContext.runAsUser, 0, 'root, only for iptables');
  t.equal(init.securityContext.runAsNonRoot, false, "overrides a Pod-level runAsNonRoot for this container only");
  t.equal(init.securityContext.privileged, false);
  t.equal(init.securityContext.allowPrivilegeEscalation, false);
  t.equal(init.restartPolicy, undefined, 'runs once');
});

t.test('outbound HTTPS, database and mail ports bypass the proxy by default; the annotation replaces the default', async (t) => {
  const initEnv = (annotation: string | undefined, o: Partial<InjectSettings> = {}) => {
    const pod = basePod();
    if (annotation !== undefined) pod.metadata.annotations['config.meshlet.io/skip-outbound-ports'] = annotation;
    const out = apply(pod, inject(pod, settings(o)));
    return envOf(out.spec.initContainers.find((c: Json) => c.name === 'meshlet-init')).MESHLET_SKIP_OUTBOUND_PORTS;
  };
  t.same(DEFAULT_SKIP_OUTBOUND_PORTS, [25, 443, 587, 3306, 4444, 5432, 6379, 9300, 11211], "443 and the ports Linkerd treats as opaque by default");
  t.equal(initEnv(undefined), '25,443,587,3306,4444,5432,6379,9300,11211', 'no annotation: the default');
  t.equal(initEnv('5432'), '5432', 'an annotation replaces it, as with Linkerd and Istio (443 is then redirected)');
  t.equal(initEnv('443,5432'), '443,5432', 'list 443 to keep it');
  t.equal(initEnv(''), '', 'empty: every port through the proxy');
  t.equal(initEnv(undefined, { skipOutboundPorts: [] }), '', 'the cluster-wide setting (MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS) empty');
  t.equal(initEnv(undefined, { skipOutboundPorts: [443, 8443] }), '443,8443');
  t.match(refused(inject((() => { const p = basePod(); p.metadata.annotations['config.meshlet.io/skip-outbound-ports'] = '443,https'; return p; })(), settings())).message, /skip-outbound-ports: "https" is not a port/);
  t.same(parsePorts('443, 8443,443', 'X'), [443, 8443]);
  t.same(parsePorts('', 'X'), []);
  t.equal(parsePorts(undefined, 'X'), undefined);
  t.throws(() => parsePorts('443,0', 'MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS'), /MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS: "0" is not a port/);
});

t.test('CNI mode: no meshlet-init, no NET_ADMIN anywhere', async (t) => {
  const pod = basePod();
  const out = apply(pod, inject(pod, settings({ cni: true })));
  t.same(out.spec.initContainers.map((c: Json) => c.name), ['meshlet-proxy', 'migrate']);
  t.notMatch(JSON.stringify(out), /NET_ADMIN/);
  const bare = { spec: { containers: [{ name: 'app' }] } };
  t.same(apply(bare, inject(bare, settings({ cni: true }))).spec.initContainers.map((c: Json) => c.name), ['meshlet-proxy']);
});

t.test('fallback (regular sidecar): proxy first, postStart holds the app; meshlet-init after the user init containers', async (t) => {
  const pod = basePod();
  const r = injected(inject(pod, settings({ nativeSidecar: false })));
  t.equal(r.mode, 'sidecar');
  const out = apply(pod, r);
  t.same(out.spec.containers.map((c: Json) => c.name), ['meshlet-proxy', 'app', 'worker']);
  t.same(out.spec.initContainers.map((c: Json) => c.name), ['migrate', 'meshlet-init'], "the user's init containers run before interception (no proxy would answer them yet)");
  const proxy = out.spec.containers[0];
  t.equal(proxy.restartPolicy, undefined, 'containers take no restartPolicy');
  t.equal(proxy.startupProbe, undefined);
  t.match(proxy.lifecycle.postStart.exec.command, ['/nodejs/bin/node', '-e', /127\.0\.0\.1:4191\/ready/]);
  t.equal(out.metadata.annotations['kubectl.kubernetes.io/default-container'], 'app', 'kubectl logs picks the app, not the proxy');
  t.equal(isMeshedPod(out), true);
  // ...and per Pod, by annotation, in either direction.
  const p2 = basePod();
  p2.metadata.annotations['config.meshlet.io/native-sidecar'] = 'false';
  t.equal(injected(inject(p2, settings())).mode, 'sidecar');
  const p3 = basePod();
  p3.metadata.annotations['config.meshlet.io/native-sidecar'] = 'true';
  t.equal(injected(inject(p3, settings({ nativeSidecar: false }))).mode, 'native-sidecar');
});

t.test('absent arrays and maps are created; present ones appended to, never replaced', async (t) => {
  const bare = { spec: { containers: [{ name: 'app', image: 'x' }] } };
  const r = injected(inject(bare, settings()));
  const out = apply(bare, r);
  t.same(out.spec.volumes.map((v: Json) => v.name), [TOKEN_VOLUME, TMP_VOLUME, POD_INFO_VOLUME]);
  t.same(Object.keys(out.metadata.annotations).toSorted(), ['kubectl.kubernetes.io/default-container', 'meshlet.io/injected', 'prometheus.io/path', 'prometheus.io/port', 'prometheus.io/scrape']);
  const noAnn = { metadata: { name: 'x' }, spec: { containers: [{ name: 'app' }], volumes: [] } };
  const o2 = apply(noAnn, inject(noAnn, settings()));
  t.equal(o2.metadata.name, 'x', 'metadata kept when annotations are created');
  t.same(o2.spec.volumes.map((v: Json) => v.name), [TOKEN_VOLUME, TMP_VOLUME, POD_INFO_VOLUME]);
  const nullMeta = { metadata: null, spec: { containers: [{ name: 'app' }] } } as PodLike;
  t.equal(apply(nullMeta as Json, inject(nullMeta, settings())).metadata.annotations['meshlet.io/injected'], 'native-sidecar');
});

t.test('volumes: the projected token with audience meshlet and an in-memory /tmp', async (t) => {
  const pod = basePod();
  const out = apply(pod, inject(pod, settings({ audience: 'meshlet' })));
  t.same(out.spec.volumes[0], { name: 'data', emptyDir: {} }, "the user's volume stays first");
  t.same(out.spec.volumes[1], { name: TOKEN_VOLUME, projected: { sources: [{ serviceAccountToken: { audience: 'meshlet', expirationSeconds: 86400, path: 'token' } }] } });
  t.same(out.spec.volumes[2], { name: TMP_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } });
  t.same(out.spec.volumes[3], { name: POD_INFO_VOLUME, downwardAPI: { items: [{ path: 'labels', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.labels' } }] } }, "the Pod's labels as the kubelet writes them (rewritten on a relabel)");
  t.equal(out.spec.serviceAccountName, 'default', 'a projected token needs a named ServiceAccount: the default one when unset');
  const named = { ...basePod(), spec: { ...basePod().spec, serviceAccountName: 'web' } };
  t.equal(apply(named, inject(named, settings())).spec.serviceAccountName, 'web', 'a named one is kept');
});

t.test("never removes, replaces or reorders what the user wrote", async (t) => {
  const pod = basePod();
  pod.metadata.annotations['prometheus.io/scrape'] = 'false';
  pod.metadata.annotations['kubectl.kubernetes.io/default-container'] = 'worker';
  const before = structuredClone(pod);
  const r = injected(inject(pod, settings({ nativeSidecar: false })));
  t.same(pod, before, 'the input object itself is not modified');
  const out = apply(pod, r);
  // Deleting everything the injector added gives back exactly the user's Pod.
  const back = structuredClone(out);
  back.spec.containers = back.spec.containers.filter((c: Json) => c.name !== 'meshlet-proxy');
  back.spec.initContainers = back.spec.initContainers.filter((c: Json) => c.name !== 'meshlet-init');
  back.spec.volumes = back.spec.volumes.filter((v: Json) => v.name !== TOKEN_VOLUME && v.name !== TMP_VOLUME && v.name !== POD_INFO_VOLUME);
  delete back.metadata.annotations['meshlet.io/injected'];
  delete back.spec.serviceAccountName;
  t.same(back, pod, 'the original Pod is a sub-document of the injected one, in the same order');
  t.equal(out.metadata.annotations['prometheus.io/scrape'], 'false', "the app's own prometheus.io/* are kept");
  t.equal(out.metadata.annotations['prometheus.io/port'], undefined, 'and not mixed with the proxy port');
  t.equal(out.metadata.annotations['kubectl.kubernetes.io/default-container'], 'worker');
});

t.test('annotation keys are escaped as JSON pointers (RFC 6901)', async (t) => {
  t.equal(pointerToken('prometheus.io/scrape'), 'prometheus.io~1scrape');
  t.equal(pointerToken('a~b/c'), 'a~0b~1c');
  const pod = basePod();
  const r = injected(inject(pod, settings()));
  t.ok(r.patch.some((op) => op.path === '/metadata/annotations/prometheus.io~1scrape'), 'slash escaped');
  t.ok(r.patch.some((op) => op.path === '/metadata/annotations/kubectl.kubernetes.io~1default-container'));
  const out = apply(pod, r);
  t.same(
    Object.fromEntries(Object.entries(out.metadata.annotations).filter(([k]) => !k.startsWith('team.'))),
    { 'meshlet.io/injected': 'native-sidecar', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '4191', 'prometheus.io/path': '/metrics', 'kubectl.kubernetes.io/default-container': 'app' },
  );
});

t.test('idempotent: an injected Pod gives an empty patch, whichever way it was injected', async (t) => {
  for (const s of [settings(), settings({ nativeSidecar: false }), settings({ cni: true })]) {
    const once = apply(basePod(), inject(basePod(), s));
    const again = inject(once, s);
    t.same(again, { outcome: 'skipped', skipped: 'already-injected', patch: [] });
  }
  // A proxy container without the marker (hand-written), or the marker alone, counts too.
  const hand = basePod();
  hand.spec.containers.push({ name: 'meshlet-proxy', image: 'p' });
  t.equal(inject(hand, settings()).outcome, 'skipped');
  const marked = basePod();
  marked.metadata.annotations['meshlet.io/injected'] = 'sidecar';
  t.same(inject(marked, settings()), { outcome: 'skipped', skipped: 'already-injected', patch: [] });
});

t.test('skips: opted out (annotation or label), host network', async (t) => {
  const ann = basePod();
  ann.metadata.annotations['meshlet.io/inject'] = 'disabled';
  t.same(inject(ann, settings()), { outcome: 'skipped', skipped: 'disabled', patch: [] });
  const lab = basePod();
  lab.metadata.labels['meshlet.io/inject'] = 'disabled';
  t.same(inject(lab, settings()), { outcome: 'skipped', skipped: 'disabled', patch: [] });
  const host = basePod();
  host.spec.hostNetwork = true;
  t.same(inject(host, settings()), { outcome: 'skipped', skipped: 'host-network', patch: [] });
  const optIn = basePod();
  optIn.metadata.annotations['meshlet.io/inject'] = 'enabled';
  t.equal(inject(optIn, settings()).outcome, 'injected', 'the Pod opt-in (for unlabelled namespaces) injects');
});

t.test('annotation overrides: resources, log level, ports', async (t) => {
  const pod = basePod();
  Object.assign(pod.metadata.annotations, {
    'config.meshlet.io/proxy-cpu-request': '250m',
    'config.meshlet.io/proxy-cpu-limit': '2',
    'config.meshlet.io/proxy-memory-request': '200Mi',
    'config.meshlet.io/proxy-memory-limit': '1Gi',
    'config.meshlet.io/log-level': 'debug',
    'config.meshlet.io/inbound-ports': '7000,7001',
  });
  const out = apply(pod, inject(pod, settings()));
  const proxy = out.spec.initContainers[1];
  t.same(proxy.resources, { requests: { cpu: '250m', memory: '200Mi' }, limits: { cpu: '2', memory: '1Gi' } });
  t.equal(envOf(proxy).NODE_OPTIONS, '--max-old-space-size=512', 'a bigger memory limit, a bigger heap cap (a large view needs it)');
  t.equal(envOf(proxy).MESHLET_LOG_LEVEL, 'debug');
  t.equal(envOf(proxy).MESHLET_APP_PORTS, '7000,7001', 'inbound-ports overrides containerPorts');
  t.equal(argOf(proxy, '--app'), '127.0.0.1:7000');
  t.equal(envOf(out.spec.initContainers[0]).MESHLET_INBOUND_PORTS, '7000,7001');
});

/** MESHLET_DEFAULT_INBOUND_POLICY of the proxy injected into basePod() with these annotations. */
function inboundPolicyOf(ann: Record<string, string>, o: Partial<InjectSettings> = {}): unknown {
  const pod = basePod();
  Object.assign(pod.metadata.annotations, ann);
  return envOf(apply(pod, inject(pod, settings(o))).spec.initContainers[1]).MESHLET_DEFAULT_INBOUND_POLICY;
}

t.test("the default inbound policy: the cluster's (all-authenticated unless set), replaced by the Pod's annotation, in the proxy's env", async (t) => {
  t.equal(inboundPolicyOf({}), 'all-authenticated', "meshlet's safe default: only meshed (mTLS) clients");
  t.equal(inboundPolicyOf({}, { defaultInboundPolicy: 'all-unauthenticated' }), 'all-unauthenticated', 'the cluster-wide setting (MESHLET_DEFAULT_INBOUND_POLICY)');
  for (const v of ['all-unauthenticated', 'all-authenticated', 'deny']) t.equal(inboundPolicyOf({ 'config.meshlet.io/default-inbound-policy': v }), v, `the annotation ${v}`);
  t.equal(inboundPolicyOf({ 'config.meshlet.io/default-inbound-policy': ' deny ' }, { defaultInboundPolicy: 'all-unauthenticated' }), 'deny', "the Pod's annotation replaces the cluster's");
  t.ok('default-inbound-policy' in OVERRIDES, 'listed with the other overrides (the README table)');
});

t.test('a memory limit written as Kubernetes allows (exponent, sign, decimal, SI) is taken, and the heap cap follows it', async (t) => {
  for (const [limit, heap] of [['1e9', 476], ['1E9', 476], ['5e8', 238], ['+512Mi', 256], ['1.5Gi', 768], ['300M', 143], ['1.Gi', 512]] as const) {
    const pod = basePod();
    pod.metadata.annotations['config.meshlet.io/proxy-memory-limit'] = limit;
    const r = inject(pod, settings());
    t.equal(r.outcome, 'injected', `${limit}: injected (${r.outcome === 'refused' ? r.message : ''})`);
    const proxy = apply(basePod(), r).spec.initContainers[1];
    t.equal(proxy.resources.limits.memory, limit, `${limit}: the limit as written`);
    t.equal(envOf(proxy).NODE_OPTIONS, `--max-old-space-size=${heap}`, `${limit}: heap cap ${heap} MB (half the limit)`);
  }
  t.equal(quantityValue('1E'), 1e18, '1E is still exa');
  for (const bad of ['-1Gi', '1e', 'e9', '1e9Mi', '1.5.Gi', '+-1']) t.equal(quantityValue(bad), undefined, `${bad}: not a quantity`);
});

t.test('bad annotation values refuse the Pod with every problem named', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'config.meshlet.io/proxy-cpu-request': 'banana' }, /proxy-cpu-request: "banana" is not a CPU quantity/],
    [{ 'config.meshlet.io/proxy-memory-limit': '12 GB' }, /proxy-memory-limit: "12 GB" is not a memory quantity/],
    [{ 'config.meshlet.io/skip-inbound-ports': '80,70000' }, /skip-inbound-ports: "70000" is not a port \(1-65535\)/],
    [{ 'config.meshlet.io/skip-outbound-ports': '0' }, /"0" is not a port/],
    [{ 'config.meshlet.io/inbound-ports': 'http' }, /inbound-ports: "http" is not a port/],
    [{ 'config.meshlet.io/skip-outbound-cidrs': '10.0.0.0/33' }, /"10.0.0.0\/33" is not an IP address or CIDR/],
    [{ 'config.meshlet.io/skip-outbound-cidrs': 'example.com' }, /"example.com" is not an IP address or CIDR/],
    [{ 'config.meshlet.io/log-level': 'verbose' }, /log-level: "verbose" is not a log level \(debug, info, warn, error\)/],
    [{ 'config.meshlet.io/native-sidecar': 'yes' }, /native-sidecar: "yes" is not true or false/],
    [{ 'config.meshlet.io/outbound-passthrough': 'on' }, /outbound-passthrough: "on" is not true or false/],
    [{ 'config.meshlet.io/default-inbound-policy': 'all' }, /default-inbound-policy: "all" is not a default inbound policy \(all-unauthenticated, all-authenticated, deny\)/],
    [{ 'config.meshlet.io/default-inbound-policy': 'cluster-authenticated' }, /default-inbound-policy: "cluster-authenticated" is not a default inbound policy/],
    [{ 'config.meshlet.io/proxy-cpu-requests': '1' }, /config.meshlet.io\/proxy-cpu-requests: unknown annotation \(known: .*config.meshlet.io\/proxy-cpu-request,/],
    [{ 'config.meshlet.io/proxy-memory-request': '512Mi' }, /proxy-memory-request 512Mi is more than the limit 256Mi: raise config.meshlet.io\/proxy-memory-limit too/],
  ];
  for (const [ann, msg] of cases) {
    const pod = basePod();
    Object.assign(pod.metadata.annotations, ann);
    const r = refused(inject(pod, settings()));
    t.equal(r.refused, 'bad-annotation', JSON.stringify(ann));
    t.match(r.message, msg);
    t.match(r.message, /^cannot inject the meshlet proxy: /);
    t.same(r.patch, []);
  }
  const two = basePod();
  Object.assign(two.metadata.annotations, { 'config.meshlet.io/proxy-cpu-request': 'banana', 'config.meshlet.io/skip-inbound-ports': '70000' });
  const r = refused(inject(two, settings()));
  t.match(r.message, /banana.*; .*70000/, 'all problems at once');
});

t.test('bad Pods are refused, not injected', async (t) => {
  t.match(refused(inject({ spec: { containers: [] } }, settings())), { refused: 'bad-pod', message: /no containers/ });
  t.match(refused(inject({ metadata: {} }, settings())), { refused: 'bad-pod', message: /no spec/ });
  t.match(refused(inject({ spec: { containers: [{ name: 'a' }], volumes: [{ name: TOKEN_VOLUME }] } }, settings())), { refused: 'bad-pod', message: /already has a volume named meshlet-identity-token/ });
  t.match(refused(inject({ spec: { containers: [{ name: 'a' }], volumes: [{ name: POD_INFO_VOLUME }] } }, settings())), { refused: 'bad-pod', message: /already has a volume named meshlet-pod-info, which the proxy needs/ });
  t.match(refused(inject({ spec: { containers: [{ name: 'meshlet-init' }] } }, settings())), { refused: 'bad-pod', message: /container named meshlet-init/ });
  t.match(refused(inject({ spec: { containers: [{ name: 'a' }], initContainers: 'x' as unknown as [] } }, settings())), { refused: 'bad-pod', message: /initContainers is not a list/ });
  t.match(refused(inject({ spec: { containers: [null] } }, settings())), { refused: 'bad-pod', message: /not a container/ });
  t.throws(() => inject(basePod(), settings({ trustAnchorsPem: '' })), /no trust anchors/, 'never a proxy that cannot verify the control plane (the webhook answers an internal error)');
});

/** A Pod's labels as the kubelet writes them into the downward-API file the proxy reads. */
const downward = (pod: Json): string =>
  Object.keys(pod.metadata.labels)
    .toSorted()
    .map((k) => `${k}=${JSON.stringify(pod.metadata.labels[k])}`)
    .join('\n');

t.test('a Pod whose labels its proxy could not report is refused at admission, not left with a sidecar that never starts', async (t) => {
  // Kubernetes sets no count on labels; the proxy sends at most 64 (8 KiB) and stops at start with more.
  const withLabels = (n: number, value = 'v', prefix = 'team.example.com'): Json => {
    const pod = basePod();
    pod.metadata.labels = Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}/label-${i}`, value]));
    return pod;
  };
  const at64 = withLabels(64);
  injected(inject(at64, settings()));
  t.ok(parseDownwardLabels(downward(at64)).ok, 'what the injector admits, its proxy reads');
  const at65 = withLabels(65);
  t.notOk(parseDownwardLabels(downward(at65)).ok, 'the proxy would stop on 65 labels');
  const r = refused(inject(at65, settings()));
  t.equal(r.refused, 'bad-pod');
  t.match(r.message, /cannot inject the meshlet proxy: metadata\.labels: 65 labels: at most 64; the proxy reports the Pod's labels/);
  t.match(refused(inject(withLabels(64, 'x'.repeat(63), `${'p'.repeat(60)}.example.com`), settings())).message, /metadata\.labels: \d+ bytes of labels: at most 8192/, 'the wire bound too');
  const odd = basePod();
  odd.metadata.labels = { app: 7 };
  t.match(refused(inject(odd, settings())).message, /metadata\.labels: label app is not a string/);
});

t.test('heapCapMb: half the memory limit, at least 32 MiB; no limit, no cap', async (t) => {
  t.equal(heapCapMb('256Mi'), 128);
  t.equal(heapCapMb('1Gi'), 512);
  t.equal(heapCapMb('500M'), 238, 'decimal units: 500 MB is 476.8 MiB');
  t.equal(heapCapMb('40Mi'), 32, 'never below 32');
  t.equal(heapCapMb(undefined), undefined);
  t.equal(heapCapMb('lots'), undefined);
  const out = apply(basePod(), inject(basePod(), settings({ resources: { cpuRequest: '100m' } })));
  t.equal(envOf(out.spec.initContainers[1]).NODE_OPTIONS, undefined, 'no memory limit: no heap cap either');
});

t.test('helpers: quantities, ports, workload names', async (t) => {
  t.equal(quantityValue('100m'), 0.1);
  t.equal(quantityValue('1Gi'), 2 ** 30);
  t.equal(quantityValue('1.5'), 1.5);
  t.equal(quantityValue('banana'), undefined);
  t.equal(quantityValue('-1'), undefined);
  t.same(appPorts({ spec: { containers: [{ ports: [{ containerPort: 1 }, { containerPort: 'x' }, null] }, 'junk'] } as PodLike['spec'] }), [1]);
  t.equal(workloadName({ metadata: { ownerReferences: [{ kind: 'ReplicaSet', name: 'web-5d8f9', controller: true }], labels: { 'pod-template-hash': '5d8f9' } } }), 'web');
  t.equal(workloadName({ metadata: { ownerReferences: [{ kind: 'StatefulSet', name: 'db', controller: true }] } }), 'db');
  t.equal(workloadName({ metadata: { generateName: 'job-x-' } }), 'job-x');
  t.equal(workloadName({}), 'unknown');
  t.equal(argOf(apply(basePod(), inject(basePod(), settings(), { workload: 'given' })).spec.initContainers[1], '--workload'), 'given');
  t.ok(Object.keys(OVERRIDES).length >= 9);
});

t.test("the kubelet's plain-HTTP probe paths of the redirected ports go to the proxy (MESHLET_PROBE_PATHS); the probes themselves are left as written", async (t) => {
  const probesOf = (pod: Json): unknown => {
    const env = envOf(apply(pod, injected(inject(pod, settings()))).spec.initContainers.find((c: Json) => c.name === 'meshlet-proxy'));
    return env.MESHLET_PROBE_PATHS === undefined ? undefined : JSON.parse(env.MESHLET_PROBE_PATHS as string);
  };
  t.equal(probesOf(basePod()), undefined, 'no probes: no variable');
  const pod = basePod();
  pod.spec.containers[0].ports.push({ name: 'admin', containerPort: 9090 });
  pod.spec.containers[0].livenessProbe = { httpGet: { path: '/healthz', port: 'admin' }, periodSeconds: 3 };
  pod.spec.containers[0].readinessProbe = { httpGet: { port: 8080 } };
  pod.spec.containers[0].startupProbe = { httpGet: { path: 'started?x=1', port: 8443 } };
  pod.spec.containers[1].livenessProbe = { httpGet: { path: '/tls', port: 8080, scheme: 'HTTPS' } };
  pod.spec.containers[1].readinessProbe = { httpGet: { path: '/elsewhere', port: 8080, host: '10.1.2.3' } };
  pod.spec.containers[1].startupProbe = { tcpSocket: { port: 8080 } };
  pod.spec.initContainers[0].livenessProbe = { httpGet: { path: '/init', port: 8080 } };
  t.same(probesOf(pod), { 8080: ['/'], 8443: ['/started'], 9090: ['/healthz'] }, 'a named port resolved, no path is /, the query cut and a missing slash added as the kubelet does; HTTPS, another host, tcpSocket and init containers left out');
  const out = apply(pod, injected(inject(pod, settings())));
  t.same(out.spec.containers[0].livenessProbe, { httpGet: { path: '/healthz', port: 'admin' }, periodSeconds: 3 }, "the app's probe is not rewritten");
  const skipped = structuredClone(pod);
  skipped.metadata.annotations['config.meshlet.io/skip-inbound-ports'] = '9090';
  t.same(probesOf(skipped), { 8080: ['/'], 8443: ['/started'] }, 'a skipped inbound port reaches the app directly: not listed');
  const long = basePod();
  long.spec.containers[0].livenessProbe = { httpGet: { path: `/${'x'.repeat(1100)}`, port: 8080 } };
  t.match(refused(inject(long, settings())).message, /container app: the livenessProbe path is 1101 characters; the proxy lets probes through only up to 1024/, 'a path the proxy would refuse at start refuses the Pod');
});

t.test('probe paths are listed as the kubelet asks for them: escaped as Go escapes them, the fragment dropped', async (t) => {
  const pod = basePod();
  pod.spec.containers[0].livenessProbe = { httpGet: { path: '/health check', port: 8080 } };
  pod.spec.containers[0].readinessProbe = { httpGet: { path: '/über#section', port: 8080 } };
  pod.spec.containers[0].startupProbe = { httpGet: { path: "/a(b)!*'%2F?x=1 2", port: 8080 } };
  pod.spec.containers[1].livenessProbe = { httpGet: { path: '/x{y}|z', port: 8080 } };
  pod.spec.containers[1].readinessProbe = { httpGet: { path: '/bad%zz', port: 8080 } };
  const env = envOf(apply(pod, injected(inject(pod, settings()))).spec.initContainers.find((c: Json) => c.name === 'meshlet-proxy'));
  // Each as the kubelet's formatURL (Go's url.Parse, then RequestURI) sends it, checked with Go 1.26's net/url.
  t.same(JSON.parse(env.MESHLET_PROBE_PATHS as string), { 8080: ['/health%20check', '/%C3%BCber', "/a(b)!*'%2F", '/x%7By%7D%7Cz', '/bad%25zz'] });
});

t.test('config.meshlet.io/outbound-namespaces narrows the proxy\'s view (MESHLET_OUTBOUND_NAMESPACES); a bad list refuses the Pod', async (t) => {
  const envWith = (value: string | undefined) => {
    const pod = basePod();
    if (value !== undefined) pod.metadata.annotations['config.meshlet.io/outbound-namespaces'] = value;
    return envOf(apply(pod, injected(inject(pod, settings()))).spec.initContainers.find((c: Json) => c.name === 'meshlet-proxy')).MESHLET_OUTBOUND_NAMESPACES;
  };
  t.equal(envWith(undefined), undefined, 'unset: the whole mesh');
  t.equal(envWith('payments, shared,payments'), 'payments,shared', 'trimmed, once each, sorted');
  t.equal(envWith(''), '', 'empty: its own namespace only');
  const pod = basePod();
  pod.metadata.annotations['config.meshlet.io/outbound-namespaces'] = 'payments,Shared';
  t.match(refused(inject(pod, settings())).message, /config\.meshlet\.io\/outbound-namespaces: "Shared" is not a namespace name/);
});

t.test('the ports and UID agree with manifests/config.env', async (t) => {
  const env = new Map(readFileSync(new URL('../../manifests/config.env', import.meta.url), 'utf8').split('\n').filter((l) => /^\w+=/.test(l)).map((l) => l.split('=', 2) as [string, string]));
  t.equal(String(PROXY_UID), env.get('MESHLET_PROXY_UID'));
  t.equal(String(OUTBOUND_PORT), env.get('MESHLET_PROXY_OUTBOUND_PORT'));
  t.equal(String(INBOUND_PORT), env.get('MESHLET_PROXY_INBOUND_PORT'));
  t.equal(String(ADMIN_PORT), env.get('MESHLET_PROXY_ADMIN_PORT'));
  t.equal(ADMIN_PORT_NAME, env.get('MESHLET_PROXY_ADMIN_PORT_NAME'));
  t.equal(settings().proxyImage, env.get('MESHLET_PROXY_IMAGE'));
  t.equal(settings().initImage, env.get('MESHLET_PROXY_INIT_IMAGE'));
  t.equal(DEFAULT_SKIP_OUTBOUND_PORTS.join(','), env.get('MESHLET_DEFAULT_SKIP_OUTBOUND_PORTS'));
  t.equal(settings().defaultInboundPolicy, env.get('MESHLET_DEFAULT_INBOUND_POLICY'));
});

t.test('malformed metadata a real API server would have typed: refused as a bad Pod with the field, not an internal error', async (t) => {
  const cases: Array<[string, (pod: Json) => void, RegExp]> = [
    ['ownerReferences an object', (pod) => (pod.metadata.ownerReferences = {}), /metadata\.ownerReferences is not a list of objects/],
    ['ownerReferences holding null', (pod) => (pod.metadata.ownerReferences = [null]), /metadata\.ownerReferences is not a list of objects/],
    ['generateName a number', (pod) => (pod.metadata.generateName = 5), /metadata\.generateName is not a string/],
    ['labels a list', (pod) => (pod.metadata.labels = ['a']), /metadata\.labels is not a map/],
  ];
  for (const [name, change, message] of cases) {
    const pod = basePod();
    change(pod);
    const r = refused(inject(pod as PodLike, settings()));
    t.equal(r.refused, 'bad-pod', name);
    t.match(r.message, message, name);
  }
});
