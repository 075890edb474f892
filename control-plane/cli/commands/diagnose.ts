// `meshlet diagnose SOURCE DESTINATION`: why a call fails (or that it would not), in one answer.
// Thin I/O: reads the caller's and the callees' proxy admin servers (/ready /config /metrics
// /errors) and the control plane's /config-problems; the reasoning is ../diagnosis.ts.
import { parseArgs } from 'node:util';
import { EXIT_FAILURE, EXIT_OK, HELP_FLAG, UsageError, guarded, type Command, type Io } from '../command.ts';
import type { ErrorsDocument } from '../../../api/proxy-admin.ts';
import type { DefaultInboundPolicy } from '../../../api/default-inbound-policy.ts';
import { diagnose as explain, diagnosisText, type ProxyConfigView, type ProxyView, type RecentErrorView } from '../diagnosis.ts';
import { findWorkload, meshFlagHelp, meshPath, readMeshFile, type MeshWorkload } from '../mesh-file.ts';
import { parseMetrics } from '../golden.ts';
import { getJson, getText } from '../scrape.ts';

/** --help, with the mesh file this command reads in `env`. */
const usage = (env: NodeJS.ProcessEnv): string => `usage: meshlet diagnose SOURCE DESTINATION [--method GET] [--path /] [--header 'NAME: VALUE']... [-o table|json|yaml] [--mesh FILE]

Explain, in one answer, a call from workload SOURCE to service DESTINATION (as SOURCE's app
names it: api, store...) in the local mesh: the route chosen, the split, the endpoints and their
breaker state, the callees' authorization decision, the certificates, and the last errors the
proxies answered themselves (admin /errors) with what each reason means and what to do.

  --method M, --path P  the request to reason about (default GET /); the path may carry a query
  --header 'N: V'       a header field the request carries (repeatable; its Host is DESTINATION)
  -o, --output FORMAT   table (default), json or yaml
${meshFlagHelp(env, 24)}
Exit 0 when nothing is wrong (verdict ok or degraded), 1 when the path is failing or the mesh
cannot be read, 2 for bad usage.
`;

interface Ready {
  ready: boolean;
  reasons: string[];
  identity?: { identity: string | null; notAfter: string | null; renewalError: string | null } | string;
}

/** One recent error's identity, to merge the ring with the last error of each reason. */
const errorKey = (e: RecentErrorView) => `${e.at}|${e.reason}|${e.endpoint}|${e.message}`;

async function readProxy(w: MeshWorkload): Promise<ProxyView> {
  try {
    const [ready, cfg, metrics, errors] = await Promise.all([
      getJson<Ready>(`${w.admin}/ready`),
      getJson<{ config: ProxyConfigView | null; defaultInboundPolicy?: DefaultInboundPolicy | null }>(`${w.admin}/config`),
      getText(`${w.admin}/metrics`),
      getJson<Partial<ErrorsDocument> & { errors: RecentErrorView[] }>(`${w.admin}/errors`).catch(() => ({ errors: [], lastByReason: [] })),
    ]);
    const breakers = new Map<string, number>();
    for (const s of parseMetrics(metrics)) if (s.name === 'meshlet_endpoint_breaker_state') breakers.set(s.labels['endpoint'] ?? '', s.value);
    const id = typeof ready.identity === 'object' && ready.identity !== null ? { identity: ready.identity.identity, notAfter: ready.identity.notAfter, renewalError: ready.identity.renewalError } : null;
    // The ring, plus the last error of each reason that a burst of another pushed out of it.
    const inRing = new Set(errors.errors.map(errorKey));
    const all = [...errors.errors, ...(errors.lastByReason ?? []).filter((e) => !inRing.has(errorKey(e)))];
    return { workload: w.name, unreachable: undefined, ready: ready.ready, notReadyReasons: ready.reasons ?? [], identity: id, config: cfg.config ?? undefined, podDefaultInboundPolicy: cfg.defaultInboundPolicy ?? undefined, breakers, errors: all };
  } catch (e) {
    return { workload: w.name, unreachable: (e as Error).message, ready: false, notReadyReasons: [], identity: null, config: undefined, breakers: new Map(), errors: [] };
  }
}

async function run(args: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { method: { type: 'string' }, path: { type: 'string' }, header: { type: 'string', multiple: true }, mesh: { type: 'string' }, output: { type: 'string', short: 'o' }, help: HELP_FLAG } });
  } catch (e) {
    throw new UsageError('diagnose', (e as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout(usage(io.env));
    return EXIT_OK;
  }
  const [source, destination, ...extra] = parsed.positionals;
  if (!source || !destination || extra.length > 0) throw new UsageError('diagnose', 'give a source workload and a destination service (e.g. meshlet diagnose web api)');
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json' && format !== 'yaml') throw new UsageError('diagnose', `-o ${format}: want table, json or yaml`);
  const path = v.path ?? '/';
  if (!path.startsWith('/')) throw new UsageError('diagnose', `--path ${path}: want a path starting with /`);
  const headers = (v.header ?? []).map((h) => {
    const colon = h.indexOf(':');
    const name = colon === -1 ? '' : h.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new UsageError('diagnose', `--header ${h}: want NAME: VALUE`);
    if (name.toLowerCase() === 'host') throw new UsageError('diagnose', '--header Host: the Host is the DESTINATION');
    return [name, h.slice(colon + 1).trim()] as const;
  });
  const mesh = readMeshFile(meshPath(v.mesh, io.env));
  const src = findWorkload(mesh, source);
  const others = mesh.workloads.filter((w) => w.inbound !== undefined);
  const [sourceView, calleeViews, problems] = await Promise.all([
    readProxy(src),
    Promise.all(others.map(async (w) => [w.inbound!, { ...(await readProxy(w)), app: w.appPort === undefined ? undefined : { port: w.appPort } }] as const)),
    mesh.controlPlane.admin ? getJson<unknown[]>(`${mesh.controlPlane.admin}/config-problems`).catch(() => []) : Promise.resolve([]),
  ]);
  const d = explain({
    source: sourceView,
    destination,
    method: (v.method ?? 'GET').toUpperCase(),
    path,
    headers,
    callees: new Map(calleeViews),
    configProblems: problems.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))),
    nowMs: io.wallClock.nowMs(),
  });
  if (format === 'json') io.stdout(JSON.stringify(d, null, 2) + '\n');
  else if (format === 'yaml') io.stdout((await import('yaml')).stringify(d));
  else io.stdout(diagnosisText(d));
  return d.verdict === 'failing' ? EXIT_FAILURE : EXIT_OK;
}

export const diagnose: Command = {
  name: 'diagnose',
  summary: 'why a call from SOURCE to DESTINATION fails: route, split, endpoints, breaker, authz, certs, errors',
  run: (args, io) => guarded('diagnose', io, () => run(args, io)),
};
